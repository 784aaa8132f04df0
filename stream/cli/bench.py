"""``scenecast bench``: the benchmarks' subcommands (figures go to docs/benchmarks.md): their
flags; each runs one function of ``stream.bench``."""

from __future__ import annotations

import argparse
from pathlib import Path

from stream.cli.arg_types import (
    beam_size,
    positive_float,
    positive_int,
)
from stream.cli.model import add_hold_flag, search_overrides
from stream.cli.service import choice_argv
from stream.server.server import COMPRESSION
from worker.decode import DECODE_ON


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


def add_bench_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", help="benchmarks (figures go to BENCHMARKS.md)")
    what = bench.add_subparsers(dest="target", required=True, metavar="TARGET")
    bc = what.add_parser("captioner", help="images/s for batch × beam, end to end from uint8")
    bc.add_argument("--checkpoint", default=None, help="default: the bundled model")
    bc.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    bc.add_argument("--batches", type=_int_list, default=[1, 8, 32])
    bc.add_argument("--beams", type=_int_list, default=[1, 3])
    bc.add_argument("--seconds", type=positive_float, default=3.0, help="minimum time per setting")
    bc.set_defaults(func=cmd_bench_captioner)
    bp = what.add_parser("pipeline", help="file-job captions/s and live latency through Redis")
    bp.add_argument("--checkpoint", default=None, help="default: the bundled model")
    bp.add_argument("--device", default=None)
    bp.add_argument("--batch", type=positive_int, default=32)
    bp.add_argument("--beam", type=beam_size, default=3)
    bp.add_argument("--frames", type=positive_int, default=192, help="frames in the file job")
    bp.add_argument("--live-seconds", type=positive_float, default=30.0)
    bp.add_argument("--rounds", type=positive_int, default=3, help="file-job rounds (median)")
    add_hold_flag(bp)
    bp.add_argument(
        "--model-process",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="start the worker with --model-process (default: off, as the worker)",
    )
    bp.add_argument(
        "--decode",
        choices=DECODE_ON,
        default="device",
        help="start the worker with this --decode (default: device, as the worker)",
    )
    bp.add_argument(
        "--stand-in-ms",
        type=positive_float,
        default=None,
        metavar="MS",
        help="file job only, the model replaced by a stand-in taking MS per batch: "
        "the pipeline's own ceiling for a model of that speed",
    )
    bp.set_defaults(func=cmd_bench_pipeline)
    bs = what.add_parser("server", help="websocket fan-out: clients one server process feeds")
    bs.add_argument("--clients", type=_int_list, default=[1, 10, 100, 300])
    bs.add_argument("--rate", type=positive_float, default=30.0, help="captions/s published")
    bs.add_argument("--sources", type=positive_int, default=4)
    bs.add_argument("--seconds", type=positive_float, default=10.0, help="per row")
    bs.add_argument("--compression", choices=COMPRESSION, default="none")
    bs.set_defaults(func=cmd_bench_server)
    bcap = what.add_parser("caption", help="realtime factor of `scenecast caption` on a long video")
    bcap.add_argument("--checkpoint", default=None, help="default: the bundled model")
    bcap.add_argument("--device", default=None)
    bcap.add_argument("--minutes", type=positive_float, default=10.0)
    bcap.add_argument("--beam", type=beam_size, default=3)
    bcap.add_argument("--batch", type=positive_int, default=16)
    add_hold_flag(bcap)
    bcap.add_argument(
        "--workers", type=positive_int, default=2, help="worker processes for --redis-url"
    )
    bcap.add_argument(
        "--video",
        type=Path,
        default=None,
        help="use this video (its length must match --minutes) instead of making one",
    )
    bcap.set_defaults(func=cmd_bench_caption)


def cmd_bench_server(args: argparse.Namespace) -> int:
    from stream.bench.server import report_server

    report_server(
        clients=args.clients,
        rate=args.rate,
        sources=args.sources,
        seconds=args.seconds,
        compression=args.compression,
    )
    return 0


def cmd_bench_captioner(args: argparse.Namespace) -> int:
    from stream.bench.captioner import report_captioner

    report_captioner(
        args.checkpoint,
        device=args.device,
        batches=args.batches,
        beams=args.beams,
        seconds=args.seconds,
    )
    return 0


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    if args.stand_in_ms is not None:
        from stream.bench.stand_in import report_stand_in

        report_stand_in(
            ms=args.stand_in_ms, batch=args.batch, frames=args.frames, rounds=args.rounds
        )
        return 0
    from stream.bench.pipeline import report_pipeline

    worker_args = ["--model-process"] if args.model_process else []
    worker_args += ["--decode", args.decode, *choice_argv(args)]
    report_pipeline(
        args.checkpoint,
        device=args.device,
        search=search_overrides(args),
        batch=args.batch,
        beam=args.beam,
        frames=args.frames,
        seconds=args.live_seconds,
        rounds=args.rounds,
        worker_args=worker_args,
    )
    return 0


def cmd_bench_caption(args: argparse.Namespace) -> int:
    from stream.bench.caption import report_caption

    report_caption(
        args.checkpoint,
        device=args.device,
        search=search_overrides(args),
        minutes=args.minutes,
        beam=args.beam,
        batch=args.batch,
        workers=args.workers,
        video=args.video,
        worker_args=choice_argv(args),
    )
    return 0
