"""``scenecast caption``: a generated video with known scene cuts → WebVTT / SRT / JSONL.

In-process runs call ``stream.cli.main.main`` with the tiny captioner (patched in for the
model load, which is what takes seconds); the worker-pool runs use a private
redis-server and an in-thread ``Worker`` with the same captioner; a few subprocess runs
check real exit codes and the real checkpoint load.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis
import srt

from captioner.exceptions import CaptionerError
from stream.capture.capture import CaptureConfig
from stream.subtitles.caption import (
    JOB_KEYS_TTL_S,
    caption_video,
    job_name,
    video_spec,
)
from stream.subtitles.progress import Progress, ProgressBar, format_progress
from tests.conftest import TIMEOUT_FACTOR
from tests.support.caption_cli import run, vtt_cues
from tests.support.factories import save_tiny_checkpoint
from tests.support.videos import make_video
from worker.batching import BatchPolicy
from worker.bus.keys import (
    SOURCES_KEY,
    captions_key,
    capture_key,
    frames_key,
    owner_key,
    status_key,
)
from worker.worker import Worker, WorkerConfig

pytestmark = pytest.mark.usefixtures("tiny_model")  # tests/stream/subtitles/conftest.py

T = 60.0 * TIMEOUT_FACTOR
SCENES = [((0, 0, 200), 2.0), ((0, 200, 0), 2.0), ((200, 0, 0), 2.0)]  # BGR, seconds
CUTS_MS = [0, 2000, 4000]
END_MS = 6000


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "scenes.mp4", scenes=SCENES, fps=10)


def srt_cues(path: Path) -> list[tuple[float, float, str]]:
    ms = dt.timedelta(milliseconds=1)
    return [(s.start / ms, s.end / ms, s.content) for s in srt.parse(path.read_text())]


def assert_cues_on_the_cuts(cues: list[tuple[float, float, str]], tolerance_ms: float) -> None:
    assert len(cues) == len(CUTS_MS), cues
    for (start, end, text), cut, next_cut in zip(
        cues, CUTS_MS, [*CUTS_MS[1:], END_MS], strict=True
    ):
        assert abs(start - cut) <= tolerance_ms, cues
        assert abs(end - next_cut) <= tolerance_ms, cues
        assert text
    assert len({text for _, _, text in cues}) == len(cues)  # each scene described differently


# -- output -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "tolerance_ms"),
    [(["--fps", "1"], 1000.0), (["--scene-change", "--fps", "5", "--max-interval", "30"], 200.0)],
)
@pytest.mark.integration
def test_subtitles_parse_and_cues_land_on_the_scene_cuts(
    capsys: pytest.CaptureFixture[str],
    video: Path,
    tmp_path: Path,
    mode: list[str],
    tolerance_ms: float,
) -> None:
    vtt, srt_path = tmp_path / "out.vtt", tmp_path / "out.srt"
    for out in (vtt, srt_path):
        code, stdout, err = run(capsys, video, "-o", out, "--beam", "1", *mode)
        assert code == 0, err
        assert stdout == "" and err == ""  # no progress bar: stderr is not a terminal
    assert vtt.read_text().startswith("WEBVTT\n\n")
    assert_cues_on_the_cuts(vtt_cues(vtt), tolerance_ms)
    assert_cues_on_the_cuts(srt_cues(srt_path), tolerance_ms)
    assert [c[2] for c in vtt_cues(vtt)] == [c[2] for c in srt_cues(srt_path)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.srt", "out.vtt"]  # no temp files


def test_jsonl_on_stdout_one_line_per_sample(
    capsys: pytest.CaptureFixture[str], video: Path, tmp_path: Path
) -> None:
    code, default, _ = run(capsys, video, "--beam", "1")
    assert code == 0
    code, dash, _ = run(capsys, video, "-o", "-", "--beam", "1")
    assert code == 0
    code, _, _ = run(capsys, video, "-o", tmp_path / "out.jsonl", "--beam", "1")
    assert code == 0
    assert default == dash == (tmp_path / "out.jsonl").read_text()
    records = [json.loads(line) for line in default.splitlines()]
    assert [r["seq"] for r in records] == list(range(6))
    assert [r["t_start_ms"] for r in records] == [0, 1000, 2000, 3000, 4000, 5000]
    assert [r["t_end_ms"] for r in records] == [1000, 2000, 3000, 4000, 5000, 6000]
    assert [r["segment_id"] for r in records] == [0, 0, 1, 1, 2, 2]
    assert [r["is_final"] for r in records] == [False, True] * 3
    assert list(records[0]) == [
        "seq",
        "t_start_ms",
        "t_end_ms",
        "text",
        "tokens",
        "score",
        "segment_id",
        "is_final",
    ]
    assert all(r["text"] == " ".join(r["tokens"]) for r in records)


def test_the_same_file_and_options_give_the_same_bytes(
    capsys: pytest.CaptureFixture[str], video: Path, tmp_path: Path
) -> None:
    outs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for out in outs:
        assert run(capsys, video, "-o", out, "--attention", "--batch", "4")[0] == 0
    first = outs[0].read_bytes()
    assert first == outs[1].read_bytes()
    record = json.loads(first.splitlines()[0])
    assert record["attention"]["grid"] == [7, 7]
    assert len(record["attention"]["weights"]) == len(record["tokens"])
    assert all(len(w) == 49 and max(w) == 255 for w in record["attention"]["weights"])


@pytest.fixture
def worker_pool(redis_client: redis.Redis, captioner: Any) -> Iterator[Worker]:
    """One in-thread worker on the private redis-server, captioning with beam 1."""

    def caption(images: Sequence[Any], sources: Sequence[str], shown: Any) -> Any:
        return captioner.caption(list(images), beam=1, sources=sources, shown=shown)

    worker = Worker(
        redis_client,
        caption,
        WorkerConfig(
            policy=BatchPolicy(max_batch=4, max_wait_ms=20),
            model=captioner.model_id,
            sources_every_s=0.1,
            block_ms=100,
        ),
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    yield worker
    worker.stop()
    thread.join(T)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("out.jsonl", ["--attention"]),
        ("out.vtt", ["--scene-change", "--fps", "5", "--max-interval", "30"]),
    ],
)
def test_in_process_and_worker_pool_give_the_same_bytes(
    capsys: pytest.CaptureFixture[str],
    video: Path,
    tmp_path: Path,
    redis_server: Any,
    redis_client: redis.Redis,
    worker_pool: Worker,
    name: str,
    options: list[str],
) -> None:
    here, there = tmp_path / "here" / name, tmp_path / "there" / name
    here.parent.mkdir()
    there.parent.mkdir()
    code, _, err = run(capsys, video, "-o", here, "--beam", "1", "--batch", "3", *options)
    assert code == 0, err
    code, _, err = run(capsys, video, "-o", there, "--redis-url", redis_server.url, *options)
    assert code == 0, err
    assert err == ""
    assert here.read_bytes() == there.read_bytes()
    assert worker_pool.stats.captioned > 0  # the pool did the work
    # the job is forgotten: no longer a source, its frames gone, its captions expiring
    jobs = [k.decode() for k in redis_client.keys("captions:*")]
    assert len(jobs) == 1 and re.fullmatch(r"captions:\{scenes-[0-9a-f]{8}\}", jobs[0]), jobs
    job = jobs[0][len("captions:{") : -1]
    assert redis_client.hget(SOURCES_KEY, job) is None
    assert redis_client.xlen(frames_key(job)) == 0
    for key in (captions_key(job), status_key(job), frames_key(job), capture_key(job)):
        assert 0 < redis_client.ttl(key) <= JOB_KEYS_TTL_S
    assert redis_client.exists(owner_key(job)) == 0  # its capture's lease, released


def test_worker_pool_flags_that_do_not_apply_are_named(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    video: Path,
    tmp_path: Path,
    redis_server: Any,
    worker_pool: Worker,
) -> None:
    code, _, _ = run(
        capsys, video, "-o", tmp_path / "o.srt", "--redis-url", redis_server.url, "--beam", "5"
    )
    assert code == 0
    assert "--beam not used" in caplog.text


def test_a_job_waits_for_a_worker_and_says_so(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    video: Path,
    tmp_path: Path,
    redis_server: Any,
    redis_client: redis.Redis,
    captioner: Any,
) -> None:
    monkeypatch.setattr("stream.subtitles.caption.WAIT_NOTICE_S", 0.2)
    worker = Worker(
        redis_client,
        lambda images, sources, shown: captioner.caption(
            list(images), beam=1, sources=sources, shown=shown
        ),
        WorkerConfig(model=captioner.model_id, sources_every_s=0.1, block_ms=100),
    )
    late = threading.Thread(target=worker.run, daemon=True)
    timer = threading.Timer(2.0, late.start)  # the pool comes up after the job started
    timer.start()
    try:
        code, _, err = run(capsys, video, "-o", tmp_path / "o.vtt", "--redis-url", redis_server.url)
    finally:
        timer.cancel()
        worker.stop()
        if late.is_alive():
            late.join(T)
    assert code == 0, err
    assert "is a worker running" in caplog.text
    assert len(vtt_cues(tmp_path / "o.vtt")) == 3


# -- the Python API and progress ----------------------------------------------------------------


def test_where_a_video_ends() -> None:
    """The last frame lasts one step, at most a frame at the container's rate, and not
    past the length its frame count makes."""
    from stream.capture.sampler import FixedRateSampler
    from stream.subtitles.caption import _Watch

    def watched(times: list[float]) -> _Watch:
        watch = _Watch(FixedRateSampler(1.0))
        for t in times:
            watch.want(t, np.zeros((2, 2, 3), np.uint8))
        return watch

    assert watched([]).media_end_ms(10.0) is None
    assert watched([0.0]).media_end_ms(10.0) == 100.0  # a lone frame: one frame
    assert watched([0.0, 100.0, 200.0]).media_end_ms(10.0, 3) == 300.0
    # variable rate, the last frame 5 s after the one before (it ended at 13 s)
    assert watched([0.0, 1000.0, 2000.0, 3000.0, 8000.0]).media_end_ms(1.25, 5) == 8800.0
    # the container's length is shorter than a step: it ends there
    assert watched([0.0, 400.0, 800.0]).media_end_ms(2.0, 2) == 1000.0
    # a count the frames read overrun (an estimate): not a length
    assert watched([0.0, 100.0, 200.0]).media_end_ms(10.0, 1) == 300.0


def test_caption_video_reports_progress_and_the_end_of_the_video(
    video: Path, captioner: Any
) -> None:
    seen: list[Progress] = []
    result = caption_video(
        video,
        sampling=CaptureConfig(fps=2),
        captioner=captioner,
        beam=1,
        batch=5,
        progress=seen.append,
    )
    assert [s.seq for s in result.samples] == list(range(12))
    assert result.frames_read == 60
    assert result.media_end_ms == pytest.approx(6000, abs=1)
    assert result.timed()[-1].end_ms == 6000
    last = seen[-1]
    assert last.done and last.fraction == 1.0
    assert (last.sampled, last.captioned, last.frames_read, last.frame_count) == (12, 12, 60, 60)
    assert all(a.captioned <= b.captioned for a, b in itertools.pairwise(seen))
    assert any(0 < (p.fraction or 0) < 1 for p in seen)


def test_a_one_frame_video_lasts_one_frame(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    one = make_video(tmp_path / "one.mp4", scenes=[((0, 0, 200), 0.1)], fps=10)
    code, out, _ = run(capsys, one, "--beam", "1")
    assert code == 0
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert (record["t_start_ms"], record["t_end_ms"]) == (0, 100)


def test_sampling_faster_than_the_frame_rate_still_lasts_to_the_end(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--fps above the video's own rate: every frame is a sample, and the last one
    lasts its frame (it lasted 1 ms at --fps 1000), so the captions reach the end."""
    clip = make_video(tmp_path / "clip.mp4", scenes=[((0, 0, 200), 0.5)], fps=10)
    code, out, _ = run(capsys, clip, "--beam", "1", "--fps", "1000")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["t_start_ms"] for r in records] == list(range(0, 500, 100))
    assert records[-1]["t_end_ms"] == 500


