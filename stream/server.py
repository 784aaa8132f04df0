"""The websocket server: one port for ``/ws``, ``/``, ``/healthz`` and ``/metrics``.

A :class:`Hub` reads every source's ``captions:{src}`` and ``status:{src}`` with one
blocking ``XREAD`` and fans new entries out to the clients. Each client has a
:class:`~stream.subscription.Subscription` (what it wants, what it was sent) and a
bounded queue of captions: a live caption that finds the queue full is dropped, the
source is paused for that client and a ``gap`` says where to resume from (as the
websockets docs advise: ``broadcast`` has no backpressure, so bound the memory).
Replays (``subscribe`` with ``after``) read the log with ``XRANGE`` and wait for
room instead of dropping; live captions that arrive meanwhile are buffered and sent
after the replay, so nothing is missed and the cursor drops what was sent twice.

``is_final`` is true when the server knows, at send time, that the next caption of
the source starts a new segment (always the case in a replay, except at its end);
otherwise a new ``segment_id`` — or an ``ended`` status — closes the segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request, Response

from stream.access import Access, Refusal, exposure_warning, is_loopback_name
from stream.capture_liveness import HEARTBEAT_S, RUNNING, silent_detail, silent_sources
from stream.exceptions import StreamError
from stream.latency_histogram import LatencyHistograms
from stream.metrics_page import ServerFigures, exposition, read_shared
from stream.protocol import (
    Attention,
    CaptionMessage,
    ErrorMessage,
    Hello,
    Ping,
    Pong,
    ProtocolError,
    SourceStatus,
    Status,
    Subscribe,
    Unsubscribe,
    iso_utc,
    parse_client_message,
    parse_frame_path,
)
from stream.subscription import Subscription
from stream.tls import server_tls_context
from stream.transcript import (
    CONTENT_TYPES,
    TranscriptFormat,
    parse_transcript_path,
    range_start,
    render_cues,
    transcript_cues,
)
from worker.queue import (
    SOURCES_KEY,
    CaptionEntry,
    EntryError,
    captions_key,
    capture_key,
    decode_caption,
    decode_status,
    frames_key,
    status_key,
)

log = logging.getLogger("scenecast.server")

SERVER_NAME = "scenecast/0.1.0"
COMPRESSION = ("deflate", "none")  # of the websocket messages
MAX_MESSAGE_BYTES = 64 * 1024


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    queue_size: int = 256  # captions waiting for one client before it gets a gap
    block_ms: int = 1000  # one XREAD; short enough to notice new sources
    replay_chunk: int = 200
    attention: bool = True  # forward attention grids to clients
    compression: str = "none"  # one of COMPRESSION: see compression_extensions
    token: str | None = None  # every request but /healthz must carry it (stream/access.py)
    allow_origins: tuple[str, ...] = ()  # pages of other sites that may open /ws
    allow_hosts: tuple[str, ...] = ()  # names a loopback server answers to, besides its own
    tls_cert: str | None = None  # PEM chain: wss:// and https:// (stream/tls.py)
    tls_key: str | None = None  # its key, if not in the chain's file

    @property
    def secure(self) -> bool:
        return self.tls_cert is not None


def banner(config: ServerConfig, port: int, *, on_terminal: bool) -> list[str]:
    """What ``run`` and ``serve`` print when the server is up: its addresses, and a
    warning when it is open beyond this machine. With a token, the viewer's address
    carries it on a terminal (a link to click) and a placeholder in a log."""
    s = "s" if config.secure else ""
    everywhere = config.host in ("", "0.0.0.0", "::")
    host = "127.0.0.1" if everywhere else config.host  # browsers refuse 0.0.0.0
    host = f"[{host}]" if ":" in host else host
    query = ""
    if config.token is not None:
        query = f"?token={config.token}" if on_terminal else "?token=$SCENECAST_TOKEN"
    lines = [
        f"scenecast: captions at ws{s}://{host}:{port}/ws  (viewer http{s}://{host}:{port}/{query})"
        + ("; listening on every interface" if everywhere else "")
    ]
    warning = exposure_warning(config.host, config.token)
    return [*lines, warning] if warning else lines


def caption_message(
    entry_id: str, entry: CaptionEntry, *, is_final: bool, attention: bool
) -> CaptionMessage:
    grids = None
    maps = entry.attention_maps() if attention else None
    if maps is not None and maps.size and len(maps) == len(entry.tokens):
        h, w = entry.grid
        grids = Attention(
            grid=(h, w),
            weights=tuple(map(tuple, maps.reshape(len(maps), h * w).tolist())),
            fit=entry.fit or "letterbox",
        )
    return CaptionMessage(
        source=entry.source,
        id=entry_id,
        seq=entry.seq,
        t_start_ms=round(entry.pts_ms),
        t_end_ms=round(entry.end_ms),
        capture_ts=iso_utc(entry.capture_ns),
        text=entry.text,
        tokens=tuple(entry.tokens),
        score=entry.score,
        model=entry.model,
        latency_ms=max(0.0, entry.latency_ms),
        segment_id=max(0, entry.segment_id),
        is_final=is_final,
        attention=grids,
        frame=entry.frame_id or None,
    )


@dataclass(eq=False)
class Client:
    """One websocket connection: its subscription, queues and replay buffers."""

    ws: ServerConnection
    queue_size: int
    sub: Subscription = field(default_factory=Subscription)
    captions: deque[str] = field(default_factory=deque)
    control: deque[str] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    room: asyncio.Event = field(default_factory=asyncio.Event)
    # per source being replayed: the live captions (id, JSON) that arrived meanwhile
    replaying: dict[str, list[tuple[str, Callable[[], str]]]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    sent: int = 0
    dropped: int = 0
    attention: bool = True  # the client wants attention grids (subscribe.attention)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (a replay) for this client; cancelled when it disconnects."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def send_control(self, text: str) -> None:
        self.control.append(text)
        self.wake.set()

    def offer(self, entry_id: str, source: str, text: Callable[[], str]) -> bool:
        """Queue a caption (``text()``: its JSON) if the subscription takes it; False
        when refused or dropped."""
        full = len(self.captions) >= self.queue_size
        if not self.sub.offer(source, entry_id, room=not full):
            if full and self.sub.paused(source):
                self.dropped += 1
            for gap in self.sub.take_gaps():
                self.send_control(gap.to_json())
            return False
        self.captions.append(text())
        self.wake.set()
        return True


def encoded_once(
    entry_id: str, entry: CaptionEntry, *, is_final: bool, attention: bool
) -> Callable[[], str]:
    """The caption's JSON, made on the first call and shared by every later one: a live
    caption is the same text for all its clients, so fan-out encodes it once, not once
    per client (that was most of a busy server's time: `scenecast bench server`)."""
    made: list[str] = []

    def text() -> str:
        if not made:
            message = caption_message(entry_id, entry, is_final=is_final, attention=attention)
            made.append(message.to_json())
        return made[0]

    return text


class Hub:
    """Reads the caption and status streams of all sources and fans them out."""

    def __init__(self, client: aioredis.Redis, config: ServerConfig) -> None:
        self.redis: Any = client  # redis-py's reply types are unions too wide to use
        self.config = config
        self.clients: set[Client] = set()
        self.sources: dict[str, dict[str, Any]] = {}
        self.positions: dict[str, str] = {}  # stream key → last id read
        self.metrics: dict[str, int] = {
            "messages_sent": 0,
            "bad_messages": 0,
            "gaps": 0,
            "frames_served": 0,
            "frames_missing": 0,
            "transcripts_served": 0,
        }
        self.latency = LatencyHistograms()  # of the live captions fanned out, per source
        self.redis_ok = False
        self.silent: dict[str, float] = {}  # source → ms its capture has not been heard
        self._liveness_at = 0.0

    async def refresh_sources(self) -> list[str]:
        """Read the sources hash; returns the sources seen for the first time (again,
        for one forgotten and registered anew). One no longer listed is dropped."""
        raw = await self.redis.hgetall(SOURCES_KEY)
        listed = {key.decode() for key in raw}
        for gone in set(self.sources) - listed:  # forgotten (scenecast forget)
            del self.sources[gone]
            self.silent.pop(gone, None)
            for stream in (captions_key(gone), status_key(gone)):
                self.positions.pop(stream, None)
        new = []
        for key, value in raw.items():
            name = key.decode()
            try:
                self.sources[name] = json.loads(value)
            except json.JSONDecodeError:
                continue
            if captions_key(name) not in self.positions:
                new.append(name)
                for stream in (captions_key(name), status_key(name)):
                    self.positions[stream] = await self._last_id(stream)
        return new

    def announce(self, source: str) -> None:
        """A source appeared: clients that want it get its status and, since they
        subscribed before it existed, all its captions so far (then the live tail)."""
        for client in self.clients:
            if client.sub.wants(source):
                client.send_control(self.status_message(source))
                if source not in client.replaying:
                    client.spawn(self.replay(client, source, client.sub.cursor(source) or "0-0"))

    def shown(self, source: str) -> dict[str, Any]:
        """A source's status as clients are told it: its capture's last word, unless
        that capture has gone silent (stream/capture_liveness.py): then an error."""
        info = self.sources.get(source, {})
        if source not in self.silent:
            return info
        state = str(info.get("state", ""))
        return {**info, "state": "error", "detail": silent_detail(state, self.silent[source])}

    def shown_states(self) -> dict[str, dict[str, Any]]:
        return {source: self.shown(source) for source in self.sources}

    async def check_captures(self, *, every_s: float = HEARTBEAT_S) -> None:
        """Look for captures gone silent (or back), at most every ``every_s``; tell the
        clients of each change."""
        now = time.monotonic()
        if now - self._liveness_at < every_s:
            return
        self._liveness_at = now
        running = sorted(s for s, info in self.sources.items() if info.get("state") in RUNNING)
        pipe = self.redis.pipeline(transaction=False)
        for source in running:
            pipe.hget(capture_key(source), "seen_ms")
        seen = [None if v is None else float(v) for v in await pipe.execute()]
        states = {s: str(self.sources[s].get("state")) for s in running}
        silent = silent_sources(
            states, dict(zip(running, seen, strict=True)), now_ms=time.time() * 1000
        )
        changed = set(silent) ^ set(self.silent)
        self.silent = silent
        for source in sorted(changed):
            log.warning("capture of %s %s", source, "silent" if source in silent else "back")
            message = self.status_message(source)
            for client in self.clients:
                if client.sub.wants(source):
                    client.send_control(message)

    def status_message(self, source: str) -> str:
        info = self.shown(source)
        return Status(
            source=source,
            state=str(info.get("state", "connecting")),
            detail=str(info.get("detail", "")),
            ts=iso_utc(int(info.get("ts_ns", time.time_ns()))),
        ).to_json()

    async def _last_id(self, stream: str) -> str:
        last = await self.redis.xrevrange(stream, count=1)
        return last[0][0].decode() if last else "0-0"

    async def run(self) -> None:
        """Read forever; reconnects to Redis after errors."""
        while True:
            try:
                for source in await self.refresh_sources():
                    self.announce(source)
                await self.check_captures()
                self.redis_ok = True
                if not self.positions:
                    await asyncio.sleep(self.config.block_ms / 1000)
                    continue
                reply = await self.redis.xread(
                    dict(self.positions), block=self.config.block_ms, count=500
                )
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                self.redis_ok = False
                log.warning("Redis unavailable (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            for key, entries in reply or []:
                stream = key.decode()
                if entries:
                    self.positions[stream] = entries[-1][0].decode()
                if stream.startswith("captions:"):
                    self._fan_out_captions(entries)
                else:
                    self._fan_out_status(entries)

    def _fan_out_captions(self, entries: Sequence[Any]) -> None:
        for entry_id, fields in entries:
            try:
                entry = decode_caption(fields)
            except EntryError as exc:
                log.warning("skipping malformed caption %s: %s", entry_id, exc)
                continue
            eid = entry_id.decode()
            self.latency.observe(entry.source, entry.latency_ms)
            with_grids = encoded_once(eid, entry, is_final=False, attention=self.config.attention)
            text_only = encoded_once(eid, entry, is_final=False, attention=False)
            try:
                for client in self.clients:
                    text = with_grids if client.attention else text_only
                    buffer = client.replaying.get(entry.source)
                    if buffer is not None:
                        buffer.append((eid, text))
                    else:
                        client.offer(eid, entry.source, text)
            except ProtocolError as exc:  # a stored caption no message can carry
                log.warning("skipping caption %s that breaks the protocol: %s", eid, exc)

    def _fan_out_status(self, entries: Sequence[Any]) -> None:
        for _, fields in entries:
            try:
                status = decode_status(fields)
            except EntryError:
                continue
            self.sources[status.source] = json.loads(status.to_json())
            self.silent.pop(status.source, None)  # a capture that speaks is there
            message = Status(
                source=status.source,
                state=status.state,
                detail=status.detail,
                ts=iso_utc(status.ts_ns),
            ).to_json()
            for client in self.clients:
                if client.sub.wants(status.source):
                    client.send_control(message)

    def hello(self) -> Hello:
        return Hello(
            server=SERVER_NAME,
            sources=tuple(
                SourceStatus(
                    source=name,
                    state=str(info.get("state", "connecting")),
                    detail=str(info.get("detail", "")),
                )
                for name, info in sorted(self.shown_states().items())
            ),
        )

    # -- replay -----------------------------------------------------------------------

    async def replay(self, client: Client, source: str, after: str) -> None:
        """Send ``captions:{source}`` after ``after``, then what arrived meanwhile."""
        if source in client.replaying:
            return
        client.replaying[source] = []
        try:
            start = after
            while True:
                entries = await self.redis.xrange(
                    captions_key(source), min=f"({start}", count=self.config.replay_chunk
                )
                decoded = []
                for entry_id, fields in entries:
                    with contextlib.suppress(EntryError):
                        decoded.append((entry_id.decode(), decode_caption(fields)))
                for i, (eid, entry) in enumerate(decoded):
                    nxt = decoded[i + 1][1] if i + 1 < len(decoded) else None
                    final = nxt is not None and nxt.segment_id != entry.segment_id
                    while len(client.captions) >= client.queue_size:
                        client.room.clear()
                        await client.room.wait()
                    client.offer(
                        eid,
                        source,
                        encoded_once(
                            eid,
                            entry,
                            is_final=final,
                            attention=self.config.attention and client.attention,
                        ),
                    )
                if len(entries) < self.config.replay_chunk:
                    break
                start = entries[-1][0].decode()
        finally:
            buffered = client.replaying.pop(source, [])
        for eid, text in buffered:  # no await since the last read: nothing slips through
            client.offer(eid, source, text)


class CaptionServer:
    """The websocket + HTTP server. ``async with CaptionServer(url, config) as s: ...``"""

    def __init__(self, redis_url: str, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.redis: Any = aioredis.Redis.from_url(redis_url, socket_timeout=None)
        self.hub = Hub(self.redis, self.config)
        self._server: Server | None = None
        self._hub_task: asyncio.Task[None] | None = None
        self.started = time.monotonic()
        self.access = Access(
            token=self.config.token,
            origins=self.config.allow_origins,
            loopback_only=is_loopback_name(self.config.host),
            hosts=self.config.allow_hosts,
        )
        self.refused: dict[str, int] = {"token": 0, "origin": 0, "host": 0}

    @property
    def port(self) -> int:
        assert self._server is not None
        sockets = list(self._server.sockets)
        return int(sockets[0].getsockname()[1])

    async def start(self) -> CaptionServer:
        tls = None
        if self.config.tls_cert is not None:
            try:
                tls = server_tls_context(self.config.tls_cert, self.config.tls_key)
            except StreamError:
                await self.redis.aclose()
                raise
        await self.hub.refresh_sources()
        self.hub.redis_ok = True
        self._hub_task = asyncio.create_task(self.hub.run(), name="hub")
        try:
            self._server = await serve(
                self._handle, self.config.host, self.config.port, ssl=tls,
                process_request=self._http, max_size=MAX_MESSAGE_BYTES,
                compression=None, extensions=compression_extensions(self.config.compression),
            )  # fmt: skip
        except OSError as exc:  # port taken, address not ours, ...
            await self.stop()
            raise StreamError(
                f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc} "
                "(choose another --port, or --port 0 for any free one)"
            ) from None
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._hub_task is not None:
            self._hub_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._hub_task
        await self.redis.aclose()

    async def __aenter__(self) -> CaptionServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- HTTP ---------------------------------------------------------------------------

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        refusal = self.access.refusal(request.path, _first_values(request.headers, _CHECKED))
        if refusal is not None:
            self.refused[refusal.reason] += 1
            return _refused(refusal)
        path = request.path.split("?", 1)[0]
        if path == "/ws":
            return None  # the websocket handshake goes on
        if path == "/healthz":
            ok = self.hub.redis_ok
            return connection.respond(
                http.HTTPStatus.OK if ok else http.HTTPStatus.SERVICE_UNAVAILABLE,
                "ok\n" if ok else "redis unavailable\n",
            )
        if path == "/metrics":
            body = await self.metrics_text()
            return _response(200, "OK", body, "text/plain; version=0.0.4; charset=utf-8")
        if path in ("/", "/index.html"):
            return _response(200, "OK", viewer_page(), "text/html; charset=utf-8")
        try:
            frame = parse_frame_path(path)
        except ValueError as exc:
            return connection.respond(http.HTTPStatus.BAD_REQUEST, f"{exc}\n")
        if frame is not None:
            return await self._frame(connection, *frame)
        try:
            transcript = parse_transcript_path(path)
        except ValueError as exc:
            return connection.respond(http.HTTPStatus.BAD_REQUEST, f"{exc}\n")
        if transcript is not None:
            return await self._transcript(connection, *transcript, target=request.path)
        return connection.respond(
            http.HTTPStatus.NOT_FOUND,
            "not found; try /ws (websocket), /, /healthz, /metrics, /frames/<source>/<id>.jpg, "
            "/captions/<source>.vtt|.srt|.jsonl\n",
        )

    async def _frame(self, connection: ServerConnection, source: str, frame: str) -> Response:
        """A captioned frame's JPEG, read from ``frames:{src}`` while Redis keeps it."""
        try:
            entries = await self.redis.xrange(frames_key(source), frame, frame, count=1)
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "redis unavailable\n")
        data = entries[0][1].get(b"data") if entries else None
        if not data:
            self.hub.metrics["frames_missing"] += 1
            return connection.respond(
                http.HTTPStatus.NOT_FOUND,
                f"frame {frame} of {source} is not kept: Redis keeps a source's newest frames "
                "only (a live source's last ~16, a file job's last 256 captioned), and a "
                "restarted Redis may have none\n",
            )
        self.hub.metrics["frames_served"] += 1
        # an id names one frame for good: a browser may keep it
        return _response(
            200, "OK", bytes(data), "image/jpeg", ("Cache-Control", "private, max-age=3600")
        )

    async def _transcript(
        self, connection: ServerConnection, source: str, fmt: TranscriptFormat, *, target: str
    ) -> Response:
        """A source's caption log as WebVTT, SRT or the websocket's caption messages."""
        try:
            start = range_start(parse_qs(urlsplit(target).query), now_ms=time.time() * 1000)
        except ValueError as exc:
            return connection.respond(http.HTTPStatus.BAD_REQUEST, f"{exc}\n")
        try:
            if source not in self.hub.sources:
                await self.hub.refresh_sources()
            if source not in self.hub.sources:
                known = ", ".join(sorted(self.hub.sources)) or "none yet"
                return connection.respond(
                    http.HTTPStatus.NOT_FOUND, f"no source named {source!r}; known: {known}\n"
                )
            raw = await self._caption_log(source, start)
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "redis unavailable\n")
        self.hub.metrics["transcripts_served"] += 1
        # off the event loop: 10,000 captions take ~0.3 s to decode and write, which
        # would hold up every client's live captions meanwhile
        body = await asyncio.to_thread(render_transcript, fmt, raw)
        return _response(200, "OK", body, CONTENT_TYPES[fmt], ("Cache-Control", "no-store"))

    async def _caption_log(self, source: str, start: str) -> list[tuple[bytes, Any]]:
        """The raw entries of ``captions:{src}`` from ``start`` on, read in chunks."""
        out: list[tuple[bytes, Any]] = []
        key = captions_key(source)
        while True:
            entries = await self.redis.xrange(key, start, "+", count=1000)
            out += entries
            if len(entries) < 1000:
                return out
            start = f"({entries[-1][0].decode()}"

    async def metrics_text(self) -> str:
        own = ServerFigures(
            clients=len(self.hub.clients),
            redis_ok=self.hub.redis_ok,
            counters=self.hub.metrics,
            refused=self.refused,
            dropped=sum(c.dropped for c in self.hub.clients),
            latency=self.hub.latency.lines(),
        )
        shared = None
        with contextlib.suppress(aioredis.ConnectionError, aioredis.TimeoutError, OSError):
            shared = await read_shared(self.redis, self.hub.shown_states())
        return exposition(own, shared, now_ms=time.time() * 1000)

    # -- websocket ----------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        client = Client(ws=ws, queue_size=self.config.queue_size)
        self.hub.clients.add(client)
        writer = asyncio.create_task(self._write(client))
        try:
            client.send_control(self.hub.hello().to_json())
            async for raw in ws:
                try:
                    message = parse_client_message(raw)
                except ProtocolError as exc:
                    self.hub.metrics["bad_messages"] += 1
                    client.send_control(ErrorMessage.from_error(exc).to_json())
                    continue
                if isinstance(message, Ping):
                    client.send_control(Pong(id=message.id).to_json())
                elif isinstance(message, Subscribe | Unsubscribe):
                    if isinstance(message, Subscribe) and message.attention is not None:
                        client.attention = message.attention
                    client.sub.apply(message)
                    if isinstance(message, Subscribe):
                        for source, start in client.sub.start_ids(self.hub.sources).items():
                            client.send_control(self.hub.status_message(source))
                            if start != "$":
                                client.spawn(self.hub.replay(client, source, start))
        except ConnectionClosed:
            pass
        finally:
            self.hub.clients.discard(client)
            tasks = [writer, *client.tasks]
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task

    async def _write(self, client: Client) -> None:
        while True:
            await client.wake.wait()
            client.wake.clear()
            while client.control or client.captions:
                text = client.control.popleft() if client.control else client.captions.popleft()
                client.room.set()
                await client.ws.send(text)
                client.sent += 1
                self.hub.metrics["messages_sent"] += 1


