"""What consensus reranking costs per batch, apart from the search it follows.

`python -m bench.rerank_cost [--device cuda] [--batch 32]` encodes the bundled sample
photos (cycled to the batch), then times, per beam: the search alone, the search with
reranking, the two parts of the reranking (the nearest training images; the
consensus of the candidates with their captions), and the search with reranking and
the caption hold at its costliest: every frame follows its stream and holds a
caption its search did not find, so each is scored by teacher forcing and the vote
(one pass of the whole batch). Medians over `--repeats`.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from bench.breakdown import _sync
from captioner import Captioner
from captioner.sample_photos import sample_images
from captioner.search.hold import Shown, ShownCaptions
from captioner.search.reranked import caption_search, pooled
from captioner.search.search import beam_search_nbest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cap = Captioner.load(device=args.device)
    if cap.neighbours is None:
        raise SystemExit("the model has no neighbour index: nothing to rerank")
    photos = sample_images()
    features = cap.encode([photos[i % len(photos)] for i in range(args.batch)])
    k = cap.search_config.consensus_k
    print(f"device {cap.device}; batch {args.batch}; k {k}; median ms of {args.repeats}")
    print("beam  search  reranked  nearest  consensus  held")
    keys = pooled(features)
    held = tuple(cap.vocab.encode(["a", "view", "of", "the", "room", "with", "a", "window"])[1:-1])
    sources = [f"stream-{j}" for j in range(args.batch)]
    for beam in (3, 5):
        on = dataclasses.replace(cap.search_config, beam=beam)
        off = dataclasses.replace(on, consensus_k=0)
        finished = beam_search_nbest(cap.decoder, features, cap.vocab, on, n=beam)
        words = [[cap.vocab.decode(h.ids) for h in f] for f in finished]
        times: dict[str, list[float]] = {
            "off": [],
            "on": [],
            "nearest": [],
            "consensus": [],
            "held": [],
        }
        for _ in range(args.repeats):
            for name, config in (("off", off), ("on", on)):
                _sync(cap.device)
                start = time.perf_counter()
                caption_search(cap.decoder, features, cap.vocab, config, cap.neighbours)
                _sync(cap.device)
                times[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            neighbours = cap.neighbours.nearest(pooled(features), k)
            times["nearest"].append(time.perf_counter() - start)
            start = time.perf_counter()
            cap.neighbours.consensus_batch(words, neighbours)
            times["consensus"].append(time.perf_counter() - start)
            shown = ShownCaptions()
            for j, source in enumerate(sources):  # each frame follows a held caption
                shown.put(source, Shown(held, keys[j]))
            _sync(cap.device)
            start = time.perf_counter()
            caption_search(
                cap.decoder, features, cap.vocab, on, cap.neighbours, sources=sources, shown=shown
            )
            _sync(cap.device)
            times["held"].append(time.perf_counter() - start)
        ms = {name: 1000 * statistics.median(values) for name, values in times.items()}
        print(
            f"{beam:4d} {ms['off']:7.1f} {ms['on']:9.1f} {ms['nearest']:8.1f} "
            f"{ms['consensus']:10.1f} {ms['held']:5.1f}"
        )


if __name__ == "__main__":
    main()
