"""Several workers on one source: the caption log stays in seq order (worker.bus.publish),
against a real redis-server. Each worker takes its own batch of a source's frames; the
one that took the later batch can finish first."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from stream.capture.capture import Capture, CaptureConfig
from stream.sources.spec import parse_source
from tests.support.factories import tiny_captioner
from tests.support.frames import add_frame, caption, jpeg, register
from worker.batching import BatchPolicy
from worker.bus.entries import CaptionEntry, decode_caption
from worker.bus.keys import GROUP, METRICS_KEY, captions_key, frames_key, parked_key
from worker.bus.publish import (
    FLUSH_LUA,
    PUBLISH_LUA,
    Publication,
    flush_args,
    outcome,
    publish_args,
)
from worker.bus.segments import segment_ids
from worker.worker import Worker, WorkerConfig

COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


def _caption(source: str, seq: int, text: str) -> CaptionEntry:
    return caption(source, seq, text, grid=(2, 2))  # attention: binary, kept byte for byte


def _publish(client: redis.Redis, frame_id: str, caption: CaptionEntry, maxlen: int = 0) -> str:
    script = client.register_script(PUBLISH_LUA)
    keys, argv = publish_args(Publication(caption, frame_id, maxlen))
    return outcome(script(keys=keys, args=argv))


def _read(client: redis.Redis, source: str, consumer: str, count: int) -> list[str]:
    """Frames delivered to ``consumer`` (as a worker's XREADGROUP takes its batch)."""
    reply: Any = client.xreadgroup(GROUP, consumer, {frames_key(source): ">"}, count=count)
    return [eid.decode() for eid, _ in reply[0][1]]


def _captions(client: redis.Redis, source: str) -> list[CaptionEntry]:
    return [decode_caption(f) for _, f in client.xrange(captions_key(source))]


def test_a_file_jobs_captions_finished_out_of_order_are_published_in_seq_order(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    register(redis_client, "job", live=False)
    for seq in range(8):
        add_frame(redis_client, "job", seq, data=b"jpeg")
    first, second = _read(redis_client, "job", "a", 4), _read(redis_client, "job", "b", 4)
    texts = ["a dog"] * 6 + ["a cat"] * 2  # one scene over both batches, then another
    frames = first + second
    # the second worker finishes first: its captions wait for the older frames
    for seq in range(4, 8):
        assert _publish(redis_client, frames[seq], _caption("job", seq, texts[seq])) == "parked"
    assert _captions(redis_client, "job") == []
    assert redis_client.zcard(parked_key("job")) == 4
    # capture counts them as not captioned yet: its backlog limit bounds what is parked
    (tmp_path / "job.mp4").write_bytes(b"")
    spec = parse_source(str(tmp_path / "job.mp4"), name="job")
    capture = Capture(redis_client, spec, CaptureConfig())
    assert capture.backlog() == 8  # 4 pending (the first worker's) + 4 parked
    # the first worker's captions, in a shuffled order: each goes out when nothing
    # older is pending, taking the parked ones it held back with it
    outcomes = {
        seq: _publish(redis_client, frames[seq], _caption("job", seq, texts[seq]))
        for seq in (2, 0, 1, 3)
    }
    assert outcomes[2] == "parked" and outcomes[0] == outcomes[1] == outcomes[3] == "published"
    captions = _captions(redis_client, "job")
    assert [c.seq for c in captions] == list(range(8))
    assert [c.segment_id for c in captions] == [0, 0, 0, 0, 0, 0, 1, 1]  # one segment per scene
    assert [c.frame_id for c in captions] == frames
    assert captions[5].attention == _caption("job", 5, "a dog").attention  # unchanged
    assert redis_client.zcard(parked_key("job")) == 0
    assert int(redis_client.xpending(frames_key("job"), GROUP)["pending"]) == 0
    # a duplicate (a reclaimed frame captioned twice) is still dropped, parked or not
    assert _publish(redis_client, frames[5], _caption("job", 5, "a dog")) == "duplicate"


def test_a_frame_that_leaves_without_a_caption_releases_the_ones_behind_it(
    redis_client: redis.Redis,
) -> None:
    register(redis_client, "dl", live=False)
    for seq in range(3):
        add_frame(redis_client, "dl", seq, data=b"jpeg")
    frames = _read(redis_client, "dl", "a", 3)
    for seq in (1, 2):
        assert _publish(redis_client, frames[seq], _caption("dl", seq, "a dog")) == "parked"
    flush = redis_client.register_script(FLUSH_LUA)
    keys, argv = flush_args("dl")
    assert flush(keys=keys, args=argv) == 0  # frame 0 still pending: nothing to release
    redis_client.xack(frames_key("dl"), GROUP, frames[0])  # dead-lettered, say
    assert flush(keys=keys, args=argv) == 2
    assert [c.seq for c in _captions(redis_client, "dl")] == [1, 2]


def test_a_live_caption_older_than_one_published_is_dropped_as_late(
    redis_client: redis.Redis,
) -> None:
    register(redis_client, "cam", live=True)
    for seq in range(4):
        add_frame(redis_client, "cam", seq, data=b"jpeg", live=True)
    frames = _read(redis_client, "cam", "a", 2) + _read(redis_client, "cam", "b", 2)
    for seq in (2, 3):  # the second worker first: live captions are never held back
        assert (
            _publish(redis_client, frames[seq], _caption("cam", seq, "a dog"), 100) == "published"
        )
    for seq in (0, 1):
        assert _publish(redis_client, frames[seq], _caption("cam", seq, "a cat"), 100) == "late"
    assert [c.seq for c in _captions(redis_client, "cam")] == [2, 3]
    assert int(redis_client.xpending(frames_key("cam"), GROUP)["pending"]) == 0  # all acked


def test_outcome_names_each_answer_of_the_script() -> None:
    assert outcome(b"1700000000000-0") == outcome("5-1") == "published"
    assert outcome(b"parked") == "parked" and outcome("late") == "late"
    assert outcome(None) == "duplicate"
    with pytest.raises(ValueError, match="publish script"):
        outcome(7)


@pytest.fixture(scope="module")
def captioner():  # type: ignore[no-untyped-def]
    return tiny_captioner()


def test_two_workers_on_one_file_job_publish_it_in_order(
    redis_client: redis.Redis,
    captioner: Any,
) -> None:
    """Worker A takes frames 0-3 and is slow; worker B takes 4-7 and finishes first."""
    register(redis_client, "two", live=False)
    colors = [COLORS[0]] * 3 + [COLORS[1]] * 3 + [COLORS[2]] * 2  # three scenes
    for seq, color in enumerate(colors):
        add_frame(redis_client, "two", seq, data=jpeg(color))
    a_has_batch, b_published = threading.Event(), threading.Event()

    def caption_fn(slow: bool) -> Any:
        def model(images: Sequence[Any], sources: Sequence[str], shown: Any) -> Any:
            if slow:
                a_has_batch.set()
                assert b_published.wait(30)
            return captioner.caption(list(images), beam=1, sources=sources, shown=shown)

        return model

    config = WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=0), model="tiny")
    a = Worker(redis_client, caption_fn(slow=True), config)
    b = Worker(redis_client, caption_fn(slow=False), config)
    thread = threading.Thread(target=a.step)
    thread.start()
    assert a_has_batch.wait(30)
    while b.stats.captioned < 4:
        b.step()
    assert b.stats.parked == 4 and _captions(redis_client, "two") == []
    b_published.set()
    thread.join(30)
    captions = _captions(redis_client, "two")
    assert [c.seq for c in captions] == list(range(8))
    assert [c.segment_id for c in captions] == segment_ids(c.text for c in captions)
    assert a.stats.captioned == 4 and a.stats.parked == 0
    assert int(redis_client.hget(METRICS_KEY, "parked") or 0) == 4  # on /metrics


def test_a_worker_counts_late_live_captions(redis_client: redis.Redis, captioner: Any) -> None:
    register(redis_client, "late", live=True)
    add_frame(redis_client, "late", 5, data=b"jpeg", live=True)
    (newer,) = _read(redis_client, "late", "other", 1)
    assert _publish(redis_client, newer, _caption("late", 5, "a dog"), 100) == "published"
    add_frame(redis_client, "late", 4, data=jpeg(COLORS[0]), live=True)  # older, later
    worker = Worker(
        redis_client,
        lambda images, sources, shown: captioner.caption(list(images), beam=1),
        WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=0, max_age_ms=60_000)),
    )
    while worker.stats.late < 1:
        worker.step()
    assert worker.stats.captioned == 0
    assert int(redis_client.hget(METRICS_KEY, "late") or 0) == 1
    assert [c.seq for c in _captions(redis_client, "late")] == [5]
    assert int(redis_client.xpending(frames_key("late"), GROUP)["pending"]) == 0
