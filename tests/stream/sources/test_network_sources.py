"""Network cameras over real sockets, read by OpenCV's FFmpeg backend as a user's IP
camera is: an MJPEG-over-HTTP camera (tests/mjpeg_camera.py) and an RTSP camera that
streams only over TCP (tests/rtsp_camera.py), both on 127.0.0.1.

What a user of a live source relies on: captions describe *now* however slow the
consumer (newest frame, no build-up), a stalled or lost camera is noticed within the
read timeout, reported and reconnected with backoff, and after the camera is back
frames flow again with media time that goes on from the start of capture.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.asyncio.client import connect

from stream.capture.capture import Capture, CaptureConfig
from stream.exceptions import SourceError
from stream.sources.readers import LatestFrameReader
from stream.sources.spec import parse_source
from tests.conftest import TIMEOUT_FACTOR
from tests.support.factories import save_tiny_checkpoint
from tests.support.mjpeg_camera import MjpegCamera, frame_number
from tests.support.rtsp_camera import RtspCamera
from tests.support.runs import SCENES, collect_run, start_run, stop_run
from tests.support.videos import make_video
from worker.bus.entries import decode_frame, decode_status
from worker.bus.keys import capture_key, frames_key, status_key

pytestmark = pytest.mark.integration  # network cameras (servers), scenecast processes

T = 20.0 * TIMEOUT_FACTOR


def _behind(camera: MjpegCamera, shown: int) -> int:
    """How many frames the camera is ahead of the frame number ``shown`` (mod 256)."""
    return (camera.now() - shown) % 256


def _until(condition: Callable[[], bool], timeout: float = T) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_slow_consumer_of_a_network_camera_gets_its_newest_frame() -> None:
    with MjpegCamera(fps=20) as camera:
        reader = LatestFrameReader.open(camera.url, open_timeout_ms=5000, read_timeout_ms=2000)
        try:
            first = reader.latest(timeout=T)
            assert first is not None and first.image.shape == (240, 320, 3)
            for _ in range(3):
                time.sleep(1.0)  # a consumer slower than the camera, 20 frames a go
                frame = reader.latest(timeout=T)
                assert frame is not None
                # the newest frame (± the network and decoding), not the next one queued
                assert _behind(camera, frame_number(frame.image)) <= 4 * TIMEOUT_FACTOR
            assert reader.dropped >= 40  # the frames nobody asked for were overwritten
        finally:
            reader.close()


def test_corrupt_frames_from_a_network_camera_are_skipped_not_a_lost_camera() -> None:
    with MjpegCamera(fps=20, corrupt_every=7) as camera:
        reader = LatestFrameReader.open(camera.url, open_timeout_ms=5000, read_timeout_ms=2000)
        try:
            deadline = time.monotonic() + 2.0
            frames = 0
            while time.monotonic() < deadline:
                frames += reader.latest(timeout=T) is not None
            assert not reader.failed.is_set(), reader.error
            assert frames >= 20 and camera.corrupted >= 4
            assert reader.bad_reads >= 3  # the parts already read; none lost the camera
        finally:
            reader.close()


def test_a_frozen_camera_is_reported_stalled_within_the_read_timeout() -> None:
    with MjpegCamera(fps=20) as camera:
        reader = LatestFrameReader.open(camera.url, open_timeout_ms=5000, read_timeout_ms=1000)
        try:
            assert reader.latest(timeout=T) is not None
            camera.freeze()  # connection open, nothing sent
            frozen_at = time.monotonic()
            while reader.latest(timeout=0.2) is not None or not reader.failed.is_set():
                assert time.monotonic() - frozen_at < T
            assert time.monotonic() - frozen_at < 1.0 + 2.0 * TIMEOUT_FACTOR
            assert reader.error is not None and "stalled" in str(reader.error)
        finally:
            reader.close()


def test_rtsp_reaches_a_camera_that_only_streams_over_tcp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RTSP over TCP by default: FFmpeg's RTSP would ask for UDP first, which cameras
    behind NAT or firewalls never deliver (here: refused), and RTP over UDP loses packets
    (grey smears). A user's own OPENCV_FFMPEG_CAPTURE_OPTIONS is left alone."""
    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)
    with RtspCamera(fps=20, seconds=30) as camera:
        reader = LatestFrameReader.open(camera.url, open_timeout_ms=5000, read_timeout_ms=2000)
        try:
            first = reader.latest(timeout=T)
            assert first is not None and first.image.shape == (240, 320, 3)
            numbers = [frame_number(first.image)]
            for _ in range(2):
                time.sleep(1.0)  # slower than the camera: the newest frame each time
                frame = reader.latest(timeout=T)
                assert frame is not None
                numbers.append(frame_number(frame.image))
        finally:
            reader.close()
        assert camera.setups_tcp == 1 and camera.refused_udp == 0
    steps = [b - a for a, b in itertools.pairwise(numbers)]
    assert all(20 - 4 * TIMEOUT_FACTOR <= step <= 20 + 4 * TIMEOUT_FACTOR for step in steps)
    assert reader.dropped >= 30

    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;udp")
    with RtspCamera(fps=20, seconds=2) as camera:
        with pytest.raises(SourceError, match="could not open rtsp source"):
            LatestFrameReader.open(camera.url, open_timeout_ms=2000)
        assert camera.refused_udp == 1  # the user's choice was what FFmpeg asked for


