"""Sources: parsing, opening, file and live readers (on real small videos), backoff."""

from __future__ import annotations

import itertools
import math
import os
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from stream.capture.sampler import FixedRateSampler
from stream.exceptions import SourceError, SourceLostError, StreamError
from stream.sources.readers import (
    BAD_GRABS_SKIPPED,
    BAD_READS_LOST,
    FileReader,
    LatestFrameReader,
    monotonic_pts,
    open_capture,
)
from stream.sources.spec import SourceSpec, parse_source
from tests.support.videos import make_video
from worker.bus.backoff import backoff_delays
from worker.bus.redact import redact_url

TIMEOUT_FACTOR = float(os.environ.get("SCENECAST_TESTS_TIMEOUT_FACTOR", "1"))

RED, GREEN, BLUE = (0, 0, 200), (0, 200, 0), (200, 0, 0)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s at 10 fps: red, green, blue, one second each."""
    path = tmp_path_factory.mktemp("videos") / "three scenes.mp4"
    return make_video(path, scenes=[(RED, 1.0), (GREEN, 1.0), (BLUE, 1.0)])


@pytest.fixture(scope="module")
def short_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s at 20 fps, for readers paced in real time."""
    path = tmp_path_factory.mktemp("videos") / "short.mp4"
    return make_video(path, scenes=[(RED, 0.5), (GREEN, 0.5)], fps=20)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- parse_source -----------------------------------------------------------------------


def test_webcam_indices() -> None:
    assert parse_source("0") == SourceSpec("webcam", 0, "cam0", True)
    assert parse_source(" 1 ") == SourceSpec("webcam", 1, "cam1", True)
    assert parse_source("2", name="door").name == "door"


def test_rtsp_url_name_is_host_and_path_without_credentials() -> None:
    spec = parse_source("rtsp://admin:s3cret@cam.local:554/live/main?token=abc")
    assert spec.kind == "rtsp" and spec.live
    assert spec.name == "cam.local-live-main"
    assert spec.target == "rtsp://admin:s3cret@cam.local:554/live/main?token=abc"  # to open
    for shown in (spec.display, repr(spec), str(spec)):
        assert "s3cret" not in shown and "abc" not in shown
    assert spec.display == "rtsp://admin:***@cam.local:554/live/main?…"
    assert parse_source("rtsp://cam.local:554/live/main").name == "cam.local-live-main"
    assert parse_source("RTSPS://cam.local/x").kind == "rtsp"


def test_url_name_skips_key_value_path_segments() -> None:
    spec = parse_source("rtsp://10.0.0.5:9111/user=admin&password=pw&channel=1/stream0")
    assert spec.name == "10.0.0.5-stream0"


def test_http_urls() -> None:
    spec = parse_source("https://example.org/streams/lobby%20cam.m3u8")
    assert (spec.kind, spec.name, spec.live) == ("http", "example.org-streams-lobby-cam.m3u8", True)
    recording = parse_source("http://example.org/clip.mp4", live=False)
    assert not recording.live


def test_long_names_are_truncated_but_stay_distinct() -> None:
    a = parse_source("http://example.org/" + "a" * 80 + "/one")
    b = parse_source("http://example.org/" + "a" * 80 + "/two")
    assert len(a.name) <= 64 and len(b.name) <= 64
    assert a.name != b.name


def test_file_source(tmp_path: Path) -> None:
    path = tmp_path / "Café clip (1).mp4"
    path.write_bytes(b"")
    spec = parse_source(str(path))
    assert spec == SourceSpec("file", path, "Cafe-clip-1", False)
    assert parse_source(str(path), live=True, name="demo").live
    assert parse_source(str(path), name="demo").name == "demo"


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 65, "ünï"])
def test_bad_names(name: str) -> None:
    with pytest.raises(SourceError, match=r"invalid source name.*accepted: 1–64 characters"):
        parse_source("0", name=name)


def test_missing_file_says_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as info:
        parse_source("x.mp4")
    assert str(info.value) == (
        "no such file: x.mp4 (accepted: a webcam index like 0, rtsp://…, rtsps://…, "
        "http(s)://…, or a video file path)"
    )
    assert isinstance(info.value, ValueError) and isinstance(info.value, StreamError)
    with pytest.raises(SourceError, match="not a regular file"):
        parse_source(str(tmp_path))


