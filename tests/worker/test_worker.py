"""The worker against a real redis-server: batching, staleness, recovery, dead letters."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import redis

from tests.support.factories import caption_fn, tiny_captioner
from tests.support.frames import add_frame, jpeg, publish_caption, register
from worker.batching import BatchPolicy
from worker.bus.entries import CaptionEntry, decode_caption
from worker.bus.keys import (
    GROUP,
    METRICS_KEY,
    WORKER_FORGOTTEN_MS,
    WORKER_SEEN_MS,
    WORKERS_KEY,
    captions_key,
    deadletter_key,
    frames_key,
)
from worker.takeover import TAKEOVER_LUA, taken_entries
from worker.worker import Worker, WorkerConfig

COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


@pytest.fixture(scope="module")
def captioner():  # type: ignore[no-untyped-def]
    return tiny_captioner()


def _captions(client: redis.Redis, source: str) -> list[CaptionEntry]:
    return [decode_caption(f) for _, f in client.xrange(captions_key(source))]


def _pending(client: redis.Redis, source: str) -> int:
    return int(client.xpending(frames_key(source), GROUP)["pending"])


def test_frames_of_several_sources_are_captioned_in_one_batch(redis_client, captioner) -> None:  # type: ignore[no-untyped-def]
    frame_ids = {}
    for source in ("a", "b"):
        register(redis_client, source, live=False)
        for seq in range(3):
            frame_ids[source, seq] = add_frame(redis_client, source, seq, data=jpeg(COLORS[seq]))
    seen: list[tuple[str, int]] = []  # (source, seq by the frame's colour) as captioned
    caption = caption_fn(captioner)

    def recording(images: Sequence[Any], sources: Sequence[str], shown: Any) -> Any:
        for image, source in zip(images, sources, strict=True):
            seen.append((source, int(np.argmax(image.mean(axis=(0, 1))))))
        return caption(images, sources, shown)

    worker = Worker(
        redis_client,
        recording,
        WorkerConfig(policy=BatchPolicy(max_batch=8, max_wait_ms=200), model="tiny"),
    )
    while worker.stats.captioned < 6:
        worker.step()
    assert worker.stats.batch_sizes[0] == 6  # both sources in the first batch
    # the caption function is told each frame's source, a source's frames in order
    # (what the caption hold follows)
    for source in ("a", "b"):
        assert [seq for s, seq in seen if s == source] == [0, 1, 2]
    for source in ("a", "b"):
        captions = _captions(redis_client, source)
        assert [c.seq for c in captions] == [0, 1, 2]
        assert [c.pts_ms for c in captions] == [0.0, 1000.0, 2000.0]
        assert [c.end_ms for c in captions] == [1000.0, 2000.0, 3000.0]
        assert all(c.model == "tiny" and c.latency_ms > 0 for c in captions)
        assert captions[0].attention_maps().shape == (len(captions[0].tokens), 7, 7)
        assert all(c.fit == "letterbox" for c in captions)  # the grid's square, for viewers
        # each caption names its frame, so a viewer can fetch the picture it describes
        assert [c.frame_id for c in captions] == [frame_ids[source, s] for s in range(3)]
        # the same images through the captioner directly give the same words
        direct = captioner.caption([_decode(jpeg(COLORS[s])) for s in range(3)], beam=1)
        assert [c.text for c in captions] == [d.text for d in direct]
        assert _pending(redis_client, source) == 0  # every frame acked


def _decode(data: bytes):  # type: ignore[no-untyped-def]
    from worker.decode import decode_jpegs

    return decode_jpegs([data])[0]


def test_stale_live_frames_are_skipped_counted_and_acked(redis_client, captioner) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "cam", live=True)
    add_frame(redis_client, "cam", 0, data=jpeg(COLORS[0]), live=True, age_ms=10_000)
    add_frame(redis_client, "cam", 1, data=jpeg(COLORS[1]), live=True, age_ms=0)
    worker = Worker(
        redis_client,
        caption_fn(captioner),
        WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=50, max_age_ms=2000)),
    )
    while worker.stats.captioned + worker.stats.stale < 2:
        worker.step()
    assert worker.stats.stale == 1
    assert [c.seq for c in _captions(redis_client, "cam")] == [1]
    assert _pending(redis_client, "cam") == 0


def test_a_corrupt_frame_is_dead_lettered_at_once_and_holds_nothing_back(
    redis_client, captioner
) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "f", live=False)
    add_frame(redis_client, "f", 0, data=b"\xff\xd8 not a jpeg")
    add_frame(redis_client, "f", 1, data=jpeg(COLORS[1]))
    worker = Worker(
        redis_client,
        caption_fn(captioner),
        WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=20)),
    )
    worker.step()
    assert worker.stats.deadlettered == worker.stats.failed == 1
    assert int(redis_client.hget(METRICS_KEY, "failed")) == 1  # /metrics sees it
    # the frame after it is published now, not once the corrupt one was given up on
    assert [c.seq for c in _captions(redis_client, "f")] == [1]
    letters = redis_client.xrange(deadletter_key("f"))
    assert (
        len(letters) == 1
        and letters[0][1][b"dead_reason"] == b"not a decodable JPEG of at least 2x2 pixels"
    )
    assert letters[0][1][b"seq"] == b"0" and letters[0][1][b"data"] == b"\xff\xd8 not a jpeg"
    assert _pending(redis_client, "f") == 0


def test_a_frame_too_small_for_the_model_is_dead_lettered_not_the_worker(
    redis_client, captioner
) -> None:  # type: ignore[no-untyped-def]
    """A 1x1 frame (a broken camera, a degenerate file) decodes, but the model takes
    at least 2x2: it goes to the dead letters, the worker and the other frames go on."""
    register(redis_client, "dot", live=False)
    add_frame(redis_client, "dot", 0, data=jpeg(COLORS[0], size=(1, 1)))
    add_frame(redis_client, "dot", 1, data=jpeg(COLORS[1], size=(2, 2)))
    add_frame(redis_client, "dot", 2, data=jpeg(COLORS[2]))
    worker = Worker(
        redis_client,
        caption_fn(captioner),
        WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=20)),
    )
    while worker.stats.captioned < 2:
        worker.step()
    assert [c.seq for c in _captions(redis_client, "dot")] == [1, 2]
    letters = redis_client.xrange(deadletter_key("dot"))
    assert [(f[b"seq"], f[b"dead_reason"]) for _, f in letters] == [
        (b"0", b"not a decodable JPEG of at least 2x2 pixels")
    ]


def test_a_frame_delivered_too_often_is_dead_lettered(redis_client, captioner) -> None:  # type: ignore[no-untyped-def]
    """A frame whose workers keep dying (it crashes them, say) is given up on when
    reclaimed for the ``max_deliveries``-th time, and releases the captions behind it."""
    register(redis_client, "poison", live=False)
    for seq in range(2):
        add_frame(redis_client, "poison", seq, data=jpeg(COLORS[seq]))
    key = frames_key("poison")
    ((_, ((poison, _),)),) = redis_client.xreadgroup(GROUP, "dead-1", {key: ">"}, count=1)
    redis_client.xclaim(key, GROUP, "dead-2", 0, [poison])  # it killed a second worker
    worker = Worker(
        redis_client,
        caption_fn(captioner),
        WorkerConfig(
            policy=BatchPolicy(max_batch=4, max_wait_ms=20),
            claim_idle_ms=0,
            claim_every_s=0.0,
            max_deliveries=2,
        ),
    )
    while worker.stats.captioned < 1:
        worker.step()
    assert worker.stats.deadlettered == 1 and worker.stats.failed == 0
    letters = redis_client.xrange(deadletter_key("poison"))
    assert len(letters) == 1 and letters[0][1][b"dead_reason"] == b"too many deliveries"
    assert [c.seq for c in _captions(redis_client, "poison")] == [1]
    assert _pending(redis_client, "poison") == 0


def test_dead_consumers_frames_are_reclaimed(redis_client, captioner) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "r", live=False)
    for seq in range(3):
        add_frame(redis_client, "r", seq, data=jpeg(COLORS[seq]))
    # a consumer reads the frames and dies before captioning them
    redis_client.xreadgroup(GROUP, "dead-consumer", {frames_key("r"): ">"}, count=10)
    assert _pending(redis_client, "r") == 3
    worker = Worker(
        redis_client,
        caption_fn(captioner),
        WorkerConfig(
            policy=BatchPolicy(max_batch=4, max_wait_ms=20), claim_idle_ms=0, claim_every_s=0.0
        ),
    )
    while worker.stats.captioned < 3:
        worker.step()
    assert worker.stats.claimed == 3
    assert [c.seq for c in _captions(redis_client, "r")] == [0, 1, 2]
    assert _pending(redis_client, "r") == 0


def _consumers(client: redis.Redis, source: str) -> dict[str, int]:
    """The group's consumers → frames each holds."""
    rows = client.xinfo_consumers(frames_key(source), GROUP)
    return {row["name"].decode(): int(row["pending"]) for row in rows}


