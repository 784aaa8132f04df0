"""``scenecast bench pipeline``: the service's own speed, measured through Redis.

- file: a generated video as a file job (capture → Redis → worker → captions);
  captions/s against the captioner's own images/s on the same frames at the same
  batch size (target ≥ 85 %).
- live: the same video played as a camera at half the measured capacity;
  p50 / p95 of capture → websocket client latency (target p95 ≤ one batch time +
  150 ms).

As in ``scenecast run``, the worker is its own process (captioning holds the GIL);
redis-server, capture, server and client run here, on the same clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import redis
from websockets.asyncio.client import connect

from captioner.api import Captioner
from captioner.sample_photos import sample_images
from stream.capture.capture import Capture, CaptureConfig, encode_jpeg
from stream.embedded_redis import EmbeddedRedis
from stream.server.server import CaptionServer, ServerConfig
from stream.sources.spec import parse_source
from worker.bus.keys import CAPTION_CPU, METRICS_KEY, STAGE_PREFIX, captions_key
from worker.decode import decode_jpegs


@dataclass(frozen=True)
class FileRound:
    """One round: the captioner alone over the frames, then the file job through Redis."""

    captioner_images_per_s: float
    captions_per_s: float
    mean_batch: float  # frames per batch the worker captioned
    stage_ms: dict[str, float]  # the worker's time per batch in each stage
    capture_fps: float  # frames capture published per second, until its last
    capture_wait_s: float  # of which waiting for room under its backlog limit
    first_caption_s: float  # from the start of capture to the first caption in Redis
    captioner_cpu_s_per_image: float  # the captioner alone's thread's CPU time
    model_cpu_ms: float  # per batch: CPU time of the worker's model thread captioning

    @property
    def ratio(self) -> float:
        return self.captions_per_s / self.captioner_images_per_s

    @property
    def model_ms(self) -> float:
        """The worker's model path per batch: captioning, and with ``--model-process``
        the child's decoding and the pipes."""
        return sum(self.stage_ms.get(s, 0.0) for s in MODEL_STAGES)

    @property
    def alone_ms(self) -> float:
        """The captioner alone's time for a batch of the worker's mean size."""
        return 1000 * self.mean_batch / self.captioner_images_per_s

    @property
    def alone_cpu_ms(self) -> float:
        return 1000 * self.mean_batch * self.captioner_cpu_s_per_image

    @property
    def model_busy(self) -> float:
        """The share of the job's time the worker's model path was busy. The ratio is
        this times ``alone_ms / model_ms``: a job loses by the model waiting for
        frames, or by the model being slower inside the worker than alone."""
        return self.model_ms * self.captions_per_s / self.mean_batch / 1000


MODEL_STAGES = ("model_decode", "caption", "transfer")


@dataclass(frozen=True)
class FileResult:
    frames: int
    rounds: list[FileRound]

    @property
    def captions_per_s(self) -> float:
        return statistics.median(r.captions_per_s for r in self.rounds)

    @property
    def captioner_images_per_s(self) -> float:
        return statistics.median(r.captioner_images_per_s for r in self.rounds)

    @property
    def ratio(self) -> float:
        """The median of the rounds' ratios: each round pairs the file job with the
        captioner measured just before and after it, so the host's drift between rounds
        (which moves both) cancels."""
        return statistics.median(r.ratio for r in self.rounds)


@dataclass(frozen=True)
class LiveResult:
    rate_fps: float
    captions: int
    p50_ms: float
    p95_ms: float
    batch_ms: float
    stale: int