@pytest.mark.parametrize("text", ["ftp://host/x.mp4", "file:///tmp/x.mp4", "udp://1.2.3.4:5"])
def test_unknown_schemes_name_the_accepted_ones(text: str) -> None:
    with pytest.raises(SourceError, match=r"unsupported URL scheme .*rtsp://, rtsps://, http://"):
        parse_source(text)


def test_other_errors() -> None:
    with pytest.raises(SourceError, match="empty source"):
        parse_source("  ")
    with pytest.raises(SourceError, match="no host"):
        parse_source("rtsp:///live")
    with pytest.raises(SourceError, match="always live"):
        parse_source("0", live=False)


def test_redact_url() -> None:
    assert redact_url("http://u:p@h:80/a?b=c") == "http://u:***@h:80/a?…"
    assert redact_url("rtsp://[::1]:554/x") == "rtsp://[::1]:554/x"
    assert redact_url("rtsp://viewer@h/x") == "rtsp://viewer@h/x"
    assert redact_url("clip.mp4") == "clip.mp4"


# --- open_capture -----------------------------------------------------------------------


def test_open_file(video: Path) -> None:
    capture = open_capture(parse_source(str(video)))
    try:
        assert capture.isOpened()
        assert capture.getBackendName() == "FFMPEG"
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(10)
    finally:
        capture.release()


def test_open_failures_hide_credentials_and_default_rtsp_to_tcp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)
    port = free_port()  # nothing listens: refused at once
    with pytest.raises(SourceError, match="could not open rtsp source") as info:
        open_capture(parse_source(f"rtsp://me:hunter2@127.0.0.1:{port}/live"), open_timeout_ms=2000)
    assert "hunter2" not in str(info.value)
    assert os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] == "rtsp_transport;tcp"

    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;udp")
    with pytest.raises(SourceError):
        open_capture(parse_source(f"rtsp://127.0.0.1:{port}/live"), open_timeout_ms=2000)
    assert os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] == "rtsp_transport;udp"  # the user's

    with pytest.raises(SourceError, match="could not open http source"):
        open_capture(parse_source(f"http://127.0.0.1:{port}/x.mp4"), open_timeout_ms=2000)


def test_open_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video")
    with pytest.raises(SourceError, match=r"could not open file source .*notes\.mp4"):
        open_capture(parse_source(str(path)))
    with pytest.raises(ValueError, match="timeouts must be positive"):
        open_capture(parse_source(str(path)), read_timeout_ms=0)


# --- monotonic_pts ----------------------------------------------------------------------


def test_monotonic_pts_uses_the_container_time_when_it_moves_forward() -> None:
    assert monotonic_pts(None, 0.0, 0, 10) == 0.0
    assert monotonic_pts(0.0, 100.0, 1, 10) == 100.0
    assert monotonic_pts(100.0, 350.0, 2, 10) == 350.0  # a real gap is kept


def test_monotonic_pts_repairs_zero_repeated_and_missing_times() -> None:
    assert monotonic_pts(0.0, 0.0, 1, 10) == 100.0  # 0 for a later frame: index / fps
    assert monotonic_pts(200.0, 200.0, 3, 10) == 300.0  # repeated
    assert monotonic_pts(900.0, 500.0, 3, 10) == 1000.0  # estimate behind: one frame on
    assert monotonic_pts(None, math.nan, 4, 10) == 400.0
    assert monotonic_pts(None, -5.0, 0, 10) == 0.0
    assert monotonic_pts(0.0, 0.0, 1, 0.0) == 40.0  # fps unknown: 25
    assert monotonic_pts(0.0, 0.0, 1, math.nan) == 40.0


def test_monotonic_pts_never_decreases_on_garbage() -> None:
    rng = random.Random(0)
    previous: float | None = None
    times = []
    for index in range(500):
        reported = rng.choice([0.0, math.nan, -1.0, rng.uniform(0, 30_000), index * 40.0])
        previous = monotonic_pts(previous, reported, index, 25)
        times.append(previous)
    assert all(b > a for a, b in itertools.pairwise(times))