class _Counting:
    """A VideoCapture that counts the frames converted into images."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.retrieved = 0

    def retrieve(self) -> Any:
        self.retrieved += 1
        return self.inner.retrieve()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_fixed_rate_sampling_converts_only_the_sampled_frames(
    monkeypatch: pytest.MonkeyPatch, video: Path, captioner: Any
) -> None:
    import stream.sources.readers

    opened: list[_Counting] = []
    real_open = stream.sources.readers.open_capture

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        opened.append(_Counting(real_open(*args, **kwargs)))
        return opened[-1]

    monkeypatch.setattr(stream.sources.readers, "open_capture", counting_open)
    result = caption_video(video, captioner=captioner, beam=1)  # 1 frame/s of 10 fps
    assert len(result.samples) == 6
    assert sum(c.retrieved for c in opened) == 6


def test_progress_line() -> None:
    p = Progress(frames_read=30, frame_count=60, sampled=3, captioned=2, elapsed_s=4.0)
    assert p.fraction == pytest.approx(2 / 6)
    assert format_progress(p, width=10) == (
        "[###-------]  33% | 3 sampled | 2 captioned | 0.5 captions/s | ETA 0:08"
    )
    unknown = Progress(frames_read=30, frame_count=None, sampled=3, captioned=2, elapsed_s=4.0)
    assert unknown.fraction is None
    assert format_progress(unknown) == "3 sampled | 2 captioned | 0.5 captions/s"
    done = Progress(
        frames_read=60, frame_count=60, sampled=6, captioned=6, elapsed_s=3725, done=True
    )
    assert format_progress(done, width=4).endswith("took 1:02:05")


def test_progress_bar_redraws_one_line() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, every_s=3600)
    bar(Progress(frames_read=1, frame_count=10, sampled=1, captioned=0, elapsed_s=1.0))
    bar(Progress(frames_read=2, frame_count=10, sampled=1, captioned=1, elapsed_s=2.0))  # too soon
    bar(Progress(frames_read=10, frame_count=10, sampled=2, captioned=2, elapsed_s=3.0, done=True))
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "100%" in text


# -- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", ["scenes", "a b ü ☕", "x" * 200, "..."])
def test_job_names_are_valid_and_fresh(tmp_path: Path, stem: str) -> None:
    path = tmp_path / f"{stem}.mp4"
    path.write_bytes(b"")
    spec = video_spec(path)
    names = {job_name(spec) for _ in range(20)}
    assert len(names) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", n) for n in names), names


# -- bad input ----------------------------------------------------------------------------------


def _text_file(d: Path) -> Path:
    path = d / "notes.mp4"
    path.write_text("this is not a video\n")
    return path


def _zero_bytes(d: Path) -> Path:
    path = d / "zero.mp4"
    path.write_bytes(b"")
    return path


def _no_frames(d: Path) -> Path:
    path = d / "empty.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (160, 90))
    writer.release()  # nothing written: a valid container with no frames
    return path


def _mjpg_avi(path: Path, *, size: tuple[int, int], frames: int, step: int) -> Path:
    """An MJPEG AVI of ``frames`` grey frames of ``size`` (w, h), ``step`` brighter each."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, size)
    for i in range(frames):
        writer.write(np.full((height, width, 3), i * step, np.uint8))
    writer.release()
    return path