def _beat(client: redis.Redis, consumer: str, *, age_ms: float) -> None:
    """A worker's heartbeat ``age_ms`` ago on Redis's clock, as workers note theirs."""
    seconds, micros = client.time()
    client.hset(WORKERS_KEY, consumer, int(seconds * 1000 + micros / 1000 - age_ms))


def test_a_gone_workers_frames_are_taken_over_without_waiting_for_claim_idle(
    redis_client, captioner, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A worker killed mid-batch: its frames are taken over once it has missed its
    heartbeats for WORKER_SEEN_MS, not after claim_idle_ms (30 s) of a file job
    standing still behind them; it leaves the group when it holds nothing."""
    monkeypatch.setattr("worker.worker.TAKEOVER_IDLE_MS", 50)
    register(redis_client, "job", live=False)
    for seq in range(4):
        add_frame(redis_client, "job", seq, data=jpeg(COLORS[seq]))
    redis_client.xreadgroup(GROUP, "killed", {frames_key("job"): ">"}, count=2)
    _beat(redis_client, "killed", age_ms=WORKER_SEEN_MS + 500)
    time.sleep(0.1)  # idle longer than TAKEOVER_IDLE_MS
    worker = Worker(
        redis_client,
        caption_fn(captioner),
        WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=20), claim_every_s=0.0),
    )
    assert worker.config.claim_idle_ms == 30_000  # the slow path would wait that long
    for _ in range(10):
        worker.step()
        if worker.stats.captioned == 4:
            break
    assert [c.seq for c in _captions(redis_client, "job")] == [0, 1, 2, 3]
    assert worker.stats.claimed == 2
    assert _pending(redis_client, "job") == 0
    assert "killed" not in _consumers(redis_client, "job")


def test_a_live_workers_frames_are_not_taken_over(redis_client, captioner, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A worker heard from lately keeps the frames it is captioning, however long
    they have been pending (up to claim_idle_ms); the captions after them wait."""
    monkeypatch.setattr("worker.worker.TAKEOVER_IDLE_MS", 50)
    register(redis_client, "slow", live=False)
    for seq in range(3):
        add_frame(redis_client, "slow", seq, data=jpeg(COLORS[seq]))
    redis_client.xreadgroup(GROUP, "busy", {frames_key("slow"): ">"}, count=1)
    _beat(redis_client, "busy", age_ms=WORKER_SEEN_MS - 2000)
    time.sleep(0.1)
    worker = Worker(
        redis_client,
        caption_fn(captioner),
        WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=20), claim_every_s=0.0),
    )
    while worker.stats.captioned < 2:
        worker.step()
    worker.step()  # a reclaim with nothing new to read
    assert worker.stats.claimed == 0
    assert _consumers(redis_client, "slow")["busy"] == 1
    assert _captions(redis_client, "slow") == []  # 1 and 2 wait for frame 0 (parked)
    assert worker.stats.parked == 2


