"""The server's access checks over real sockets, against a real redis-server: a token,
the websocket's Origin, the Host a request is addressed to; and ``scenecast listen``
with a token."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys

import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from stream.server.server import CaptionServer, ServerConfig, banner
from tests.support.frames import jpeg, publish_caption, register
from tests.support.servers import T, recv, run_server

TOKEN = "a-test-token-0123456789"


def _request(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET ``path`` with exactly these headers (http.client sends the Host it is given)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=T)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def test_with_a_token_nothing_but_healthz_is_served_without_it(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "cam", live=True)
    picture = jpeg((200, 30, 30))
    publish_caption(redis_client, "cam", 0, "a red square", frame_data=picture)

    async def body(server: CaptionServer) -> None:
        port, ws_url = server.port, f"ws://127.0.0.1:{server.port}/ws"
        for path in ("/", "/metrics", "/frames/cam/1-0.jpg", f"/metrics?token={TOKEN}x"):
            status, text = await asyncio.to_thread(_request, port, path)
            assert status == 401, path
            assert "token" in text and TOKEN not in text, path
        assert await asyncio.to_thread(_request, port, "/healthz") == (200, "ok\n")
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url):
                pass
        assert info.value.response.status_code == 401
        assert info.value.response.headers["WWW-Authenticate"] == 'Bearer realm="scenecast"'
        with pytest.raises(InvalidStatus):
            async with connect(ws_url, additional_headers={"Authorization": "Bearer nope"}):
                pass

        # with it: the header (scripts) or the query (browsers) both work
        for url, headers in [
            (ws_url, {"Authorization": f"Bearer {TOKEN}"}),
            (f"{ws_url}?token={TOKEN}", None),
        ]:
            async with connect(url, additional_headers=headers) as ws:
                assert (await recv(ws, "hello"))["type"] == "hello"
                await ws.send(json.dumps({"type": "subscribe", "after": "0"}))
                assert (await recv(ws, "caption"))["text"] == "a red square"
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        status, _ = await asyncio.to_thread(_request, port, "/frames/cam/1-0.jpg", bearer)
        assert status == 200
        status, page = await asyncio.to_thread(_request, port, f"/?token={TOKEN}")
        assert status == 200 and "<html" in page.lower()
        status, metrics = await asyncio.to_thread(_request, port, "/metrics", bearer)
        assert status == 200
        assert 'scenecast_server_refused_requests_total{reason="token"} 6' in metrics
        assert 'scenecast_server_refused_requests_total{reason="origin"} 0' in metrics

    run_server(redis_server.url, body, ServerConfig(port=0, block_ms=100, token=TOKEN))


def test_a_page_of_another_site_cannot_open_the_websocket(redis_server) -> None:  # type: ignore[no-untyped-def]
    async def body(server: CaptionServer) -> None:
        url = f"ws://127.0.0.1:{server.port}/ws"
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, origin="https://evil.example"):  # type: ignore[arg-type]
                pass
        assert info.value.response.status_code == 403
        assert b"https://evil.example" in info.value.response.body
        # the viewer's own page, and an origin the server was told to allow
        for origin in (f"http://127.0.0.1:{server.port}", "https://dash.example.com"):
            async with connect(url, origin=origin) as ws:  # type: ignore[arg-type]
                assert (await recv(ws, "hello"))["type"] == "hello"

    config = ServerConfig(port=0, block_ms=100, allow_origins=("https://dash.example.com",))
    run_server(redis_server.url, body, config)


def test_a_loopback_server_refuses_requests_for_other_names(redis_server) -> None:  # type: ignore[no-untyped-def]
    async def body(server: CaptionServer) -> None:
        port = server.port
        rebound = {"Host": f"rebound.evil.example:{port}"}
        for path in ("/", "/metrics", "/ws"):
            status, text = await asyncio.to_thread(_request, port, path, rebound)
            assert status == 403 and "DNS rebinding" in text, path
        for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
            status, _ = await asyncio.to_thread(_request, port, "/metrics", {"Host": host})
            assert status == 200, host

    run_server(redis_server.url, body)

    async def behind_a_proxy(server: CaptionServer) -> None:  # that passes its Host on
        passed = {"Host": "cams.example.com"}
        assert (await asyncio.to_thread(_request, server.port, "/metrics", passed))[0] == 200
        rebound = {"Host": "rebound.evil.example"}
        assert (await asyncio.to_thread(_request, server.port, "/metrics", rebound))[0] == 403

    config = ServerConfig(port=0, block_ms=100, allow_hosts=("cams.example.com",))
    run_server(redis_server.url, behind_a_proxy, config)


def test_listen_with_the_token_and_without(redis_server, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "l", live=False)
    publish_caption(redis_client, "l", 0, "a thing")

    async def listen(
        url: str, *more: str, env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stream.cli", "listen", "--url", url, "--after", "0",
            "--limit", "1", *more, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), T * 3)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def body(server: CaptionServer) -> None:
        import os

        url = f"ws://127.0.0.1:{server.port}/ws"
        code, out, err = await listen(url)
        assert code == 2 and out == ""
        assert "refused the connection: HTTP 401" in err and "SCENECAST_TOKEN" in err
        code, _, err = await listen(url, "--token", "not-the-token-at-all")
        assert code == 2 and "wrong access token" in err and "not-the-token" not in err
        code, out, _ = await listen(url, "--token", TOKEN)
        assert code == 0 and "a thing" in out
        env = {**os.environ, "SCENECAST_TOKEN": TOKEN}  # the variable serve reads too
        code, out, _ = await listen(url, env=env)
        assert code == 0 and "a thing" in out

    run_server(redis_server.url, body, ServerConfig(port=0, block_ms=100, token=TOKEN))


def test_the_banner_gives_the_viewer_link_and_warns_when_open_beyond_this_machine() -> None:
    (line,) = banner(ServerConfig(), 8765, on_terminal=True)
    assert line.endswith("(viewer http://127.0.0.1:8765/)")
    config = ServerConfig(host="0.0.0.0", token=TOKEN)
    (line,) = banner(config, 8765, on_terminal=True)
    assert f"http://127.0.0.1:8765/?token={TOKEN}" in line  # a link to click (not 0.0.0.0)
    assert line.endswith("listening on every interface")
    (line,) = banner(ServerConfig(host="::1"), 8765, on_terminal=True)
    assert "ws://[::1]:8765/ws" in line and "http://[::1]:8765/" in line
    (line,) = banner(config, 8765, on_terminal=False)
    assert TOKEN not in line and "?token=$SCENECAST_TOKEN" in line  # not into a log
    line, warning = banner(ServerConfig(host="0.0.0.0"), 8765, on_terminal=True)
    assert "warning" in warning and "without a --token" in warning


def test_no_message_shows_a_password_or_a_token_given_in_a_url(
    redis_server, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    from stream.clients.listen import run_listen
    from stream.embedded_redis import check_redis
    from stream.exceptions import StreamError

    with pytest.raises(StreamError) as info:
        check_redis("redis://user:s3cret@127.0.0.1:1/0")
    assert "s3cret" not in str(info.value) and "redis://user:***@127.0.0.1:1/0" in str(info.value)

    async def body(server: CaptionServer) -> None:
        url = f"ws://127.0.0.1:{server.port}/ws?token=not-the-token-s3cret"
        code = await asyncio.to_thread(
            run_listen, url, sources=None, after=None, as_json=True, limit=1
        )
        assert code == 2

    run_server(redis_server.url, body, ServerConfig(port=0, block_ms=100, token=TOKEN))
    err = capsys.readouterr().err
    assert "refused the connection: HTTP 401" in err and "s3cret" not in err, err
    assert (
        run_listen("ws://127.0.0.1:1/ws?token=s3cret", sources=None, after=None, as_json=True) == 2
    )
    err = capsys.readouterr().err
    assert "cannot connect to ws://127.0.0.1:1/ws?…" in err and "s3cret" not in err, err
