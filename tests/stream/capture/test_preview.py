"""Live frames at a viewer's size (``preview:{src}``): published by a real Capture beside
the model's frames, under the same ids, and never for file jobs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from stream.capture.capture import Capture, CaptureConfig
from stream.sources.spec import parse_source
from tests.conftest import TIMEOUT_FACTOR
from tests.support.videos import make_video
from worker.bus.entries import decode_frame
from worker.bus.keys import frames_key, preview_key

T = 20 * TIMEOUT_FACTOR


@pytest.fixture(scope="module")
def wide_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scenes = [((200, 40, 40), 1.0), ((40, 200, 40), 1.0)]
    return make_video(tmp_path_factory.mktemp("v") / "wide.mp4", scenes=scenes, size=(640, 360))


def _capture(
    client: redis.Redis, video: Path, name: str, config: CaptureConfig, *, live: bool
) -> None:
    capture = Capture(client, parse_source(str(video), name=name, live=live), config)
    thread = threading.Thread(target=capture.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + T
    while client.xlen(frames_key(name)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    capture.stop()
    thread.join(T)
    assert not thread.is_alive()


def test_a_live_source_keeps_each_frame_at_the_viewers_size_under_its_id(
    redis_server,
    wide_video: Path,  # type: ignore[no-untyped-def]
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    _capture(
        client, wide_video, "wide", CaptureConfig(fps=5, loop=True, preview_side=320), live=True
    )
    frames = {i: decode_frame(f) for i, f in client.xrange(frames_key("wide"))}
    previews = dict(client.xrange(preview_key("wide")))
    assert len(frames) >= 3
    assert previews.keys() == frames.keys()  # one preview per frame, under its id
    for entry_id, fields in previews.items():
        picture = cv2.imdecode(np.frombuffer(fields[b"data"], np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape == (180, 320, 3)  # 640×360 at a longer side of 320
        assert (int(fields[b"width"]), int(fields[b"height"])) == (320, 180)
        model = frames[entry_id]
        assert (model.width, model.height) == (256, 144)  # the model's frame is unchanged
        small = cv2.imdecode(np.frombuffer(model.jpeg, np.uint8), cv2.IMREAD_COLOR)
        # the same picture: the preview shrunk to the frame's size matches it
        shrunk = cv2.resize(picture, (256, 144), interpolation=cv2.INTER_AREA)
        assert np.abs(shrunk.astype(int) - small.astype(int)).mean() < 8
    client.close()


@pytest.mark.parametrize("live, side", [(True, 0), (False, 640)], ids=["off", "file-job"])
def test_no_preview_when_off_or_for_a_file_job(
    redis_server,
    wide_video: Path,
    live: bool,
    side: int,  # type: ignore[no-untyped-def]
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    name = f"none-{int(live)}"
    _capture(
        client, wide_video, name, CaptureConfig(fps=5, loop=live, preview_side=side), live=live
    )
    assert client.xlen(frames_key(name)) >= 3
    assert not client.exists(preview_key(name))
    client.close()


def test_a_frame_no_larger_than_the_models_gets_no_preview(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    small = make_video(tmp_path / "small.mp4", scenes=[((10, 10, 200), 2.0)], size=(160, 90))
    client = redis.Redis.from_url(redis_server.url)
    _capture(client, small, "small", CaptureConfig(fps=5, loop=True), live=True)
    assert client.xlen(frames_key("small")) >= 3 and not client.exists(preview_key("small"))
    client.close()


def test_a_preview_smaller_than_the_models_frame_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"preview_side must be 0 \(off\) or >= the frames' 256 px"
    ):
        CaptureConfig(preview_side=200)
    assert CaptureConfig(preview_side=0).preview_side == 0


@pytest.mark.integration
def test_a_preview_flag_below_the_models_frame_exits_2_naming_the_flag(wide_video: Path) -> None:
    import subprocess
    import sys

    for argv in (
        ["run", str(wide_video)],
        ["capture", str(wide_video), "--redis-url", "redis://127.0.0.1:1/0"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "stream.cli", *argv, "--preview-side", "100"],
            capture_output=True,
            text=True,
            timeout=T,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "--preview-side must be 0 (off) or at least 256 px" in done.stderr
        assert "--fps" not in done.stderr  # no other flag's advice