def test_two_workers_taking_over_one_gone_worker_split_nothing(redis_client) -> None:  # type: ignore[no-untyped-def]
    """The takeover script claims only frames idle for its minimum: the second of two
    workers finds them just claimed by the first; a deleted frame is acked."""
    register(redis_client, "two", live=False)
    ids = [add_frame(redis_client, "two", seq, data=jpeg(COLORS[seq])) for seq in range(3)]
    key = frames_key("two")
    redis_client.xreadgroup(GROUP, "killed", {key: ">"}, count=3)
    redis_client.xdel(key, ids[2])  # trimmed away while pending
    time.sleep(0.06)
    script = redis_client.register_script(TAKEOVER_LUA)
    first = taken_entries(script(keys=[key], args=[GROUP, "killed", "w1", 50, 10]))
    second = taken_entries(script(keys=[key], args=[GROUP, "killed", "w2", 50, 10]))
    assert [(eid, n) for eid, _, n in first] == [(ids[0], 2), (ids[1], 2)]
    assert first[0][1][b"seq"] == b"0"  # the frame's fields, for the worker to caption
    assert second == []
    assert _consumers(redis_client, "two") == {"w1": 2}  # "killed" left; nothing of it lost
    assert _pending(redis_client, "two") == 2


def test_group_is_recreated_after_nogroup(redis_client, captioner) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "n", live=False)
    worker = Worker(
        redis_client,
        caption_fn(captioner),
        WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=20)),
    )
    worker.step()  # knows the source and its group
    redis_client.xgroup_destroy(frames_key("n"), GROUP)  # as after a Redis restart
    add_frame(redis_client, "n", 0, data=jpeg(COLORS[0]))
    for _ in range(5):
        worker.step()
        if worker.stats.captioned:
            break
    assert [c.seq for c in _captions(redis_client, "n")] == [0]