def render_transcript(fmt: TranscriptFormat, raw: Sequence[tuple[bytes, Any]]) -> str:
    """Raw ``captions:{src}`` entries → a transcript: the websocket's caption messages
    (JSON lines) or cues (``stream.transcript``); malformed entries are left out."""
    decoded: list[tuple[str, CaptionEntry]] = []
    for entry_id, fields in raw:
        with contextlib.suppress(EntryError):
            decoded.append((entry_id.decode(), decode_caption(fields)))
    if fmt != "jsonl":
        return render_cues(fmt, transcript_cues([entry for _, entry in decoded]))
    following = [*(entry for _, entry in decoded[1:]), None]
    return "".join(
        caption_message(
            eid, entry, is_final=nxt is not None and nxt.segment_id != entry.segment_id,
            attention=False,
        ).to_json() + "\n"
        for (eid, entry), nxt in zip(decoded, following, strict=True)
    )  # fmt: skip


def compression_extensions(compression: str) -> list[ServerExtensionFactory]:
    """The websocket extensions for ``compression``: "none" (the default) or "deflate".

    permessage-deflate compresses each message once per client, which was most of a
    busy server's time (`scenecast bench server`, BENCHMARKS.md): without it one
    process feeds twice the clients, for ~2.6x the bytes — 1.8 kB per caption with its
    attention grids, 2-54 kB/s per client at 1-30 captions/s. (The Node.js ws and
    Socket.IO servers also leave it off by default.) "deflate" is for clients on slow
    links: websockets' settings (12-bit windows, memLevel 5) at zlib level 1, ~700
    bytes per caption instead of ~630 at level 6, in 40 % of the time."""
    if compression == "none":
        return []
    if compression != "deflate":
        raise ValueError(f"compression must be one of {COMPRESSION}, got {compression!r}")
    return [
        ServerPerMessageDeflateFactory(
            server_max_window_bits=12,
            client_max_window_bits=12,
            compress_settings={"memLevel": 5, "level": 1},
        )
    ]


