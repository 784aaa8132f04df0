"""Where a caption batch's time goes on a device: preprocessing + encoder, then search.

`python -m bench.breakdown --device cuda` prints, per batch size and beam, the median
over repeats of each stage (synchronized), so a GPU lease shows which stage limits the
batch-32 / batch-1 ratio of `scenecast bench captioner`.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from captioner import Captioner
from captioner.sample_photos import sample_images
from captioner.search.search import search


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    cap = Captioner.load(device=args.device)
    photos = sample_images()
    print(f"device {cap.device}; median ms over {args.repeats} repeats")
    print("batch beam   encode   search    total  images/s")
    for beam in (1, 3):
        method = "beam" if beam > 1 else "greedy"
        config = dataclasses.replace(cap.search_config, method=method, beam=beam)
        for batch in (1, 8, 32):
            images = [photos[i % len(photos)] for i in range(batch)]
            enc, srch = [], []
            for r in range(args.repeats + 3):
                _sync(cap.device)
                t0 = time.perf_counter()
                features = cap.encode(images)
                _sync(cap.device)
                t1 = time.perf_counter()
                with torch.inference_mode():
                    search(cap.decoder, features, cap.vocab, config)
                _sync(cap.device)
                t2 = time.perf_counter()
                if r >= 3:
                    enc.append(t1 - t0)
                    srch.append(t2 - t1)
            e, s = statistics.median(enc) * 1e3, statistics.median(srch) * 1e3
            rate = batch / (e + s) * 1e3
            print(f"{batch:5d} {beam:4d} {e:8.2f} {s:8.2f} {e + s:8.2f} {rate:9.1f}")


if __name__ == "__main__":
    main()
