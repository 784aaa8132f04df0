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
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from stream.clients.listen import After, Progress, run_listen
from stream.exceptions import StreamError
from stream.protocol import CaptionMessage, iso_utc
from tests.conftest import TIMEOUT_FACTOR

T = 10.0 * TIMEOUT_FACTOR


def _caption(seq: int) -> str:
    return CaptionMessage(
        source="cam", id=f"{1000 + seq}-0", seq=seq, t_start_ms=seq * 1000,
        t_end_ms=seq * 1000 + 1000, capture_ts=iso_utc(1_700_000_000_000_000_000 + seq),
        text=f"a thing {seq}", tokens=("a", "thing"), score=-1.0, model="test",
        latency_ms=5.0, segment_id=seq, is_final=True,
    ).to_json()  # fmt: skip


@contextmanager
def fake_server(
    after_captions: Callable[[ServerConnection], object], received: list[Any] | None = None
) -> Iterator[str]:
    """A websocket server (own thread and loop) that sends 3 captions, then ends the
    connection as ``after_captions`` does (awaited if it returns an awaitable);
    ``received``: the messages it got, as they came."""
    started = threading.Event()
    stop: asyncio.Future[None] | None = None
    url = ""

    async def handler(ws: ServerConnection) -> None:
        message = await ws.recv()  # the subscribe message
        if received is not None:
            received.append(json.loads(message))
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
    # the last caption's id, on the server it came from
    assert f"to resume: scenecast listen --url {url} --after cam=1002-0\n" in err


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
    assert "Traceback" not in err and "--after cam=1002-0 --json\n" in err  # as it was


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


async def _keep_sending(ws: ServerConnection) -> None:
    for seq in range(3, 3 + int(T * 20)):
        await ws.send(_caption(seq))
        await asyncio.sleep(0.05)


def _listen_then(act: Callable[[subprocess.Popen[str]], None], lines: int) -> tuple[int, str]:
    """`scenecast listen --json` against a server that keeps sending: once it printed
    ``lines`` captions, ``act`` on the process; its exit code and stderr."""
    with fake_server(_keep_sending) as url:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "listen", "--url", url, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        for _ in range(lines):
            assert json.loads(proc.stdout.readline())["type"] == "caption"
        act(proc)
        try:
            proc.wait(T)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    return proc.returncode, err


@pytest.mark.integration
def test_listen_exits_quietly_when_its_reader_goes_away() -> None:
    """`scenecast listen | head -1`: exit 0, nothing on stderr (it used to say "cannot
    connect ... Broken pipe" and exit 2)."""

    def like_head_1(proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        proc.stdout.close()

    code, err = _listen_then(like_head_1, lines=1)
    assert code == 0 and err == "", err


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


def test_after_flags_parse_to_where_each_source_starts() -> None:
    assert After.parse(None) == After()
    assert After.parse(["5-0"]) == After("5-0")
    assert After.parse(["cam=5-0", "yard=7-1"]) == After(None, {"cam": "5-0", "yard": "7-1"})
    assert After.parse(["3-0", "cam=5-0"]) == After("3-0", {"cam": "5-0"})
    for bad, message in [
        (["3-0", "4-0"], "one bare caption id at most"),
        (["=5-0"], "expected ID"),
        (["cam=5-0", "cam=6-0"], "each source once"),
    ]:
        with pytest.raises(StreamError, match=message):
            After.parse(bad)


def test_after_flags_become_subscribes() -> None:
    base = {"type": "subscribe", "v": 1, "attention": False}

    def sent(after: After, sources: list[str] | None) -> list[dict[str, object]]:
        return [json.loads(s.to_json()) for s in after.subscribes(sources)]  # as on the wire

    assert sent(After(), None) == [base]
    assert sent(After("5-0"), ["cam"]) == [base | {"sources": ["cam"], "after": "5-0"}]
    pairs = After(None, {"cam": "5-0", "yard": "7-1"})
    assert sent(pairs, None) == [base | {"after": {"cam": "5-0", "yard": "7-1"}}]
    # a default for every source, then the named ones (an explicit after replaces)
    assert sent(After("3-0", {"cam": "5-0"}), None) == [
        base | {"after": "3-0"},
        base | {"sources": ["cam"], "after": {"cam": "5-0"}},
    ]
    with pytest.raises(StreamError, match="names yard, not among the --source given"):
        pairs.subscribes(["cam"])
    # a malformed id is told before connecting (the server would refuse it)
    with pytest.raises(StreamError, match=r"subscribe\.after"):
        After("yesterday").subscribes(None)


def test_the_resume_hint_is_one_command_for_every_source() -> None:
    """Each source's last id in one command, on the same server, in the same format;
    a token never printed. (It printed one `listen` per source, run one after the
    other, without --url or --json.)"""
    progress = Progress(
        url="wss://cams.example:9000/ws?token=s3cret",
        sources=["door", "yard"],
        as_json=True,
        last_ids={"door": "12-0", "yard": "13-2"},
    )
    assert progress.resume_hint() == (
        "to resume: scenecast listen --url 'wss://cams.example:9000/ws?…' --source door "
        "--source yard --after door=12-0 --after yard=13-2 --json (with the same token)"
    )
    # a bare --after given and one source heard from: the others still start there
    progress = Progress(after=After("3-0"), last_ids={"door": "12-0"})
    assert progress.resume_hint() == "to resume: scenecast listen --after 3-0 --after door=12-0"
    assert Progress().resume_hint() == "no caption received yet"


def test_listen_sends_the_subscribes_its_after_flags_ask_for(
    capsys: pytest.CaptureFixture[str],
) -> None:
    received: list[Any] = []
    with fake_server(lambda ws: ws.close(1001, "going away"), received) as url:
        after = After.parse(["cam=999-0", "yard=5-0"])
        assert run_listen(url, sources=None, after=after, as_json=False) == 0
    assert received == [
        {"type": "subscribe", "v": 1, "attention": False,
         "after": {"cam": "999-0", "yard": "5-0"}}
    ]  # fmt: skip
    # yard heard nothing: it resumes where it was asked to start
    assert "--after cam=1002-0 --after yard=5-0\n" in capsys.readouterr().err


@pytest.mark.integration
def test_sigterm_stops_listen_with_its_resume_hint() -> None:
    """It was a SystemExit raised inside asyncio's tasks: exit 143 with no hint, and at
    times a traceback."""
    import signal

    # two lines: the first caption is counted once the second is printed
    code, err = _listen_then(lambda proc: proc.send_signal(signal.SIGTERM), lines=2)
    assert code == 143, err
    assert "scenecast: stopped; to resume: scenecast listen --url " in err
    assert "--after cam=" in err and "Traceback" not in err


@pytest.mark.integration
def test_ctrl_c_stops_listen_with_its_resume_hint_and_130() -> None:
    """Work cut off by Ctrl+C: 130, as a shell reports it (docs/decisions, exit codes)."""
    import signal

    code, err = _listen_then(lambda proc: proc.send_signal(signal.SIGINT), lines=2)
    assert code == 130, err
    assert "scenecast: stopped; to resume: scenecast listen --url " in err
