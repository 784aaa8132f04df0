"""`scenecast listen` when things end: its reader leaves, the server goes, or dies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from stream.listen import run_listen
from tests.conftest import TIMEOUT_FACTOR

T = 10.0 * TIMEOUT_FACTOR


def _caption(seq: int) -> str:
    return json.dumps({
        "type": "caption", "v": 1, "source": "cam", "id": f"{1000 + seq}-0", "seq": seq,
        "t_start_ms": seq * 1000, "t_end_ms": seq * 1000 + 1000, "text": f"a thing {seq}",
        "tokens": ["a", "thing"], "score": -1.0, "latency_ms": 5.0, "segment_id": seq,
        "is_final": True,
    })  # fmt: skip


@contextmanager
def fake_server(after_captions: Callable[[ServerConnection], object]) -> Iterator[str]:
    """A websocket server (own thread and loop) that sends 3 captions, then ends the
    connection as ``after_captions`` does (awaited if it returns an awaitable)."""
    started = threading.Event()
    stop: asyncio.Future[None] | None = None
    url = ""

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # the subscribe message
        for seq in range(3):
            await ws.send(_caption(seq))
        with contextlib.suppress(ConnectionClosed):  # the client may leave first
            result = after_captions(ws)
            if asyncio.iscoroutine(result):
                await result
        await ws.wait_closed()  # hold until one side ends it

    async def main() -> None:
        nonlocal stop, url
        stop = asyncio.get_running_loop().create_future()
        async with serve(handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            url = f"ws://127.0.0.1:{port}/ws"
            started.set()
            await stop

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(T)
    try:
        yield url
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set_result, None)
        thread.join(T)
        loop.close()


def test_a_server_that_closes_ends_listen_with_a_resume_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with fake_server(lambda ws: ws.close(1001, "going away")) as url:
        code = run_listen(url, sources=None, after=None, as_json=False)
    out, err = capsys.readouterr()
    assert code == 0
    assert out.count("a thing") == 3
    assert "closed the connection (going away)" in err
    assert "scenecast listen --source cam --after 1002-0" in err  # the last caption's id


def test_a_lost_connection_is_an_error_with_a_resume_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def drop(ws: ServerConnection) -> None:
        ws.transport.abort()  # no close frame: the server died

    with fake_server(drop) as url:
        code = run_listen(url, sources=None, after=None, as_json=True)
    out, err = capsys.readouterr()
    assert code == 1
    assert [json.loads(line)["seq"] for line in out.splitlines() if "caption" in line] == [0, 1, 2]
    assert err.startswith("scenecast: error: lost the connection to ws://127.0.0.1:")
    assert "Traceback" not in err and "--after 1002-0" in err


def test_a_url_that_is_not_a_websocket_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_listen("http://127.0.0.1:8765/ws", sources=None, after=None, as_json=False) == 2
    err = capsys.readouterr().err
    assert "not a websocket URL: 'http://127.0.0.1:8765/ws'" in err and "ws://" in err


def test_nothing_listening_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    from stream.embedded_redis import free_port

    url = f"ws://127.0.0.1:{free_port()}/ws"
    assert run_listen(url, sources=None, after=None, as_json=False) == 2
    assert capsys.readouterr().err.startswith(f"scenecast: error: cannot connect to {url}")


def test_listen_exits_quietly_when_its_reader_goes_away() -> None:
    """`scenecast listen | head -1`: exit 0, nothing on stderr (it used to say "cannot
    connect ... Broken pipe" and exit 2)."""

    async def keep_sending(ws: ServerConnection) -> None:
        for seq in range(3, 3 + int(T * 20)):
            await ws.send(_caption(seq))
            await asyncio.sleep(0.05)

    with fake_server(keep_sending) as url:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "listen", "--url", url, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        assert json.loads(proc.stdout.readline())["type"] == "caption"
        proc.stdout.close()  # like head -1
        try:
            proc.wait(T)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        err = proc.stderr.read()
        proc.stderr.close()
    assert proc.returncode == 0 and err == "", err


def test_after_a_gap_listen_resumes_the_source_from_the_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A gap pauses the source for this client until it subscribes again: listen does
    so at once, from the gap's resume_after, and the captions go on in order."""
    received: list[dict[str, object]] = []

    async def after_captions(ws: ServerConnection) -> None:
        await ws.send(json.dumps({
            "type": "gap", "v": 1, "source": "cam", "resume_after": "1002-0", "dropped": 7,
        }))  # fmt: skip
        received.append(json.loads(await asyncio.wait_for(ws.recv(), T)))
        for seq in range(3, 5):
            await ws.send(_caption(seq))
        await ws.close(1001, "going away")

    with fake_server(after_captions) as url:
        code = run_listen(url, sources=None, after=None, as_json=False)
    out, _ = capsys.readouterr()
    assert code == 0
    assert received == [
        {"type": "subscribe", "v": 1, "sources": ["cam"], "after": "1002-0", "attention": False}
    ]
    assert "gap: fell behind, 7 captions not sent; catching up from the log after 1002-0" in out
    assert [f"a thing {seq}" in out for seq in range(5)] == [True] * 5