# --- FileReader -------------------------------------------------------------------------


def test_file_reader_yields_every_frame_with_media_time(video: Path) -> None:
    with FileReader.open(video) as reader:
        assert reader.fps == pytest.approx(10)
        assert reader.frame_count == 30
        frames = list(reader)
    assert [f.index for f in frames] == list(range(30))
    assert [f.pts_ms for f in frames] == pytest.approx([i * 100.0 for i in range(30)], abs=0.5)
    assert all(b.pts_ms > a.pts_ms for a, b in itertools.pairwise(frames))
    assert all(f.image.shape == (90, 160, 3) and f.image.dtype == np.uint8 for f in frames)
    # BGR, and the scenes where make_video put them (corner pixel: off the rectangle)
    assert frames[5].image[-1, -1] == pytest.approx(np.array(RED), abs=12)
    assert frames[15].image[-1, -1] == pytest.approx(np.array(GREEN), abs=12)
    assert frames[25].image[-1, -1] == pytest.approx(np.array(BLUE), abs=12)


class CountingCapture:
    """A real capture that counts retrieve() calls."""

    def __init__(self, capture: cv2.VideoCapture) -> None:
        self.capture = capture
        self.retrieved = 0

    def grab(self) -> bool:
        return self.capture.grab()

    def retrieve(self) -> tuple[bool, Any]:
        self.retrieved += 1
        return self.capture.retrieve()

    def read(self) -> tuple[bool, Any]:
        return self.capture.read()

    def get(self, prop: int, /) -> float:
        return self.capture.get(prop)

    def set(self, prop: int, value: float, /) -> bool:
        return self.capture.set(prop, value)

    def release(self) -> None:
        self.capture.release()


def test_sparse_frames_are_grabbed_not_retrieved(video: Path) -> None:
    capture = CountingCapture(open_capture(parse_source(str(video))))
    seen: list[tuple[int, float]] = []

    def want(index: int, pts_ms: float) -> bool:
        seen.append((index, pts_ms))
        return index % 7 == 0

    with FileReader(capture) as reader:
        frames = list(reader.frames(want))
    assert [f.index for f in frames] == [0, 7, 14, 21, 28]
    assert [f.pts_ms for f in frames] == pytest.approx([0, 700, 1400, 2100, 2800], abs=0.5)
    assert len(seen) == 30 and capture.retrieved == 5


def test_file_reader_with_a_fixed_rate_sampler(video: Path) -> None:
    sampler = FixedRateSampler(fps=2)
    with FileReader.open(str(video)) as reader:
        frames = list(reader.frames(lambda _, pts: sampler.want(pts)))
    assert [f.index for f in frames] == [0, 5, 10, 15, 20, 25]
    assert list(reader) == []  # single pass


class FakeCapture:
    """Frames of a solid grey; ``reports`` gives POS_MSEC per frame (default: 0 always)."""

    def __init__(
        self,
        frames: int,
        *,
        reports: list[float] | None = None,
        fps: float = 0.0,
        fail_with: Exception | None = None,
        block: threading.Event | None = None,
        bad: frozenset[int] = frozenset(),
        count: float = 0.0,
    ) -> None:
        self.frames = frames
        self.count = count  # CAP_PROP_FRAME_COUNT (0: unknown)
        self.bad = bad  # reads that fail (corrupt frames) before the frames run out
        self.reports = reports or [0.0] * frames
        self.fps = fps
        self.fail_with = fail_with
        self.block = block
        self.position = 0
        self.retrieved = 0
        self.released = threading.Event()

    def grab(self) -> bool:
        if self.block is not None and self.position >= self.frames:
            self.block.wait(5.0)  # a stalled network read
        if self.fail_with is not None and self.position >= self.frames:
            raise self.fail_with
        if self.position >= self.frames:
            return False
        self.position += 1
        return self.position - 1 not in self.bad

    def retrieve(self) -> tuple[bool, Any]:
        self.retrieved += 1
        return True, np.full((4, 6, 3), self.position, np.uint8)

    def read(self) -> tuple[bool, Any]:
        return (self.grab(), np.zeros((4, 6, 3), np.uint8))

    def get(self, prop: int, /) -> float:
        if prop == cv2.CAP_PROP_POS_MSEC:
            return self.reports[self.position - 1]
        if prop == cv2.CAP_PROP_FPS:
            return self.fps
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return self.count
        return 0.0

    def set(self, prop: int, value: float, /) -> bool:
        return False

    def release(self) -> None:
        self.released.set()


