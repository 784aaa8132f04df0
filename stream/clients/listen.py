"""``scenecast listen``: a small client that prints captions as they arrive."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import ssl
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidHandshake, InvalidStatus, InvalidURI

from stream.exceptions import ProtocolError, StreamError
from stream.protocol import (
    CaptionMessage,
    ErrorMessage,
    Gap,
    Hello,
    ServerMessage,
    Status,
    Subscribe,
    parse_server_message,
)
from worker.bus.redact import redact_url


def format_line(message: ServerMessage) -> str | None:
    """One human line per message (None: not worth a line)."""
    if isinstance(message, CaptionMessage):
        t = message.t_start_ms / 1000
        return (
            f"[{message.source} {t:8.2f}s #{message.seq}] {message.text}"
            f"  (seg {message.segment_id}, {message.latency_ms:.0f} ms)"
        )
    if isinstance(message, Status):
        return f"[{message.source}] status: {message.state} {message.detail}".rstrip()
    if isinstance(message, Gap):
        return (
            f"[{message.source}] gap: fell behind, {message.dropped} captions not sent; "
            f"catching up from the log after {message.resume_after}"
        )
    if isinstance(message, ErrorMessage):
        return f"error {message.code}: {message.message}"
    if isinstance(message, Hello):
        names = ", ".join(f"{s.source} ({s.state})" for s in message.sources)
        return f"connected to {message.server}; sources: {names or 'none yet'}"
    return None


def resume_after_gap(gap: Gap) -> Subscribe:
    """The subscribe that resumes a source a ``gap`` paused: its captions from the log
    after the last one received (the gap's ``resume_after``), then the live tail."""
    return Subscribe(sources=(gap.source,), after=gap.resume_after, attention=False)


DEFAULT_URL = "ws://127.0.0.1:8765/ws"


@dataclass(frozen=True)
class After:
    """Where ``listen`` starts: ``default`` for every source (None: the live tail),
    ``by_source`` for the sources it names (``--after ID``, ``--after SRC=ID``)."""

    default: str | None = None
    by_source: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, values: list[str] | None) -> After:
        """``--after`` values: one bare ``ID`` at most, and ``SRC=ID`` pairs."""
        default: str | None = None
        by_source: dict[str, str] = {}
        for value in values or []:
            source, sep, stream_id = value.rpartition("=")
            if not sep:
                if default is not None:
                    raise StreamError(
                        f"--after {default} and --after {value}: one bare caption id at most "
                        "(for every source); name the others: --after SOURCE=ID"
                    )
                default = value
            elif not source or source in by_source:
                raise StreamError(
                    f"--after {value!r}: expected ID (for every source) or SOURCE=ID, each "
                    "source once"
                )
            else:
                by_source[source] = stream_id
        return cls(default, by_source)

    def subscribes(self, sources: list[str] | None) -> list[Subscribe]:
        """The subscribe messages that start there: one, or with both a default and
        named sources, the default for all and then the named ones (an explicit
        ``after`` replaces a source's position). A malformed id is a ProtocolError
        (a StreamError), told before connecting."""
        named = tuple(sources) if sources else None
        if not self.by_source:
            return [Subscribe(sources=named, after=self.default, attention=False)]
        if sources and not set(self.by_source) <= set(sources):
            extra = ", ".join(sorted(set(self.by_source) - set(sources)))
            raise StreamError(f"--after names {extra}, not among the --source given")
        if self.default is None:  # one map; sources it does not name: the live tail
            return [Subscribe(sources=named, after=self.by_source, attention=False)]
        return [
            Subscribe(sources=named, after=self.default, attention=False),
            Subscribe(sources=tuple(self.by_source), after=self.by_source, attention=False),
        ]


@dataclass
class Progress:
    """What a listener has received: enough to resume without loss or repeats."""

    captions: int = 0
    last_ids: dict[str, str] = field(default_factory=dict)  # source → last caption id
    connected: bool = False
    # the command line that resumes (resume_hint)
    url: str = DEFAULT_URL
    sources: list[str] | None = None
    after: After = field(default_factory=After)
    as_json: bool = False
    token: bool = False

    def resume_hint(self) -> str:
        ids = self.after.by_source | self.last_ids
        if not ids and self.after.default is None:
            return "no caption received yet"
        argv = ["scenecast", "listen"]
        shown = redact_url(self.url)
        if self.url != DEFAULT_URL:
            argv += ["--url", shown]
        for source in self.sources or []:
            argv += ["--source", source]
        if self.after.default is not None:  # still where the sources not heard from start
            argv += ["--after", self.after.default]
        for source, stream_id in ids.items():
            argv += ["--after", f"{source}={stream_id}"]
        if self.as_json:
            argv.append("--json")
        hint = "to resume: " + shlex.join(argv)
        if self.token or shown != self.url:
            hint += " (with the same token)"  # never printed
        return hint