def make_bench_video(path: Path, *, seconds: float, fps: float = 10.0) -> Path:
    """The sample photos, each a few seconds with a slow pan, 640×360."""
    photos = [np.ascontiguousarray(p[:, :, ::-1]) for p in sample_images()]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (640, 360))
    frames = int(seconds * fps)
    for i in range(frames):
        photo = photos[(i // int(fps * 2)) % len(photos)]
        h, w = photo.shape[:2]
        shift = (i % int(fps * 2)) * 2
        crop = photo[: h - 20, shift : shift + w - 40]
        writer.write(cv2.resize(crop, (640, 360), interpolation=cv2.INTER_AREA))
    writer.release()
    return path


def _sampled_images(video: Path, every: int, limit: int) -> list[Any]:
    """Frames as the worker sees them: sampled, JPEG-encoded as capture does, decoded."""
    cap = cv2.VideoCapture(str(video))
    out: list[Any] = []
    index = 0
    while len(out) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        if index % every == 0:
            data, _, _ = encode_jpeg(frame, max_side=256, quality=90)
            out.append(decode_jpegs([data])[0])
        index += 1
    cap.release()
    return out


@dataclass(frozen=True)
class Alone:
    """The captioner alone on a job's frames."""

    images_per_s: float
    cpu_s_per_image: float  # CPU time of the captioning thread


def captioner_rate(cap: Captioner, images: Sequence[Any], *, batch: int, beam: int) -> Alone:
    """The captioner's images/s on ``images`` as one stream's frames in order, as the
    worker captions a file job's (with the caption hold; a new stream each call)."""
    cap.caption(list(images[:batch]), beam=beam)  # warm-up
    source = f"alone-{uuid.uuid4().hex[:8]}"
    started, cpu = time.perf_counter(), time.thread_time()
    for lo in range(0, len(images), batch):
        chunk = list(images[lo : lo + batch])
        cap.caption(chunk, beam=beam, sources=[source] * len(chunk))
    cpu_s = time.thread_time() - cpu
    return Alone(len(images) / (time.perf_counter() - started), cpu_s / len(images))


@contextlib.contextmanager
def worker_process(
    url: str, *, batch: int, beam: int, checkpoint: str | None, device: str,
    worker_args: Sequence[str] = (),
) -> Iterator[None]:  # fmt: skip
    """A `scenecast worker` process, as `scenecast run` starts it (its own GIL);
    ``worker_args``: more of its flags (e.g. ``--model-process``)."""
    argv = [sys.executable, "-m", "stream.cli", "worker", "--redis-url", url, "--beam", str(beam),
            "--max-batch", str(batch), "--max-wait-ms", "20", "--device", device]  # fmt: skip
    if checkpoint:
        argv += ["--checkpoint", checkpoint]
    argv += worker_args
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait until the model is loaded
            if "started" in line:
                break
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
        yield
    finally:
        proc.terminate()
        proc.wait(30)


@contextlib.contextmanager
def redis_and_worker(
    cap: Captioner, *, batch: int, beam: int, checkpoint: str | None,
    worker_args: Sequence[str],
) -> Iterator[EmbeddedRedis]:  # fmt: skip
    """An embedded redis-server and a worker process on it, for ``cap``'s device."""
    with (
        EmbeddedRedis() as server,
        worker_process(
            server.url,
            batch=batch,
            beam=beam,
            checkpoint=checkpoint,
            device=str(cap.device),
            worker_args=worker_args,
        ),
    ):
        yield server


def bench_file(
    cap: Captioner, *, batch: int = 32, beam: int = 3, frames: int = 192, workdir: Path,
    checkpoint: str | None = None, rounds: int = 3, worker_args: Sequence[str] = (),
) -> FileResult:  # fmt: skip
    """``rounds`` file jobs (a new source each time) through one warm worker process,
    the captioner alone measured before the first and after each (``bracketed``):
    alternating spreads the host's drift (other tenants, clock changes) over both
    figures."""
    video = make_bench_video(workdir / "file.mp4", seconds=frames / 10 + 0.5, fps=10)
    images = _sampled_images(video, every=1, limit=frames)
    results: list[FileRound] = []
    with redis_and_worker(
        cap, batch=batch, beam=beam, checkpoint=checkpoint, worker_args=worker_args
    ) as server:
        client = redis.Redis.from_url(server.url)
        before = captioner_rate(cap, images, batch=batch, beam=beam)
        for i in range(rounds):
            job = file_round(client, video, len(images), f"benchfile{i}", batch, before)
            after = captioner_rate(cap, images, batch=batch, beam=beam)
            results.append(bracketed(job, before, after))
            before = after
        client.close()
    return FileResult(frames=len(images), rounds=results)


def bracketed(job: FileRound, before: Alone, after: Alone) -> FileRound:
    """``job`` against the captioner alone measured just before and just after it (the
    mean): the host's speed drifts by ±15 % over minutes on a GPU host (BENCHMARKS.md),
    and one side alone would carry that drift into the ratio."""
    return dataclasses.replace(
        job,
        captioner_images_per_s=(before.images_per_s + after.images_per_s) / 2,
        captioner_cpu_s_per_image=(before.cpu_s_per_image + after.cpu_s_per_image) / 2,
    )


STALL_S = 120.0  # no new caption for this long: the benchmark fails instead of hanging


def file_round(
    client: redis.Redis, video: Path, frames: int, source: str, batch: int, own: Alone
) -> FileRound:
    """One file job as source ``source`` through the running worker, timed from the
    start of capture to the last caption in Redis."""
    before = _worker_counters(client)
    spec = parse_source(str(video), name=source)
    capture = Capture(client, spec, CaptureConfig(fps=10.0))  # the backlog limit run uses
    started = time.perf_counter()
    started_at = time.monotonic()
    started_wall = time.time()  # redis-server's clock: its stream ids' milliseconds
    thread = threading.Thread(target=capture.run, daemon=True)
    thread.start()
    done, progress_at = 0, time.monotonic()
    while done < frames:
        time.sleep(0.02)  # coarse enough not to steal the model's CPU, fine for seconds
        count = client.xlen(captions_key(source))
        if count > done:
            done, progress_at = count, time.monotonic()
        elif time.monotonic() - progress_at > STALL_S:
            raise RuntimeError(
                f"file job stalled: {done} of {frames} captions, none for {STALL_S:.0f} s "
                "(did the worker process die?)"
            )
    seconds = time.perf_counter() - started
    thread.join(10)
    after = _counters_after(client, before, frames)
    batches = max(after.get("batches", 0) - before.get("batches", 0), 1)
    stage_ms = {
        name.removeprefix(STAGE_PREFIX): 1000 * (value - before.get(name, 0)) / batches
        for name, value in after.items()
        if name.startswith(STAGE_PREFIX)
    }
    cpu_ms = 1000 * (after.get(CAPTION_CPU, 0) - before.get(CAPTION_CPU, 0)) / batches
    # until the last frame was published (the job ends later, with its last caption)
    capture_s = (capture.published_at or float("nan")) - started_at
    capture_fps = capture.published / capture_s
    first: Any = client.xrange(captions_key(source), count=1)
    first_s = int(first[0][0].split(b"-")[0]) / 1000 - started_wall
    return FileRound(
        own.images_per_s,
        frames / seconds,
        frames / batches,
        stage_ms,
        capture_fps,
        capture.waited_s,
        first_s,
        own.cpu_s_per_image,
        cpu_ms,
    )


def _worker_counters(client: redis.Redis) -> dict[str, float]:
    raw: dict[bytes, bytes] = client.hgetall(METRICS_KEY)  # type: ignore[assignment]
    return {k.decode(): float(v) for k, v in raw.items()}


def _counters_after(
    client: redis.Redis, before: dict[str, float], frames: int, *, timeout_s: float = 2.0
) -> dict[str, float]:
    """The worker's counters once they include the job's last batch: the worker adds
    a batch's counters just after publishing its captions, which the job's end saw."""
    deadline = time.monotonic() + timeout_s
    while True:
        after = _worker_counters(client)
        counted = after.get("captioned", 0) + after.get("duplicates", 0)
        counted -= before.get("captioned", 0) + before.get("duplicates", 0)
        if counted >= frames or time.monotonic() > deadline:
            return after
        time.sleep(0.01)


def format_file(f: FileResult, *, batch: int, beam: int | None) -> list[str]:
    what = f"batch {batch}, beam {beam}" if beam else f"batch {batch}"
    return [
        f"file job, {f.frames} frames, {what}, {len(f.rounds)} rounds (captioner alone, the "
        "mean of its runs just before and after the job / "
        "through Redis / the worker's mean batch and ms per batch in each stage; read + "
        "decode and publish run in threads beside the model / capture's frames/s and its "
        "seconds waiting for room under the backlog limit / the first caption's delay; "
        "the share of the job the worker's model was busy, its ms per batch and its thread's "
        "CPU ms against the captioner alone's):",
        *(
            f"  {r.captioner_images_per_s:.1f} images/s / {r.captions_per_s:.1f} captions/s"
            f" = {100 * r.ratio:.0f}% / {r.mean_batch:.1f} frames, "
            + " ".join(f"{stage} {ms:.1f}" for stage, ms in r.stage_ms.items())
            + f" / capture {r.capture_fps:.0f} frames/s, waited {r.capture_wait_s:.2f} s"
            + f" / first caption {1000 * r.first_caption_s:.0f} ms"
            + f"; model busy {100 * r.model_busy:.0f}%, {r.model_ms:.1f} ms a batch (CPU"
            f" {r.model_cpu_ms:.1f}) against {r.alone_ms:.1f} alone (CPU {r.alone_cpu_ms:.1f})"
            for r in f.rounds
        ),
        f"  median of the rounds: {100 * f.ratio:.0f}% (target ≥ 85%); medians "
        f"{f.captions_per_s:.1f} captions/s, {f.captioner_images_per_s:.1f} images/s alone",
    ]


async def _listen(url: str, seconds: float) -> list[float]:
    latencies: list[float] = []
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "subscribe"}))
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                raw = await asyncio.wait_for(ws.recv(), max(0.1, end - time.monotonic()))
            except TimeoutError:
                break
            message = json.loads(raw)
            if message["type"] == "caption":
                captured = datetime.fromisoformat(message["capture_ts"].replace("Z", "+00:00"))
                latencies.append(time.time() * 1000 - captured.timestamp() * 1000)
    return latencies