@pytest.mark.parametrize("count", [12.0, 0.0])  # the container's frame count, or none
def test_a_file_reads_on_past_frames_that_cannot_be_read(count: float) -> None:
    """Damaged packets fail their grab: skipped and counted, not taken for the end of
    the file (which cut its captions off there)."""
    capture = FakeCapture(12, bad=frozenset({3, 4, 9}), count=count, fps=10)
    with FileReader(capture) as reader:
        frames = list(reader)
    assert [f.index for f in frames] == [0, 1, 2, 5, 6, 7, 8, 10, 11]
    assert reader.decode_errors == 3
    # the end: at once past the listed count; else after BAD_GRABS_SKIPPED failures
    assert capture.position == 12


def test_a_long_run_of_failed_grabs_ends_the_file() -> None:
    bad = frozenset(range(5, 5 + BAD_GRABS_SKIPPED + 1))
    with FileReader(FakeCapture(100, bad=bad, count=100, fps=10)) as reader:
        frames = list(reader)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]


def test_a_damaged_packet_in_a_real_file_costs_one_frame(tmp_path: Path) -> None:
    video = make_video(
        tmp_path / "damaged.mp4",
        scenes=[(RED, 2.0), (GREEN, 2.0), (BLUE, 2.0)],
        fps=10,
        noise=8.0,
    )
    data = bytearray(video.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2048] = bytes(2048)  # a damaged stretch of the file
    video.write_bytes(bytes(data))
    with FileReader.open(video) as reader:
        frames = list(reader)
    assert 1 <= reader.decode_errors <= 3
    assert len(frames) == 60 - reader.decode_errors
    assert frames[-1].index == 59  # read to the end
    assert frames[-1].image[-1, -1] == pytest.approx(np.array(BLUE), abs=30)


def test_file_reader_repairs_missing_container_times() -> None:
    reader = FileReader(FakeCapture(5))  # POS_MSEC always 0, fps unknown
    assert reader.frame_count is None
    assert [f.pts_ms for f in reader] == [0.0, 40.0, 80.0, 120.0, 160.0]
    reader = FileReader(FakeCapture(4, reports=[0, 100, 100, 250], fps=10))
    assert [f.pts_ms for f in reader] == [0.0, 100.0, 200.0, 250.0]


def test_file_reader_open_errors() -> None:
    with pytest.raises(SourceError, match="no such file"):
        FileReader.open("missing.mp4")


# --- LatestFrameReader ------------------------------------------------------------------


def test_latest_frame_reader_paces_a_file_like_a_camera(short_video: Path) -> None:
    reader = LatestFrameReader.open(short_video)  # a file: paced at its 20 fps
    try:
        frames = []
        until = time.monotonic() + 0.5
        while time.monotonic() < until:
            frame = reader.latest(timeout=1.0 * TIMEOUT_FACTOR)
            assert frame is not None
            frames.append(frame)
        read = reader.frames_read
    finally:
        reader.close()
    assert not reader.is_alive()
    # paced: about 10 frames in 0.5 s (unpaced, all 20 would be read at once)
    assert 3 <= read <= 14
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices))
    assert all(b.pts_ms > a.pts_ms for a, b in itertools.pairwise(frames))
    assert frames[-1].pts_ms == pytest.approx(500, abs=250 * TIMEOUT_FACTOR)  # live clock
    assert reader.error is None and not reader.failed.is_set()


def test_slow_consumer_gets_the_newest_frame_and_drops_are_counted(short_video: Path) -> None:
    with LatestFrameReader.open(short_video) as reader:
        taken = []
        for _ in range(3):
            time.sleep(0.2)  # ~4 frames arrive meanwhile
            frame = reader.latest(timeout=1.0 * TIMEOUT_FACTOR)
            assert frame is not None
            assert frame.index >= reader.frames_read - 2  # the newest (or one just after)
            taken.append(frame.index)
        assert reader.dropped >= 3
        assert all(b - a >= 2 for a, b in itertools.pairwise(taken))
    assert not reader.is_alive()  # close() joined the thread


