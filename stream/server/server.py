"""The websocket server: one port for ``/ws``, ``/`` (the viewer), ``/healthz``,
``/metrics``, ``/frames/...`` and ``/captions/...``, each request checked first
(``stream.server.access``). The fan-out of captions to clients is ``stream.server.hub``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http
import logging
import time
from collections.abc import Sequence
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
from websockets.protocol import State

from stream.exceptions import StreamError
from stream.protocol import (
    ErrorMessage,
    Ping,
    Pong,
    ProtocolError,
    Subscribe,
    Unsubscribe,
    check_after_not_ahead,
    parse_client_message,
    parse_frame_path,
)
from stream.server.access import Access, Refusal, is_loopback_name
from stream.server.config import (
    COMPRESSION,
    MAX_MESSAGE_BYTES,
    SERVER_NAME,
    ServerConfig,
    banner,
)
from stream.server.hub import Client, Hub, caption_message
from stream.server.metrics_page import ServerFigures, exposition, read_shared
from stream.server.rate_limit import TokenBucket
from stream.server.tls import server_tls_context
from stream.server.transcript import (
    CONTENT_TYPES,
    TranscriptFormat,
    parse_transcript_path,
    range_start,
    render_cues,
    transcript_cues,
)
from worker.bus.cluster import connect_async
from worker.bus.entries import CaptionEntry, decode_caption
from worker.bus.exceptions import EntryError
from worker.bus.keys import captions_key, frames_key, preview_key

__all__ = ["COMPRESSION", "SERVER_NAME", "CaptionServer", "ServerConfig", "banner"]

log = logging.getLogger("scenecast.server")

CONTROL_LIMIT = 64  # replies (pong, error, status) queued for a client before it is read no more
# while a client's replies wait, how often its reader looks whether it has gone: a writer
# blocked in a send to a closing socket never makes room
ROOM_CHECK_S = 0.2
SHARED_TIMEOUT_S = 2.0  # /metrics waits this long for Redis's figures, then goes without


class CaptionServer:
    """The websocket + HTTP server. ``async with CaptionServer(url, config) as s: ...``"""

    def __init__(self, redis_url: str, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.redis_url = redis_url
        self.redis: Any = None  # connected by start(): one Redis or a cluster (worker/cluster.py)
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
            tls = server_tls_context(self.config.tls_cert, self.config.tls_key)
        self.redis = self.hub.redis = await connect_async(self.redis_url, socket_timeout=None)
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
        if self.redis is not None:
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
        if request.method == "GET" and path == "/ws":
            return None  # the websocket handshake goes on
        if request.method not in ("GET", "HEAD") or path == "/ws":
            return _response(
                405, "Method Not Allowed",
                f"{request.method[:20]} {path[:60]} is not served; accepted: GET and HEAD "
                "(the websocket at /ws: GET with Upgrade: websocket)\n",
                "text/plain; charset=utf-8", ("Allow", "GET" if path == "/ws" else "GET, HEAD"),
            )  # fmt: skip
        response = await self._get(connection, request, path)
        if request.method == "HEAD":  # the same headers, Content-Length included; no body
            response = dataclasses.replace(response, body=b"")
        return response

    async def _get(self, connection: ServerConnection, request: Request, path: str) -> Response:
        if path == "/healthz":  # can captions flow: Redis answering, the fan-out running
            trouble = self.hub.health()
            if trouble is None and (self._hub_task is None or self._hub_task.done()):
                trouble = "fan-out stopped"
            return connection.respond(
                http.HTTPStatus.OK if trouble is None else http.HTTPStatus.SERVICE_UNAVAILABLE,
                "ok\n" if trouble is None else f"{trouble}\n",
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
        """A captioned frame's JPEG while Redis keeps it: the live preview of it (the
        frame at a viewer's size, ``preview:{src}``) where capture made one, else the
        frame the model saw (``frames:{src}``)."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xrange(preview_key(source), frame, frame, count=1)
            pipe.xrange(frames_key(source), frame, frame, count=1)
            previews, entries = await pipe.execute()
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "redis unavailable\n")
        found = previews or entries
        data = found[0][1].get(b"data") if found else None
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
            query = parse_qs(urlsplit(target).query, keep_blank_values=True)
            start = range_start(query, now_ms=self.hub.clock.now_ms())  # ids: Redis's time
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
            redis_ok=self.hub.health() is None,
            counters=self.hub.metrics,
            refused=self.refused,
            dropped=sum(c.dropped for c in self.hub.clients),
            latency=self.hub.latency.lines(),
        )
        shared = None
        with contextlib.suppress(
            aioredis.ConnectionError, aioredis.TimeoutError, OSError, TimeoutError
        ):  # a frozen Redis never answers: the server's own figures, not a hung scrape
            shared = await asyncio.wait_for(
                read_shared(self.redis, self.hub.shown_states()), SHARED_TIMEOUT_S
            )
        return exposition(own, shared, now_ms=self.hub.clock.now_ms())

    # -- websocket ----------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        client = Client(ws=ws, queue_size=self.config.queue_size, counters=self.hub.metrics)
        self.hub.clients.add(client)
        writer = asyncio.create_task(self._write(client))
        bucket = TokenBucket(rate=self.config.client_rate, burst=self.config.client_burst)
        try:
            client.send_control(self.hub.hello().to_json())
            async for raw in ws:
                # a flood waits here: its socket fills, TCP slows the client down
                await asyncio.sleep(bucket.wait_s(time.monotonic()))
                while len(client.control) >= CONTROL_LIMIT and _open(ws, writer):
                    client.room.clear()  # replies it does not read: read no more for now
                    with contextlib.suppress(TimeoutError):  # and look again at the socket
                        await asyncio.wait_for(client.room.wait(), ROOM_CHECK_S)
                if not _open(ws, writer):  # the client is gone: what it sent is not read,
                    ws.transport.abort()  # so its close could not complete: end it now
                    break
                try:
                    message = parse_client_message(raw)
                    if isinstance(message, Subscribe):  # refused whole: nothing changes
                        check_after_not_ahead(message.after, now_ms=self.hub.clock.now_ms())
                except ProtocolError as exc:
                    self.hub.metrics["bad_messages"] += 1
                    client.send_control(ErrorMessage.from_error(exc).to_json())
                    continue
                if isinstance(message, Ping):
                    client.send_control(Pong(id=message.id).to_json())
                elif isinstance(message, Subscribe):
                    self._subscribe(client, message)
                else:
                    self._unsubscribe(client, message)
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

    def _subscribe(self, client: Client, message: Subscribe) -> None:
        if message.attention is not None:
            client.attention = message.attention
        client.sub.apply(message)
        if message.sources is not None:
            unknown = [s for s in message.sources if s not in self.hub.sources]
            if unknown:  # a typo would otherwise be silence
                client.send_control(self._unknown_sources(unknown).to_json())
        if message.after is not None:
            # from where it says now: what was queued from before is resent
            restarted = (
                list(message.sources or self.hub.sources)
                if isinstance(message.after, str)
                else list(message.after)
            )
            client.drop_queued(restarted)
        for source, start in client.sub.start_ids(self.hub.sources).items():
            client.send_control(self.hub.status_message(source))
            if start == "$":  # the live tail from now: no replay
                client.stop_replay(source)
            else:
                self.hub.start_replay(client, source, start, restart=True)

    @staticmethod
    def _unsubscribe(client: Client, message: Unsubscribe) -> None:
        client.sub.apply(message)
        for source in message.sources or list(client.replaying):
            client.stop_replay(source)
        client.drop_queued(message.sources)

    def _unknown_sources(self, names: Sequence[str]) -> ErrorMessage:
        known = ", ".join(sorted(self.hub.sources)[:20]) or "none yet"
        listed = ", ".join(repr(n) for n in names[:5]) + (" ..." if len(names) > 5 else "")
        return ErrorMessage(
            code="unknown_source",
            message=f"no source named {listed} (yet); known: {known}. Subscribed anyway: "
            "its captions come if it appears",
        )

    async def _write(self, client: Client) -> None:
        """Send what is queued for ``client`` until its connection is gone. Ends then,
        and wakes the reader (it may wait for room in the reply queue, which would
        otherwise never come: the client stayed counted and the server never stopped)."""
        try:
            while True:
                await client.wake.wait()
                client.wake.clear()
                while client.control or client.captions:
                    queue = client.control if client.control else client.captions
                    item = queue.popleft()
                    client.room.set()
                    text = item if isinstance(item, str) else item()
                    if text is None:  # a gap the client has resumed from meanwhile
                        continue
                    await client.ws.send(text)
                    client.sent += 1
                    self.hub.metrics["messages_sent"] += 1
        except ConnectionClosed:
            pass
        finally:
            client.room.set()


def _open(ws: ServerConnection, writer: asyncio.Task[None]) -> bool:
    """Whether a client may still be read from: its socket open and its writer alive."""
    return ws.state is State.OPEN and not writer.done()


def render_transcript(fmt: TranscriptFormat, raw: Sequence[tuple[bytes, Any]]) -> str:
    """Raw ``captions:{src}`` entries → a transcript: the websocket's caption messages
    (JSON lines) or cues (``stream.server.transcript``); malformed entries are left out."""
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
    page = resources.files("stream.server").joinpath("viewer.html")
    if page.is_file():
        return page.read_text(encoding="utf-8")
    return (
        "<!doctype html><html><head><title>scenecast</title></head><body><h1>scenecast</h1>"
        "<p>Captions stream at <code>/ws</code> (JSON messages; see the README).</p>"
        "</body></html>"
    )
