"""The readers that turn a source (``stream.sources.spec``) into frames.

Reads top to bottom:

- ``open_capture``: the only place that calls ``cv2.VideoCapture`` (FFmpeg backend with
  open/read timeouts for URLs and files, RTSP over TCP, webcams by index).
- ``monotonic_pts``: the timestamp repair rule for files. Pure.
- ``FileReader``: every frame of a file in order with container media time; frames a
  sampler does not want are only grabbed, not retrieved.
- ``LatestFrameReader``: for live sources, a reader thread keeps only the newest frame
  (a one-slot buffer; overwritten frames are counted), media time is the monotonic
  clock since capture start, and a stall or read failure is reported so the capture
  loop can reconnect; frames a sampler does not want are only grabbed there too. A
  file can be played as a camera (paced at its frame rate, looped).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import cv2
import numpy as np
import numpy.typing as npt

from stream.exceptions import SourceError, SourceLostError
from stream.sources.spec import SourceSpec, parse_source

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]  # (H, W, 3) BGR, as OpenCV decodes

DEFAULT_FPS = 25.0  # when a container does not say its frame rate
OPEN_TIMEOUT_MS = 10_000
READ_TIMEOUT_MS = 5_000
# checking a source before a command starts: a host that takes the connection and says
# nothing is an error after this, not after the reader's own timeouts added up
PROBE_TIMEOUT_MS = 5_000
# A live source is lost after this many failed reads in a row. One corrupt frame (a
# camera on a flaky link sends a broken JPEG part or packet) fails one read and the
# next reads go on; a closed stream fails every read at once, so this costs no time.
BAD_READS_LOST = 10
# a file's failed grabs in a row (damaged packets) skipped before it counts as ended
BAD_GRABS_SKIPPED = 25

_FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


# --- opening ----------------------------------------------------------------------------


def open_capture(
    spec: SourceSpec,
    *,
    open_timeout_ms: int = OPEN_TIMEOUT_MS,
    read_timeout_ms: int = READ_TIMEOUT_MS,
) -> cv2.VideoCapture:
    """Open ``spec`` with OpenCV; ``SourceError`` if it does not open.

    URLs and files use the FFmpeg backend with open/read timeouts (so a dead stream
    cannot block a read forever); RTSP goes over TCP unless the user set
    ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` themselves; webcams use the default backend.
    """
    if open_timeout_ms <= 0 or read_timeout_ms <= 0:
        raise ValueError(
            f"timeouts must be positive milliseconds, got open={open_timeout_ms}, "
            f"read={read_timeout_ms}"
        )
    if isinstance(spec.target, int):
        capture = cv2.VideoCapture(spec.target, cv2.CAP_ANY)
    else:
        if spec.kind == "rtsp":
            # Read by OpenCV's FFmpeg backend at open time; UDP loses packets (grey smears).
            os.environ.setdefault(_FFMPEG_OPTIONS_ENV, "rtsp_transport;tcp")
        # FFmpeg's own messages ("moov atom not found") and OpenCV's warnings about them
        # ("backend is generally available but can't be used to capture by name", at
        # every reconnect) would precede our clear error; a user can still ask for them
        # by setting the variables.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        if "OPENCV_LOG_LEVEL" not in os.environ:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(open_timeout_ms),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(read_timeout_ms),
        ]
        # a file by its absolute path: FFmpeg reads "2024-05-01T12:30.mp4" as a
        # protocol name ("2024-05-01T12") followed by a colon
        target = spec.target.absolute() if isinstance(spec.target, Path) else spec.target
        capture = cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"could not open {spec.kind} source {spec.display}: {_why(spec)}")
    return capture


def _why(spec: SourceSpec) -> str:
    if spec.kind == "file":
        return "not a video OpenCV's FFmpeg backend can decode"
    if spec.kind == "webcam":
        return "no camera at that index, or it is busy or not permitted"
    return "unreachable, refused, not a video stream, or no answer within the open timeout"


# --- frames and media time --------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame: ``index`` counts frames read from the source (0-based),
    ``pts_ms`` is media time, ``wall_ns`` the UTC wall clock when it was read."""

    index: int
    pts_ms: float
    image: Image  # (H, W, 3) uint8 BGR
    wall_ns: int = field(default_factory=time.time_ns)


def monotonic_pts(previous: float | None, reported: float, index: int, fps: float) -> float:
    """Media time (ms) of frame ``index`` given the container's ``reported`` time.

    The container's time is used when it moves forward. When it is missing (NaN,
    negative), or for a later frame 0 or not after ``previous`` (broken or absent
    timestamps), the time is estimated as ``index × 1000 / fps`` (``fps`` 25 when
    unknown), and if even that is not after ``previous``, one frame interval after it:
    times never decrease, and frames after the first strictly increase.
    """
    rate = fps if math.isfinite(fps) and fps > 0 else DEFAULT_FPS
    step = 1000.0 / rate
    estimate = index * step
    valid = math.isfinite(reported) and reported >= 0
    if previous is None:
        return reported if valid else estimate
    if valid and reported > previous:
        return reported
    return estimate if estimate > previous else previous + step


class VideoSource(Protocol):
    """What the readers need of a capture; ``cv2.VideoCapture`` is one (tests use fakes)."""

    def grab(self) -> bool: ...
    def retrieve(self) -> tuple[bool, Any]: ...
    def read(self) -> tuple[bool, Any]: ...
    def get(self, prop: int, /) -> float: ...
    def set(self, prop: int, value: float, /) -> bool: ...
    def release(self) -> None: ...


def capture_fps(capture: VideoSource) -> float:
    """The frame rate the container reports, or 25 when it reports none."""
    fps = capture.get(cv2.CAP_PROP_FPS)
    return fps if math.isfinite(fps) and 0 < fps <= 1000 else DEFAULT_FPS


def is_recording(capture: VideoSource) -> bool:
    """Whether an open source knows how many frames it has: a recording (a file, or a
    clip served over HTTP), not a stream. Streams report no count: MJPEG over HTTP and
    RTSP give negative or absurd values, webcams -1 or 0."""
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    return math.isfinite(count) and 0 < count < 2**31


def grab_first(capture: VideoSource) -> bool:
    """Grab a first frame as ``FileReader`` would read on: past up to
    ``BAD_GRABS_SKIPPED`` damaged ones (a file whose first keyframe is damaged decodes
    from the next one; one failed grab refused it as undecodable)."""
    return any(capture.grab() for _ in range(BAD_GRABS_SKIPPED + 1))  # stops at the first


def _as_spec(source: SourceSpec | str | os.PathLike[str]) -> SourceSpec:
    if isinstance(source, SourceSpec):
        return source
    if isinstance(source, str):
        return parse_source(source)
    return parse_source(os.path.join(".", os.fspath(source)))  # a Path is never a webcam


def _as_image(image: Any) -> Image:
    return np.asarray(image, dtype=np.uint8)


# --- files: every frame, in order -------------------------------------------------------


class FileReader:
    """Every frame of a recording, in order, with the container's media time.

    Single pass: iterate once (``for frame in reader`` or ``reader.frames(want)``).
    ``frames(want)`` asks ``want(index, pts_ms)`` before converting into an image:
    unwanted frames are only ``grab()``bed. FFmpeg still decodes a grabbed frame (later
    frames depend on it); what is skipped is the conversion to BGR and the copy into
    a new array (about 20 % of the per-frame cost measured on a 720p MPEG-4 file).
    """

    def __init__(self, capture: VideoSource, *, fps: float | None = None) -> None:
        self._capture: VideoSource | None = capture
        self.fps = fps if fps is not None else capture_fps(capture)
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        # An estimate from the container (for progress bars); None when unknown.
        self.frame_count: int | None = int(count) if math.isfinite(count) and count > 0 else None
        self.decode_errors = 0  # frames grabbed but not retrievable: skipped, counted
        self._next_index = 0
        self._previous_pts: float | None = None

    @classmethod
    def open(
        cls,
        source: SourceSpec | str | os.PathLike[str],
        *,
        open_timeout_ms: int = OPEN_TIMEOUT_MS,
        read_timeout_ms: int = READ_TIMEOUT_MS,
    ) -> FileReader:
        spec = _as_spec(source)
        capture = open_capture(
            spec, open_timeout_ms=open_timeout_ms, read_timeout_ms=read_timeout_ms
        )
        return cls(capture)

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self, want: Callable[[int, float], bool] | None = None) -> Iterator[Frame]:
        """Frames in order; with ``want``, only those for which ``want(index, pts_ms)``.

        A frame that cannot be read (a damaged packet) is skipped and counted, and the
        frames after it are read: only ``BAD_GRABS_SKIPPED`` failures in a row (for
        ``READ_TIMEOUT_MS`` at most), or one past the container's frame count, end
        the file. Stopping at the first one cut a file's captions off there."""
        failed, failing_since = 0, 0.0
        while self._capture is not None:
            if not self._capture.grab():
                failed += 1
                failing_since = failing_since or time.monotonic()
                if not self._may_read_on(failed, time.monotonic() - failing_since):
                    self.close()  # end of file (or unreadable from here on)
                    return
                continue
            if failed:
                log.warning(
                    "%d frame(s) after frame %d could not be read; skipped",
                    failed,
                    self._next_index - 1,
                )
                self.decode_errors += failed
                self._next_index += failed  # each failed grab was a frame of the file
                failed, failing_since = 0, 0.0
            index = self._next_index
            self._next_index += 1
            reported = self._capture.get(cv2.CAP_PROP_POS_MSEC)
            pts = monotonic_pts(self._previous_pts, reported, index, self.fps)
            self._previous_pts = pts
            if want is not None and not want(index, pts):
                continue
            ok, image = self._capture.retrieve()
            if not ok or image is None:
                self.decode_errors += 1
                log.warning("frame %d (%.0f ms) could not be decoded; skipped", index, pts)
                continue
            yield Frame(index=index, pts_ms=pts, image=_as_image(image))

    def _may_read_on(self, failed: int, failing_s: float) -> bool:
        """Whether frames may follow ``failed`` failed grabs in a row."""
        if self.frame_count is not None and self._next_index + failed > self.frame_count:
            return False  # past the last frame the container lists: the end
        return failed <= BAD_GRABS_SKIPPED and failing_s * 1000 < READ_TIMEOUT_MS

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- live: the newest frame only ----------------------------------------------------------


class LatestFrameReader:
    """A daemon thread reads the source as fast as it delivers; ``latest()`` gets the newest.

    The buffer holds one frame: a frame not taken before the next one arrives is
    overwritten and counted in ``dropped`` (captions describe *now*, and a slow
    consumer never makes OpenCV's internal buffer, or ours, grow). Media time is the
    monotonic clock since ``clock_start`` (a ``time.monotonic()`` value: the capture
    loop's start, so media time goes on across reconnects; by default this reader's
    start).

    The thread owns the capture and releases it when it stops. It stops on ``close()``,
    at the end of a finite source (``ended``), or on failure: ``BAD_READS_LOST`` failed
    reads in a row (fewer are frames skipped: a corrupt frame is not a lost camera;
    all are counted in ``bad_reads``), an error from OpenCV, or no frame for ``read_timeout_ms`` (a
    stall, noticed by ``latest()``).
    Failure sets ``failed`` and ``error``; the capture loop then opens a new reader
    after a ``worker.bus.backoff.backoff_delays`` delay.

    ``pace_fps`` sleeps so frames come at that rate (a file played as a camera);
    ``loop`` rewinds a finite source at its end instead of ending. ``want``, called in
    the thread with each frame's media time, picks the frames worth handing over
    (a sampler that needs no pixels): the others are only grabbed, not retrieved —
    FFmpeg still decodes them, but the conversion to BGR, ~3× the decode for 1080p,
    is skipped.
    """

    def __init__(
        self,
        capture: VideoSource,
        *,
        name: str = "source",
        read_timeout_ms: int = READ_TIMEOUT_MS,
        finite: bool = False,
        pace_fps: float | None = None,
        loop: bool = False,
        want: Callable[[float], bool] | None = None,
        clock_start: float | None = None,
    ) -> None:
        if read_timeout_ms <= 0:
            raise ValueError(f"read_timeout_ms must be positive, got {read_timeout_ms}")
        if pace_fps is not None and not (math.isfinite(pace_fps) and pace_fps > 0):
            raise ValueError(f"pace_fps must be a positive frame rate, got {pace_fps}")
        self.name = name
        self.failed = threading.Event()
        self._capture = capture
        # A paced slow file must not look stalled between two of its frames.
        self._read_timeout_s = max(read_timeout_ms / 1000.0, 2.0 / (pace_fps or math.inf))
        self._finite = finite
        self._pace_fps = pace_fps
        self._loop = loop
        self._want = want
        self._cond = threading.Condition()
        self._slot: Frame | None = None  # the newest frame not yet returned
        self._dropped = 0
        self._frames_read = 0
        self._bad_reads = 0
        self._error: SourceLostError | None = None
        self._ended = False
        self._done = False  # the thread produces no more frames
        self._stop = threading.Event()
        self._last_frame_at = time.monotonic()
        self._start = self._last_frame_at if clock_start is None else clock_start
        self._thread = threading.Thread(target=self._run, name=f"reader-{name}", daemon=True)
        self._thread.start()

    @classmethod
    def open(
        cls,
        source: SourceSpec | str | os.PathLike[str],
        *,
        open_timeout_ms: int = OPEN_TIMEOUT_MS,
        read_timeout_ms: int = READ_TIMEOUT_MS,
        pace: bool | None = None,
        loop: bool = False,
        want: Callable[[float], bool] | None = None,
        clock_start: float | None = None,
    ) -> LatestFrameReader:
        """Open and start reading. A recording (a file, or a clip at a URL: see
        ``is_recording``) is paced at its frame rate unless ``pace=False``, and ends."""
        spec = _as_spec(source)
        if loop and spec.kind == "webcam":
            raise SourceError(f"loop is for recordings; {spec.display} is a webcam")
        capture = open_capture(
            spec, open_timeout_ms=open_timeout_ms, read_timeout_ms=read_timeout_ms
        )
        finite = spec.kind == "file" or is_recording(capture)
        if loop and not finite:
            capture.release()
            raise SourceError(
                f"loop is for recordings (video files, clips at a URL); {spec.display} is "
                f"a live {spec.kind} stream"
            )
        paced = finite if pace is None else pace
        return cls(
            capture,
            name=spec.name,
            read_timeout_ms=read_timeout_ms,
            finite=finite,
            pace_fps=capture_fps(capture) if paced else None,
            loop=loop,
            want=want,
            clock_start=clock_start,
        )

    # -- the consumer's side

    def latest(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet returned, waiting up to ``timeout`` s for one.

        None when none came in time, or when the reader is done (closed, ``ended``, or
        ``failed``: check those). Waiting past the read timeout marks a stall.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._slot is None and not self._done:
                now = time.monotonic()
                stall_at = self._last_frame_at + self._read_timeout_s
                if now >= stall_at:
                    self._fail_locked(f"no frame for {self._read_timeout_s:g} s (stalled)")
                    break
                wait = stall_at - now
                if deadline is not None:
                    if now >= deadline:
                        break
                    wait = min(wait, deadline - now)
                self._cond.wait(wait)
            frame, self._slot = self._slot, None
            return frame

    @property
    def dropped(self) -> int:
        """Frames overwritten before anyone took them."""
        with self._cond:
            return self._dropped

    @property
    def bad_reads(self) -> int:
        """Failed reads of a live source: corrupt frames, and the reads that lost it."""
        with self._cond:
            return self._bad_reads

    @property
    def frames_read(self) -> int:
        with self._cond:
            return self._frames_read

    @property
    def error(self) -> SourceLostError | None:
        with self._cond:
            return self._error

    @property
    def ended(self) -> bool:
        """A finite source (a file played live without ``loop``) reached its end."""
        with self._cond:
            return self._ended

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread and wait up to ``timeout`` s for it (it releases the capture).

        A thread stuck inside OpenCV's ``read()`` is left to finish on its own (OpenCV's
        read timeout bounds it); releasing the capture under it could crash.
        """
        self._stop.set()
        with self._cond:
            self._done = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("reader %s still in read() after %.1f s; left to exit", self.name, timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the reader thread

    def _run(self) -> None:
        interval = None if self._pace_fps is None else 1.0 / self._pace_fps
        next_due = time.monotonic()
        bad_in_a_row = 0
        try:
            while not self._stop.is_set():
                ok, image = self._capture.grab(), None
                if self._stop.is_set():
                    break
                pts_ms = self._arrived() if ok else 0.0
                if ok and (self._want is None or self._want(pts_ms)):
                    ok, image = self._capture.retrieve()
                    ok = ok and image is not None
                    if ok:
                        self._publish(_as_image(image), pts_ms)
                if not ok:
                    if self._finite and self._loop and self._rewind():
                        continue
                    if self._finite:
                        self._end()
                        break
                    bad_in_a_row += 1
                    with self._cond:
                        self._bad_reads += 1
                    if bad_in_a_row >= BAD_READS_LOST:
                        self._fail(
                            f"read failed {bad_in_a_row} times in a row "
                            "(stream closed or timed out)"
                        )
                        break
                    continue
                bad_in_a_row = 0
                if interval is not None:
                    next_due = max(next_due + interval, time.monotonic() - 1.0)  # ≤ 1 s catch-up
                    self._stop.wait(max(0.0, next_due - time.monotonic()))
        except Exception as exc:  # cv2.error and friends: report, never kill silently
            self._fail(f"read raised {type(exc).__name__}: {exc}")
        finally:
            self._capture.release()
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _arrived(self) -> float:
        """A frame was grabbed (the source is alive): count it; its media time."""
        now = time.monotonic()
        with self._cond:
            self._frames_read += 1
            self._last_frame_at = now
        return (now - self._start) * 1000.0

    def _publish(self, image: Image, pts_ms: float) -> None:
        with self._cond:
            if self._slot is not None:
                self._dropped += 1
            self._slot = Frame(index=self._frames_read - 1, pts_ms=pts_ms, image=image)
            self._cond.notify_all()

    def _rewind(self) -> bool:
        return bool(self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0))

    def _end(self) -> None:
        with self._cond:
            self._ended = True
            self._done = True
            self._cond.notify_all()

    def _fail(self, reason: str) -> None:
        with self._cond:
            self._fail_locked(reason)

    def _fail_locked(self, reason: str) -> None:
        if self._error is None:
            self._error = SourceLostError(f"source {self.name}: {reason}")
            log.warning("%s", self._error)
        self._done = True
        self._stop.set()
        self.failed.set()
        self._cond.notify_all()
