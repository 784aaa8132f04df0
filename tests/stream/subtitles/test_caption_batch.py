"""``scenecast caption`` of several videos: ``--output-dir DIR --format F`` writes each
as ``DIR/STEM.F`` with one model load; conflicts and bad files are refused before any
work; a video that fails mid-batch costs only its own output."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import stream.subtitles.batch
from stream.exceptions import StreamError
from stream.subtitles.outputs import Job, plan_outputs
from tests.support.caption_cli import run, vtt_cues
from tests.support.videos import make_video

pytestmark = pytest.mark.usefixtures("tiny_model")  # tests/stream/subtitles/conftest.py

SCENES_A = [((0, 0, 200), 1.0), ((0, 200, 0), 1.0)]
SCENES_B = [((200, 0, 0), 2.0)]


@pytest.fixture
def videos(tmp_path: Path) -> list[Path]:
    (tmp_path / "in").mkdir()
    return [
        make_video(tmp_path / "in" / "a.mp4", scenes=SCENES_A, fps=10),
        make_video(tmp_path / "in" / "b.mkv", scenes=SCENES_B, fps=10),
    ]


def test_plan_outputs() -> None:
    assert plan_outputs(["v.mp4"], output=None, output_dir=None, fmt=None) == [
        Job("v.mp4", "-", "jsonl")
    ]
    assert plan_outputs(["v.mp4"], output="o.srt", output_dir=None, fmt=None) == [
        Job("v.mp4", "o.srt", "srt")
    ]
    assert plan_outputs(["x/a.mp4", "y/b.mov"], output=None, output_dir="out", fmt=None) == [
        Job("x/a.mp4", "out/a.vtt", "vtt"),
        Job("y/b.mov", "out/b.vtt", "vtt"),
    ]
    url = "https://host/talks/odd%20name%E5%90%8D.mp4?sig=x"  # the name a person reads
    assert plan_outputs([url], output=None, output_dir="out", fmt=None) == [
        Job(url, "out/odd name名.vtt", "vtt")
    ]
    assert plan_outputs(["a.mp4"], output=None, output_dir="out", fmt="jsonl") == [
        Job("a.mp4", "out/a.jsonl", "jsonl")
    ]
    refused = [
        ((["a.mp4", "b.mp4"], None, None, None), "2 videos need --output-dir DIR"),
        ((["a.mp4"], "o.vtt", "out", None), "not both"),
        ((["a.mp4"], "o.vtt", None, "srt"), "--format goes with --output-dir"),
        ((["x/a.mp4", "y/a.mov"], None, "out", None), "would both be written to out/a.vtt"),
        ((["a.mp4", "./a.mp4"], None, "out", None), "is given twice"),
        ((["out/a.vtt"], None, "out", "vtt"), "is one of the videos"),
        ((["a.vtt"], "./a.vtt", None, None), "is one of the videos"),
        # the same file spelled another way: absolute, through ".."
        ((["a.vtt"], os.path.abspath("a.vtt"), None, None), "is one of the videos"),
        ((["o/a.vtt"], "o/../o/a.vtt", None, None), "is one of the videos"),
        (([], None, None, None), "no video given"),
    ]
    for (videos, output, output_dir, fmt), message in refused:
        with pytest.raises(StreamError, match=message):
            plan_outputs(videos, output=output, output_dir=output_dir, fmt=fmt)


def test_several_videos_one_model_load_each_in_its_file(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    videos: list[Path],
    tmp_path: Path,
    captioner: Any,
) -> None:
    loads: list[str | None] = []

    def load(checkpoint: str | None, device: str | None, k: Any) -> Any:
        loads.append(checkpoint)
        return captioner

    monkeypatch.setattr("stream.subtitles.batch._load_captioner", load)
    out = tmp_path / "subs" / "new"  # created
    code, stdout, err = run(capsys, *videos, "--output-dir", out, "--quiet")
    assert (code, stdout) == (0, ""), err
    assert loads == [None]
    assert sorted(p.name for p in out.iterdir()) == ["a.vtt", "b.vtt"]
    a, b = vtt_cues(out / "a.vtt"), vtt_cues(out / "b.vtt")
    assert [start for start, _, _ in a] == [0, 1000] and a[-1][1] == 2000
    assert [(start, end) for start, end, _ in b] == [(0, 2000)]
    # the same videos as JSON lines: one line per sampled frame, the same texts
    code, _, _ = run(capsys, *videos, "--output-dir", out, "--format", "jsonl", "--quiet")
    assert code == 0
    lines = [json.loads(x) for x in (out / "a.jsonl").read_text().splitlines()]
    assert [x["t_start_ms"] for x in lines] == [0, 1000]
    assert [x["text"] for x in lines] == [text for _, _, text in a]
    # without --quiet, each video is announced
    code, _, err = run(capsys, *videos, "--output-dir", out)
    assert code == 0 and "[1/2]" in err and f"[2/2] {videos[1]} -> {out / 'b.vtt'}" in err


def test_conflicts_and_bad_videos_are_refused_before_any_work(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    videos: list[Path],
    tmp_path: Path,
) -> None:
    def no_model(checkpoint: str | None, device: str | None, k: Any) -> None:
        pytest.fail("the model was loaded before the videos were checked")

    monkeypatch.setattr("stream.subtitles.batch._load_captioner", no_model)
    out = tmp_path / "out"
    not_a_video = tmp_path / "in" / "notes.mp4"
    not_a_video.write_text("not a video\n")
    cases = [
        ([*videos], "2 videos need --output-dir DIR"),
        ([*videos, "-o", tmp_path / "x.vtt", "--output-dir", out], "not both"),
        ([*videos, tmp_path / "in" / "missing.mp4", "--output-dir", out], "missing.mp4"),
        ([*videos, not_a_video, "--output-dir", out], "notes.mp4"),
        ([videos[0], tmp_path / "a.mov", "--output-dir", out], "would both be written"),
        ([*videos, "--output-dir", videos[0]], "--output-dir"),  # a file
        ([*videos, "--output-dir", out, "--format", "txt"], "invalid choice: 'txt'"),
    ]
    (tmp_path / "a.mov").write_bytes(videos[0].read_bytes())
    for args, message in cases:
        code, stdout, err = run(capsys, *args)
        assert code == 2 and message in err, (args, err)
        assert stdout == ""
        assert not out.exists() or list(out.iterdir()) == [], args


def test_a_video_that_fails_midway_costs_only_its_own_output(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    videos: list[Path],
    tmp_path: Path,
) -> None:
    third = make_video(tmp_path / "in" / "c.mp4", scenes=SCENES_B, fps=10)
    real = stream.subtitles.batch.caption_video

    def flaky(path: Any, **kwargs: Any) -> Any:
        if Path(path).name == "b.mkv":
            raise StreamError("b.mkv: the disk went away")
        return real(path, **kwargs)

    monkeypatch.setattr("stream.subtitles.batch.caption_video", flaky)
    out = tmp_path / "out"
    code, _, err = run(capsys, *videos, third, "--output-dir", out, "--quiet")
    assert code == 2
    assert "the disk went away" in err and "1 of 3 videos failed" in err and "b.mkv" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.vtt", "c.vtt"]  # no b, no temp file


def test_skip_existing_resumes_a_batch(
    capsys: pytest.CaptureFixture[str], videos: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.vtt").write_text("WEBVTT\n\nwritten before\n")
    code, _, err = run(capsys, *videos, "--output-dir", out, "--skip-existing")
    assert code == 0 and "1 of 2 outputs exist" in err
    assert (out / "a.vtt").read_text() == "WEBVTT\n\nwritten before\n"
    assert vtt_cues(out / "b.vtt")
    code, _, err = run(capsys, *videos, "--output-dir", out, "--skip-existing")
    assert code == 0 and "2 of 2 outputs exist" in err


def test_a_run_that_writes_nothing_leaves_no_output_dir_of_its_own(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.mp4"
    out = tmp_path / "subs"
    code, _, err = run(capsys, missing, tmp_path / "also-missing.mp4", "--output-dir", out)
    assert code == 2 and "no such file" in err
    assert not out.exists()
    out.mkdir()  # one that was there stays, empty or not
    code, _, _ = run(capsys, missing, tmp_path / "also-missing.mp4", "--output-dir", out)
    assert code == 2 and out.is_dir()


def test_each_video_of_a_batch_starts_with_nothing_held(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """ "x y.mp4" and "x-y.mp4" clean up to the same source name: with the captioner's
    own hold memory, the second video began holding the first one's last caption, and
    its output differed from its output alone."""
    from captioner.api import Captioner

    default = Captioner.load(device="cpu")  # the bundled model holds captions; the tiny not
    monkeypatch.setattr(
        "stream.subtitles.batch._load_captioner", lambda checkpoint, device, k: default
    )
    (tmp_path / "in").mkdir()
    first = make_video(tmp_path / "in" / "x y.mp4", scenes=SCENES_A, fps=10)
    second = make_video(tmp_path / "in" / "x-y.mp4", scenes=SCENES_B, fps=10)
    calls: list[tuple[list[str], bool]] = []  # sources, and whether one was held already
    real = default.caption

    def spy(images: Any, **kwargs: Any) -> Any:
        shown = kwargs.get("shown") or default.shown
        sources = list(kwargs["sources"])
        calls.append((sources, any(shown.get(s) is not None for s in sources)))
        return real(images, **kwargs)

    monkeypatch.setattr(default, "caption", spy)
    code, _, err = run(capsys, first, second, "--output-dir", tmp_path / "out", "--quiet")
    assert code == 0, err
    assert [sources for sources, _ in calls] == [["x-y", "x-y"]] * 2  # one name
    assert [held for _, held in calls] == [False, False]  # each job from nothing
    assert len(default.shown) == 0  # the captioner's own memory is not used


def test_ctrl_c_during_a_caption_job_writes_nothing_and_exits_130(
    videos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """A job cut off is not a result: no output file, exit 130 (docs/decisions)."""
    real = stream.subtitles.batch.caption_video

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)  # the work done, then Ctrl+C before it is written
        raise KeyboardInterrupt

    monkeypatch.setattr("stream.subtitles.batch.caption_video", interrupted)
    out = tmp_path / "a.vtt"
    code, _, err = run(capsys, videos[0], "-o", out, "--quiet")
    assert code == 130 and "interrupted; no output written" in err
    assert not out.exists() and list(tmp_path.glob("*.vtt*")) == []
