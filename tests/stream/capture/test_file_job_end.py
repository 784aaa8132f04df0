"""A file job says "ended" once its last caption is out, not its last frame (real
Capture and Worker against a real redis-server)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import redis

from stream.capture.capture import Capture, CaptureConfig
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
