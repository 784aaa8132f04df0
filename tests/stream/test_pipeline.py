"""End to end: a video → capture → Redis → worker → server → websocket client.

`scenecast run` runs as a real process (embedded redis-server, worker process,
server); the client connects over a real socket.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from stream.capture.capture import Capture, CaptureConfig
from stream.sources.spec import parse_source
from tests.conftest import TIMEOUT_FACTOR
from tests.support.factories import save_tiny_checkpoint, tiny_captioner
from tests.support.runs import collect_run, start_run, stop_run, wait_for
from worker.batching import BatchPolicy
from worker.bus.entries import decode_caption
from worker.bus.keys import METRICS_KEY, captions_key
from worker.worker import Worker, WorkerConfig

pytestmark = pytest.mark.integration  # starts redis-server and scenecast processes

T = 30.0 * TIMEOUT_FACTOR


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")  # type: ignore[no-any-return]


def _live_run(
    video: Path, checkpoint: Path, *extra: str
) -> tuple[subprocess.Popen[str], list[psutil.Process]]:
    proc, _ = start_run([str(video), "--checkpoint", str(checkpoint), "--live", "--loop", *extra])
    try:
        deadline = time.monotonic() + T
        while True:  # the worker starts its model's process while run is already up
            children = psutil.Process(proc.pid).children(recursive=True)
            names = sorted(" ".join(c.cmdline()) for c in children)
            model = any("spawn_main" in n for n in names)  # the model's own process
            if model or "--model-process" not in extra or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert any("redis-server" in n for n in names), names
        assert any(" worker " in n for n in names), names
        assert model == ("--model-process" in extra), names
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc, children


def test_run_stops_cleanly_when_its_output_pipe_is_closed(video: Path, checkpoint: Path) -> None:
    """`scenecast run ... | head -3`: once the reader is gone, Ctrl+C must still stop
    everything (the message it prints on a signal used to raise, and the stop was lost)."""
    proc, children = _live_run(video, checkpoint)
    assert proc.stdout is not None
    proc.stdout.close()
    time.sleep(0.5)  # the worker and the server log into the closed pipe meanwhile
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=T)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("run did not stop on SIGINT with its output pipe closed") from None
    _gone, alive = psutil.wait_procs(children, timeout=T)
    assert not alive, f"orphans left behind: {alive}"


@pytest.mark.parametrize("how", ["SIGKILL", "two SIGINTs", "SIGKILL, --model-process"])
def test_run_killed_abruptly_leaves_no_orphans(video: Path, checkpoint: Path, how: str) -> None:
    """No clean-up code runs: the worker watches its parent, and the kernel stops the
    embedded redis-server when the run dies (Linux parent-death signal); the model's
    own process ends with its pipe, or with the worker (parent-death signal)."""
    extra = ["--model-process"] if "model-process" in how else []
    proc, children = _live_run(video, checkpoint, *extra)
    if how.startswith("SIGKILL"):
        proc.kill()
    else:
        proc.send_signal(signal.SIGINT)
        assert proc.stdout is not None
        while "scenecast: stopping" not in proc.stdout.readline():  # the first one is in
            assert proc.poll() is None, "run exited on the first SIGINT"
        proc.send_signal(signal.SIGINT)  # the second one exits at once, skipping clean-up
    proc.communicate(timeout=T)
    _gone, alive = psutil.wait_procs(children, timeout=T)
    assert not alive, f"orphans left behind: {alive}"


def test_run_whose_embedded_redis_dies_says_so_and_stops(video: Path, checkpoint: Path) -> None:
    """Nothing would bring the embedded Redis back: run stayed up for good, its server
    answering 503 and retrying once a second. Now it stops, its parts with it."""
    proc, children = _live_run(video, checkpoint)
    try:
        (redis_proc,) = [c for c in children if "redis-server" in " ".join(c.cmdline())]
        redis_proc.kill()
        output, _ = proc.communicate(timeout=T)
        assert proc.returncode == 2, output
        # (killed before its captures started, it is their check that finds it gone)
        assert "the embedded redis-server exited" in output or "cannot reach Redis" in output
        _gone, alive = psutil.wait_procs(children, timeout=T)
        assert not alive, f"orphans left behind: {alive}"
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("extra", [[], ["--model-process"]], ids=["in-process", "model-process"])
def test_file_job_end_to_end(video: Path, checkpoint: Path, extra: list[str]) -> None:
    proc, url = start_run(
        [str(video), "--checkpoint", str(checkpoint), "--fps", "1", "--beam", "1", *extra]
    )
    try:
        captions, statuses = asyncio.run(collect_run(url, 6))
    finally:
        stop_run(proc)
    assert [c["seq"] for c in captions] == [0, 1, 2, 3, 4, 5]  # one per sampled frame, in order
    assert [c["t_start_ms"] for c in captions] == [0, 1000, 2000, 3000, 4000, 5000]
    assert all(c["source"] == "scenes" and c["text"] for c in captions)
    # frames of one scene look alike; the scenes differ: the captions say so
    assert captions[0]["text"] == captions[1]["text"]
    assert len({c["text"] for c in captions[::2]}) == 3
    assert captions[1]["segment_id"] == captions[0]["segment_id"]
    assert captions[2]["segment_id"] == captions[1]["segment_id"] + 1
    assert any(s["state"] == "ended" for s in statuses)


def test_scene_change_mode_captions_each_scene(video: Path, checkpoint: Path) -> None:
    proc, url = start_run(
        [
            str(video),
            "--checkpoint",
            str(checkpoint),
            "--scene-change",
            "--fps",
            "5",
            "--max-interval",
            "30",
            "--beam",
            "1",
        ]
    )
    try:
        captions, _ = asyncio.run(collect_run(url, 3))
    finally:
        stop_run(proc)
    assert [c["t_start_ms"] for c in captions] == [0, 2000, 4000]  # at the cuts, ±1 frame


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/video.mp4"], "no such file"),
        (["rtsp://127.0.0.1:9/none"], "could not open"),
        (["ftp://example.com/x.mp4"], "accepted"),
        (["{video}", "--fps", "0"], "fps"),
        (["{video}", "--max-age-ms", "nan"], "--max-age-ms: expected a positive number"),
        (["{video}", "--max-wait-ms", "-5"], "--max-wait-ms: expected a number >= 0"),
        (["{video}", "--port", "99999"], "--port: expected a TCP port"),
        (["{video}", "--device", "tpu"], "unsupported device 'tpu'; accepted: 'cpu', 'cuda'"),
        (["{video}", "--redis-url", "foo://x"], "not a Redis URL: 'foo://x'"),
        (["{video}", "--loop"], "--loop needs --live"),
        (["{video}", "--checkpoint", "/nonexistent.pt"], "checkpoint not found"),
    ],
)
def test_bad_input_exits_2(video: Path, args: list[str], message: str, tmp_path: Path) -> None:
    args = [a.replace("{video}", str(video)) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "stream.cli", "run", *args],
        capture_output=True,
        text=True,
        timeout=T * 2,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_not_a_video_exits_2(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video")
    done = subprocess.run(
        [sys.executable, "-m", "stream.cli", "run", str(fake)],
        capture_output=True,
        text=True,
        timeout=T * 2,
        check=False,
    )
    assert done.returncode == 2 and "notes.mp4" in done.stderr, done.stderr


def test_live_source_with_a_slow_worker_never_captions_late(redis_server, video: Path) -> None:  # type: ignore[no-untyped-def]
    """A worker slower than the camera: frames too old when it gets to them are skipped,
    and so are captions done only past the max age (issue 27: the age was checked only
    before captioning); every caption published is younger than the max age."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    spec = parse_source(str(video), name="livecam", live=True)
    capture = Capture(client, spec, CaptureConfig(fps=5, loop=True))
    thread = threading.Thread(target=capture.run, daemon=True)
    thread.start()
    cap = tiny_captioner()
    slow_s, max_age_ms = 0.3, 600.0  # a frame every 200 ms: frames pile up behind it

    def slow_caption(images: Sequence[Any], sources: Sequence[str], shown: Any) -> Any:
        time.sleep(slow_s)
        return cap.caption(list(images), beam=1)

    worker = Worker(
        client,
        slow_caption,
        WorkerConfig(policy=BatchPolicy(max_batch=1, max_wait_ms=0, max_age_ms=max_age_ms)),
    )
    deadline = time.monotonic() + 6 * TIMEOUT_FACTOR
    worker.run(until=lambda: time.monotonic() > deadline)
    capture.stop()
    thread.join(T)
    captions = [decode_caption(f) for _, f in client.xrange(captions_key("livecam"))]
    assert len(captions) >= 3
    assert worker.stats.stale > 0  # frames were skipped...
    assert int(client.hget(METRICS_KEY, "stale") or 0) == worker.stats.stale  # ...and counted
    # ...and none was published late: capture to caption within the max age
    assert all(c.latency_ms <= max_age_ms + 50 for c in captions), [c.latency_ms for c in captions]
    client.close()


