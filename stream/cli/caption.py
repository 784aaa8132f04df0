"""``scenecast caption``: its flags, and the one call they make (``caption_files``)."""

from __future__ import annotations

import argparse

from stream.cli.arg_types import beam_size, positive_int
from stream.cli.model import add_ban_words_flag, add_consensus_flag, add_hold_flag, search_overrides
from stream.cli.sampling_flags import add_sampling_flags, sampling_config
from stream.subtitles.batch import CaptionRequest, caption_files
from stream.subtitles.caption import SERVICE_BEAM
from stream.subtitles.outputs import DIR_FORMATS


def add_caption_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``scenecast caption``."""
    p = sub.add_parser(
        "caption",
        help="recorded video → WebVTT / SRT / JSON lines",
        description="Caption a video file's sampled frames and write subtitles (.vtt, .srt) "
        "or one JSON line per sampled frame (.jsonl, or - for stdout). In-process unless a "
        "Redis URL is given; then the live pipeline's workers caption it (with their own "
        "model and beam). The same file and options always give the same bytes.",
    )
    p.add_argument(
        "videos", nargs="+", metavar="VIDEO", help="video files OpenCV/FFmpeg can decode"
    )
    p.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="OUT",
        help="one video's OUT.vtt, OUT.srt or OUT.jsonl (format by extension); "
        "- (default): JSONL on stdout",
    )
    p.add_argument(
        "--output-dir",
        default=None,
        metavar="DIR",
        help="write each video as DIR/STEM.FORMAT (needed for several videos; created)",
    )
    p.add_argument(
        "--format",
        choices=DIR_FORMATS,
        default=None,
        help="the format of --output-dir's files (default: vtt)",
    )
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave a video whose output exists (outputs are only ever written whole, "
        "so this resumes an interrupted batch)",
    )
    add_sampling_flags(p)
    p.add_argument(
        "--beam", type=beam_size, default=None, help=f"beam size (default {SERVICE_BEAM})"
    )
    add_consensus_flag(p)
    add_ban_words_flag(p)
    add_hold_flag(p)
    p.add_argument(
        "--redis-url",
        default=None,
        help="caption on the worker pool of this Redis (env SCENECAST_REDIS_URL); "
        "default: in this process",
    )
    p.add_argument("--checkpoint", default=None, help="captioner checkpoint (default: bundled)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch", type=positive_int, default=None, help="images per batch (16)")
    p.add_argument("--attention", action="store_true", help="JSONL: add each word's attention grid")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_caption)


def cmd_caption(args: argparse.Namespace) -> int:
    not_for_workers = [
        flag
        for flag, value in (
            ("--beam", args.beam),
            ("--consensus-k", args.consensus_k),
            ("--hold", args.hold),
            ("--checkpoint", args.checkpoint),
            ("--device", args.device),
            ("--batch", args.batch),
        )
        if value is not None
    ]
    return caption_files(
        CaptionRequest(
            videos=args.videos,
            sampling=sampling_config(args),
            output=args.output,
            output_dir=args.output_dir,
            fmt=args.format,
            skip_existing=args.skip_existing,
            beam=args.beam,
            search=search_overrides(args) if args.redis_url is None else {},
            redis_url=args.redis_url,
            checkpoint=args.checkpoint,
            device=args.device,
            batch=args.batch,
            attention=args.attention,
            quiet=args.quiet,
            not_for_workers=not_for_workers,
        )
    )
