"""Encoder grid features cached on disk (fp16), so the decoder trains on a CPU.

One ``.npy`` per (split, flipped) under ``CACHE/{encoder}-{size}/``: shape
``(N, P, D)`` float16, rows in the dataset's order. Extraction is resumable: a
``.progress`` file counts the rows already written, and a crashed run goes on
from there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from captioner.encoder import CPU_ENCODER_CHUNK, Encoder
from captioner.preprocess import to_batch
from captioner.training.data import CaptionDataset, Item


def cache_path(cache_dir: Path, encoder: Encoder, split: str, *, flipped: bool) -> Path:
    folder = Path(cache_dir) / encoder.id
    return folder / f"{split}{'-flip' if flipped else ''}.npy"


def _batches(
    dataset: CaptionDataset, items: Sequence[Item], start: int, batch_size: int, flipped: bool
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Decoded images, one batch ahead of the encoder (a thread decodes the next)."""

    def load(lo: int) -> list[np.ndarray]:
        images = [dataset.load_image(it) for it in items[lo : lo + batch_size]]
        return [np.ascontiguousarray(im[:, ::-1]) for im in images] if flipped else images

    starts = list(range(start, len(items), batch_size))
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, starts[0]) if starts else None
        for i, lo in enumerate(starts):
            assert pending is not None
            images = pending.result()
            pending = pool.submit(load, starts[i + 1]) if i + 1 < len(starts) else None
            yield lo, images


def extract_features(
    dataset: CaptionDataset,
    items: Sequence[Item],
    encoder: Encoder,
    path: Path,
    *,
    flipped: bool = False,
    batch_size: int | None = None,
    log: Callable[[str], None] = print,
) -> np.ndarray:
    """Write (or finish writing) the cache at ``path``; return it memory-mapped.

    ``batch_size`` defaults to the encoder's CPU chunk on a CPU (larger batches are
    slower per image there, see ``Captioner.encode``) and to 32 on a GPU.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    progress = path.with_suffix(".progress")
    names = path.with_suffix(".json")
    filenames = [it.filename for it in items]
    if path.is_file() and not progress.exists():
        if json.loads(names.read_text()) != filenames:
            raise ValueError(f"{path} was cached for other images; delete it to rebuild")
        cached: np.ndarray = np.load(path, mmap_mode="r")
        return cached

    device = next(encoder.parameters()).device
    if batch_size is None:
        batch_size = CPU_ENCODER_CHUNK if device.type == "cpu" else 32
    grid_h, grid_w = encoder.grid_size()
    shape = (len(items), grid_h * grid_w, encoder.dim)
    done = int(progress.read_text()) if progress.exists() and path.exists() else 0
    if done:
        out = np.load(path, mmap_mode="r+")
        log(f"resuming {path.name} at {done}/{len(items)}")
    else:
        names.write_text(json.dumps(filenames))
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=shape)
        progress.write_text("0")
    started, last_log = time.monotonic(), 0.0
    with torch.inference_mode():
        for lo, images in _batches(dataset, items, done, batch_size, flipped):
            batch = to_batch(images, encoder.preprocess, device=device)
            grid = encoder(batch)  # (b, P, D)
            out[lo : lo + len(images)] = grid.to(torch.float16).cpu().numpy()
            written = lo + len(images)
            if written % (batch_size * 20) == 0 or written == len(items):
                out.flush()
                progress.write_text(str(written))
            now = time.monotonic()
            if now - last_log > 30 or written == len(items):
                rate = (written - done) / max(now - started, 1e-9)
                eta = (len(items) - written) / max(rate, 1e-9)
                log(
                    f"{path.name}: {written}/{len(items)} images, {rate:.1f} img/s, ETA {eta:.0f} s"
                )
                last_log = now
    out.flush()
    del out
    progress.unlink()
    result: np.ndarray = np.load(path, mmap_mode="r")
    return result
