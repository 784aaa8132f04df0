"""Capture → caption latency on /metrics: the histogram (pure), then a real server."""

from __future__ import annotations

import asyncio
import json
import math
import urllib.request

import pytest
import redis
from websockets.asyncio.client import connect

from stream.clients.forget import forget_sources
from stream.server.latency_histogram import Histogram, LatencyHistograms
from stream.server.server import CaptionServer
from tests.support.frames import publish_caption, register
from tests.support.servers import T, recv, run_server


def test_buckets_count_values_up_to_their_bound() -> None:
    h = Histogram(bounds=(0.1, 0.5, 1.0))
    for value in (0.05, 0.1, 0.3, 0.5, 0.9, 7.0, -1.0, math.nan):
        h.observe(value)
    assert h.counts == [2, 2, 1, 1]  # <=0.1, <=0.5, <=1, above; the clock errors not counted
    assert h.n == 6 and h.total == pytest.approx(8.85)
    with pytest.raises(ValueError):
        Histogram(bounds=(0.5, 0.1))


def test_the_exposition_is_cumulative_per_source() -> None:
    hist = LatencyHistograms()
    assert hist.lines() == []
    for ms in (40, 120, 120, 2500):
        hist.observe("door", ms)
    hist.observe("yard", 90)
    lines = hist.lines()
    assert lines[0] == "# TYPE scenecast_caption_latency_seconds histogram"
    door = {line.split(" ")[0]: line.split(" ")[1] for line in lines if 'source="door"' in line}
    assert door['scenecast_caption_latency_seconds_bucket{source="door",le="0.05"}'] == "1"
    assert door['scenecast_caption_latency_seconds_bucket{source="door",le="0.15"}'] == "3"
    assert door['scenecast_caption_latency_seconds_bucket{source="door",le="2"}'] == "3"
    assert door['scenecast_caption_latency_seconds_bucket{source="door",le="3"}'] == "4"
    assert door['scenecast_caption_latency_seconds_bucket{source="door",le="+Inf"}'] == "4"
    assert door['scenecast_caption_latency_seconds_count{source="door"}'] == "4"
    assert float(door['scenecast_caption_latency_seconds_sum{source="door"}']) == pytest.approx(
        2.78
    )
    assert 'scenecast_caption_latency_seconds_count{source="yard"} 1' in lines


def test_metrics_show_the_latency_of_the_live_captions_the_server_saw(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "door", live=True)
    publish_caption(redis_client, "door", 0, "before the server started")  # not live: not seen

    async def body(server: CaptionServer) -> None:
        async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
            await recv(ws, "hello")
            await ws.send(json.dumps({"type": "subscribe"}))
            for seq in (1, 2, 3):
                await asyncio.to_thread(publish_caption, redis_client, "door", seq, "a dog")
                await recv(ws, "caption")

        def metrics() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=T) as r:
                return str(r.read().decode())

        text = await asyncio.to_thread(metrics)
        assert 'scenecast_caption_latency_seconds_count{source="door"} 3' in text
        # tests/frames.py publishes each caption with a latency of 1 ms
        assert 'scenecast_caption_latency_seconds_bucket{source="door",le="0.05"} 3' in text
        assert 'scenecast_caption_latency_seconds_sum{source="door"} 0.003000' in text
        # forgotten: its series leave /metrics with it (they stayed for good)
        await asyncio.to_thread(forget_sources, redis_client, ["door"])
        deadline = asyncio.get_running_loop().time() + T
        while 'source="door"' in (text := await asyncio.to_thread(metrics)):
            assert asyncio.get_running_loop().time() < deadline, text
            await asyncio.sleep(0.1)

    run_server(redis_server.url, body)


def test_metrics_count_the_workers_alive(
    redis_server, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import threading
    import time

    from tests.support.factories import caption_fn, tiny_captioner
    from worker.batching import BatchPolicy
    from worker.bus.keys import WORKERS_KEY
    from worker.worker import Worker, WorkerConfig

    monkeypatch.setattr("stream.server.metrics_page.WORKER_SEEN_MS", 1500)
    register(redis_client, "door", live=True)
    worker = Worker(
        redis.Redis.from_url(redis_server.url),
        caption_fn(tiny_captioner()),
        WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=0)),
    )
    thread = threading.Thread(target=worker.run, daemon=True)

    async def body(server: CaptionServer) -> None:
        def reading() -> int:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=T) as r:
                text = r.read().decode()
            (line,) = [x for x in text.splitlines() if x.startswith("scenecast_workers ")]
            return int(line.split()[1])

        async def until(n: int) -> None:
            deadline = time.monotonic() + T
            while (got := await asyncio.to_thread(reading)) != n:
                assert time.monotonic() < deadline, f"{got} workers reading, not {n}"
                await asyncio.sleep(0.1)

        assert await asyncio.to_thread(reading) == 0  # no worker yet
        redis_client.hset(WORKERS_KEY, "killed-yesterday", int(time.time() * 1000) - 86_400_000)
        thread.start()
        await until(1)  # alive, with nothing to caption
        assert redis_client.hkeys(WORKERS_KEY) == [worker.config.consumer.encode()]  # pruned
        worker.stop()
        await asyncio.to_thread(thread.join, T)
        assert await asyncio.to_thread(reading) == 0  # stopped: it said so
        # one that was killed says nothing: it drops out WORKER_SEEN_MS after its last beat
        redis_client.hset(WORKERS_KEY, "killed", int(time.time() * 1000))
        assert await asyncio.to_thread(reading) == 1
        await until(0)

    try:
        run_server(redis_server.url, body)
    finally:
        worker.stop()
        thread.join(T)
