"""``scenecast bench pipeline --stand-in-ms MS``: the pipeline's own ceiling.

The file job of ``bench pipeline`` with the worker's model replaced by a stand-in
that takes exactly ``MS`` per batch, waiting with the GIL released as a process does
while a GPU computes. Its own rate is known by construction (batch / MS), so the
figure is what capture, Redis and the worker's reading, decoding and publishing let
through for a model of that speed — e.g. the H100's ~33 ms per batch of 32 —
measured on any machine. It says nothing about the model; its captions are fixed text.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import numpy as np
import redis

from stream.bench.pipeline import Alone, FileResult, file_round, format_file, make_bench_video
from stream.embedded_redis import EmbeddedRedis


@dataclass(frozen=True)
class StandInCaption:
    text: str
    tokens: list[str]
    score: float
    attention: np.ndarray


class StandInModel:
    """Waits ``ms`` per batch (GIL released), then returns a fixed caption per image."""

    def __init__(self, ms: float) -> None:
        self.ms = ms
        tokens = ["a", "stand-in", "caption"]
        maps = np.full((len(tokens), 7, 7), 1 / 49, np.float32)
        self._caption = StandInCaption(" ".join(tokens), tokens, -1.0, maps)

    def __call__(
        self, images: Sequence[Any], sources: Sequence[str], shown: object
    ) -> list[StandInCaption]:
        time.sleep(self.ms / 1000)
        return [self._caption] * len(images)


def _worker_main(url: str, batch: int, ms: float, ready: Event, stop: Event) -> None:
    from worker.batching import BatchPolicy
    from worker.service import connect
    from worker.worker import Worker, WorkerConfig

    policy = BatchPolicy(max_batch=batch, max_wait_ms=20)
    worker = Worker(connect(url), StandInModel(ms), WorkerConfig(policy=policy))

    def stop_on_event() -> None:
        stop.wait()
        worker.stop()

    threading.Thread(target=stop_on_event, daemon=True).start()
    ready.set()
    worker.run()


@contextlib.contextmanager
def stand_in_worker(url: str, *, batch: int, ms: float) -> Iterator[None]:
    """A worker process (its own GIL, as in ``scenecast run``) with the stand-in model."""
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_worker_main, args=(url, batch, ms, ready, stop), daemon=True)
    proc.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the stand-in worker did not start within 60 s")
        yield
    finally:
        stop.set()
        proc.join(30)
        if proc.is_alive():
            proc.kill()


def bench_stand_in(*, ms: float, batch: int, frames: int, rounds: int, workdir: Path) -> FileResult:
    video = make_bench_video(workdir / "file.mp4", seconds=frames / 10 + 0.5, fps=10)
    own = Alone(batch / (ms / 1000), 0.0)  # by construction; it waits, using no CPU
    with EmbeddedRedis() as server, stand_in_worker(server.url, batch=batch, ms=ms):
        client = redis.Redis.from_url(server.url)
        results = [
            file_round(client, video, frames, f"standin{i}", batch, own) for i in range(rounds)
        ]
        client.close()
    return FileResult(frames=frames, rounds=results)


def run_stand_in_bench(*, ms: float, batch: int, frames: int, rounds: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        result = bench_stand_in(ms=ms, batch=batch, frames=frames, rounds=rounds, workdir=Path(tmp))
    lines = [f"stand-in model: {ms:g} ms per batch of {batch} = {batch / (ms / 1000):.0f} images/s"]
    return "\n".join(lines + format_file(result, batch=batch, beam=None))


def report_stand_in(*, ms: float, batch: int, frames: int, rounds: int) -> None:
    """``scenecast bench pipeline --stand-in-ms``: the machine, then the table."""
    from stream.bench.context import host_line

    print(f"scenecast bench pipeline — stand-in model, {host_line()}")
    print(run_stand_in_bench(ms=ms, batch=batch, frames=frames, rounds=rounds))