def test_unreachable_live_source_reports_reconnecting_with_backoff(redis_server) -> None:  # type: ignore[no-untyped-def]
    from worker.bus.entries import decode_status
    from worker.bus.keys import status_key

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    spec = parse_source("rtsp://127.0.0.1:9/none", name="gone")
    capture = Capture(client, spec, CaptureConfig(open_timeout_ms=500, reconnect_cap_s=1.0))
    thread = threading.Thread(target=capture.run, daemon=True)
    thread.start()
    time.sleep(3 * TIMEOUT_FACTOR)
    capture.stop()
    thread.join(T)
    states = [decode_status(f) for _, f in client.xrange(status_key("gone"))]
    assert states[0].state == "connecting"
    retries = [s for s in states if s.state == "reconnecting"]
    assert len(retries) >= 2 and "retrying in" in retries[0].detail
    assert states[-1].state == "ended"
    client.close()


def test_file_job_backs_off_when_nobody_consumes(redis_server, video: Path) -> None:  # type: ignore[no-untyped-def]
    from worker.bus.keys import frames_key

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    spec = parse_source(str(video), name="pressure")
    capture = Capture(client, spec, CaptureConfig(fps=10, max_backlog=5))
    thread = threading.Thread(target=capture.run, daemon=True)
    thread.start()
    time.sleep(2 * TIMEOUT_FACTOR)
    assert client.xlen(frames_key("pressure")) == 5  # it waits: nothing taken yet
    assert thread.is_alive()
    worker = Worker(
        client,
        lambda images, sources, shown: tiny_captioner().caption(list(images), beam=1),
        WorkerConfig(policy=BatchPolicy(max_batch=16, max_wait_ms=10)),
    )
    worker.run(until=lambda: worker.stats.captioned >= 60)  # 6 s at 10 samples/s
    thread.join(T)
    assert not thread.is_alive() and capture.published == 60
    client.close()


