"""``scenecast``: one command, many subcommands.

The captioner's own subcommands (train, evaluate, describe) come from
``captioner.cli``; this module adds the service's and owns the entry point.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence

from captioner.cli import add_subcommands as add_captioner_subcommands
from captioner.cli import positive_int, run


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scenecast", description="Streaming video description: frames in, captions out."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_captioner_subcommands(sub)

    demo = sub.add_parser("demo", help="caption the bundled sample photos (what `make run` does)")
    demo.add_argument("--checkpoint", default=None, help="default: the bundled model")
    demo.add_argument("--device", default=None)
    demo.add_argument("--beam", type=positive_int, default=3)
    demo.set_defaults(func=cmd_demo)

    bench = sub.add_parser("bench", help="benchmarks (figures go to BENCHMARKS.md)")
    what = bench.add_subparsers(dest="target", required=True, metavar="TARGET")
    bc = what.add_parser("captioner", help="images/s for batch × beam, end to end from uint8")
    bc.add_argument("--checkpoint", default=None, help="default: the bundled model")
    bc.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    bc.add_argument("--batches", type=_int_list, default=[1, 8, 32])
    bc.add_argument("--beams", type=_int_list, default=[1, 3])
    bc.add_argument("--seconds", type=float, default=3.0, help="minimum time per setting")
    bc.set_defaults(func=cmd_bench_captioner)
    return parser


def cmd_demo(args: argparse.Namespace) -> int:
    from captioner.api import Captioner
    from captioner.sample_photos import load_rgb, sample_paths

    cap = Captioner.load(args.checkpoint, device=args.device)
    paths = sample_paths()
    captions = cap.caption([load_rgb(p) for p in paths], beam=args.beam)
    for path, caption in zip(paths, captions, strict=True):
        print(f"{path.name}: {caption.text}  (log-prob {caption.score:.2f})")
    return 0


def cmd_bench_captioner(args: argparse.Namespace) -> int:
    import torch

    from captioner.api import Captioner
    from captioner.bench import bench_captioner, format_rows

    cap = Captioner.load(args.checkpoint, device=args.device)
    where = (
        torch.cuda.get_device_name(cap.device)
        if cap.device.type == "cuda"
        else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(f"scenecast bench captioner — model {cap.model_id}, {where}, torch {torch.__version__}")
    rows = bench_captioner(cap, batches=args.batches, beams=args.beams, min_seconds=args.seconds)
    print(format_rows(rows))
    for beam in args.beams:
        by_batch = {r.batch: r.images_per_s for r in rows if r.beam == beam}
        if 1 in by_batch and len(by_batch) > 1:
            top = max(by_batch)
            print(f"beam {beam}: batch {top} = {by_batch[top] / by_batch[1]:.2f}× batch 1")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
