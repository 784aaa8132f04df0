"""Parts on machines whose clocks differ still agree on time: they stamp and compare in
Redis's (worker/redis_clock.py). A capture whose clock is 30 s behind runs in a process
of its own (its ``time`` shifted by a ``sitecustomize``) against a real redis-server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from stream.capture.capture import Capture, CaptureConfig
from stream.sources.spec import parse_source
from tests.conftest import TIMEOUT_FACTOR
from tests.support.factories import tiny_captioner
from tests.support.videos import make_video
from worker.batching import BatchPolicy
from worker.bus.clock import RedisClock, offset_of
from worker.bus.entries import decode_caption
from worker.bus.keys import WORKERS_KEY, captions_key, capture_key
from worker.worker import Worker, WorkerConfig

T = 30.0 * TIMEOUT_FACTOR
SKEW_S = 30.0  # far more than the worker's max age: unnoticed, every frame is "stale"
# Bounds at a third of the skew: a skew taken for latency breaks them, while a
# loaded machine's slow batches (2 s a batch of the tiny model under two other jobs)
# stay inside them (with 8 s and 3 s they failed under load).
BOUND_MS = SKEW_S * 1000 / 3


def test_the_offset_is_taken_at_the_middle_of_the_round_trip() -> None:
    # Redis says 100.000250 s; asked at local 99.9 s, answered at 99.9004 s
    offset, trip = offset_of(99_900_000_000, (100, 250), 99_900_400_000)
    assert trip == 400_000
    assert offset == 100_000_250_000 - 99_900_200_000


class _FakeRedis:
    """TIME replies 5 s ahead of the local clock, the second one after a slow trip."""

    def __init__(self, clock: list[int]) -> None:
        self.clock, self.calls = clock, 0

    def time(self) -> tuple[int, int]:
        self.calls += 1
        self.clock[0] += 3_000_000 if self.calls == 2 else 200_000  # trip there and back
        redis_ns = self.clock[0] + 5_000_000_000
        self.clock[0] += 3_000_000 if self.calls == 2 else 200_000
        return redis_ns // 1_000_000_000, redis_ns % 1_000_000_000 // 1_000


def test_the_clock_keeps_the_shortest_round_trips_offset() -> None:
    local = [1_700_000_000_000_000_000]
    clock = RedisClock(local=lambda: local[0])
    assert clock.due() and clock.now_ns() == local[0]  # no offset before the first sync
    clock.sync(_FakeRedis(local))
    assert clock.offset_ns == 5_000_000_000  # the slow trip (off by its asymmetry) lost
    assert not clock.due()
    assert clock.to_redis(10) == 5_000_000_010 and clock.now_ns() == local[0] + 5_000_000_000


def test_a_redis_that_refuses_time_leaves_the_process_on_its_own_clock() -> None:
    from redis.exceptions import ResponseError

    class Refusing:
        def time(self) -> tuple[int, int]:
            raise ResponseError("unknown command 'TIME'")

    clock = RedisClock(local=lambda: 42)
    clock.sync(Refusing())
    assert clock.offset_ns == 0 and clock.now_ns() == 42 and not clock.due()


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scenes = [((200, 40, 40), 1.0), ((40, 200, 40), 1.0)]
    return make_video(tmp_path_factory.mktemp("v") / "cam.mp4", scenes=scenes, fps=10)


def _behind_by(seconds: float, where: Path) -> dict[str, str]:
    """The environment of a process whose wall clock runs ``seconds`` behind."""
    where.mkdir(exist_ok=True)
    (where / "sitecustomize.py").write_text(
        "import time\n"
        "_ns, _s = time.time_ns, time.time\n"
        f"time.time_ns = lambda: _ns() - {int(seconds * 1e9)}\n"
        f"time.time = lambda: _s() - {seconds}\n"
    )
    path = os.pathsep.join([str(where), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def _redis_now_ms(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds * 1000 + micros / 1000


def test_a_capture_whose_clock_is_behind_is_captioned_fresh_and_heard(
    redis_server,
    camera: Path,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()  # the worker reads every source: none but this one
    name = "behind"
    argv = [sys.executable, "-m", "stream.cli", "capture", str(camera), "--name", name]
    argv += ["--live", "--loop", "--fps", "5", "--redis-url", redis_server.url]
    capture = subprocess.Popen(argv, env=_behind_by(SKEW_S, tmp_path / "site"))
    cap = tiny_captioner()

    def caption(images: Sequence[Any], sources: Sequence[str], shown: Any) -> Any:
        return cap.caption(list(images), beam=1)

    policy = BatchPolicy(max_batch=4, max_wait_ms=20, max_age_ms=BOUND_MS)
    worker = Worker(client, caption, WorkerConfig(policy=policy))
    deadline = time.monotonic() + T
    try:
        worker.run(
            until=lambda: client.xlen(captions_key(name)) >= 5 or time.monotonic() > deadline
        )
        seen_ms = float(client.hget(capture_key(name), "seen_ms") or 0)
        heard_ms = _redis_now_ms(client) - seen_ms
    finally:
        capture.terminate()
        capture.wait(T)
    captions = [decode_caption(f) for _, f in client.xrange(captions_key(name))]
    assert len(captions) >= 5, f"{worker.stats.stale} frames skipped as stale"
    # captured, in Redis's time, a moment before they were captioned: not 30 s before
    assert all(0 <= c.latency_ms < BOUND_MS * TIMEOUT_FACTOR for c in captions), [
        c.latency_ms for c in captions
    ]
    assert worker.stats.stale == 0
    assert 0 <= heard_ms < BOUND_MS * TIMEOUT_FACTOR  # its heartbeat is recent, not 30 s old
    client.close()


def test_a_worker_whose_clock_is_ahead_still_skips_no_fresh_frame(
    redis_server,
    camera: Path,  # type: ignore[no-untyped-def]
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()  # the worker reads every source: none but this one
    name = "ahead"
    capture = Capture(
        client, parse_source(str(camera), name=name, live=True), CaptureConfig(fps=5, loop=True)
    )
    thread = threading.Thread(target=capture.run, daemon=True)
    thread.start()
    cap = tiny_captioner()

    def caption(images: Sequence[Any], sources: Sequence[str], shown: Any) -> Any:
        return cap.caption(list(images), beam=1)

    ahead = RedisClock(local=lambda: time.time_ns() + int(SKEW_S * 1e9))
    policy = BatchPolicy(max_batch=4, max_wait_ms=20, max_age_ms=BOUND_MS)
    worker = Worker(client, caption, WorkerConfig(policy=policy), clock=ahead)
    deadline = time.monotonic() + T
    beats: list[float] = []  # how old its heartbeat looks, in Redis's time, while it runs

    def done() -> bool:
        beat = client.hget(WORKERS_KEY, worker.config.consumer)
        if beat is not None:
            beats.append(_redis_now_ms(client) - float(beat))
        return client.xlen(captions_key(name)) >= 5 or time.monotonic() > deadline

    worker.run(until=done)
    capture.stop()
    thread.join(T)
    assert ahead.offset_ns < -(SKEW_S - 1) * 1e9  # it found its clock ahead of Redis's
    captions = [decode_caption(f) for _, f in client.xrange(captions_key(name))]
    assert len(captions) >= 5 and worker.stats.stale == 0
    assert all(0 <= c.latency_ms < BOUND_MS * TIMEOUT_FACTOR for c in captions)
    assert beats and all(-500 < age < BOUND_MS for age in beats), beats  # not 30 s in the future
    client.close()