def test_file_played_live_ends_or_loops(short_video: Path) -> None:
    reader = LatestFrameReader.open(short_video, pace=False)  # as fast as it decodes
    deadline = time.monotonic() + 2.0 * TIMEOUT_FACTOR
    while not reader.ended and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reader.ended and reader.frames_read == 20
    assert not reader.failed.is_set()
    last = reader.latest(timeout=0.1)
    assert last is not None and last.index == 19  # the newest one
    assert reader.latest(timeout=0.1) is None
    reader.close()

    looped_path = short_video.with_name("tiny.mp4")
    make_video(looped_path, scenes=[(RED, 0.1), (BLUE, 0.1)], fps=20)  # 4 frames, 0.2 s
    with LatestFrameReader.open(looped_path, loop=True) as looped:
        time.sleep(0.5)
        assert looped.frames_read > 4
        assert not looped.ended and looped.error is None


def test_loop_is_for_recordings() -> None:
    with pytest.raises(SourceError, match="loop is for recordings; 0 is a webcam"):
        LatestFrameReader.open("0", loop=True)  # refused before any camera is opened


def test_stall_is_reported() -> None:
    unblock = threading.Event()
    capture = FakeCapture(2, block=unblock)
    reader = LatestFrameReader(capture, name="cam", read_timeout_ms=200)
    try:
        assert reader.latest(timeout=1.0 * TIMEOUT_FACTOR) is not None
        started = time.monotonic()
        assert reader.latest(timeout=3.0 * TIMEOUT_FACTOR) is None
        assert time.monotonic() - started < 1.0 * TIMEOUT_FACTOR  # at the read timeout
        assert reader.failed.is_set()
        assert isinstance(reader.error, SourceLostError)
        assert "source cam: no frame for 0.2 s (stalled)" in str(reader.error)
    finally:
        unblock.set()
        reader.close()
    assert capture.released.wait(1.0 * TIMEOUT_FACTOR)
    assert not reader.is_alive()


@pytest.mark.parametrize(
    ("fail_with", "reason"),
    [(None, "read failed"), (cv2.error("boom"), "read raised error: boom")],
)
def test_read_failure_is_reported(fail_with: Exception | None, reason: str) -> None:
    capture = FakeCapture(3, fail_with=fail_with)
    reader = LatestFrameReader(capture, name="cam")
    assert reader.failed.wait(1.0 * TIMEOUT_FACTOR)
    assert reason in str(reader.error)
    assert not reader.ended
    frame = reader.latest(timeout=0.1)  # the newest frame before the failure is kept
    assert frame is not None and frame.index == 2
    assert reader.latest(timeout=0.1) is None
    reader.close()
    assert capture.released.is_set()


def test_isolated_bad_reads_of_a_live_source_are_skipped() -> None:
    """Corrupt frames fail single reads; only BAD_READS_LOST in a row lose the source."""
    run = range(5, 5 + BAD_READS_LOST - 1)  # one short of lost
    capture = FakeCapture(30, bad=frozenset({2, *run}), block=threading.Event())
    reader = LatestFrameReader(capture, name="cam", read_timeout_ms=300)
    try:
        indices = []
        while (frame := reader.latest(timeout=1.0 * TIMEOUT_FACTOR)) is not None:
            indices.append(frame.index)
            time.sleep(0.001)
        assert reader.bad_reads == 1 + len(run)
        assert reader.frames_read == 30 - reader.bad_reads
        assert indices[-1] == reader.frames_read - 1  # the frames after the bad ones came
        assert "stalled" in str(reader.error)  # at the end of the frames, not before
        assert capture.position == 30
    finally:
        capture.block.set()  # type: ignore[union-attr]
        reader.close()

    capture = FakeCapture(30, bad=frozenset(range(5, 5 + BAD_READS_LOST)))
    reader = LatestFrameReader(capture, name="cam")
    assert reader.failed.wait(1.0 * TIMEOUT_FACTOR)
    assert f"read failed {BAD_READS_LOST} times in a row" in str(reader.error)
    assert capture.position == 5 + BAD_READS_LOST  # lost there, not at the end
    reader.close()