_CHECKED = ("Host", "Origin", "Authorization", "X-Forwarded-Host")


def _first_values(headers: Headers, names: Sequence[str]) -> dict[str, str]:
    """The first value of each of ``names`` that ``headers`` has (a repeated header
    would make ``headers[name]`` raise)."""
    out = {}
    for name in names:
        values = headers.get_all(name)
        if values:
            out[name] = values[0]
    return out


def _refused(refusal: Refusal) -> Response:
    more = [("WWW-Authenticate", 'Bearer realm="scenecast"')] if refusal.reason == "token" else []
    return _response(
        refusal.status.value, refusal.status.phrase, refusal.message + "\n",
        "text/plain; charset=utf-8", *more,
    )  # fmt: skip


def _response(
    status: int, reason: str, body: str | bytes, content_type: str, *more: tuple[str, str]
) -> Response:
    data = body.encode() if isinstance(body, str) else body
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(data))), *more])
    return Response(status, reason, headers, data)


def viewer_page() -> str:
    page = resources.files("stream").joinpath("viewer.html")
    if page.is_file():
        return page.read_text(encoding="utf-8")
    return (
        "<!doctype html><html><head><title>scenecast</title></head><body><h1>scenecast</h1>"
        "<p>Captions stream at <code>/ws</code> (JSON messages; see the README).</p>"
        "</body></html>"
    )
