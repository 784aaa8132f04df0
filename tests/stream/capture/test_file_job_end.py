"""A file job says "ended" once its last caption is out, not its last frame (real
Capture and Worker against a real redis-server)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from stream.capture.capture import Capture, CaptureConfig
from stream.exceptions import StreamError
from stream.sources.spec import parse_source
from tests.support.factories import caption_fn, tiny_captioner
from tests.support.runs import T, wait_for
from worker.batching import BatchPolicy
from worker.bus.entries import decode_status
from worker.bus.keys import captions_key, status_key
from worker.worker import Worker, WorkerConfig


def _states(client: redis.Redis, source: str) -> list[tuple[str, str]]:
    """(entry id, state) of each status of ``source``, in order."""
    return [
        (entry_id.decode(), decode_status(fields).state)
        for entry_id, fields in client.xrange(status_key(source))
    ]


def test_a_file_job_ends_after_its_last_caption_is_published(
    redis_server, redis_client: redis.Redis, video: Path
) -> None:  # type: ignore[no-untyped-def]
    """The workers start only once every frame is published: "ended" used to be said
    then, before any caption (the viewer showed ENDED with every frame pending)."""
    capture = Capture(redis_client, parse_source(str(video), name="job"), CaptureConfig(fps=2))
    thread = threading.Thread(target=capture.run, daemon=True)
    thread.start()
    worker = Worker(
        redis.Redis.from_url(redis_server.url),
        caption_fn(tiny_captioner()),
        WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=10)),
    )
    try:
        wait_for(lambda: capture.published == 12, "every frame published")  # 6 s at 2 fps
        time.sleep(1.0)  # "ended" came at once: now not while no caption is out
        assert [state for _, state in _states(redis_client, "job")] == ["connecting", "live"]
        working = threading.Thread(target=worker.run, daemon=True)
        working.start()
        thread.join(T)
        assert not thread.is_alive()
        states = _states(redis_client, "job")
        assert [state for _, state in states] == ["connecting", "live", "ended"]
        captions = redis_client.xrange(captions_key("job"))
        assert len(captions) == 12
        last_caption = captions[-1][0].decode()
        ended = states[-1][0]
        assert tuple(map(int, ended.split("-"))) > tuple(map(int, last_caption.split("-")))
    finally:
        capture.stop()
        worker.stop()


def test_a_killed_file_job_resumes_and_an_ended_one_is_refused_unless_restarted(
    redis_server, redis_client: redis.Redis, video: Path
) -> None:  # type: ignore[no-untyped-def]
    """A file job's capture killed mid-way and started again read the file from the
    start (1,175 captions for 795 frames); one started again on a job that had ended
    captioned it twice. Now the first resumes after the last frame published, the second
    is refused unless --restart (which replaces the log)."""
    import signal
    import subprocess
    import sys

    argv = [sys.executable, "-m", "stream.cli", "capture", str(video), "--name", "job",
            "--fps", "2", "--redis-url", redis_server.url]  # fmt: skip
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # no worker: it publishes the 12 frames, then waits for their captions
        wait_for(lambda: redis_client.xlen("frames:{job}") == 12, "the frames published")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(T)
    worker = Worker(
        redis.Redis.from_url(redis_server.url),
        caption_fn(tiny_captioner()),
        WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=10)),
    )
    working = threading.Thread(target=worker.run, daemon=True)
    working.start()
    try:
        again = Capture(redis_client, parse_source(str(video), name="job"), CaptureConfig(fps=2))
        again.run()  # once the workers captioned the frames the killed one published
        assert again.published == 0
        seqs = [int(f[b"seq"]) for _, f in redis_client.xrange(captions_key("job"))]
        assert seqs == list(range(12))  # each frame once
        assert _states(redis_client, "job")[-1][1] == "ended"

        refused = Capture(redis_client, parse_source(str(video), name="job"), CaptureConfig(fps=2))
        with pytest.raises(
            StreamError, match=r"job: a job under this name has ended \(12 captions"
        ):
            refused.run()
        assert redis_client.xlen(captions_key("job")) == 12  # nothing appended

        restarted = Capture(
            redis_client, parse_source(str(video), name="job"), CaptureConfig(fps=2, restart=True)
        )
        restarted.run()
        seqs = [int(f[b"seq"]) for _, f in redis_client.xrange(captions_key("job"))]
        assert restarted.published == 12 and seqs == list(range(12))  # the log replaced
    finally:
        worker.stop()
        working.join(T)
