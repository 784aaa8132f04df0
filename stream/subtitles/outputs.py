"""Where ``scenecast caption`` writes each video's captions: pure, no I/O.

A video is a file or a recording at a URL. One video: ``-o OUT`` (the extension names
the format) or JSON lines on stdout. Several (``caption *.mp4``): ``--output-dir DIR``
and ``--format vtt|srt|jsonl``, each video written as ``DIR/STEM.FORMAT`` — the shape
of other media-to-subtitle tools (Whisper's ``--output_dir``/``--output_format``).
Conflicts (two videos with one stem, an output that is one of the videos) are refused
before any work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath
from urllib.parse import unquote, urlsplit

from stream.exceptions import StreamError
from stream.subtitles.cues import STDOUT, OutputFormat, output_format

DIR_FORMATS: tuple[OutputFormat, ...] = ("vtt", "srt", "jsonl")


@dataclass(frozen=True)
class Job:
    video: str
    output: str  # a path, or "-" for stdout
    format: OutputFormat


def plan_outputs(
    videos: list[str], *, output: str | None, output_dir: str | None, fmt: str | None
) -> list[Job]:
    """One :class:`Job` per video, in the order given."""
    if not videos:
        raise StreamError("no video given")
    if output is not None and output_dir is not None:
        raise StreamError("give -o OUT (one video) or --output-dir DIR, not both")
    if fmt is not None and output_dir is None:
        raise StreamError(
            "--format goes with --output-dir; with -o OUT the extension names the format"
        )
    if output_dir is None:
        if len(videos) > 1:
            raise StreamError(
                f"{len(videos)} videos need --output-dir DIR (each written as "
                "DIR/STEM.vtt, --format srt|jsonl for others); -o names one video's output"
            )
        target = STDOUT if output is None else output
        jobs = [Job(videos[0], target, output_format(target))]
    else:
        if fmt not in (None, *DIR_FORMATS):
            raise StreamError(f"--format {fmt!r}: accepted: {', '.join(DIR_FORMATS)}")
        chosen: OutputFormat = "vtt" if fmt is None else fmt
        jobs = [Job(v, os.path.join(output_dir, f"{_stem(v)}.{chosen}"), chosen) for v in videos]
    _check_distinct(jobs)
    return jobs


def _stem(video: str) -> str:
    """A video's name without its extension: a file's, or a URL path's last part
    (``https://host/talks/clip.mp4?sig=…`` → ``clip``; the host when it has none)."""
    if "://" in video:
        parts = urlsplit(video)  # the path's name as a person reads it: %20 is a space
        return PurePosixPath(unquote(parts.path)).stem or parts.hostname or "video"
    return PurePath(video).stem


def _check_distinct(jobs: list[Job]) -> None:
    by_output: dict[str, str] = {}
    # the files themselves (links, "..", relative or absolute), not their spellings
    videos = {os.path.realpath(j.video) for j in jobs if "://" not in j.video}
    for job in jobs:
        key = os.path.realpath(job.output) if job.output != STDOUT else STDOUT
        if job.output != STDOUT and key in videos:
            raise StreamError(
                f"the output {job.output} is one of the videos: it would be overwritten"
            )
        if key in by_output and job.output != STDOUT:
            other = by_output[key]
            what = (
                "is given twice"
                if os.path.realpath(other) == os.path.realpath(job.video)
                else (f"and {other} would both be written to {job.output}")
            )
            raise StreamError(f"{job.video} {what}; rename one, or caption them apart")
        by_output[key] = job.video