def test_publish_assigns_segments_and_drops_duplicates(redis_client) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "s", live=False)
    texts = ["a dog", "A  dog", "a cat", "a cat", "a dog"]
    for seq, text in enumerate(texts):
        assert publish_caption(redis_client, "s", seq, text)
    assert (
        publish_caption(redis_client, "s", 2, "a cat", frame_id="99-0") is None
    )  # (source, seq) already published
    captions = _captions(redis_client, "s")
    assert [c.seq for c in captions] == [0, 1, 2, 3, 4]
    assert [c.segment_id for c in captions] == [0, 0, 1, 1, 2]


def test_run_publishes_in_order_while_the_next_batch_is_captioned(redis_client, captioner) -> None:  # type: ignore[no-untyped-def]
    """run() hands publication to a thread: order kept, nothing captioned is lost."""
    register(redis_client, "p", live=False)
    for seq in range(20):
        add_frame(redis_client, "p", seq, data=jpeg(COLORS[seq % len(COLORS)]))
    worker = Worker(
        redis_client,
        caption_fn(captioner),
        WorkerConfig(policy=BatchPolicy(max_batch=3, max_wait_ms=0)),
    )
    worker.run(until=lambda: worker.stats.captioned + 3 >= 20)  # stops with batches in flight
    captions = _captions(redis_client, "p")
    assert [c.seq for c in captions] == list(range(len(captions)))
    assert len(captions) == worker.stats.captioned >= 17
    assert _pending(redis_client, "p") == 0  # everything read was captioned and acked
    assert len(worker.stats.batch_sizes) == worker.stats.batches >= 6
    # holding nothing, a stopped worker leaves the group: it lists the workers there are
    assert _consumers(redis_client, "p") == {}


