"""The websocket server over real sockets, against a real redis-server."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import time
import urllib.request
from typing import Any

import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from stream.server.server import CaptionServer, ServerConfig
from tests.support.frames import jpeg, publish_caption, register
from tests.support.servers import T, recv, run_server, ws_url
from worker.bus.keys import METRICS_KEY, frames_key, preview_key


async def _captions(ws: ClientConnection, n: int) -> list[dict[str, Any]]:
    return [await recv(ws, "caption") for _ in range(n)]


def test_replay_then_live_in_order(redis_server, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "cam", live=False)
    for seq, text in enumerate(["a dog", "a dog", "a cat"]):
        publish_caption(redis_client, "cam", seq, text)

    async def body(server: CaptionServer) -> None:
        async with connect(ws_url(server)) as ws:
            hello = await recv(ws, "hello")
            assert hello["v"] == 1 and [s["source"] for s in hello["sources"]] == ["cam"]
            await ws.send(json.dumps({"type": "subscribe", "sources": ["cam"], "after": "0"}))
            replayed = await _captions(ws, 3)
            assert [c["seq"] for c in replayed] == [0, 1, 2]
            assert [c["segment_id"] for c in replayed] == [0, 0, 1]
            assert [c["is_final"] for c in replayed] == [False, True, False]
            assert [c["t_start_ms"] for c in replayed] == [0, 1000, 2000]
            await asyncio.to_thread(publish_caption, redis_client, "cam", 3, "a bird")
            live = await recv(ws, "caption")
            assert (live["seq"], live["text"], live["segment_id"]) == (3, "a bird", 2)
            assert live["capture_ts"].endswith("Z") and live["id"] > replayed[-1]["id"]

    run_server(redis_server.url, body)


def test_resume_misses_nothing_and_repeats_nothing(redis_server, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "r", live=False)

    async def body(server: CaptionServer) -> None:
        async with connect(ws_url(server)) as ws:
            await recv(ws, "hello")
            await ws.send(json.dumps({"type": "subscribe", "sources": ["r"]}))
            await asyncio.sleep(0.3)  # the subscription is in place: live tail only
            for seq in range(3):
                await asyncio.to_thread(publish_caption, redis_client, "r", seq, f"thing {seq}")
            first = await _captions(ws, 3)
        last_id = first[-1]["id"]
        for seq in range(3, 6):  # published while the client is away
            await asyncio.to_thread(publish_caption, redis_client, "r", seq, f"thing {seq}")
        async with connect(ws_url(server)) as ws:
            await recv(ws, "hello")
            await ws.send(
                json.dumps({"type": "subscribe", "sources": ["r"], "after": {"r": last_id}})
            )
            await asyncio.sleep(0.05)
            await asyncio.to_thread(publish_caption, redis_client, "r", 6, "thing 6")
            second = await _captions(ws, 4)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.5)  # and nothing more: no duplicate
        assert [c["seq"] for c in first + second] == list(range(7))

    run_server(redis_server.url, body)


def test_bad_messages_get_errors_and_the_connection_lives(redis_server, redis_client) -> None:  # type: ignore[no-untyped-def]
    async def body(server: CaptionServer) -> None:
        async with connect(ws_url(server)) as ws:
            await recv(ws, "hello")
            cases = [
                ("not json", "bad_json"),
                ('{"type": "dance"}', "unknown_type"),
                ('{"type": "subscribe", "sources": "cam"}', "bad_field"),
                ('{"type": "subscribe", "source": ["cam"]}', "bad_field"),
                ('{"type": "subscribe", "after": "yesterday"}', "bad_field"),
                ('{"type": "ping", "v": 9}', "unsupported_version"),
                # ids later than the server's time: a replay after one would be silent
                ('{"type": "subscribe", "after": "99999999999999-0"}', "bad_field"),
                (json.dumps({"type": "subscribe", "after": f"{2**64 - 1}-{2**64 - 1}"}),
                 "bad_field"),
                ('{"type": "subscribe", "sources": ["a"], "after": {"a": "99999999999999-5"}}',
                 "bad_field"),
            ]  # fmt: skip
            for text, code in cases:
                await ws.send(text)
                error = await recv(ws, "error")
                assert error["code"] == code, text
                assert error["message"]
                if "9999999" in text or "1844674" in text:
                    assert "is later than the server's time" in error["message"], text
            await ws.send(b"\x00\x01")
            assert (await recv(ws, "error"))["code"] == "bad_message"
            await ws.send(json.dumps({"type": "ping", "id": 7}))
            assert (await recv(ws, "pong"))["id"] == 7
        text = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.port}/metrics")
        assert "scenecast_server_bad_messages_total 10" in text

    run_server(redis_server.url, body)


def test_a_client_flooding_messages_is_read_at_its_rate_and_loses_no_reply(
    redis_server, redis_client
) -> None:  # type: ignore[no-untyped-def]
    """Past its burst, a client's messages are read at the configured rate (its socket
    fills up meanwhile): each still answered, in order; another client is not held up
    behind it for seconds as before (it gets its hello and pong)."""

    async def body(server: CaptionServer) -> None:
        async with connect(ws_url(server)) as flood, connect(ws_url(server)) as other:
            await recv(flood, "hello")
            await recv(other, "hello")
            started = time.monotonic()
            for i in range(40):
                await flood.send(json.dumps({"type": "ping", "id": i}))
            await other.send(json.dumps({"type": "ping", "id": "other"}))
            assert (await recv(other, "pong"))["id"] == "other"
            pongs = [(await recv(flood, "pong"))["id"] for _ in range(40)]
            assert pongs == list(range(40))
            # 10 at once, then 30 at 50 a second: 0.6 s at least, however fast the host
            assert time.monotonic() - started >= 0.55

    run_server(
        redis_server.url,
        body,
        ServerConfig(port=0, block_ms=100, client_rate=50.0, client_burst=10.0),
    )


def test_subscribing_to_an_unknown_source_says_so_and_waits_for_it(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    """A typo would be silence: the client is told which sources there are; the
    subscription stands, and a source that appears later is followed."""
    register(redis_client, "cam", live=True)

    async def body(server: CaptionServer) -> None:
        async with connect(ws_url(server)) as ws:
            await recv(ws, "hello")
            await ws.send(json.dumps({"type": "subscribe", "sources": ["door", "cam"]}))
            error = await recv(ws, "error")
            assert error["code"] == "unknown_source"
            assert error["message"].startswith("no source named 'door' (yet); known: cam.")
            register(redis_client, "door", live=True)
            publish_caption(redis_client, "door", 0, "a door")
            caption = await recv(ws, "caption")
            assert (caption["source"], caption["text"]) == ("door", "a door")

    run_server(redis_server.url, body)


def test_a_later_subscribe_replaces_a_replay_and_unsubscribe_ends_it(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    """after "0" then at once after "$": the live tail only, not the whole log first;
    then after an id: from there, once each; unsubscribe: nothing more of it."""
    register(redis_client, "cam", live=True)
    ids = [publish_caption(redis_client, "cam", seq, f"x {seq}") for seq in range(300)]

    async def body(server: CaptionServer) -> None:
        async with connect(ws_url(server)) as ws:
            await recv(ws, "hello")
            for after in ("0", "$"):
                await ws.send(json.dumps({"type": "subscribe", "sources": ["cam"], "after": after}))
            await asyncio.sleep(0.3)
            publish_caption(redis_client, "cam", 300, "live")
            assert (await recv(ws, "caption"))["seq"] == 300  # nothing of the replay first
            await ws.send(json.dumps({"type": "subscribe", "sources": ["cam"], "after": ids[289]}))
            got = [(await recv(ws, "caption"))["seq"] for _ in range(11)]
            assert got == list(range(290, 301))
            await ws.send(json.dumps({"type": "unsubscribe", "sources": ["cam"]}))
            await ws.send(json.dumps({"type": "ping", "id": "after"}))
            assert (await recv(ws, "pong"))["id"] == "after"
            publish_caption(redis_client, "cam", 301, "not wanted")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(recv(ws, "caption"), 0.5)

    run_server(redis_server.url, body, ServerConfig(port=0, block_ms=100, queue_size=5))


def test_slow_client_gets_a_gap_then_resumes(redis_server, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "g", live=True)

    async def body(server: CaptionServer) -> None:
        async with connect(ws_url(server)) as ws:
            await recv(ws, "hello")
            await ws.send(json.dumps({"type": "subscribe", "sources": ["g"]}))
            await asyncio.sleep(0.3)

            def burst() -> None:  # 60 captions land at once, in one XREAD: the queue overflows
                pipe = redis_client.pipeline(transaction=True)
                for seq in range(60):
                    publish_caption(pipe, "g", seq, f"x {seq}")  # type: ignore[arg-type]
                assert all(pipe.execute())

            await asyncio.to_thread(burst)
            seen: list[int] = []
            gap = None
            while gap is None:
                message = await recv(ws)
                if message["type"] == "caption":
                    seen.append(message["seq"])
                elif message["type"] == "gap":
                    gap = message
            assert gap["dropped"] > 0
            while len(seen) < 5:
                seen.append((await recv(ws, "caption"))["seq"])
            await ws.send(
                json.dumps({"type": "subscribe", "sources": ["g"], "after": gap["resume_after"]})
            )
            while len(seen) < 60:
                seen.append((await recv(ws, "caption"))["seq"])
            assert seen == list(range(60))

    run_server(redis_server.url, body, ServerConfig(port=0, block_ms=100, queue_size=5))


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=T) as response:
        return str(response.read().decode())


@pytest.mark.parametrize(
    ("compression", "extensions"), [("none", []), ("deflate", ["PerMessageDeflate"])]
)
def test_compression_is_what_the_server_says_and_the_captions_are_the_same(
    redis_server, redis_client, compression: str, extensions: list[str]
) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, f"z{compression}", live=True)
    publish_caption(redis_client, f"z{compression}", 0, "a dog on a beach", grid=(7, 7))

    async def body(server: CaptionServer) -> None:
        async with connect(ws_url(server)) as ws:  # a client that offers permessage-deflate
            assert [type(e).__name__ for e in ws.protocol.extensions] == extensions
            await recv(ws, "hello")
            await ws.send(json.dumps({"type": "subscribe", "after": "0"}))
            caption = await recv(ws, "caption")
        assert caption["text"] == "a dog on a beach" and caption["attention"]["grid"] == [7, 7]

    run_server(redis_server.url, body, ServerConfig(port=0, block_ms=100, compression=compression))


def test_a_live_caption_is_encoded_once_for_all_its_clients(
    redis_server, redis_client, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import stream.server.hub

    built: list[int] = []
    real = stream.server.hub.caption_message

    def counting(*args: Any, **kwargs: Any) -> Any:
        message = real(*args, **kwargs)
        built.append(message.seq)
        return message

    monkeypatch.setattr(stream.server.hub, "caption_message", counting)
    register(redis_client, "once", live=True)

    async def body(server: CaptionServer) -> None:
        clients = [await connect(ws_url(server)) for _ in range(5)]
        for ws in clients:
            await recv(ws, "hello")
            await ws.send(json.dumps({"type": "subscribe", "sources": ["once"]}))
        await asyncio.sleep(0.3)  # the subscriptions are in place: live tail
        await asyncio.to_thread(publish_caption, redis_client, "once", 0, "a red car", grid=(2, 2))
        texts = []
        for ws in clients:
            texts.append(await asyncio.wait_for(_recv_text(ws, "caption"), T))
            await ws.close()
        assert len(set(texts)) == 1  # the very same text for every client
        assert built == [0]  # built and encoded once, not once per client

    run_server(redis_server.url, body)


def test_a_client_may_ask_for_captions_without_attention(redis_server, redis_client) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "lean", live=True)
    publish_caption(redis_client, "lean", 0, "a dog on a beach", grid=(7, 7))

    async def body(server: CaptionServer) -> None:
        async with connect(ws_url(server)) as full, connect(ws_url(server)) as lean:
            for ws, extra in ((full, {}), (lean, {"attention": False})):
                await recv(ws, "hello")
                await ws.send(json.dumps({"type": "subscribe", "after": "0", **extra}))
            replayed = [await recv(ws, "caption") for ws in (full, lean)]
            await asyncio.to_thread(publish_caption, redis_client, "lean", 1, "a cat", grid=(7, 7))
            live = [await recv(ws, "caption") for ws in (full, lean)]
            await lean.send(json.dumps({"type": "subscribe", "attention": True}))  # back on
            await asyncio.sleep(0.2)
            await asyncio.to_thread(publish_caption, redis_client, "lean", 2, "a bird", grid=(7, 7))
            again = await recv(lean, "caption")
        for with_grids, without in (replayed, live):
            assert with_grids["attention"]["grid"] == [7, 7] and "attention" not in without
            assert {k: v for k, v in with_grids.items() if k != "attention"} == without
        assert again["seq"] == 2 and again["attention"]["grid"] == [7, 7]

    run_server(redis_server.url, body)


async def _recv_text(ws: ClientConnection, type_: str) -> str:
    while True:
        text = str(await ws.recv())
        if json.loads(text)["type"] == type_:
            return text


def test_http_endpoints(redis_server, redis_client) -> None:  # type: ignore[no-untyped-def]
    async def body(server: CaptionServer) -> None:
        base = f"http://127.0.0.1:{server.port}"
        assert await asyncio.to_thread(_get, base + "/healthz") == "ok\n"
        assert "<html" in (await asyncio.to_thread(_get, base + "/")).lower()
        metrics = await asyncio.to_thread(_get, base + "/metrics")
        assert "scenecast_up 1" in metrics and "scenecast_clients 0" in metrics
        redis_client.hset(
            METRICS_KEY,
            mapping={"captioned": 5, "seconds:caption": 1.25, "cpu_seconds:caption": 1.125},
        )
        metrics = await asyncio.to_thread(_get, base + "/metrics")
        assert "scenecast_worker_captioned_total 5" in metrics
        assert 'scenecast_worker_stage_seconds_total{stage="caption"} 1.250' in metrics
        assert "scenecast_worker_caption_cpu_seconds_total 1.125" in metrics
        with pytest.raises(urllib.error.HTTPError) as info:
            await asyncio.to_thread(_get, base + "/nope")
        assert info.value.code == 404
        info.value.close()

    run_server(redis_server.url, body)


def _request(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=T)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_http_methods_other_than_get_and_head_are_refused(redis_server) -> None:  # type: ignore[no-untyped-def]
    async def body(server: CaptionServer) -> None:
        port = server.port
        for path in ("/healthz", "/", "/metrics", "/nope"):
            got, head = await asyncio.gather(
                asyncio.to_thread(_request, port, "GET", path),
                asyncio.to_thread(_request, port, "HEAD", path),
            )
            assert head[0] == got[0], path  # the same answer, without its body
            assert head[2] == b"" and got[2], path
            if path != "/metrics":  # (its figures move between two requests)
                assert head[1]["Content-Length"] == str(len(got[2])), path
        for method, path in [("POST", "/metrics"), ("DELETE", "/"), ("PUT", "/captions/a.vtt")]:
            status, headers, text = await asyncio.to_thread(_request, port, method, path)
            assert status == 405 and headers["Allow"] == "GET, HEAD", (method, path)
            assert f"{method} {path} is not served; accepted: GET and HEAD" in text.decode()
        status, headers, _ = await asyncio.to_thread(_request, port, "HEAD", "/ws")
        assert status == 405 and headers["Allow"] == "GET"

    run_server(redis_server.url, body)


def _get_bytes(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=T) as response:
        return str(response.headers["Content-Type"]), bytes(response.read())


def _http_error(url: str) -> tuple[int, str]:
    with pytest.raises(urllib.error.HTTPError) as info:
        _get_bytes(url)
    body = info.value.read().decode()
    info.value.close()
    return info.value.code, body


def test_a_captions_frame_is_served_while_redis_keeps_it(redis_server, redis_client) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "pic", live=True)
    picture = jpeg((200, 30, 30))
    publish_caption(redis_client, "pic", 0, "a red square", frame_data=picture, grid=(2, 3))

    async def body(server: CaptionServer) -> None:
        async with connect(ws_url(server)) as ws:
            await recv(ws, "hello")
            await ws.send(json.dumps({"type": "subscribe", "after": "0"}))
            caption = await recv(ws, "caption")
        assert caption["frame"] == "1-0"
        assert caption["attention"]["grid"] == [2, 3]
        assert caption["attention"]["fit"] == "letterbox"
        assert caption["attention"]["weights"][2] == [0, 0, 255, 0, 0, 0]
        base = f"http://127.0.0.1:{server.port}"
        kind, data = await asyncio.to_thread(_get_bytes, f"{base}/frames/pic/1-0.jpg")
        assert (kind, data) == ("image/jpeg", picture)
        redis_client.xtrim(frames_key("pic"), maxlen=0)  # as a live source's MAXLEN does
        code, text = await asyncio.to_thread(_http_error, f"{base}/frames/pic/1-0.jpg")
        assert code == 404 and "not kept" in text
        for bad, what in [
            ("/frames/pic/yesterday.jpg", "not a Redis stream id"),
            ("/frames/pic/1-0.png", "/frames/<source>/<frame id>.jpg"),
            ("/frames/no%20such/1-0.jpg", "/frames/<source>/<frame id>.jpg"),
        ]:
            code, text = await asyncio.to_thread(_http_error, base + bad)
            assert code == 400 and what in text, bad
        metrics = await asyncio.to_thread(_get, base + "/metrics")
        assert "scenecast_server_frames_served_total 1" in metrics
        assert "scenecast_server_frames_missing_total 1" in metrics

    run_server(redis_server.url, body)


def test_a_frames_preview_is_served_in_its_place_while_kept(redis_server, redis_client) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "big", live=True)
    model_frame, preview = jpeg((30, 30, 200)), jpeg((30, 30, 200), size=(320, 240))
    publish_caption(redis_client, "big", 0, "a blue square", frame_data=model_frame)
    redis_client.xadd(preview_key("big"), {"data": preview, "width": 320, "height": 240}, id="1-0")

    async def body(server: CaptionServer) -> None:
        url = f"http://127.0.0.1:{server.port}/frames/big/1-0.jpg"
        assert await asyncio.to_thread(_get_bytes, url) == ("image/jpeg", preview)
        redis_client.xtrim(preview_key("big"), maxlen=0)  # gone: the model's frame instead
        assert await asyncio.to_thread(_get_bytes, url) == ("image/jpeg", model_frame)

    run_server(redis_server.url, body)


def test_listen_prints_captions_as_json_lines(redis_server, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    register(redis_client, "l", live=False)

    async def body(server: CaptionServer) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "stream.cli",
            "listen",
            "--url",
            ws_url(server),
            "--json",
            "--limit",
            "2",
            "--after",
            "0",
            stdout=subprocess.PIPE,
        )
        await asyncio.sleep(1.0)
        for seq in range(2):
            await asyncio.to_thread(publish_caption, redis_client, "l", seq, f"a thing {seq}")
        out, _ = await asyncio.wait_for(proc.communicate(), T * 3)
        assert proc.returncode == 0
        lines = [json.loads(line) for line in out.decode().splitlines()]
        captions = [m for m in lines if m["type"] == "caption"]
        assert [c["text"] for c in captions] == ["a thing 0", "a thing 1"]

    run_server(redis_server.url, body)


def test_listen_whose_subscribe_is_refused_says_so_and_exits_2(redis_server) -> None:  # type: ignore[no-untyped-def]
    """A bad --after (an id later than the server's time) was an error line and then
    silence for ever."""
    from stream.clients.listen import listen

    async def body(server: CaptionServer) -> None:
        out = io.StringIO()
        code = await asyncio.wait_for(
            listen(ws_url(server), sources=None, after="99999999999999-0", as_json=False, out=out),
            T,
        )
        assert code == 2

    run_server(redis_server.url, body)


def test_a_port_in_use_is_a_clear_error(redis_server) -> None:  # type: ignore[no-untyped-def]
    import socket

    from stream.exceptions import StreamError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def start() -> None:
            server = CaptionServer(redis_server.url, ServerConfig(host="127.0.0.1", port=port))
            with pytest.raises(StreamError, match=f"cannot listen on 127.0.0.1:{port}: .*--port 0"):
                await server.start()
            assert server._hub_task is not None and server._hub_task.done()  # nothing left

        asyncio.run(start())


def test_sigterm_to_serve_closes_each_client_as_going_away(redis_server) -> None:  # type: ignore[no-untyped-def]
    """docker stop, systemd and Kubernetes send SIGTERM: clients are told the server is
    going away (1001), as with Ctrl+C, not an internal error (1011); exit code 0."""
    import re
    import signal
    import subprocess
    import sys

    serve = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "serve", "--redis-url", redis_server.url,
         "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert serve.stdout is not None
        banner = serve.stdout.readline()
        port = int(re.search(r"ws://127\.0\.0\.1:(\d+)/ws", banner).group(1))  # type: ignore[union-attr]

        async def body() -> int | None:
            async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await recv(ws, "hello")
                serve.send_signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), T)
                return ws.close_code

        assert asyncio.run(body()) == 1001
        assert serve.wait(T) == 0
    finally:
        serve.kill()
        serve.wait()
        for stream in (serve.stdout, serve.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("leave", ["close", "reset"])
def test_a_client_that_leaves_with_replies_owed_is_gone_and_the_server_stops(
    redis_server,  # type: ignore[no-untyped-def]
    leave: str,
) -> None:
    """100 messages that each get an answer (``{}``: an error), then a close or a TCP
    reset: the client stayed counted for good and the server never stopped (its
    handler waited for room in a reply queue whose writer had died with the socket)."""
    import socket
    import struct

    async def main() -> None:
        server = await CaptionServer(redis_server.url, ServerConfig(port=0, block_ms=100)).start()
        try:
            async with connect(ws_url(server), close_timeout=1) as ws:
                await recv(ws, "hello")
                for _ in range(100):
                    await ws.send("{}")
                if leave == "reset":  # SO_LINGER 0: the close sends a RST
                    sock = ws.transport.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    ws.transport.abort()
            deadline = time.monotonic() + 1.0 * T / 5  # a second (scaled as every timeout)
            while server.hub.clients:
                assert time.monotonic() < deadline, f"{len(server.hub.clients)} client(s) left"
                await asyncio.sleep(0.02)
            assert "scenecast_clients 0" in await server.metrics_text()
        finally:
            await asyncio.wait_for(server.stop(), T)

    asyncio.run(main())


@pytest.mark.integration  # a redis-server of its own, to freeze
def test_a_frozen_redis_is_unhealthy_and_its_captures_are_not_called_killed() -> None:
    """Redis stopped (SIGSTOP): /healthz said ok throughout (a frozen Redis raises
    nothing, it only never answers), and once it answered again every running capture,
    which could not beat meanwhile, was called killed until its next heartbeat."""
    import os
    import signal

    from stream.embedded_redis import EmbeddedRedis
    from tests.support.frames import set_status
    from worker.bus.keys import capture_key

    with EmbeddedRedis() as redis_server:
        client = redis.Redis.from_url(redis_server.url)
        register(client, "cam", live=True)
        set_status(client, "cam", "live")

        async def body(server: CaptionServer) -> None:
            base = f"http://127.0.0.1:{server.port}"
            now_ms = client.time()[0] * 1000
            client.hset(capture_key("cam"), "seen_ms", now_ms)  # a capture beating
            assert await asyncio.to_thread(_get, base + "/healthz") == "ok\n"
            pid = redis_server._proc.pid  # type: ignore[union-attr]
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(4.0)  # the hub's read: blocked past its block and 3 s
                code, text = await asyncio.to_thread(_http_error, base + "/healthz")
                assert code == 503 and text.startswith("redis not answering for ")
                assert "scenecast_up 0" in await server.metrics_text()
            finally:
                os.kill(pid, signal.SIGCONT)
            # the capture's last beat is as old as the freeze and more, as if it was
            # long: it could not beat while Redis was frozen, so it is not silent
            client.hset(capture_key("cam"), "seen_ms", now_ms - 60_000)
            deadline = time.monotonic() + T
            while (await asyncio.to_thread(_http_error_or_ok, base + "/healthz")) != "ok\n":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            await server.hub.check_captures(every_s=0)
            assert server.hub.silent == {}
            assert server.hub.shown("cam")["state"] == "live"

        run_server(redis_server.url, body, ServerConfig(port=0, block_ms=100))
        client.close()


def _http_error_or_ok(url: str) -> str:
    try:
        return _get(url)
    except urllib.error.HTTPError as exc:
        exc.close()
        return f"{exc.code}"