@pytest.mark.parametrize("kind", ["http", "rtsp"])
def test_capture_reconnects_to_a_camera_that_went_away_and_media_time_goes_on(
    redis_server,  # type: ignore[no-untyped-def]
    kind: str,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    with MjpegCamera(fps=20) if kind == "http" else RtspCamera(fps=20) as camera:
        spec = parse_source(camera.url, name="door")
        config = CaptureConfig(
            fps=5,
            open_timeout_ms=2000,
            read_timeout_ms=1000,
            reconnect_cap_s=0.5,
            live_maxlen=1000,  # keep every frame for the checks
        )
        capture = Capture(client, spec, config)
        thread = threading.Thread(target=capture.run, daemon=True)
        thread.start()

        def states() -> list[str]:
            return [decode_status(f).state for _, f in client.xrange(status_key("door"))]

        def frames() -> list[tuple[float, int, int]]:  # (pts_ms, seq, camera frame)
            import cv2
            import numpy as np

            out = []
            for _, fields in client.xrange(frames_key("door")):
                entry = decode_frame(fields)
                image = cv2.imdecode(np.frombuffer(entry.jpeg, np.uint8), cv2.IMREAD_COLOR)
                out.append((entry.pts_ms, entry.seq, frame_number(image)))
            return out

        try:
            _until(lambda: len(frames()) >= 5)
            assert states()[:2] == ["connecting", "live"]
            before = frames()
            camera.stop()
            lost_at = time.monotonic()
            _until(lambda: "reconnecting" in states())
            assert time.monotonic() - lost_at < 1.0 + 3.0 * TIMEOUT_FACTOR
            time.sleep(1.5)  # a few reconnects against a closed port
            down = time.monotonic() - lost_at
            camera.start()
            _until(lambda: states().count("live") == 2)
            _until(lambda: len(frames()) >= len(before) + 5)
        finally:
            capture.stop()
            thread.join(T)
        assert not thread.is_alive()
        assert states()[-1] == "ended"

        after = frames()
        pts = [p for p, _, _ in after]
        seqs = [s for _, s, _ in after]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # numbered on, no gap
        assert pts == sorted(pts)  # media time never goes back across the reconnect
        # the gap in media time spans the outage: time since the start of capture
        gap = max(b - a for a, b in itertools.pairwise(pts)) / 1000
        assert down <= gap <= down + 3.0 * TIMEOUT_FACTOR
        # sampled at 5 per second of media time: 20 fps camera frames 4 apart (the
        # median: an RTSP stream's first frames come in a burst, read while FFmpeg probes)
        steps = sorted((b[2] - a[2]) % 256 for a, b in itertools.pairwise(before))
        assert 3 <= steps[len(steps) // 2] <= 5, steps
        reconnecting = [
            decode_status(f) for _, f in client.xrange(status_key("door"))
            if decode_status(f).state == "reconnecting"
        ]  # fmt: skip
        # one status per failed attempt, saying when the next one comes (each attempt
        # sent a second, bare "reconnecting" too)
        assert all("retrying in" in r.detail for r in reconnecting), reconnecting
        # what capture counted, for /metrics: sent at its end, nothing lost or doubled
        counts = {k.decode(): int(v) for k, v in client.hgetall(capture_key("door")).items()}
        assert counts["published"] == counts["sampled"] == len(after)  # nothing trimmed
        assert counts["read"] > 3 * counts["sampled"]  # 20 fps read, 5 sampled
        assert counts["reconnects"] == len(reconnecting)
    client.close()


def test_a_capture_stops_at_once_while_a_frozen_camera_keeps_it_opening(redis_server) -> None:  # type: ignore[no-untyped-def]
    """A camera that takes connections and sends nothing holds OpenCV's open for its
    whole open timeout, and Ctrl+C (a stop) waited it out: it stops at once now, says
    "ended", and the open abandoned in its thread ends with the camera."""
    client = redis.Redis.from_url(redis_server.url)
    with MjpegCamera(fps=20) as camera:
        camera.freeze()
        spec = parse_source(camera.url, name="frozen-door")
        config = CaptureConfig(fps=5, open_timeout_ms=600_000, read_timeout_ms=600_000)
        capture = Capture(client, spec, config)
        thread = threading.Thread(target=capture.run, daemon=True)
        thread.start()
        _until(lambda: camera.clients == 1)  # connected, and FFmpeg waits for a frame
        states = [decode_status(f).state for _, f in client.xrange(status_key("frozen-door"))]
        assert states == ["connecting"]
        capture.stop()
        thread.join(T)  # a wait for the open would last the 10 minutes of its timeout
        assert not thread.is_alive()
        states = [decode_status(f).state for _, f in client.xrange(status_key("frozen-door"))]
        assert states == ["connecting", "ended"]
        opening = [t for t in threading.enumerate() if t.name == "open-frozen-door"]
        assert len(opening) == 1  # still in OpenCV
    for t in opening:  # the camera gone, the open fails and its thread ends
        t.join(T)
        assert not t.is_alive()
    client.close()


async def _watch_outage(url: str, camera: MjpegCamera) -> list[dict[str, Any]]:
    """Subscribe, then take the camera away once captions flow and bring it back once
    the client is told; every caption and status until captions flow again."""
    seen: list[dict[str, Any]] = []
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "subscribe"}))

        async def until(what: Callable[[list[dict[str, Any]]], bool]) -> None:
            while not what(seen):
                message = json.loads(await asyncio.wait_for(ws.recv(), T))
                if message["type"] in ("caption", "status"):
                    seen.append(message)

        def captions(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [m for m in messages if m["type"] == "caption"]

        await until(lambda m: len(captions(m)) >= 3)
        camera.stop()
        await until(lambda m: m[-1].get("state") == "reconnecting")
        await asyncio.sleep(1.0)
        camera.start()
        await until(lambda m: m[-1].get("state") == "live")
        after = len(captions(seen))
        await until(lambda m: len(captions(m)) >= after + 3)
    return seen


def test_run_captions_a_network_camera_through_an_outage(tmp_path: Path) -> None:
    """`scenecast run http://camera/...`: captions over a real websocket; the camera
    goes away, the client is told and captions resume, media time going on."""
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt")
    with MjpegCamera(fps=20, corrupt_every=30) as camera:
        proc, url = start_run(
            [camera.url, "--name", "door", "--checkpoint", str(checkpoint), "--fps", "2",
             "--beam", "1", "--hold", "off"]
        )  # fmt: skip
        try:
            seen = asyncio.run(_watch_outage(url, camera))
            time.sleep(1.5)  # capture sends its counters every second
            base = url.replace("ws://", "http://").removesuffix("/ws")
            with urllib.request.urlopen(base + "/metrics") as response:
                text = response.read().decode()
        finally:
            stop_run(proc)
    values = {
        line.split(" ")[0]: int(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("scenecast_capture_")
    }
    assert values['scenecast_capture_reconnects_total{source="door"}'] >= 1
    assert values['scenecast_capture_bad_reads_total{source="door"}'] >= 1  # the broken parts
    assert values['scenecast_capture_frames_total{source="door",kind="read"}'] >= 40
    published = values['scenecast_capture_frames_total{source="door",kind="published"}']
    assert published >= len([m for m in seen if m["type"] == "caption"])
    captions = [m for m in seen if m["type"] == "caption"]
    assert all(c["source"] == "door" and c["text"] for c in captions)
    times = [c["t_start_ms"] for c in captions]
    assert times == sorted(times) and len(set(times)) == len(times)
    # the outage (≥ 1 s) is a gap in media time, not a restart from 0; 2 a second
    # otherwise (the first after the outage may come sooner: the sampler keeps its grid)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    outage = gaps.index(max(gaps))
    assert gaps[outage] >= 1000, gaps
    assert all(g >= 450 for i, g in enumerate(gaps) if i != outage + 1), gaps
    seqs = [c["seq"] for c in captions]
    assert seqs == sorted(seqs)


@pytest.fixture(scope="module")
def clip_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A recorded clip served over HTTP (range requests and all: http.server's)."""
    folder = tmp_path_factory.mktemp("www")
    make_video(folder / "scenes.mp4", scenes=SCENES, fps=10)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=folder))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/scenes.mp4"
    server.shutdown()
    server.server_close()


def test_a_clip_at_a_url_is_a_recording_and_a_stream_is_not(clip_url: str) -> None:
    started = time.monotonic()
    with LatestFrameReader.open(clip_url, read_timeout_ms=2000) as reader:
        while reader.latest(timeout=T) is not None:
            pass
        # paced at its 10 fps, like a file played as a camera, then ended: not lost
        assert reader.ended and not reader.failed.is_set()
        assert reader.frames_read == 60
    assert time.monotonic() - started >= 5.5
    with MjpegCamera() as camera, pytest.raises(SourceError, match="loop is for recordings"):
        LatestFrameReader.open(camera.url, loop=True)


def test_run_captions_a_clip_at_a_url_as_a_file_job(clip_url: str, tmp_path: Path) -> None:
    """Not read as a stream as fast as it downloads (a few frames, then its end taken
    for a lost camera, replayed forever): every sampled frame once, then 'ended'."""
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt")
    proc, url = start_run([clip_url, "--checkpoint", str(checkpoint), "--beam", "1"])
    try:
        captions, statuses = asyncio.run(collect_run(url, 6))
    finally:
        stop_run(proc)
    assert [c["seq"] for c in captions] == [0, 1, 2, 3, 4, 5]
    assert [c["t_start_ms"] for c in captions] == [0, 1000, 2000, 3000, 4000, 5000]
    assert captions[0]["source"] == "127.0.0.1-scenes.mp4"
    assert statuses[-1]["state"] == "ended"


def test_a_camera_that_asks_for_a_login(tmp_path: Path) -> None:
    """Credentials in the URL reach the camera; a wrong password is a clear error that
    never shows the password."""
    with MjpegCamera(login=("viewer", "s3cret!")) as camera:
        good = camera.url.replace("http://", "http://viewer:s3cret%21@")
        with LatestFrameReader.open(good, open_timeout_ms=5000) as reader:
            assert reader.latest(timeout=T) is not None
        bad = camera.url.replace("http://", "http://viewer:wrong-pass@")
        done = subprocess.run(
            [sys.executable, "-m", "stream.cli", "run", bad, "--port", "0"],
            capture_output=True, text=True, timeout=T, check=False,
        )  # fmt: skip
        assert camera.refused_logins >= 1
    assert done.returncode == 2
    assert "could not open http source http://viewer:***@127.0.0.1" in done.stderr
    assert "wrong-pass" not in done.stderr + done.stdout


def test_caption_writes_a_recording_at_a_url_as_it_writes_the_file(
    clip_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """``scenecast caption https://host/clip.mp4``: the same bytes as for the file
    downloaded; a live stream at a URL is refused, having no end."""
    from stream.cli.main import main
    from tests.support.factories import tiny_captioner

    model = tiny_captioner()
    monkeypatch.setattr("stream.subtitles.batch._load_captioner", lambda *args: model)
    local = tmp_path / "scenes.mp4"
    with urllib.request.urlopen(clip_url, timeout=T) as response:
        local.write_bytes(response.read())
    assert main(["caption", str(local), "-o", str(tmp_path / "local.vtt"), "--quiet"]) == 0
    assert main(["caption", clip_url, "-o", str(tmp_path / "url.vtt"), "--quiet"]) == 0
    written = (tmp_path / "url.vtt").read_text()
    assert written == (tmp_path / "local.vtt").read_text() and written.count("-->") >= 2
    # a signed URL's query is no part of the output's name, nor of any message
    signed = f"{clip_url}?X-Amz-Signature=s3cr3t"
    out = tmp_path / "subs"
    assert main(["caption", signed, "--output-dir", str(out), "--quiet"]) == 0
    assert (out / "scenes.vtt").read_text() == written
    capsys.readouterr()
    with MjpegCamera() as camera:
        code = main(["caption", camera.url, "-o", str(tmp_path / "cam.vtt")])
    err = capsys.readouterr().err
    assert code == 2 and "is a live stream" in err and "scenecast run" in err, err
    assert not (tmp_path / "cam.vtt").exists()