def test_time_per_stage_is_counted_for_metrics(redis_client, captioner) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "t", live=False)
    for seq in range(4):
        add_frame(redis_client, "t", seq, data=jpeg(COLORS[seq]))
    worker = Worker(
        redis_client, caption_fn(captioner), WorkerConfig(policy=BatchPolicy(max_batch=4))
    )
    while worker.stats.captioned < 4:
        worker.step()
    stored = {
        k.decode(): float(v)
        for k, v in redis_client.hgetall(METRICS_KEY).items()
        if k.startswith(b"seconds:")
    }
    assert set(stored) == {"seconds:read", "seconds:decode", "seconds:caption", "seconds:publish"}
    assert all(v > 0 for v in stored.values())
    assert stored["seconds:caption"] == pytest.approx(worker.stats.seconds["caption"])


@pytest.mark.integration
def test_the_worker_survives_a_redis_restart(captioner) -> None:  # type: ignore[no-untyped-def]
    """Redis goes away and comes back empty on the same port: the worker waits, then
    re-creates its group and captions the new frames (it used to exit)."""
    import threading
    import time

    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from stream.embedded_redis import EmbeddedRedis, free_port

    port = free_port()
    server = EmbeddedRedis(port=port).start()
    # no client-side retries: the worker's own reconnect loop is what is tested
    client = redis.Redis.from_url(server.url, retry=Retry(NoBackoff(), 0))
    worker = Worker(
        client,
        caption_fn(captioner),
        WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=0), reconnect_cap_s=0.5),
    )
    deadline = time.monotonic() + 60
    thread = threading.Thread(
        target=worker.run, kwargs={"until": lambda: time.monotonic() > deadline}, daemon=True
    )
    try:
        register(client, "r", live=False)
        for seq in range(2):
            add_frame(client, "r", seq, data=jpeg(COLORS[seq]))
        thread.start()
        while worker.stats.captioned < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.stats.captioned == 2
        server.stop()
        while worker.stats.reconnects < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert thread.is_alive()  # still there, retrying
        server = EmbeddedRedis(port=port).start()  # a restart without persistence
        register(client, "r", live=False)
        for seq in (2, 3):
            add_frame(client, "r", seq, data=jpeg(COLORS[seq]))
        while worker.stats.captioned < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [c.seq for c in _captions(client, "r")] == [2, 3]
        assert _pending(client, "r") == 0
    finally:
        worker.stop()
        thread.join(30)
        client.close()
        server.stop()
    assert not thread.is_alive()


def test_a_model_error_stops_run_and_leaves_no_threads_behind(redis_client) -> None:  # type: ignore[no-untyped-def]
    import threading

    register(redis_client, "boom", live=False)
    add_frame(redis_client, "boom", 0, data=jpeg(COLORS[0]))

    def failing(images: Sequence[Any], sources: Sequence[str], shown: Any) -> Any:
        raise RuntimeError("CUDA out of memory")

    worker = Worker(redis_client, failing, WorkerConfig(policy=BatchPolicy(max_wait_ms=0)))
    with pytest.raises(RuntimeError, match="out of memory"):
        worker.run()
    assert not {"reader", "publisher"} & {t.name for t in threading.enumerate()}
    assert _pending(redis_client, "boom") == 1  # not acked: another worker will reclaim it


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (b"fit", b"stretch", "field 'fit' is 'stretch'; accepted: letterbox, crop"),
        (b"frame", b"latest", "field 'frame' is 'latest', not a stream entry id"),
    ],
)
def test_a_stored_caption_with_a_bad_fit_or_frame_is_an_entry_error(
    redis_client, field: bytes, value: bytes, message: str
) -> None:  # type: ignore[no-untyped-def]
    from worker.bus.entries import decode_caption
    from worker.bus.exceptions import EntryError

    register(redis_client, "bad", live=False)
    publish_caption(redis_client, "bad", 0, "a dog", grid=(1, 1))
    ((_, fields),) = redis_client.xrange(captions_key("bad"))
    assert decode_caption(fields).frame_id == "1-0"  # as stored
    with pytest.raises(EntryError, match=message):
        decode_caption({**fields, field: value})


