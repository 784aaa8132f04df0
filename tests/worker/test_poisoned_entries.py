"""Entries written straight into a frames stream, bypassing capture (a fault campaign's
poisoned frames): the worker never crashes, each lands in the dead-letter stream with
its reason, and the good frames around them are captioned (real redis-server)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis

from tests.support.factories import caption_fn, tiny_captioner
from tests.support.frames import add_frame, jpeg, register
from worker.batching import BatchPolicy
from worker.bus.entries import FrameEntry, decode_caption
from worker.bus.keys import GROUP, captions_key, deadletter_key, frames_key
from worker.worker import Worker, WorkerConfig

GOOD = jpeg((0, 200, 0))


def _fields(**changes: object) -> dict[str, object]:
    """A good frame entry's fields, with ``changes`` (None: the field left out)."""
    entry = FrameEntry(
        source="cam", seq=0, pts_ms=0.0, capture_ns=time.time_ns(), width=64, height=48,
        jpeg=GOOD, live=False, interval_ms=1000.0,
    )  # fmt: skip
    fields: dict[str, object] = dict(entry.encode())
    for name, value in changes.items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    return fields


POISON = {
    "corrupt jpeg": {"data": b"\xff\xd8\xff\xe0 not a jpeg at all"},
    "truncated jpeg": {"data": GOOD[: len(GOOD) // 2]},
    "a 50 MB payload": {"data": b"\xff\xd8" + np.random.default_rng(0).bytes(50 << 20)},
    "no seq": {"seq": None},
    "seq not a number": {"seq": "seven"},
    "negative seq": {"seq": -3},
    "no source": {"source": None},
    "a source name that is none": {"source": "cam 0/../x"},
    "another protocol version": {"v": 99},
    "a timestamp from the future": {"capture_ns": time.time_ns() + 3_600_000_000_000},
    "no jpeg": {"data": None},
}


@pytest.fixture
def worker(redis_client: redis.Redis) -> Worker:
    return Worker(
        redis_client,
        caption_fn(tiny_captioner()),
        WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=20)),
    )


def test_poisoned_frames_are_dead_lettered_and_the_good_ones_captioned(
    redis_client: redis.Redis, worker: Worker
) -> None:
    register(redis_client, "cam", live=False)
    key = frames_key("cam")
    add_frame(redis_client, "cam", 0, data=GOOD)
    for seq, changes in enumerate(POISON.values(), start=1):
        fields = _fields(**{"seq": seq, **changes}) if "seq" not in changes else _fields(**changes)
        redis_client.xadd(key, fields)  # type: ignore[arg-type]
    add_frame(redis_client, "cam", 100, data=GOOD)
    deadline = time.monotonic() + 60
    while redis_client.xpending(key, GROUP)["pending"] or redis_client.xlen(key) > (
        len(redis_client.xrange(captions_key("cam"))) + redis_client.xlen(deadletter_key("cam"))
    ):
        assert time.monotonic() < deadline, "the worker did not get through them"
        worker.step()
    captioned = sorted(decode_caption(f).seq for _, f in redis_client.xrange(captions_key("cam")))
    letters = redis_client.xrange(deadletter_key("cam"))
    reasons = [f.get(b"dead_reason", b"").decode() for _, f in letters]
    assert captioned == [0, 100], reasons  # the good ones, after the poison too
    assert len(letters) == len(POISON), reasons  # each poisoned one, with its reason
    assert sum("not a decodable JPEG" in r for r in reasons) == 3  # corrupt, cut, 50 MB
    assert "malformed entry: field 'seq' must be >= 0, got -3" in reasons
    assert any(
        r.startswith("malformed entry: captured 3") and r.endswith(" s in the future")
        for r in reasons
    )
