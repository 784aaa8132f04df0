"""Live frames beside a file job keep their deadline: batches are kept short enough to
caption in a third of the max age while live frames flow (worker/batching.py
``live_batch_cap``), and live frames go first (worker/prefetch.py). Real Captures and
a real redis-server; the model is a stand-in that takes 40 ms a frame."""

from __future__ import annotations

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
from worker.batching import BatchPolicy, MovingAverage, live_batch_cap
from worker.worker import Worker, WorkerConfig

T = 60.0 * TIMEOUT_FACTOR
PER_FRAME_S = 0.04


def test_the_cap_fits_a_third_of_the_max_age() -> None:
    policy = BatchPolicy(max_batch=32, max_age_ms=3000)
    assert live_batch_cap(policy, None) == 32  # nothing timed yet
    assert live_batch_cap(policy, 60.0) == 16  # 1000 ms / 60 ms
    assert live_batch_cap(policy, 2.0) == 32  # a GPU: a full batch fits
    assert live_batch_cap(policy, 5000.0) == 1  # never empty
    average = MovingAverage(0.5)
    assert average.value is None
    for sample in (10.0, 20.0, 40.0):
        average.add(sample)
    assert average.value == pytest.approx(27.5)
    with pytest.raises(ValueError, match="weight"):
        MovingAverage(0.0)


def test_batches_shrink_while_a_camera_shares_the_worker_with_a_file_job(
    redis_server,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    job_video = make_video(tmp_path / "job.mp4", scenes=[((200, 40, 40), 20.0)], fps=10)
    camera = make_video(tmp_path / "cam.mp4", scenes=[((40, 40, 200), 2.0)], fps=10)
    job = Capture(
        client, parse_source(str(job_video), name="job", live=False), CaptureConfig(fps=10)
    )
    cap = tiny_captioner()
    sizes: list[tuple[int, bool]] = []  # each batch: its size, and whether it had live frames

    def caption(images: Sequence[Any], sources: Sequence[str], shown: Any) -> Any:
        sizes.append((len(images), "cam" in sources))
        time.sleep(PER_FRAME_S * len(images))
        return cap.caption(list(images), beam=1)

    policy = BatchPolicy(max_batch=32, max_wait_ms=20, max_age_ms=2000)
    worker = Worker(client, caption, WorkerConfig(policy=policy))
    job_thread = threading.Thread(target=job.run, daemon=True)
    job_thread.start()
    deadline = time.monotonic() + T
    while job.published < 64 and time.monotonic() < deadline:  # a backlog to fill batches
        time.sleep(0.02)
    # the job alone first: its backlog fills whole batches
    worker.run(until=lambda: len(sizes) >= 2 or time.monotonic() > deadline)
    assert len(sizes) >= 2 and {n for n, _ in sizes} == {32}  # (and what it had read ahead)
    live = Capture(
        client, parse_source(str(camera), name="cam", live=True), CaptureConfig(fps=5, loop=True)
    )
    live_thread = threading.Thread(target=live.run, daemon=True)
    live_thread.start()
    stopped_at: list[int] = []  # batches after this one drain the buffer at the stop

    def enough() -> bool:
        if sum(has for _, has in sizes) >= 6 or time.monotonic() > deadline:
            stopped_at.append(len(sizes))
        return bool(stopped_at)

    worker.run(until=enough)
    live.stop()
    job.stop()
    live_thread.join(T)
    job_thread.join(T)
    assert not live_thread.is_alive() and not job_thread.is_alive()
    first_live = [has for _, has in sizes].index(True)
    after = sizes[first_live + 1 : stopped_at[0]]  # once live frames were read
    cap_now = live_batch_cap(policy, PER_FRAME_S * 1000)  # 667 ms / 40 ms = 16
    assert after and max(n for n, _ in after) <= cap_now, sizes
    assert sum(has for _, has in after) >= 4  # the camera's frames were in them
    client.close()
