"""``scenecast caption VIDEO -o OUT``: recorded video → WebVTT / SRT / JSON lines (issue 5).

Two ways to caption, one output, byte for byte:

- **In-process** (no Redis URL): the file is read with ``FileReader``, sampled by the
  sampler ``CaptureConfig.sampler()`` builds (frames a fixed-rate sampler skips are only
  grabbed), each sampled frame is JPEG-encoded exactly as capture publishes it
  (``encode_jpeg``, same ``CaptureConfig``), decoded back as the worker does
  (``decode_jpegs`` on the captioner's device) and captioned in batches of ``batch``.
  A reader thread samples and encodes the next frames while a batch is captioned.
- **The worker pool** (``--redis-url``): a ``Capture`` of the file (a file job: nothing
  trimmed or skipped) runs in a thread under a fresh job name ``{stem}-{8 hex}``, the
  live pipeline's workers caption it, and ``captions:{job}`` is read back until every
  published frame has its caption. The model, beam and device are the workers' then.

Why the two agree: both sample with the same code (``stream.capture.capture.sampled_frames`` over a
``FileReader``); in-process, each frame and each caption also makes the round trip
through the Redis entry codecs (``FrameEntry`` / ``CaptionEntry`` encode → bytes as
redis-py stores them → ``decode_frame`` / ``decode_caption``), so media times (to the
µs), scores (6 decimals) and attention (uint8 per map) are rounded by the one codec
either way. Both turn the decoded entries into ``SampleCaption``s with one function,
and the end of the video is noted by the same sampler wrapper that every frame passes
(``_Watch``). What the codecs cannot pin down is the arithmetic: the output equals that
of workers on the same kind of device (CUDA decodes JPEGs with nvJPEG, the CPU with
libjpeg, and the model's kernels differ: a CPU run and a GPU run may word things
differently), and a kernel may round differently for another batch size (the worker
batches as frames arrive), which the 4-decimal scores and uint8 attention absorb in
practice (checked on an H100: batch 1 == batch 16 == a CUDA worker batching 5 at a time).

Output: the format follows ``-o``'s extension (``stream.subtitles.cues``); ``-`` or no ``-o``
is JSON lines on stdout, written only at the end. A file is written to a temporary file
in the same directory, created before any work (an unwritable output fails at once),
and renamed over the target at the end (``os.replace``); on any error it is removed, so
a failed run leaves no partial file and an existing file as it was.

Bad input (missing file, not a video, no frames, undecodable, unknown extension,
unwritable output) raises ``StreamError``: ``scenecast: error: …`` and exit code 2.
Many videos in one run, and the output files: ``stream.subtitles.batch``.

Redis keys of a job: when it ends (or fails) the job leaves ``scenecast:sources`` (so
workers and servers stop polling it), its frame stream is emptied, and its keys expire
after ``JOB_KEYS_TTL_S`` (a viewer can still replay its captions meanwhile).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stream.exceptions import SourceError, StreamError
from stream.protocol import Attention
from stream.sources.read_ahead import read_ahead
from stream.subtitles.cues import SampleCaption, TimedSample, time_samples
from stream.subtitles.progress import Progress, ProgressFn
from worker.bus.outage import REDIS_UNAVAILABLE
from worker.bus.redact import redact_url

if TYPE_CHECKING:
    import redis

    from captioner.api import Captioner
    from captioner.search.hold import ShownCaptions
    from stream.capture.capture import Capture, CaptureConfig
    from stream.capture.sampler import Image, Sampler
    from stream.sources.readers import FileReader
    from stream.sources.spec import SourceSpec
    from worker.bus.entries import CaptionEntry, FrameEntry

log = logging.getLogger("scenecast.caption")


# The service's beam (run, worker, demo, caption): 5, not the API's 3. Consensus
# reranking chooses among the finished beams, and 5 gave it enough to choose from: val
# CIDEr-D 0.505 against 0.461 at beam 3 (captioner/MODEL_CARD.md, step 8) for 10-28 %
# fewer images/s at batch 32 on a CPU (BENCHMARKS.md, "Consensus reranking").
SERVICE_BEAM = 5
JOB_KEYS_TTL_S = 3600  # a finished job's captions stay replayable this long
WAIT_NOTICE_S = 15.0  # no caption and no worker for this long: say so
_READ_BLOCK_MS = 500  # one XREAD; short, so Ctrl-C and a failed capture are noticed
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class _Tracker:
    """Counts for the progress callback, shared by a reader thread and the caller."""

    def __init__(self, progress: ProgressFn | None, frame_count: int | None) -> None:
        self.progress = progress
        self.frame_count = frame_count
        self.frames_read = 0
        self.sampled = 0
        self.captioned = 0
        self._start = time.monotonic()

    def report(self, *, done: bool = False) -> None:
        if self.progress is not None:
            self.progress(
                Progress(
                    frames_read=self.frames_read,
                    frame_count=self.frame_count,
                    sampled=self.sampled,
                    captioned=self.captioned,
                    elapsed_s=time.monotonic() - self._start,
                    done=done,
                )
            )


# -- the video -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    """What opening the file once tells: it is a video with at least one readable frame."""

    spec: SourceSpec
    fps: float  # the container's frame rate (25 when it has none)
    frame_count: int | None  # the container's estimate


def video_spec(path: str | os.PathLike[str]) -> SourceSpec:
    """The ``SourceSpec`` of a video file, or of a recording at a URL
    (``https://host/clip.mp4``: ``probe_video`` refuses a live stream); ``SourceError``
    for anything else."""
    from stream.sources.spec import local_path, parse_source

    text = os.fspath(path)
    if _URL_RE.match(text.strip()):
        return parse_source(text, live=False)
    found = local_path(text)
    if found is None:
        raise SourceError(f"no such file: {text}")
    if not found.is_file():
        raise SourceError(f"not a regular file: {text} (accepted: a video file)")
    target = os.fspath(found)
    if target.isdigit():  # a file named "0", not webcam 0
        target = os.path.join(".", target)
    return parse_source(target, live=False)


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Open the file and read its first frame: fail fast, with a message, on a bad file."""
    import cv2

    from stream.sources.readers import (
        PROBE_TIMEOUT_MS,
        capture_fps,
        grab_first,
        is_recording,
        open_capture,
    )
    from worker.bus.entries import MIN_FRAME_SIDE as MIN_SIDE

    spec = video_spec(path)
    # as run's probe: a silent host is an error in 5 s (it took 11.9 s here, 5.4 s there)
    capture = open_capture(spec, open_timeout_ms=PROBE_TIMEOUT_MS, read_timeout_ms=PROBE_TIMEOUT_MS)
    try:
        if spec.kind != "file" and not is_recording(capture):
            raise SourceError(
                f"{spec.display} is a live stream (its container gives no length): it has "
                "no end to caption; for live captions, scenecast run (accepted here: video "
                "files, and recordings at a URL such as https://host/clip.mp4)"
            )
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        frame_count = int(count) if count > 0 else None
        fps = capture_fps(capture)
        if not grab_first(capture):
            if frame_count:
                why = "a damaged file or an unsupported codec"
                if spec.kind == "http":  # FFmpeg seeks to an MP4's index at its end
                    why += ", or a server that does not answer Range requests"
                raise SourceError(
                    f"{spec.display}: none of its {frame_count} frames could be decoded "
                    f"({why}; accepted: video files OpenCV/FFmpeg can decode, e.g. "
                    "MP4/H.264, MKV, AVI, WebM)"
                )
            raise SourceError(f"{spec.display}: the file has no video frames")
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if 0 < min(width, height) < MIN_SIDE:
            raise SourceError(
                f"{spec.display}: its frames are {width}x{height}, too small to caption "
                f"(accepted: at least {MIN_SIDE}x{MIN_SIDE} pixels)"
            )
    finally:
        capture.release()
    return VideoInfo(spec=spec, fps=fps, frame_count=frame_count)


class _Watch:
    """A sampler that also notes every frame it is shown: how many, and the last times.

    Both ways of captioning put one around the same sampler, so both learn where the
    video ends from the same frames.
    """

    def __init__(self, inner: Sampler, tracker: _Tracker | None = None) -> None:
        self.inner = inner
        self.needs_image = inner.needs_image
        self.tracker = tracker
        self.frames = 0
        self.last_pts: float | None = None
        self.step_ms: float | None = None  # between the last two frames

    def want(self, pts_ms: float, image: Image) -> bool:
        if self.last_pts is not None:
            self.step_ms = pts_ms - self.last_pts
        self.last_pts = pts_ms
        self.frames += 1
        if self.tracker is not None:
            self.tracker.frames_read = self.frames
        return self.inner.want(pts_ms, image)

    def media_end_ms(self, fps: float, frame_count: int | None = None) -> float | None:
        """The last frame's time plus its duration: the step from the frame before, at
        most one frame at the container's ``fps`` (a variable-rate video whose last
        frame came 5 s after the one before ended its cues 5 s past the file), and not
        past the length ``frame_count`` frames at ``fps`` make, where that is after it."""
        if self.last_pts is None:
            return None
        frame_ms = 1000.0 / fps
        step = (
            frame_ms if self.step_ms is None or self.step_ms <= 0 else min(self.step_ms, frame_ms)
        )
        end = self.last_pts + step
        if frame_count:
            length = frame_count * frame_ms
            if length > self.last_pts:
                end = min(end, length)
        return end


def _watched_config(config: CaptureConfig, tracker: _Tracker) -> tuple[CaptureConfig, list[_Watch]]:
    """``config`` whose ``sampler()`` wraps each sampler it builds in a ``_Watch``."""
    from stream.capture.capture import CaptureConfig

    watches: list[_Watch] = []

    @dataclass(frozen=True)
    class Watched(CaptureConfig):
        def sampler(self) -> Sampler:
            watch = _Watch(super().sampler(), tracker)
            watches.append(watch)
            return watch

    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return Watched(**values), watches


@dataclass(frozen=True)
class CaptionedVideo:
    """The captions of a file's sampled frames, and what timing them needs."""

    samples: list[SampleCaption]  # in media order, seq 0, 1, …
    tail_ms: float  # the most the last sample may last (see stream.subtitles.cues)
    media_end_ms: float | None  # where the video ends
    frames_read: int

    def timed(self) -> list[TimedSample]:
        return time_samples(self.samples, tail_ms=self.tail_ms, media_end_ms=self.media_end_ms)


def caption_video(
    path: str | os.PathLike[str],
    *,
    sampling: CaptureConfig | None = None,
    captioner: Captioner | None = None,
    beam: int = SERVICE_BEAM,
    batch: int = 16,
    redis_url: str | None = None,
    progress: ProgressFn | None = None,
) -> CaptionedVideo:
    """Caption the sampled frames of a video file, in-process or through the worker pool.

    ``sampling`` (default ``CaptureConfig()``: 1 frame/s, JPEG 256 px, quality 90) picks and
    encodes the frames. Without ``redis_url``, ``captioner`` captions them here, ``batch``
    at a time, with beam size ``beam``; with it, the live pipeline's workers do (and
    ``captioner``, ``beam`` and ``batch`` are not used). ``progress`` is called with a
    ``Progress`` as the job goes on, and once more with ``done=True`` at its end.
    Raises ``SourceError`` for a file that is not a readable video.
    """
    from stream.capture.capture import CaptureConfig

    sampling = sampling or CaptureConfig()
    if batch < 1 or beam < 1:
        raise ValueError(f"batch and beam must be at least 1, got batch={batch}, beam={beam}")
    info = probe_video(path)
    tracker = _Tracker(progress, info.frame_count)
    config, watches = _watched_config(sampling, tracker)
    if redis_url is None:
        if captioner is None:
            raise ValueError("in-process captioning needs a captioner (or give a redis_url)")
        entries = _caption_here(info, config, captioner, beam=beam, batch=batch, tracker=tracker)
    else:
        entries = _caption_with_workers(info, config, redis_url, tracker=tracker)
    (watch,) = watches
    if not entries:
        raise SourceError(
            f"{info.spec.display}: no frame could be decoded out of {watch.frames} read "
            "(a damaged file or an unsupported codec)"
        )
    media_end_ms = watch.media_end_ms(info.fps, info.frame_count)
    if ends_short(media_end_ms, frame_count=info.frame_count, fps=info.fps):
        log.warning(
            "%s: read %d of the %d frames its container's length makes, up to %.1f s of "
            "%.1f s; the video ends early (its audio may run longer) or the rest could not "
            "be decoded (captions end there)",
            info.spec.display,
            watch.frames,
            info.frame_count,
            (media_end_ms or 0.0) / 1000,
            (info.frame_count or 0) / info.fps,
        )
    tracker.report(done=True)
    tail_ms = sampling.max_interval_s * 1000.0 if sampling.scene_change else sampling.interval_ms
    tail_ms = max(tail_ms, 1000.0 / info.fps)  # a sample lasts a frame at least (--fps 100)
    return CaptionedVideo(
        samples=[sample_caption(entry, seq=i) for i, entry in enumerate(entries)],
        tail_ms=tail_ms,
        media_end_ms=media_end_ms,
        frames_read=watch.frames,
    )


def ends_short(media_end_ms: float | None, *, frame_count: int | None, fps: float) -> bool:
    """Whether the frames read end short of the length the container states (its frame
    count at its rate) by more than a tenth and a second. By time, not by count: a
    variable-rate video (Debian's tree.avi: 68 frames over 29.6 s, a count of 444 at
    15 fps) reads fewer frames than its count and still reaches its end."""
    if not frame_count or media_end_ms is None:
        return False
    length_ms = frame_count * 1000.0 / fps
    return media_end_ms < 0.9 * length_ms - 1000.0


def sample_caption(entry: CaptionEntry, *, seq: int) -> SampleCaption:
    """A caption as read from ``captions:{src}`` → the subtitle writers' ``SampleCaption``."""
    maps = entry.attention_maps()  # (T, h, w) uint8
    attention = None
    if len(maps):
        weights = tuple(tuple(int(x) for x in m.ravel().tolist()) for m in maps)
        attention = Attention(grid=entry.grid, weights=weights, fit=entry.fit or "letterbox")
    return SampleCaption(
        seq=seq,
        pts_ms=entry.pts_ms,
        text=entry.text,
        tokens=tuple(entry.tokens),
        score=entry.score,
        attention=attention,
    )


# -- in-process ----------------------------------------------------------------------------------


def _as_stored(fields: Mapping[str, bytes | str | int | float]) -> dict[bytes, bytes]:
    """An entry's fields as Redis gives them back (redis-py sends numbers as their repr)."""
    out: dict[bytes, bytes] = {}
    for name, value in fields.items():
        if isinstance(value, bytes):
            out[name.encode()] = value
        elif isinstance(value, str):
            out[name.encode()] = value.encode()
        else:
            out[name.encode()] = repr(value).encode()
    return out


def _frame_entries(
    reader: FileReader, sampler: Sampler, config: CaptureConfig, source: str, tracker: _Tracker
) -> Iterator[FrameEntry]:
    """The sampled frames as capture publishes them and a worker reads them."""
    from stream.capture.capture import encode_jpeg, sampled_frames
    from worker.bus.entries import FrameEntry, decode_frame

    for seq, frame in enumerate(sampled_frames(reader, sampler)):
        jpeg, width, height = encode_jpeg(
            frame.image, max_side=config.max_side, quality=config.jpeg_quality
        )
        entry = FrameEntry(
            source=source,
            seq=seq,
            pts_ms=frame.pts_ms,
            capture_ns=frame.wall_ns,
            width=width,
            height=height,
            jpeg=jpeg,
            live=False,
            interval_ms=config.interval_ms,
        )
        tracker.sampled += 1
        yield decode_frame(_as_stored(entry.encode()))


def _caption_entries(
    frames: Sequence[FrameEntry], captioner: Captioner, *, beam: int, shown: ShownCaptions
) -> list[CaptionEntry]:
    """Decode and caption one batch as a worker does; entries as a worker publishes them,
    through the Redis codec. ``shown``: the job's own caption-hold memory."""
    from worker.bus.entries import decode_caption
    from worker.captioning import caption_frames

    entries = caption_frames(frames, captioner, beam=beam, shown=shown)
    if entries is None:
        raise StreamError("a sampled frame could not be decoded back from its JPEG")
    return [decode_caption(_as_stored(entry.encode())) for entry in entries]


def _caption_here(
    info: VideoInfo,
    config: CaptureConfig,
    captioner: Captioner,
    *,
    beam: int,
    batch: int,
    tracker: _Tracker,
) -> list[CaptionEntry]:
    from captioner.search.hold import ShownCaptions
    from stream.sources.readers import FileReader

    # each job holds its own captions: with the captioner's memory, a video of a batch
    # whose name cleans up to an earlier one's ("x y.mp4", "x-y.mp4") began with the
    # earlier video's last caption held (and lost "same file, same bytes")
    shown = ShownCaptions()
    reader = FileReader.open(
        info.spec, open_timeout_ms=config.open_timeout_ms, read_timeout_ms=config.read_timeout_ms
    )
    sampler = config.sampler()
    entries: list[CaptionEntry] = []
    with reader:
        frames = _frame_entries(reader, sampler, config, info.spec.name, tracker)
        with contextlib.closing(read_ahead(frames, size=2 * batch, name="caption-reader")) as ahead:
            pending: list[FrameEntry] = []
            for frame in ahead:
                pending.append(frame)
                if len(pending) == batch:
                    entries += _caption_entries(pending, captioner, beam=beam, shown=shown)
                    pending.clear()
                    tracker.captioned = len(entries)
                tracker.report()
            if pending:
                entries += _caption_entries(pending, captioner, beam=beam, shown=shown)
                tracker.captioned = len(entries)
    return entries


# -- through the worker pool -------------------------------------------------------------------


def job_name(spec: SourceSpec) -> str:
    """A fresh source name for one job: the file's name + 8 random hex digits (≤ 64 chars)."""
    return f"{spec.name[:55]}-{secrets.token_hex(4)}"


def _caption_with_workers(
    info: VideoInfo, config: CaptureConfig, redis_url: str, *, tracker: _Tracker
) -> list[CaptionEntry]:
    import redis

    from stream.capture.capture import Capture
    from stream.embedded_redis import check_redis
    from stream.sources.spec import SourceSpec

    client = check_redis(redis_url)
    spec = SourceSpec("file", info.spec.target, job_name(info.spec), live=False)
    capture = Capture(client, spec, config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            capture.run()
        except BaseException as exc:  # raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"scenecast-capture-{spec.name}", daemon=True)
    try:
        thread.start()
        return _collect(client, capture, thread, failure, tracker)
    except redis.RedisError as exc:
        raise StreamError(f"lost Redis at {redact_url(redis_url)} during the job: {exc}") from exc
    finally:
        capture.stop()
        thread.join(10.0)
        with contextlib.suppress(redis.RedisError):
            _release_job(client, spec.name)
        client.close()


def _collect(
    client: redis.Redis,
    capture: Capture,
    thread: threading.Thread,
    failure: list[BaseException],
    tracker: _Tracker,
) -> list[CaptionEntry]:
    """Read ``captions:{job}`` until every frame the capture published has its caption."""

    from worker.bus.entries import decode_caption
    from worker.bus.keys import as_str, captions_key, deadletter_key

    name = capture.spec.name
    key = captions_key(name)
    received: dict[int, CaptionEntry] = {}
    last_id = "0-0"
    started = time.monotonic()
    noticed = False
    while True:
        if capture.redis_data_lost:
            raise StreamError(
                "Redis restarted without its data during the job, and frames of it went "
                "with it; no output written. Run the job again (a Redis with persistence, "
                "e.g. appendonly yes, keeps jobs through restarts)"
            )
        ended = not thread.is_alive()  # before reading: nothing is published after this
        try:
            reply: Any = client.xread({key: last_id}, count=256, block=_READ_BLOCK_MS)
            dead = client.xlen(deadletter_key(name))
        except REDIS_UNAVAILABLE as exc:
            raise StreamError(f"lost the connection to Redis ({exc}); no output written") from exc
        for _key, entries in reply or []:
            for entry_id, fields in entries:
                last_id = as_str(entry_id)
                caption = decode_caption(fields)
                received.setdefault(caption.seq, caption)  # at-least-once: drop repeats
        if failure:
            raise failure[0]
        tracker.sampled = capture.published
        tracker.captioned = len(received)
        tracker.report()
        if ended and all(seq in received for seq in range(capture.published)):
            return [received[seq] for seq in range(capture.published)]
        if dead:
            raise StreamError(
                f"the workers gave up on {dead} frame(s) of this job (see "
                f"{deadletter_key(name)} in Redis); no output written"
            )
        if not received and not noticed and time.monotonic() - started > WAIT_NOTICE_S:
            noticed = True
            if not _has_consumers(client, name):
                log.warning(
                    "no caption after %.0f s and no worker has read this job's frames: "
                    "is a worker running (`scenecast worker --redis-url URL`)?",
                    WAIT_NOTICE_S,
                )


def _has_consumers(client: redis.Redis, name: str) -> bool:
    import redis

    from worker.bus.keys import GROUP, as_str, frames_key

    try:
        groups: Any = client.xinfo_groups(frames_key(name))
    except redis.ResponseError:  # no stream yet
        return False
    return any(as_str(g["name"]) == GROUP and int(g["consumers"]) > 0 for g in groups)


def _release_job(client: redis.Redis, name: str) -> None:
    """Forget a finished (or failed) job: see the module docstring."""
    from worker.bus.keys import SOURCES_KEY, frames_key, source_keys

    pipe = client.pipeline(transaction=False)
    pipe.hdel(SOURCES_KEY, name)
    pipe.xtrim(frames_key(name), maxlen=0)
    for key in source_keys(name):
        pipe.expire(key, JOB_KEYS_TTL_S)
    pipe.execute()
