"""A capture that dies without a word: its heartbeat (a real Capture against a real
Redis), the rule (pure), and the server telling its clients over a real socket."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.request
from pathlib import Path

import redis
from websockets.asyncio.client import connect

from stream.capture.capture import Capture, CaptureConfig
from stream.capture.liveness import SILENT_MS, silent_sources
from stream.server.server import CaptionServer, ServerConfig
from stream.sources.spec import parse_source
from tests.support.frames import register, set_status
from tests.support.runs import T, wait_for
from tests.support.servers import recv, run_server
from worker.bus.keys import capture_key


def test_a_running_state_with_an_old_heartbeat_is_silent() -> None:
    now = 100_000.0
    states = {"a": "live", "b": "reconnecting", "c": "ended", "d": "live", "e": "connecting"}
    seen = {"a": now - SILENT_MS - 1, "b": now - SILENT_MS - 500, "c": 0.0, "d": now - 10}
    assert silent_sources(states, seen, now_ms=now) == {"a": SILENT_MS + 1, "b": SILENT_MS + 500}
    # "e" has no heartbeat at all (a capture older than the rule): not judged


def test_a_capture_beats_while_it_runs_and_stops_when_it_stops(redis_server, video: Path) -> None:  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(redis_server.url)
    spec = parse_source(str(video), name="beating", live=True)
    capture = Capture(client, spec, CaptureConfig(fps=10, loop=True))
    thread = threading.Thread(target=capture.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: client.hget(capture_key("beating"), "seen_ms") is not None, "a beat")
        first = int(client.hget(capture_key("beating"), "seen_ms") or 0)
        wait_for(lambda: int(client.hget(capture_key("beating"), "seen_ms") or 0) > first, "beats")
        assert (
            abs(time.time() * 1000 - int(client.hget(capture_key("beating"), "seen_ms") or 0))
            < 5000
        )
    finally:
        capture.stop()
        thread.join(T)
    assert not thread.is_alive()
    last = client.hget(capture_key("beating"), "seen_ms")
    time.sleep(2.5)
    assert client.hget(capture_key("beating"), "seen_ms") == last  # no beat after the end
    client.close()


def test_clients_are_told_when_a_capture_goes_silent_and_when_it_is_back(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "door", live=True)
    set_status(redis_client, "door", "live", "rtsp://door")
    redis_client.hset(capture_key("door"), "seen_ms", int(time.time() * 1000))

    async def body(server: CaptionServer) -> None:
        async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
            hello = await recv(ws, "hello")
            assert hello["sources"][0]["state"] == "live"
            await ws.send(json.dumps({"type": "subscribe"}))
            assert (await recv(ws, "status"))["state"] == "live"
            # killed: its last word stays "live", its heartbeat stops
            redis_client.hset(capture_key("door"), "seen_ms", int(time.time() * 1000) - 15_000)
            status = await recv(ws, "status")
            assert status["state"] == "error"
            heard = re.search(r"not been heard from for (\d+) s", status["detail"])
            assert heard is not None and 15 <= int(heard.group(1)) <= 15 + 3 * T
            assert "'live'" in status["detail"]

            def metrics() -> str:
                url = f"http://127.0.0.1:{server.port}/metrics"
                with urllib.request.urlopen(url, timeout=T) as r:
                    return str(r.read().decode())

            assert 'scenecast_source_state{source="door",state="error"}' in await asyncio.to_thread(
                metrics
            )
            async with connect(f"ws://127.0.0.1:{server.port}/ws") as late:  # a new client too
                assert (await recv(late, "hello"))["sources"][0]["state"] == "error"
            # back (restarted): beating again, and it says so itself
            redis_client.hset(capture_key("door"), "seen_ms", int(time.time() * 1000))
            status = await recv(ws, "status")
            assert (status["state"], status["detail"]) == ("live", "rtsp://door")

    run_server(redis_server.url, body, ServerConfig(port=0, block_ms=100))
