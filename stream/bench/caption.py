"""``scenecast bench caption``: realtime factor of ``scenecast caption`` on a long video.

A generated 640×360, 25 fps video of the sample photos (default 10 minutes), sampled
at 1 frame/s, captioned in-process; then the same through Redis with N worker
processes (``--workers``). Realtime factor = video duration / wall time.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from captioner.api import Captioner
from captioner.sample_photos import sample_images
from stream.embedded_redis import EmbeddedRedis
from stream.subtitles.caption import caption_video


def make_long_video(path: Path, *, minutes: float, fps: int = 25) -> Path:
    """The sample photos, 10 s each with a slow pan, looped; written once and reused."""
    if path.exists():
        return path
    photos = [cv2.resize(np.ascontiguousarray(p[:, :, ::-1]), (720, 400)) for p in sample_images()]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (640, 360))
    for i in range(int(minutes * 60 * fps)):
        scene, t = divmod(i, 10 * fps)
        photo = photos[scene % len(photos)]
        x, y = int(80 * t / (10 * fps)), int(40 * t / (10 * fps))
        writer.write(np.ascontiguousarray(photo[y : y + 360, x : x + 640]))
    writer.release()
    return path


def run_bench(
    cap: Captioner,
    *,
    minutes: float,
    beam: int,
    batch: int,
    workers: int,
    checkpoint: str | None,
    video: Path | None = None,
    worker_args: Sequence[str] = (),
) -> str:
    """``worker_args``: more flags for the worker processes (e.g. ``--hold off``)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = video or make_long_video(Path(tmp) / "long.mp4", minutes=minutes)
        duration = minutes * 60
        started = time.perf_counter()
        result = caption_video(path, captioner=cap, beam=beam, batch=batch)
        alone = time.perf_counter() - started
        lines = [
            f"in-process: {len(result.samples)} samples of a {duration:.0f} s video in "
            f"{alone:.1f} s = {duration / alone:.1f}× realtime (beam {beam}, batch {batch})"
        ]
        if workers:
            with EmbeddedRedis() as server:
                argv = [
                    sys.executable,
                    "-m",
                    "stream.cli",
                    "worker",
                    "--redis-url",
                    server.url,
                    "--beam",
                    str(beam),
                    "--max-batch",
                    str(batch),
                ]
                if checkpoint:
                    argv += ["--checkpoint", checkpoint]
                argv += worker_args
                procs = [subprocess.Popen(argv, stderr=subprocess.DEVNULL) for _ in range(workers)]
                try:
                    time.sleep(15)  # the workers load the model
                    started = time.perf_counter()
                    caption_video(path, redis_url=server.url)
                    pooled = time.perf_counter() - started
                finally:
                    for p in procs:
                        p.terminate()
                    for p in procs:
                        p.wait(30)
            lines.append(
                f"--redis-url with {workers} worker process{'es' if workers > 1 else ''}: "
                f"{pooled:.1f} s = "
                f"{duration / pooled:.1f}× realtime"
            )
    return "\n".join(lines)


def report_caption(
    checkpoint: str | None,
    *,
    device: str | None,
    search: Mapping[str, Any],
    minutes: float,
    beam: int,
    batch: int,
    workers: int,
    video: Path | None,
    worker_args: Sequence[str],
) -> None:
    """``scenecast bench caption``: load the model, then in-process and worker rounds."""
    from stream.bench.context import bench_context

    cap = Captioner.load(checkpoint, device=device)
    cap.override(search)
    print(f"scenecast bench caption — {bench_context(cap)}")
    print(
        run_bench(
            cap,
            minutes=minutes,
            beam=beam,
            batch=batch,
            workers=workers,
            checkpoint=checkpoint,
            video=video,
            worker_args=list(worker_args),
        )
    )