def test_file_job_trims_captioned_frames_and_keeps_the_newest(redis_server, video: Path) -> None:  # type: ignore[no-untyped-def]
    from worker.bus.entries import decode_caption
    from worker.bus.keys import captions_key, frames_key

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    spec = parse_source(str(video), name="long")
    capture = Capture(client, spec, CaptureConfig(fps=10, max_backlog=5, keep_captioned=4))
    thread = threading.Thread(target=capture.run, daemon=True)
    thread.start()
    worker = Worker(
        client,
        lambda images, sources, shown: tiny_captioner().caption(list(images), beam=1),
        WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=10)),
    )
    worker.run(until=lambda: worker.stats.captioned >= 60)
    thread.join(T)
    assert not thread.is_alive() and capture.published == 60
    # every frame captioned exactly once: trimming took none before its caption
    captions = [decode_caption(f) for _, f in client.xrange(captions_key("long"))]
    assert sorted(c.seq for c in captions) == list(range(60))
    # Redis holds a few frames of the job, not all 60: the newest, captioned ones
    left = client.xrange(frames_key("long"))
    assert capture.trimmed >= 60 - 4 - 2 * 5 and len(left) == 60 - capture.trimmed
    kept = {int(f[b"seq"]) for _, f in left}
    assert kept >= set(range(60 - 4, 60))  # the viewer's /frames still has the newest
    frame_of = {c.seq: c.frame_id for c in captions}
    assert {frame_of[s] for s in kept} == {i.decode() for i, _ in left}
    client.close()