def bench_live(
    cap: Captioner, *, batch: int = 8, beam: int = 3, seconds: float = 30.0,
    capacity_images_per_s: float, workdir: Path, checkpoint: str | None = None,
    worker_args: Sequence[str] = (),
) -> LiveResult:  # fmt: skip
    source_fps = 25.0
    video = make_bench_video(workdir / "live.mp4", seconds=8, fps=source_fps)
    rate = min(capacity_images_per_s / 2, source_fps)  # a paced file gives at most its fps
    images = _sampled_images(video, every=3, limit=batch)
    started = time.perf_counter()
    cap.caption(images, beam=beam, sources=["live-batch"] * len(images))  # as the worker does
    batch_ms = (time.perf_counter() - started) * 1000
    with redis_and_worker(
        cap, batch=batch, beam=beam, checkpoint=checkpoint, worker_args=worker_args
    ) as server:
        client = redis.Redis.from_url(server.url)
        spec = parse_source(str(video), name="benchlive", live=True)
        capture = Capture(client, spec, CaptureConfig(fps=rate, loop=True))
        thread = threading.Thread(target=capture.run, daemon=True)
        thread.start()

        async def measure() -> list[float]:
            async with CaptionServer(server.url, ServerConfig(port=0, block_ms=100)) as srv:
                await asyncio.sleep(5.0)  # let capture and worker settle (and warm up)
                return await _listen(f"ws://127.0.0.1:{srv.port}/ws", seconds)

        latencies = asyncio.run(measure())
        capture.stop()
        thread.join(10)
        stale = int(client.hget(METRICS_KEY, "stale") or 0)
        client.close()
    q = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else [float("nan")] * 19
    return LiveResult(rate_fps=rate, captions=len(latencies), p50_ms=statistics.median(latencies),
                      p95_ms=q[18], batch_ms=batch_ms, stale=stale)  # fmt: skip


