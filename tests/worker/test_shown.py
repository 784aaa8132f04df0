"""What sources show, shared between workers through Redis (worker/shown.py): its
encoding, the newest-wins rules, the script on a real redis-server, and two workers
taking turns on one source."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
import torch

from captioner.search.hold import Shown, ShownCaptions
from stream.bench.stand_in import StandInCaption
from tests.support.frames import add_frame, jpeg, register
from worker.batching import BatchPolicy
from worker.bus.keys import shown_key
from worker.shown import (
    FIELDS,
    SHOWN_LUA,
    SHOWN_TTL_MS,
    LocalShown,
    SeqShown,
    decode_shown,
    newest_before,
    shown_args,
)
from worker.worker import Worker, WorkerConfig


def _state(seq: int, *words: str) -> SeqShown:
    return SeqShown(seq, Shown(words, torch.linspace(-1, 1, 8)))


def _hmget_values(state: SeqShown, model: str = "m") -> list[bytes | None]:
    """What HMGET of FIELDS returns once SHOWN_LUA stored ``state``."""
    _, argv = shown_args("cam", state, model)
    return [v if isinstance(v, bytes) else str(v).encode() for v in argv[: len(FIELDS)]]


def test_a_state_round_trips_in_float16() -> None:
    state = _state(7, "a", "cat", "on", "a", "bed")
    got = decode_shown(_hmget_values(state), "m")
    assert got is not None and got.seq == 7 and got.shown.tokens == state.shown.tokens
    torch.testing.assert_close(got.shown.pooled, state.shown.pooled, atol=1e-3, rtol=0)
    assert got.shown.pooled.dtype == torch.float32


def test_a_missing_malformed_or_other_models_state_is_ignored() -> None:
    good = _hmget_values(_state(3, "a", "dog"))
    assert decode_shown(good, "other-model") is None
    assert decode_shown([None] * len(FIELDS), "m") is None
    assert decode_shown([b"x", *good[1:]], "m") is None  # seq not a number
    assert decode_shown([*good[:2], b"", good[3]], "m") is None  # no words
    assert decode_shown([*good[:3], b"\x00"], "m") is None  # half a float16
    assert decode_shown(good[:2], "m") is None


def test_the_newer_state_from_an_earlier_frame_wins() -> None:
    mine, shared = _state(5, "mine"), _state(8, "shared")
    assert newest_before(10, mine, shared) == shared.shown
    assert newest_before(10, shared, mine) == shared.shown
    assert newest_before(7, mine, shared) == mine.shown  # shared is from a later frame
    assert newest_before(5, mine, shared) is None  # nothing from before frame 5
    assert newest_before(10, None, None) is None


def test_local_states_keep_the_last_batchs_and_the_most_recent_sources() -> None:
    local = LocalShown(max_sources=2)
    local.update({"a": _state(3, "three")})
    local.update({"a": _state(0, "zero")})  # a source numbered from 0 again: taken
    assert local.get("a") is not None and local.get("a").seq == 0  # type: ignore[union-attr]
    local.update({"b": _state(1, "b"), "c": _state(1, "c")})
    assert local.get("a") is None and local.get("c") is not None


def test_the_script_keeps_the_newest_state_and_expires_it(redis_client: redis.Redis) -> None:
    script = redis_client.register_script(SHOWN_LUA)
    for seq, word, written in ((4, "four", 1), (2, "two", 0), (4, "again", 0), (9, "nine", 1)):
        keys, argv = shown_args("cam", _state(seq, word), "m")
        assert script(keys=keys, args=argv) == written
    got = decode_shown(redis_client.hmget(shown_key("cam"), list(FIELDS)), "m")
    assert got is not None and (got.seq, got.shown.tokens) == (9, ("nine",))
    assert 0 < redis_client.pttl(shown_key("cam")) <= SHOWN_TTL_MS
    assert shown_key("cam") == "shown:{cam}"  # the source's hash slot, as its streams


@dataclass
class HoldSpy:
    """A caption function that holds like the captioner does, minimally: it records
    what it was told each source showed, and shows "words of <last seq>"."""

    name: str
    told: list[tuple[str, tuple[str, ...] | None]]

    def __call__(self, images: Sequence[Any], sources: Sequence[str], shown: ShownCaptions) -> Any:
        out = []
        for image, source in zip(images, sources, strict=True):
            before = shown.get(source)
            self.told.append((self.name, before.tokens if before else None))
            color = int(np.argmax(image.mean(axis=(0, 1))))
            shown.put(source, Shown((self.name, str(color)), torch.ones(4)))
            tokens = [self.name, str(color)]
            maps = np.full((2, 7, 7), 1 / 49, np.float32)
            out.append(StandInCaption(" ".join(tokens), tokens, -1.0, maps))
        return out


def test_workers_taking_turns_on_a_source_are_told_what_the_other_showed(
    redis_client: redis.Redis,
) -> None:
    rounds = 2
    register(redis_client, "cam", live=False)
    told: list[tuple[str, tuple[str, ...] | None]] = []
    config = WorkerConfig(policy=BatchPolicy(max_batch=1, max_wait_ms=0), model="m")
    workers = {n: Worker(redis_client, HoldSpy(n, told), config) for n in ("a", "b")}
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    for seq in range(2 * rounds):
        add_frame(redis_client, "cam", seq, data=jpeg(colors[seq % 3]))
        worker = workers["ab"[seq % 2]]
        while worker.step() == 0:
            pass
    # each frame was told what the frame before it showed, whichever worker took it
    assert told[0] == ("a", None)
    for seq in range(1, 2 * rounds):
        previous = "ab"[(seq - 1) % 2]
        assert told[seq] == ("ab"[seq % 2], (previous, str((seq - 1) % 3)))
    got = decode_shown(redis_client.hmget(shown_key("cam"), list(FIELDS)), "m")
    assert got is not None and got.seq == 2 * rounds - 1
