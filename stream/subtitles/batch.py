"""``scenecast caption`` over many videos: outputs planned first, every bad file refused
before a model loads, one model for all, and each output written whole or not at all.

The command line (``stream.cli.caption``) turns its flags into a :class:`CaptionRequest`
and calls :func:`caption_files`; one video's captions come from
``stream.subtitles.caption.caption_video``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stream.exceptions import StreamError
from stream.subtitles.caption import SERVICE_BEAM, caption_video, probe_video
from stream.subtitles.cues import STDOUT, render
from stream.subtitles.output_file import OutputFile
from stream.subtitles.outputs import Job, plan_outputs
from stream.subtitles.progress import ProgressBar

if TYPE_CHECKING:
    from captioner.api import Captioner
    from stream.capture.capture import CaptureConfig

log = logging.getLogger("scenecast.caption")

DEFAULT_BATCH = 16


@dataclass(frozen=True)
class CaptionRequest:
    """What to caption, where to write it, and how."""

    videos: Sequence[str]
    sampling: CaptureConfig
    output: str | None = None  # one video's OUT.vtt / .srt / .jsonl; None or -: stdout
    output_dir: str | None = None
    fmt: str | None = None  # --output-dir's format
    skip_existing: bool = False
    beam: int | None = None  # None: SERVICE_BEAM
    search: Mapping[str, Any] = field(default_factory=dict)  # Captioner.override()
    redis_url: str | None = None  # caption on that Redis's workers instead of here
    checkpoint: str | None = None
    device: str | None = None
    batch: int | None = None  # None: DEFAULT_BATCH
    attention: bool = False  # JSONL: each word's attention grid
    quiet: bool = False  # no progress bar, no notices
    # options given that workers do not take (their own model and settings), as flags
    not_for_workers: Sequence[str] = ()


def caption_files(request: CaptionRequest) -> int:
    """Caption every video; 0 when every output was written, 2 when some video failed
    (the others' outputs are written), 130 on Ctrl+C. A single video's failure raises
    its ``StreamError``."""
    if not logging.getLogger().handlers:  # warnings as one line each: "scenecast: …"
        logging.basicConfig(level=logging.WARNING, format="scenecast: %(message)s")
    try:
        return _run_caption(request)
    except KeyboardInterrupt:
        print("\nscenecast: interrupted; no output written", file=sys.stderr)
        return 130


def _run_caption(request: CaptionRequest) -> int:
    jobs = plan_outputs(
        list(request.videos), output=request.output, output_dir=request.output_dir, fmt=request.fmt
    )
    sampling = request.sampling
    if sampling.scene_change and sampling.max_interval_s <= 1.0 / sampling.fps:
        raise StreamError(
            f"--max-interval ({sampling.max_interval_s:g} s) must be longer than 1/--fps "
            f"({1.0 / sampling.fps:g} s)"
        )
    if request.redis_url is None:
        from captioner.api import resolve_device

        resolve_device(request.device)  # captioner.DeviceError: exit 2, before any work
    out_dir = request.output_dir
    made = out_dir if out_dir is not None and _make_dir(out_dir) else None
    try:
        return _caption_jobs(request, jobs, sampling)
    finally:  # a run that wrote nothing leaves no empty directory of its own behind
        if made is not None:
            with contextlib.suppress(OSError):
                os.rmdir(made)  # only if empty


def _caption_jobs(request: CaptionRequest, jobs: list[Job], sampling: CaptureConfig) -> int:
    if request.skip_existing:
        done = [job for job in jobs if job.output != STDOUT and os.path.exists(job.output)]
        if done and not request.quiet:
            print(f"scenecast: {len(done)} of {len(jobs)} outputs exist, left as they are "
                  "(--skip-existing)", file=sys.stderr)  # fmt: skip
        jobs = [job for job in jobs if job not in done]
        if not jobs:
            return 0
    first = OutputFile(jobs[0].output)
    first.open()  # an unwritable output fails before any work
    try:
        for job in jobs:  # every bad file fails before a model is loaded
            probe_video(job.video)
        captioner = _captioner_for(request)
    except BaseException:
        first.discard()
        raise
    failed: list[str] = []
    for i, job in enumerate(jobs):
        output = first if i == 0 else OutputFile(job.output)
        if len(jobs) > 1 and not request.quiet:
            print(f"scenecast: [{i + 1}/{len(jobs)}] {job.video} -> {job.output}", file=sys.stderr)
        try:
            if i > 0:
                output.open()
            _caption_job(request, job, output, sampling, captioner)
        except StreamError as exc:
            if len(jobs) == 1:
                raise
            print(f"scenecast: error: {job.video}: {exc}", file=sys.stderr)
            failed.append(job.video)
        except KeyboardInterrupt:
            if len(jobs) == 1:
                raise
            print(f"\nscenecast: interrupted; {i - len(failed)} of {len(jobs)} outputs "
                  f"written, not {job.output}", file=sys.stderr)  # fmt: skip
            return 130
    if failed:
        print(f"scenecast: {len(failed)} of {len(jobs)} videos failed, their outputs not "
              f"written: {', '.join(failed)}", file=sys.stderr)  # fmt: skip
        return 2
    return 0


def _make_dir(path: str) -> bool:
    """Make ``path`` (with its parents) if it is not there; True when it was made."""
    if os.path.isdir(path):
        return False
    try:
        os.makedirs(path)
    except FileExistsError:
        raise StreamError(f"--output-dir {path}: not a directory") from None
    except OSError as exc:
        raise StreamError(f"--output-dir {path}: cannot create it: {exc.strerror}") from None
    return True


def _captioner_for(request: CaptionRequest) -> Captioner | None:
    """The model of an in-process job; None when workers caption (``--redis-url``)."""
    if request.redis_url is None:
        return _load_captioner(request.checkpoint, request.device, request.search)
    ignored = request.not_for_workers
    if ignored and not request.quiet:
        log.warning(
            "with --redis-url the workers caption with their own model and settings; %s not used",
            ", ".join(ignored),
        )
    return None


def _caption_job(
    request: CaptionRequest,
    job: Job,
    output: OutputFile,
    sampling: Any,
    captioner: Captioner | None,
) -> None:
    """Caption one video and write its output whole (or nothing, on any error)."""
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() and not request.quiet else None
    try:
        result = caption_video(
            job.video,
            sampling=sampling,
            captioner=captioner,
            beam=request.beam or SERVICE_BEAM,
            batch=request.batch or DEFAULT_BATCH,
            redis_url=request.redis_url,
            progress=bar,
        )
        if bar is not None:
            bar.close()
        if request.attention and job.format == "jsonl":
            missing = [s.seq for s in result.samples if s.tokens and s.attention is None]
            if missing:
                raise StreamError(
                    f"--attention: the workers sent no attention maps ({len(missing)} "
                    "captions without); run without --attention or with workers that send them"
                )
        output.commit(render(job.format, result.timed(), attention=request.attention))
    except BaseException:
        if bar is not None:
            bar.close()
        output.discard()
        raise


def _load_captioner(
    checkpoint: str | None, device: str | None, search: Mapping[str, Any]
) -> Captioner:
    from captioner.api import Captioner

    cap = Captioner.load(checkpoint, device=device)
    cap.override(search)
    return cap
