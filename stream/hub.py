"""The fan-out: a :class:`Hub` reads every source's ``captions:{src}`` and
``status:{src}`` with one blocking ``XREAD`` (on a Redis Cluster, one read per stream:
worker/cluster.py) and hands new entries to the clients.

Each client has a :class:`~stream.subscription.Subscription` (what it wants, what it
was sent) and a bounded queue of captions: a live caption that finds the queue full is
dropped, the source is paused for that client and a ``gap`` says where to resume from
(as the websockets docs advise: ``broadcast`` has no backpressure, so bound the
memory). Replays (``subscribe`` with ``after``) read the log with ``XRANGE`` and wait
for room instead of dropping; live captions that arrive meanwhile are buffered and
sent after the replay, so nothing is missed and the cursor drops what was sent twice.

``is_final`` is true when the server knows, at send time, that the next caption of
the source starts a new segment (always the case in a replay, except at its end);
otherwise a new ``segment_id`` — or an ``ended`` status — closes the segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection

from stream.capture_liveness import HEARTBEAT_S, RUNNING, silent_detail, silent_sources
from stream.latency_histogram import LatencyHistograms
from stream.protocol import (
    Attention,
    CaptionMessage,
    Hello,
    ProtocolError,
    SourceStatus,
    Status,
    iso_utc,
)
from stream.server_config import SERVER_NAME, ServerConfig
from stream.subscription import Subscription
from worker.cluster import xread_async
from worker.queue import (
    SOURCES_KEY,
    CaptionEntry,
    EntryError,
    captions_key,
    capture_key,
    decode_caption,
    decode_status,
    status_key,
)
from worker.redis_clock import RedisClock

log = logging.getLogger("scenecast.server")


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


def _state_of(fields: Any) -> dict[str, Any] | None:
    """A status entry as the sources hash holds it (None: malformed)."""
    try:
        state: dict[str, Any] = json.loads(decode_status(fields).to_json())
    except EntryError:
        return None
    return state


class Hub:
    """Reads the caption and status streams of all sources and fans them out."""

    def __init__(self, client: Any, config: ServerConfig) -> None:
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
        # heartbeats are stamped in Redis's time (worker/redis_clock.py): judged in it too
        self.clock = RedisClock()

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
            if captions_key(name) in self.positions:
                continue  # known: its status stream, read in order, is newer than the hash
            try:
                listed_state = json.loads(value)
            except json.JSONDecodeError:
                continue
            new.append(name)
            self.positions[captions_key(name)] = await self._last_id(captions_key(name))
            # the state and the point to read on from are the same entry, so a status
            # written meanwhile is either that one or read next (never neither: the hash
            # is written after the stream, and on a cluster on another node)
            last = await self.redis.xrevrange(status_key(name), count=1)
            self.positions[status_key(name)] = last[0][0].decode() if last else "0-0"
            self.sources[name] = (_state_of(last[0][1]) if last else None) or listed_state
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
            states, dict(zip(running, seen, strict=True)), now_ms=self.clock.now_ms()
        )
        changed = set(silent) ^ set(self.silent)
        self.silent = silent
        for source in sorted(changed):
            log.warning("capture of %s %s", source, "silent" if source in silent else "back")
            self._tell(source, self.status_message(source))

    def _tell(self, source: str, message: str) -> None:
        """Send a control message to the clients that follow ``source``."""
        for client in self.clients:
            if client.sub.wants(source):
                client.send_control(message)

    def status_message(self, source: str) -> str:
        info = self.shown(source)
        return Status(
            source=source,
            state=str(info.get("state", "connecting")),
            detail=str(info.get("detail", "")),
            ts=iso_utc(int(info.get("ts_ns", self.clock.now_ns()))),
        ).to_json()

    async def _last_id(self, stream: str) -> str:
        last = await self.redis.xrevrange(stream, count=1)
        return last[0][0].decode() if last else "0-0"

    async def run(self) -> None:
        """Read forever; reconnects to Redis after errors."""
        while True:
            try:
                if self.clock.due():
                    await self.clock.sync_async(self.redis)
                for source in await self.refresh_sources():
                    self.announce(source)
                await self.check_captures()
                self.redis_ok = True
                if not self.positions:
                    await asyncio.sleep(self.config.block_ms / 1000)
                    continue
                reply = await xread_async(
                    self.redis, self.positions, block_ms=self.config.block_ms, count=500
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
            self._tell(status.source, message)

    def hello(self) -> Hello:
        return Hello(
            server=SERVER_NAME,
            time_ms=int(self.clock.now_ms()),
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
