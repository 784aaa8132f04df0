"""Redis refusing writes (maxmemory, noeviction) is Redis going away: capture and a
worker wait and go on by themselves (real redis-server of its own, real threads)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from stream.capture.capture import Capture, CaptureConfig
from stream.embedded_redis import EmbeddedRedis
from stream.sources.spec import parse_source
from tests.support.factories import caption_fn, tiny_captioner
from tests.support.runs import T, wait_for
from worker.batching import BatchPolicy
from worker.worker import Worker, WorkerConfig

pytestmark = pytest.mark.integration  # a redis-server of its own, to fill


def test_capture_and_worker_outlive_a_redis_out_of_memory(video: Path) -> None:
    """They exited with OutOfMemoryError within 3 s (a file job's heartbeat thread
    died), and nothing came back when memory was freed."""
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        capture = Capture(
            client,
            parse_source(str(video), name="cam", live=True),
            CaptureConfig(fps=5, loop=True, reconnect_cap_s=0.5),
        )
        worker = Worker(
            redis.Redis.from_url(server.url),
            caption_fn(tiny_captioner()),
            WorkerConfig(policy=BatchPolicy(max_batch=2, max_wait_ms=10), reconnect_cap_s=0.5),
        )
        threads = [
            threading.Thread(target=capture.run, daemon=True),
            threading.Thread(target=worker.run, daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: worker.stats.captioned >= 2, "captions")
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", used // 2)  # every write now: OOM
            time.sleep(3.0)
            assert all(thread.is_alive() for thread in threads), "a part exited"
            assert capture.redis_outages >= 1
            before = worker.stats.captioned
            client.config_set("maxmemory", 0)  # memory free again
            wait_for(lambda: worker.stats.captioned >= before + 3, "captions again")
        finally:
            capture.stop()
            worker.stop()
            for thread in threads:
                thread.join(T)
            client.close()