def test_trimming_survives_the_last_pending_frame_acked_meanwhile(
    redis_server, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from worker.bus.keys import frames_key

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    capture = Capture(
        client, parse_source(str(video), name="race"), CaptureConfig(keep_captioned=1)
    )
    capture.register()
    for ms in (1, 2, 3, 4):
        client.xadd(frames_key("race"), {"seq": ms}, id=f"{ms}-0")
        capture._kept.append((ms, 0))
    # XINFO said 1 pending; by XPENDING the worker had acked it: no oldest pending id
    monkeypatch.setattr(client, "xpending", lambda *a: {"pending": 0, "min": None})
    capture._trim_captioned((3, 0), pending=1)  # frames up to 3-0 delivered, all acked
    assert [i for i, _ in client.xrange(frames_key("race"))] == [b"3-0", b"4-0"]
    assert capture.trimmed == 2
    # keep none: every captioned frame goes
    capture = Capture(
        client, parse_source(str(video), name="race"), CaptureConfig(keep_captioned=0)
    )
    capture._kept.extend([(3, 0), (4, 0)])
    capture._trim_captioned((4, 0), pending=0)
    assert client.xlen(frames_key("race")) == 0 and capture.trimmed == 2
    client.close()


def _no_retry_client(url: str) -> redis.Redis:
    """Client-side retries off: capture's own handling of a lost Redis is what is tested."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0))


def test_file_job_waits_out_a_redis_restart_and_goes_on(video: Path) -> None:
    """Redis restarts empty in the middle of a file job: capture waits, registers the
    source again, numbers on (no seq reused), publishes the frames it held, and ends
    saying that the frames before went with the old Redis."""
    from stream.capture.capture import describe_sources
    from stream.embedded_redis import EmbeddedRedis, free_port
    from worker.bus.keys import frames_key

    port = free_port()
    server = EmbeddedRedis(port=port).start()
    client = _no_retry_client(server.url)
    spec = parse_source(str(video), name="restart")
    capture = Capture(client, spec, CaptureConfig(fps=10, max_backlog=5, reconnect_cap_s=0.5))
    thread = threading.Thread(target=capture.run, daemon=True)
    try:
        thread.start()
        wait_for(lambda: client.xlen(frames_key("restart")) == 5, "5 frames (then backlog)")
        server.stop()  # nothing consumed them: lost with a Redis without persistence
        wait_for(lambda: capture.redis_outages == 1, "capture to notice")
        time.sleep(0.5)
        assert thread.is_alive()  # waiting, not dead
        server = EmbeddedRedis(port=port).start()
        wait_for(lambda: client.xlen(frames_key("restart")) == 5, "the next 5 frames")
        live = describe_sources(client)["restart"]
        assert live["state"] == "live"  # registered again, and says what was lost at once
        assert "Redis restarted without its data" in str(live["detail"])
        worker = Worker(
            client,
            lambda images, sources, shown: tiny_captioner().caption(list(images), beam=1),
            WorkerConfig(policy=BatchPolicy(max_batch=16, max_wait_ms=10)),
        )
        worker.run(until=lambda: not thread.is_alive() and worker.stats.captioned >= 55)
        thread.join(T)
        assert not thread.is_alive()
        seqs = [decode_caption(f).seq for _, f in client.xrange(captions_key("restart"))]
        assert seqs == list(range(5, 60))  # the first 5 went with the old Redis; none twice
        ended = describe_sources(client)["restart"]
        assert ended["state"] == "ended"  # and says what went with the old Redis:
        assert "Redis restarted without its data" in str(ended["detail"])
        assert capture.redis_data_lost
    finally:
        capture.stop()
        thread.join(T)
        client.close()
        server.stop()


def test_live_capture_drops_frames_while_redis_is_away_then_resumes(video: Path) -> None:
    from stream.capture.capture import describe_sources
    from stream.embedded_redis import EmbeddedRedis, free_port
    from worker.bus.entries import decode_frame
    from worker.bus.keys import frames_key

    port = free_port()
    server = EmbeddedRedis(port=port).start()
    client = _no_retry_client(server.url)
    spec = parse_source(str(video), name="cam", live=True)
    capture = Capture(client, spec, CaptureConfig(fps=10, loop=True, reconnect_cap_s=0.5))
    thread = threading.Thread(target=capture.run, daemon=True)
    try:
        thread.start()
        wait_for(lambda: capture.published >= 3, "live frames")
        server.stop()
        wait_for(lambda: capture.redis_outages == 1, "capture to notice")
        published_before = capture.published
        time.sleep(1.0)
        assert capture.published == published_before and thread.is_alive()  # dropping, alive
        server = EmbeddedRedis(port=port).start()
        wait_for(lambda: client.xlen(frames_key("cam")) >= 3, "frames after the restart")
        assert describe_sources(client)["cam"]["state"] == "live"
        first = decode_frame(client.xrange(frames_key("cam"), count=1)[0][1])
        assert first.seq >= published_before  # numbering goes on, never reused
    finally:
        capture.stop()
        thread.join(T)
        client.close()
        server.stop()
    assert not thread.is_alive()