def test_close_is_prompt_while_pacing(short_video: Path) -> None:
    reader = LatestFrameReader(
        open_capture(parse_source(str(short_video))), finite=True, pace_fps=0.5
    )  # sleeps 2 s between frames
    assert reader.latest(timeout=1.0 * TIMEOUT_FACTOR) is not None
    started = time.monotonic()
    reader.close()
    assert time.monotonic() - started < 0.5 * TIMEOUT_FACTOR
    assert not reader.is_alive()
    assert reader.latest(timeout=0.1) is None


def test_frames_not_wanted_are_grabbed_but_never_retrieved() -> None:
    capture = FakeCapture(10)
    asked: list[float] = []

    def want(pts_ms: float) -> bool:
        asked.append(pts_ms)
        return len(asked) % 3 == 1  # frames 0, 3, 6 and 9

    reader = LatestFrameReader(capture, name="cam", finite=True, want=want)
    last = None
    while (frame := reader.latest(timeout=1.0 * TIMEOUT_FACTOR)) is not None:
        last = frame
    assert reader.ended and reader.frames_read == 10
    assert len(asked) == 10 and asked == sorted(asked)  # every frame, in media time
    assert capture.retrieved == 4
    assert last is not None and last.index == 9 and last.pts_ms == asked[9]
    assert int(last.image[0, 0, 0]) == 10  # retrieved after the 10th grab


def test_frames_not_wanted_still_keep_the_source_alive() -> None:
    """A stall is no frame at all, not no frame wanted (a sampler at 1 frame a minute)."""
    capture = FakeCapture(10_000)
    reader = LatestFrameReader(
        capture, name="cam", read_timeout_ms=200, finite=True, pace_fps=100,
        want=lambda _: False,
    )  # fmt: skip
    try:
        assert reader.latest(timeout=0.8) is None
        assert not reader.failed.is_set() and reader.error is None
        assert reader.frames_read > 10 and capture.retrieved == 0
    finally:
        reader.close()


# --- backoff ----------------------------------------------------------------------------


def take(n: int, delays: Any) -> list[float]:
    return [next(delays) for _ in range(n)]


def test_backoff_grows_to_the_cap() -> None:
    assert take(8, backoff_delays(jitter=0.0)) == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert take(4, backoff_delays(base=1, cap=5, factor=3, jitter=0)) == [1, 3, 5, 5]


def test_backoff_jitter_bounds_and_reproducibility() -> None:
    delays = take(200, backoff_delays(jitter=0.2, rng=random.Random(7)))
    assert delays == take(200, backoff_delays(jitter=0.2, rng=random.Random(7)))
    plain = take(200, backoff_delays(jitter=0.0))
    assert all(b >= a for a, b in itertools.pairwise(plain))
    for d, p in zip(delays, plain, strict=True):
        assert 0.8 * p <= d <= min(1.2 * p, 30.0)  # capped: never above 30 s
    assert len({round(d, 6) for d in delays[10:]}) > 50  # jittered at the cap too


@pytest.mark.parametrize(
    "kwargs",
    [{"base": 0}, {"cap": 0.1}, {"factor": 0.5}, {"jitter": 1.0}, {"jitter": -0.1}],
)
def test_backoff_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        next(backoff_delays(**kwargs))


@pytest.mark.parametrize("name", ["2024-05-01T12:30:00.mp4", " spaced.mp4 ", "~home.mp4"])
def test_files_with_odd_names_open_from_their_directory(
    video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A colon (FFmpeg took "2024-05-01T12:" for a protocol), spaces around the name
    (they were stripped, and the file was not found), a leading "~" (expanded: no such
    user, a crash)."""
    (tmp_path / name).write_bytes(video.read_bytes())
    monkeypatch.chdir(tmp_path)
    spec = parse_source(name)
    assert spec.kind == "file"
    with FileReader.open(spec) as reader:
        assert len(list(reader)) == 30