def run_bench(
    cap: Captioner, *, batch: int, beam: int, frames: int, seconds: float,
    checkpoint: str | None = None, rounds: int = 3, worker_args: Sequence[str] = (),
) -> str:  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        f = bench_file(cap, batch=batch, beam=beam, frames=frames, workdir=Path(tmp),
                       checkpoint=checkpoint, rounds=rounds,
                       worker_args=worker_args)  # fmt: skip
        lines = format_file(f, batch=batch, beam=beam)
        live = bench_live(cap, batch=batch, beam=beam, seconds=seconds, workdir=Path(tmp),
                          capacity_images_per_s=f.captioner_images_per_s,
                          checkpoint=checkpoint, worker_args=worker_args)  # fmt: skip
        lines.append(
            f"live at {live.rate_fps:.1f} frames/s (half capacity, or the source's 25 fps if "
            f"less): {live.captions} captions, capture→client p50 {live.p50_ms:.0f} ms, "
            f"p95 {live.p95_ms:.0f} ms; one batch {live.batch_ms:.0f} ms → target p95 ≤ "
            f"{live.batch_ms + 150:.0f} ms; {live.stale} stale frames skipped"
        )
    return "\n".join(lines)


def report_pipeline(
    checkpoint: str | None,
    *,
    device: str | None,
    search: Mapping[str, Any],
    batch: int,
    beam: int,
    frames: int,
    seconds: float,
    rounds: int,
    worker_args: Sequence[str],
) -> None:
    """``scenecast bench pipeline``: load the model, then the file job and live rounds."""
    from stream.bench.context import bench_context

    cap = Captioner.load(checkpoint, device=device)
    cap.override(search)
    print(f"scenecast bench pipeline — {bench_context(cap)}; worker {' '.join(worker_args)}")
    print(
        run_bench(
            cap,
            batch=batch,
            beam=beam,
            frames=frames,
            seconds=seconds,
            checkpoint=checkpoint,
            rounds=rounds,
            worker_args=list(worker_args),
        )
    )