async def listen(
    url: str,
    *,
    sources: list[str] | None,
    after: str | After | None,
    as_json: bool,
    limit: int | None = None,
    token: str | None = None,
    out: TextIO | None = None,
    progress: Progress | None = None,
) -> int:
    out = out or sys.stdout  # looked up now: the caller may have redirected it
    progress = progress if progress is not None else Progress()
    start = after if isinstance(after, After) else After(default=after)
    progress.url, progress.sources, progress.after = url, sources, start
    progress.as_json, progress.token = as_json, bool(token)
    subscribes = start.subscribes(sources)  # a bad --after is told before connecting
    headers = {"Authorization": f"Bearer {token}"} if token else None
    # close_timeout: at --limit, captions of a replay still fill the socket and the
    # server's close frame waits behind them: leave after 1 s, not websockets' 10 s
    async with connect(url, max_size=2**22, additional_headers=headers, close_timeout=1) as ws:
        progress.connected = True
        for subscribe in subscribes:
            await ws.send(subscribe.to_json())
        async for raw in ws:
            message = _parse(raw)
            if as_json:  # as the server sent it (captions without attention: not asked for)
                print(json.dumps(json.loads(raw), ensure_ascii=False), file=out, flush=True)
            else:
                line = format_line(message) if message is not None else None
                if line:
                    print(line, file=out, flush=True)
            if isinstance(message, CaptionMessage):
                progress.captions += 1
                progress.last_ids[message.source] = message.id
                if limit is not None and progress.captions >= limit:
                    return 0
            elif isinstance(message, Gap):  # the source is paused until we resume it
                await ws.send(resume_after_gap(message).to_json())
            elif isinstance(message, ErrorMessage) and message.code != "unknown_source":
                # our subscribe was refused (a bad --after): nothing would ever come
                print(f"scenecast: error: the server refused the subscription: "
                      f"{message.message}", file=sys.stderr)  # fmt: skip
                return 2
        reason = ws.close_reason or "no reason given"
    print(f"scenecast: the server closed the connection ({reason}); "
          f"{progress.resume_hint()}", file=sys.stderr)  # fmt: skip
    return 0


def _parse(raw: str | bytes) -> ServerMessage | None:
    """A server message; None for a type this client does not know (a newer server's:
    printed with --json, else skipped). A known message that breaks the protocol is an
    error."""
    try:
        return parse_server_message(raw)
    except ProtocolError as exc:
        if exc.code == "unknown_type":
            return None
        raise StreamError(f"the server sent a message that breaks the protocol: {exc}") from None


async def _until_sigterm(
    url: str, progress: Progress, terminated: list[bool], **kwargs: Any
) -> int:
    """:func:`listen`, with SIGTERM taken as Ctrl+C: the resume hint, and exit 143. The
    loop's own handler cancels the listen (a handler raising inside asyncio's tasks
    interrupted whatever ran, at times the websocket's own callbacks: no hint, a
    traceback, or a close that never ended)."""
    task = asyncio.current_task()
    assert task is not None

    def on_sigterm() -> None:
        terminated.append(True)
        task.cancel()

    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # main thread
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await listen(url, progress=progress, **kwargs)
    except asyncio.CancelledError:
        if terminated:
            raise KeyboardInterrupt from None
        raise
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)


def run_listen(url: str, **kwargs: Any) -> int:
    """0: done (limit reached, server closed, or the reader of our output went away);
    1: the connection was lost; 2: could not connect; 130: Ctrl+C; 143: SIGTERM."""
    progress = Progress()
    shown = redact_url(url)  # a ?token= in the URL never reaches a message
    terminated: list[bool] = []
    try:
        return asyncio.run(_until_sigterm(url, progress, terminated, **kwargs))
    except KeyboardInterrupt:
        if progress.connected:  # a caption counts once printed: its hint resumes after it
            print(f"scenecast: stopped; {progress.resume_hint()}", file=sys.stderr)
        return 143 if terminated else 130
    except InvalidURI:
        print(f"scenecast: error: not a websocket URL: {shown!r} (accepted: "
              "ws://HOST:PORT/ws, or wss:// behind TLS)", file=sys.stderr)  # fmt: skip
        return 2
    except InvalidStatus as exc:  # the server answered the handshake with a refusal
        response = exc.response
        said = response.body.decode("utf-8", "replace").strip() if response.body else ""
        said = f": {said}" if said else ""
        print(f"scenecast: error: {shown} refused the connection: HTTP {response.status_code} "
              f"{response.reason_phrase}{said}", file=sys.stderr)  # fmt: skip
        return 2
    except InvalidHandshake as exc:
        print(f"scenecast: error: {shown} is not a scenecast websocket ({exc})", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `scenecast listen | head`: the reader is done, so are we
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error flushing at exit
        return 0
    except ConnectionClosedError as exc:
        print(f"scenecast: error: lost the connection to {shown} ({exc}); "
              f"{progress.resume_hint()}", file=sys.stderr)  # fmt: skip
        return 1
    except ssl.SSLCertVerificationError as exc:
        print(f"scenecast: error: cannot connect to {shown}: its certificate is not trusted "
              f"({exc.verify_message}); for a self-signed one, point SSL_CERT_FILE at it",
              file=sys.stderr)  # fmt: skip
        return 2
    except OSError as exc:
        if progress.connected:
            print(f"scenecast: error: lost the connection to {shown} ({exc}); "
                  f"{progress.resume_hint()}", file=sys.stderr)  # fmt: skip
            return 1
        print(f"scenecast: error: cannot connect to {shown}: {exc}", file=sys.stderr)
        return 2
