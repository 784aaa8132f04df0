"""The sampling flags that ``run``, ``capture`` and ``caption`` share, and the
``CaptureConfig`` they make. Light to import: the CLI builds its parser with it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from stream.cli.arg_types import interval_s, sample_rate
from stream.exceptions import StreamError

if TYPE_CHECKING:
    from stream.capture.capture import CaptureConfig


def add_sampling_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fps", type=sample_rate, default=1.0, help="samples per second (default 1)")
    p.add_argument(
        "--scene-change",
        action="store_true",
        help="sample when the picture changes (at most --fps, at least every --max-interval "
        "seconds) instead of at a fixed rate",
    )
    p.add_argument(
        "--max-interval",
        type=interval_s,
        default=None,
        metavar="SECONDS",
        help="with --scene-change: sample at least this often, changed or not (default 10)",
    )


def sampling_config(args: argparse.Namespace, **more: Any) -> CaptureConfig:
    """The ``CaptureConfig`` of the sampling flags (and ``more`` fields), or a clear error."""
    from stream.capture.capture import CaptureConfig

    if args.max_interval is not None and not args.scene_change:
        raise StreamError(  # it was silently ignored
            f"--max-interval {args.max_interval:g} goes with --scene-change (a fixed rate "
            "samples every 1/--fps seconds)"
        )
    max_interval = 10.0 if args.max_interval is None else args.max_interval
    try:
        return CaptureConfig(
            fps=args.fps, scene_change=args.scene_change, max_interval_s=max_interval, **more
        )
    except ValueError as exc:
        raise StreamError(f"{exc} (accepted: --fps > 0, e.g. 1 or 0.5)") from None