def _one_pixel(d: Path) -> Path:
    return _mjpg_avi(d / "dot.avi", size=(1, 1), frames=5, step=40)


def _mjpg(d: Path) -> bytes:
    path = _mjpg_avi(d / "mjpg.avi", size=(160, 90), frames=10, step=20)
    data = path.read_bytes()
    path.unlink()
    return data


def _undecodable(d: Path) -> Path:
    """Every frame's JPEG zeroed: the container lists 10 frames, none decodes."""
    data = bytearray(_mjpg(d))
    start = data.find(b"\xff\xd8")
    while start >= 0:
        end = data.find(b"\xff\xd9", start) + 2
        data[start:end] = bytes(end - start)
        start = data.find(b"\xff\xd8", end)
    path = d / "broken.avi"
    path.write_bytes(bytes(data))
    return path


def _unknown_codec(d: Path) -> Path:
    path = d / "codec.avi"
    path.write_bytes(_mjpg(d).replace(b"MJPG", b"ZZZZ"))
    return path


def _a_directory(d: Path) -> Path:
    path = d / "folder.mp4"
    path.mkdir()
    return path


def test_a_video_whose_first_frames_are_damaged_is_captioned_from_the_next(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The start-up check read one frame and refused the file as undecodable, where
    the reader skips damaged frames and reads on."""
    data = bytearray(_mjpg(tmp_path))
    for _ in range(2):  # the first two frames' JPEGs zeroed
        start = data.find(b"\xff\xd8")
        end = data.find(b"\xff\xd9", start) + 2
        data[start:end] = bytes(end - start)
    video = tmp_path / "bad-start.avi"
    video.write_bytes(bytes(data))
    out = tmp_path / "bad-start.jsonl"
    code, _, err = run(capsys, video, "-o", out, "--fps", "10", "--quiet")
    assert code == 0, err
    starts = [json.loads(line)["t_start_ms"] for line in out.read_text().splitlines()]
    assert starts == [200, 300, 400, 500, 600, 700, 800, 900]  # frames 2..9 at 10 fps


BAD_VIDEOS = {
    "missing": (lambda d: d / "missing.mp4", "no such file"),
    "text file": (_text_file, "notes.mp4: not a video"),
    "zero bytes": (_zero_bytes, "zero.mp4: not a video"),
    "no frames": (_no_frames, "has no video frames"),
    "undecodable": (_undecodable, "none of its 10 frames could be decoded"),
    "unknown codec": (_unknown_codec, "codec.avi: not a video"),
    "directory": (_a_directory, "not a regular file"),
    "1x1 frames": (_one_pixel, "dot.avi: its frames are 1x1, too small to caption (accepted: at"),
}


def _assert_failed_cleanly(
    code: int, err: str, message: str, out: Path, before: bytes | None
) -> None:
    assert code == 2, err
    assert err.startswith("scenecast: error: ") and message in err, err
    assert "Traceback" not in err
    if before is None:
        assert not out.exists()
    else:
        assert out.read_bytes() == before  # an existing file is not clobbered
    if out.parent.is_dir():
        assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("case", list(BAD_VIDEOS))
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_bad_video_exits_2_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str, existing: bool
) -> None:
    make, message = BAD_VIDEOS[case]
    src = make(tmp_path)
    out = tmp_path / "out" / "captions.vtt"
    out.parent.mkdir()
    before = b"keep me\n" if existing else None
    if before is not None:
        out.write_bytes(before)
    code, stdout, err = run(capsys, src, "-o", out)
    assert stdout == ""
    _assert_failed_cleanly(code, err, message, out, before)


BAD_OUTPUTS = {
    "unknown extension": ("out.txt", "accepted: .vtt (WebVTT), .srt (SubRip), .jsonl"),
    "no extension": ("out", "accepted: .vtt"),
    "missing directory": ("nowhere/out.vtt", "does not exist"),
    "parent is a file": ("afile/out.vtt", "is not a directory"),
    "a directory": ("adir.vtt", "is a directory"),
    "a name over 255 bytes": ("c" * 252 + ".vtt", "File name too long (accepted: names up to 255"),
}


@pytest.mark.parametrize("case", list(BAD_OUTPUTS))
def test_bad_output_exits_2_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], video: Path, tmp_path: Path, case: str
) -> None:
    (tmp_path / "afile").write_text("a file\n")
    (tmp_path / "adir.vtt").mkdir()
    name, message = BAD_OUTPUTS[case]
    out = tmp_path / name
    code, _, err = run(capsys, video, "-o", out)
    assert code == 2 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.vtt", "afile"]


def test_long_names_and_links_are_written_as_given(
    capsys: pytest.CaptureFixture[str], video: Path, tmp_path: Path
) -> None:
    """A 250-byte name is a name (the temporary file beside it took 14 bytes more and
    failed); a link is written through, as `> link` does (the rename replaced it); a
    video name over 255 bytes is one clear line (it was a traceback)."""
    long_name = tmp_path / ("b" * 246 + ".vtt")
    code, _, err = run(capsys, video, "-o", long_name, "--quiet")
    assert code == 0 and long_name.read_text().startswith("WEBVTT"), err
    target = tmp_path / "real.vtt"
    target.write_text("old\n")
    link = tmp_path / "link.vtt"
    link.symlink_to(target)
    code, _, err = run(capsys, video, "-o", link, "--quiet")
    assert code == 0, err
    assert link.is_symlink() and target.read_text().startswith("WEBVTT")
    code, _, err = run(capsys, tmp_path / ("d" * 260 + ".mp4"), "-o", tmp_path / "x.vtt")
    assert code == 2 and "File name too long (accepted: file names up to 255" in err, err
    assert "Traceback" not in err and len(err.splitlines()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to a read-only directory")
def test_read_only_directory_exits_2(
    capsys: pytest.CaptureFixture[str], video: Path, tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run(capsys, video, "-o", locked / "out.vtt")
    finally:
        locked.chmod(0o700)
    assert code == 2 and "not writable" in err
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fps", "0"], "argument --fps: expected a number from 0.0001 to 1000, got 0"),
        (["--fps", "nan"], "argument --fps: expected a number from 0.0001 to 1000, got nan"),
        (["--scene-change", "--fps", "1", "--max-interval", "0.5"], "--max-interval"),
        (["--max-interval", "5"], "--max-interval 5 goes with --scene-change"),  # was ignored
        (["--device", "tpu"], "unsupported device"),
    ],
)
def test_bad_options_exit_2(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    video: Path,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    def no_model(checkpoint: str | None, device: str | None, k: int | None) -> None:
        pytest.fail("the model was loaded before the options were checked")

    monkeypatch.setattr("stream.subtitles.batch._load_captioner", no_model)
    code, _, err = run(capsys, video, "-o", tmp_path / "o.vtt", "--checkpoint", "x.pt", *args)
    assert code == 2 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_failure_midway_keeps_the_existing_file(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    video: Path,
    tmp_path: Path,
    captioner: Any,
) -> None:
    calls = []

    def failing(images: Sequence[Any], **kwargs: Any) -> Any:
        calls.append(len(images))
        if len(calls) == 2:
            raise CaptionerError("the model fell over")
        return type(captioner).caption(captioner, images, **kwargs)

    monkeypatch.setattr(captioner, "caption", failing)
    out = tmp_path / "out.srt"
    out.write_text("old subtitles\n")
    code, _, err = run(capsys, video, "-o", out, "--batch", "2", "--beam", "1")
    _assert_failed_cleanly(code, err, "the model fell over", out, b"old subtitles\n")
    assert calls == [2, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["out.srt"]


# -- the real command -----------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_directory_that_takes_no_files_is_not_called_missing() -> None:
    from stream.exceptions import StreamError
    from stream.subtitles.output_file import OutputFile

    with pytest.raises(StreamError, match=r"cannot write /proc/x\.vtt: /proc takes no new"):
        OutputFile("/proc/x.vtt").open()


def _subprocess(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SCENECAST_REDIS_URL"}
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", "caption", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=T,
        check=False,
        env=env,
    )


@pytest.mark.integration
def test_bad_input_exit_code_in_a_real_process(tmp_path: Path) -> None:
    out = tmp_path / "out.vtt"
    done = _subprocess(_text_file(tmp_path), "-o", out)
    assert done.returncode == 2, done.stderr
    last = done.stderr.splitlines()[-1]  # (FFmpeg and OpenCV may log before it)
    assert last.startswith("scenecast: error: ") and "notes.mp4" in last, done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


@pytest.mark.integration
def test_real_process_loads_the_checkpoint_and_matches_in_process(
    capsys: pytest.CaptureFixture[str], video: Path, tmp_path: Path, captioner: Any
) -> None:
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "real.srt"
    done = _subprocess(
        video, "-o", out, "--checkpoint", checkpoint, "--device", "cpu", "--beam", "2", "--quiet"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
    here = tmp_path / "here.srt"
    assert run(capsys, video, "-o", here, "--beam", "2")[0] == 0
    assert out.read_bytes() == here.read_bytes()


@pytest.mark.integration
def test_a_reader_of_stdout_that_leaves_ends_caption_quietly(video: Path, tmp_path: Path) -> None:
    """`scenecast caption v.mp4 | head`: no BrokenPipeError traceback, exit code 0."""
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt")
    env = {k: v for k, v in os.environ.items() if k != "SCENECAST_REDIS_URL"}
    argv = [sys.executable, "-m", "stream.cli", "caption", str(video), "--checkpoint"]
    argv += [str(checkpoint), "--device", "cpu", "--quiet"]
    reader_gone = subprocess.Popen(  # the reader's end is closed before anything is written
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert reader_gone.stdout is not None and reader_gone.stderr is not None
    reader_gone.stdout.close()
    with reader_gone.stderr:
        err = reader_gone.stderr.read().decode()
    assert reader_gone.wait(T) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_a_job_whose_frames_went_with_a_restarted_redis_fails_clearly(redis_client) -> None:  # type: ignore[no-untyped-def]
    """Redis came back empty: the job's earlier frames are gone, so its captions can
    never all arrive; the job says so instead of waiting for ever."""
    from stream.capture.capture import Capture
    from stream.exceptions import StreamError
    from stream.sources.readers import Frame
    from stream.sources.spec import parse_source
    from stream.subtitles.caption import _collect, _Tracker

    video = Path(__file__).parents[3] / "stream" / "assets" / "demo.mp4"
    capture = Capture(redis_client, parse_source(str(video), name="lostjob"), CaptureConfig())
    capture.register()
    assert not capture.redis_data_lost
    image = np.zeros((48, 64, 3), np.uint8)
    capture.publish(Frame(index=0, pts_ms=0.0, image=image))
    capture.register()  # the same Redis: nothing lost
    assert not capture.redis_data_lost
    redis_client.flushdb()  # what a restart without persistence leaves
    capture.register()
    assert capture.redis_data_lost
    done = threading.Thread(target=lambda: None)
    done.start()
    done.join()
    with pytest.raises(StreamError, match="Redis restarted without its data"):
        _collect(redis_client, capture, done, [], _Tracker(None, None))


def test_a_video_is_short_of_its_length_by_time_not_by_frame_count() -> None:
    """Debian's tree.avi (cinepak, variable rate): 68 frames up to 29.6 s, a count of 444
    at 15 fps. Read whole, it was warned about as "ends early" (68 of 444 frames)."""
    from stream.subtitles.caption import ends_short

    assert not ends_short(29_600.0, frame_count=444, fps=15.0)  # tree.avi, read whole
    assert ends_short(14_800.0, frame_count=444, fps=15.0)  # cut off halfway
    assert not ends_short(29_000.0, frame_count=444, fps=15.0)  # within a tenth and 1 s
    assert not ends_short(1_000.0, frame_count=None, fps=25.0)  # no stated length
    assert not ends_short(None, frame_count=444, fps=15.0)  # nothing read: another error


def test_a_url_is_probed_with_runs_short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A silent RTSP host took `caption` 11.9 s to fail against `run`'s 5.4 s: the probe
    opened it with the reader's 10 s open timeout. Both probe with PROBE_TIMEOUT_MS."""
    from stream.exceptions import SourceError
    from stream.sources import probe
    from stream.sources.readers import PROBE_TIMEOUT_MS
    from stream.sources.spec import parse_source
    from stream.subtitles.caption import probe_video

    asked: list[dict[str, Any]] = []

    def silent(spec: Any, **timeouts: Any) -> Any:
        asked.append(timeouts)
        raise SourceError(f"{spec.display}: no answer")

    monkeypatch.setattr("stream.sources.readers.open_capture", silent)
    monkeypatch.setattr(probe, "open_capture", silent)
    with pytest.raises(SourceError):
        probe_video("rtsp://127.0.0.1:9/cam")
    with pytest.raises(SourceError):
        probe.probe(parse_source("rtsp://127.0.0.1:9/cam"))
    short = {"open_timeout_ms": PROBE_TIMEOUT_MS, "read_timeout_ms": PROBE_TIMEOUT_MS}
    assert asked == [short, short] and PROBE_TIMEOUT_MS == 5_000
