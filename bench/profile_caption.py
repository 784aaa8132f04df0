"""Kernel-level profile of ``Captioner.caption`` at batch 1 and batch 32 (beam 3).

`python -m bench.profile_caption --device cuda` prints, per batch size, the wall time
per call and the top operations by device time and by host time (torch.profiler), to
tell launch-bound steps from device-bound ones on a lent GPU.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from captioner import Captioner
from captioner.sample_photos import sample_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rows", type=int, default=18)
    args = parser.parse_args()
    cap = Captioner.load(device=args.device)
    photos = sample_images()
    cuda = cap.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sort_device = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    for batch in (1, 32):
        images = [photos[i % len(photos)] for i in range(batch)]
        for _ in range(3):
            cap.caption(images, beam=3)
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.repeats):
            cap.caption(images, beam=3)
        if cuda:
            torch.cuda.synchronize()
        wall = (time.perf_counter() - start) / args.repeats * 1e3
        with profile(activities=activities) as prof:
            for _ in range(args.repeats):
                cap.caption(images, beam=3)
        table = prof.key_averages()
        print(f"\n=== batch {batch}: {wall:.2f} ms per call (unprofiled), {args.repeats} calls ===")
        print(table.table(sort_by=sort_device, row_limit=args.rows))
        print(table.table(sort_by="cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
