"""``scenecast bench captioner``: images/s end to end (uint8 images → captions)."""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from captioner.api import Captioner
from captioner.sample_photos import sample_images


@dataclass(frozen=True)
class BenchRow:
    batch: int
    beam: int
    images_per_s: float
    seconds_per_batch: float
    peak_mb: float
    mean_words: float


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench_captioner(
    cap: Captioner,
    *,
    batches: Sequence[int] = (1, 8, 32),
    beams: Sequence[int] = (1, 3),
    min_seconds: float = 3.0,
    min_rounds: int = 2,
) -> list[BenchRow]:
    """Time ``cap.caption`` on batches of the sample photos (cycled to fill a batch).

    One warm-up call per setting, then rounds until both ``min_seconds`` and
    ``min_rounds`` are reached. Peak memory: the CUDA allocator's peak for that
    setting on a GPU, the process's peak RSS so far on the CPU.
    """
    photos = sample_images()
    rows = []
    for beam in beams:
        for batch in batches:
            images = [photos[i % len(photos)] for i in range(batch)]
            if cap.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(cap.device)
            cap.caption(images, beam=beam)  # warm-up
            rounds, words, started = 0, 0, time.perf_counter()
            while rounds < min_rounds or time.perf_counter() - started < min_seconds:
                captions = cap.caption(images, beam=beam)
                if cap.device.type == "cuda":
                    torch.cuda.synchronize(cap.device)
                words += sum(len(c.tokens) for c in captions)
                rounds += 1
            elapsed = time.perf_counter() - started
            rows.append(
                BenchRow(
                    batch=batch,
                    beam=beam,
                    images_per_s=rounds * batch / elapsed,
                    seconds_per_batch=elapsed / rounds,
                    peak_mb=_peak_mb(cap.device),
                    mean_words=words / (rounds * batch),
                )
            )
    return rows


def format_rows(rows: Sequence[BenchRow]) -> str:
    lines = [
        "| batch | beam | images/s | s/batch | peak MiB | words/caption |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.batch} | {r.beam} | {r.images_per_s:.1f} | {r.seconds_per_batch:.3f} "
            f"| {r.peak_mb:.0f} | {r.mean_words:.1f} |"
        )
    return "\n".join(lines)


def report_captioner(
    checkpoint: str | None,
    *,
    device: str | None,
    batches: Sequence[int],
    beams: Sequence[int],
    seconds: float,
) -> None:
    """``scenecast bench captioner``: load the model, measure, print the table and each
    beam's speed-up of its largest batch over batch 1."""
    from stream.bench.context import bench_context

    cap = Captioner.load(checkpoint, device=device)
    print(f"scenecast bench captioner — {bench_context(cap)}")
    rows = bench_captioner(cap, batches=batches, beams=beams, min_seconds=seconds)
    print(format_rows(rows))
    for beam in beams:
        by_batch = {r.batch: r.images_per_s for r in rows if r.beam == beam}
        if 1 in by_batch and len(by_batch) > 1:
            top = max(by_batch)
            print(f"beam {beam}: batch {top} = {by_batch[top] / by_batch[1]:.2f}× batch 1")