def test_a_running_worker_forgets_workers_gone_for_an_hour(
    redis_client, captioner, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Killed workers' heartbeats stayed for good unless another worker started: now a
    running worker drops, now and then, those not heard from for WORKER_FORGOTTEN_MS;
    those gone for less stay (status shows them as gone)."""
    monkeypatch.setattr("worker.worker.FORGET_EVERY_S", 0.0)
    _beat(redis_client, "killed-long-ago", age_ms=WORKER_FORGOTTEN_MS + 60_000)
    _beat(redis_client, "killed-lately", age_ms=WORKER_SEEN_MS + 60_000)
    worker = Worker(
        redis_client, caption_fn(captioner), WorkerConfig(policy=BatchPolicy(max_batch=2))
    )
    worker.heartbeat()
    beats = {k.decode() for k in redis_client.hkeys(WORKERS_KEY)}
    assert beats == {"killed-lately", worker.config.consumer}


def test_a_live_caption_that_comes_too_late_is_stale_not_published(redis_client, captioner) -> None:  # type: ignore[no-untyped-def]
    """The age was checked only before captioning: under load, captions of live frames
    reached clients past --max-age-ms. Now it is checked again once captioned."""
    register(redis_client, "cam", live=True)
    register(redis_client, "job", live=False)
    add_frame(redis_client, "cam", 0, data=jpeg(COLORS[0]), live=True, age_ms=0)
    add_frame(redis_client, "job", 0, data=jpeg(COLORS[1]), live=False, age_ms=0)

    def slow(images: Sequence[Any], sources: Sequence[str], shown: Any) -> Any:
        time.sleep(0.6)  # longer than max_age_ms: the frame was fresh when read
        return captioner.caption(list(images), beam=1, sources=sources, shown=shown)

    worker = Worker(
        redis_client,
        slow,
        WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=50, max_age_ms=400)),
    )
    while worker.stats.captioned + worker.stats.stale < 2:
        worker.step()
    assert (worker.stats.stale, worker.stats.captioned) == (1, 1)
    assert _captions(redis_client, "cam") == []  # late: not shown
    assert [c.seq for c in _captions(redis_client, "job")] == [0]  # a file job's never is
    assert _pending(redis_client, "cam") == 0 and _pending(redis_client, "job") == 0


def test_a_living_workers_frames_are_not_taken_for_being_slow(
    redis_client, captioner, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A living worker's frames idle past claim_idle_ms were taken by another (frames
    idle 22 s under load, captioned twice). Now only those of a worker not heard from,
    or held for STUCK_IDLE_MS (stuck, not slow)."""
    register(redis_client, "busy", live=False)
    for seq in range(2):
        add_frame(redis_client, "busy", seq, data=jpeg(COLORS[seq]))
    key = frames_key("busy")
    redis_client.xreadgroup(GROUP, "slow-but-alive", {key: ">"}, count=2)
    _beat(redis_client, "slow-but-alive", age_ms=0)
    time.sleep(0.06)
    worker = Worker(
        redis_client,
        caption_fn(captioner),
        WorkerConfig(
            policy=BatchPolicy(max_batch=4, max_wait_ms=20), claim_idle_ms=50, claim_every_s=0.0
        ),
    )
    worker.step()
    assert worker.stats.claimed == 0 and _consumers(redis_client, "busy") == {"slow-but-alive": 2}
    monkeypatch.setattr("worker.worker.STUCK_IDLE_MS", 50)  # held that long: stuck
    while worker.stats.captioned < 2:
        worker.step()
    assert worker.stats.claimed == 2
    assert [c.seq for c in _captions(redis_client, "busy")] == [0, 1]
