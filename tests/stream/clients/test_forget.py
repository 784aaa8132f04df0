"""``scenecast forget``: a source and everything it left in a real Redis, and a running
server that stops listing it."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
from websockets.asyncio.client import connect

from stream.cli.main import main
from stream.server.server import CaptionServer
from tests.support.frames import publish_caption, register, set_status
from tests.support.servers import recv, run_server
from worker.bus.keys import SOURCES_KEY, capture_key, owner_key, source_keys


def test_forget_removes_a_source_and_its_keys_and_servers_stop_listing_it(
    redis_server, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    for name in ("old-cam", "door"):
        register(redis_client, name, live=True)
        set_status(redis_client, name, "ended", "taken down")
        publish_caption(redis_client, name, 0, "a hallway")
    redis_client.hset(capture_key("old-cam"), "read", 5)

    async def body(server: CaptionServer) -> None:
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with connect(url) as ws:
            assert [s["source"] for s in (await recv(ws, "hello"))["sources"]] == [
                "door",
                "old-cam",
            ]
        code = await asyncio.to_thread(main, ["forget", "old-cam", "--redis-url", redis_server.url])
        assert code == 0
        await asyncio.sleep(0.5)  # the hub reads the registry at least every block_ms
        async with connect(url) as ws:
            assert [s["source"] for s in (await recv(ws, "hello"))["sources"]] == ["door"]
            await ws.send(json.dumps({"type": "subscribe", "after": "0"}))
            assert (await recv(ws, "caption"))["source"] == "door"

    run_server(redis_server.url, body)
    assert "forgot old-cam (" in capsys.readouterr().out
    assert redis_client.hget(SOURCES_KEY, "old-cam") is None
    assert redis_client.exists(*source_keys("old-cam")) == 0
    assert redis_client.exists(*source_keys("door")) > 0  # the other untouched

    # refused, and nothing forgotten: a job whose frames workers still hold (their
    # captions would make its log anew, listed nowhere)
    register(redis_client, "job", live=False)
    redis_client.xadd("frames:{job}", {"seq": 0})
    redis_client.xreadgroup("captioners", "w1", {"frames:{job}": ">"}, count=1)
    assert main(["forget", "job", "--redis-url", redis_server.url]) == 2
    assert "job: workers still hold 1 of its frames" in capsys.readouterr().err
    assert redis_client.hget(SOURCES_KEY, "job") is not None
    # refused, and nothing forgotten: an unknown name, a source a capture holds
    redis_client.set(owner_key("door"), "cam-host:7:abc", px=60_000)
    for args, message in [
        (["nobody", "door"], "no source named 'nobody'; known: door"),
        (["door"], "door is being captured (cam-host:7:abc): stop that capture first"),
        (["../x"], "is not a source name"),
    ]:
        assert main(["forget", *args, "--redis-url", redis_server.url]) == 2
        assert message in capsys.readouterr().err
    assert redis_client.hget(SOURCES_KEY, "door") is not None


def test_forgetting_a_source_a_worker_is_reading_stops_nothing(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    """The worker's blocking read of a stream that ``forget`` deletes fails
    (``UNBLOCKED``); it carries on with the other sources and makes the forgotten
    source's stream no more."""
    import threading
    import time

    from tests.support.factories import tiny_captioner
    from tests.support.frames import add_frame, jpeg
    from worker.batching import BatchPolicy
    from worker.bus.keys import captions_key, frames_key
    from worker.worker import Worker, WorkerConfig

    for name in ("gone-cam", "door"):
        register(redis_client, name, live=False)
    cap = tiny_captioner()
    worker = Worker(
        redis_client,
        lambda images, sources, shown: cap.caption(list(images), beam=1),
        WorkerConfig(policy=BatchPolicy(max_batch=2, max_wait_ms=10), block_ms=2000),
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    time.sleep(0.5)  # blocked in its read of both streams
    set_status(redis_client, "gone-cam", "ended", "taken down")
    assert main(["forget", "gone-cam", "--redis-url", redis_server.url]) == 0
    add_frame(redis_client, "door", 0, data=jpeg((200, 30, 30)))
    deadline = time.monotonic() + 20
    while redis_client.xlen(captions_key("door")) == 0 and time.monotonic() < deadline:
        assert thread.is_alive(), "the worker died"
        time.sleep(0.05)
    worker.stop()
    thread.join(10)
    assert redis_client.xlen(captions_key("door")) == 1
    assert redis_client.exists(frames_key("gone-cam")) == 0
    assert worker.stats.reconnects == 0
