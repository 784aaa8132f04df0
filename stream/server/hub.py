"""The fan-out: a :class:`Hub` reads every source's ``captions:{src}`` and
``status:{src}`` with one blocking ``XREAD`` (on a Redis Cluster, one read per stream:
worker/cluster.py) and hands new entries to the clients.

Each client has a :class:`~stream.server.subscription.Subscription` (what it wants, what it
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
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection

from stream.capture.liveness import HEARTBEAT_S, RUNNING, silent_detail, silent_sources
from stream.protocol import (
    Attention,
    CaptionMessage,
    Hello,
    ProtocolError,
    SourceStatus,
    Status,
    iso_utc,
)
from stream.server.config import SERVER_NAME, ServerConfig
from stream.server.latency_histogram import LatencyHistograms
from stream.server.subscription import PendingGap, Subscription
from worker.bus.clock import RedisClock
from worker.bus.cluster import xread_async
from worker.bus.entries import CaptionEntry, decode_caption, decode_status
from worker.bus.exceptions import EntryError
from worker.bus.keys import SOURCES_KEY, captions_key, capture_key, status_key

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
    # the server's counters (Hub.metrics): "gaps", "dropped_captions"
    counters: dict[str, int] = field(default_factory=dict)
    sub: Subscription = field(default_factory=Subscription)
    # captions (JSON) in order, and a pause's gap message made when its turn comes
    # (None: the client subscribed again meanwhile), so that it follows the captions
    # queued before it and counts the drops until it is sent
    captions: deque[str | Callable[[], str | None]] = field(default_factory=deque)
    control: deque[str] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    room: asyncio.Event = field(default_factory=asyncio.Event)
    # per source being replayed: the live captions (id, JSON) that arrived meanwhile
    replaying: dict[str, list[tuple[str, Callable[[], str]]]] = field(default_factory=dict)
    # sources whose replay buffer filled up (a client slower than the live captions):
    # the replay reads on from the log instead, which holds all the buffer would have
    replay_overflow: set[str] = field(default_factory=set)
    replay_tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    sent: int = 0
    attention: bool = True  # the client wants attention grids (subscribe.attention)

    @property
    def dropped(self) -> int:
        """Captions this client was not sent because its queue was full."""
        return self.sub.dropped

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` (a replay) for this client; cancelled when it disconnects."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def stop_replay(self, source: str) -> None:
        """Cancel ``source``'s replay, if one runs, with the live captions it kept."""
        task = self.replay_tasks.pop(source, None)
        if task is not None:
            task.cancel()
        self.replaying.pop(source, None)
        self.replay_overflow.discard(source)

    def drop_queued(self, sources: Sequence[str] | None) -> None:
        """Unqueue what waits to be sent of ``sources`` (None: of every source): an
        unsubscribed source says nothing more, not another queue's worth."""
        gone = None if sources is None else set(sources)
        kept: deque[str | Callable[[], str | None]] = deque()
        for item in self.captions:
            if isinstance(item, str):
                source = json.loads(item)["source"]
            else:  # a gap's message: partial(Client._gap_json, source, gap)
                source = item.args[0] if isinstance(item, partial) else None
            if gone is not None and source not in gone:
                kept.append(item)
        self.captions = kept
        self.room.set()

    def send_control(self, text: str) -> None:
        self.control.append(text)
        self.wake.set()

    def offer(self, entry_id: str, source: str, text: Callable[[], str]) -> bool:
        """Queue a caption (``text()``: its JSON) if the subscription takes it; False
        when refused or dropped."""
        full = len(self.captions) >= self.queue_size
        if not self.sub.offer(source, entry_id, room=not full):
            self.offer_gaps()
            return False
        self.captions.append(text())
        self.wake.set()
        return True

    def offer_gaps(self) -> None:
        """Queue the gap message of each new pause, after the captions queued so far."""
        for paused, gap in self.sub.new_gaps():
            self.captions.append(partial(self._gap_json, paused, gap))
            self.wake.set()

    def buffer_live(self, source: str, entry_id: str, text: Callable[[], str]) -> bool:
        """Keep a live caption for after ``source``'s replay; False when no replay runs.
        A full buffer keeps nothing more: the replay reads on from the log instead."""
        buffer = self.replaying.get(source)
        if buffer is None:
            return False
        if len(buffer) < self.queue_size:
            buffer.append((entry_id, text))
        else:
            self.replay_overflow.add(source)
        return True

    def _gap_json(self, source: str, gap: PendingGap) -> str | None:
        """The gap's message as its turn comes, counted then: the server's ``gaps`` and
        ``dropped_captions`` are the gap messages sent and the drops they report (they
        counted pauses whose message was never sent, and drops after it went out)."""
        message = self.sub.gap_message(source, gap)
        if message is None:
            return None
        self._count("gaps", 1)
        self._count("dropped_captions", message.dropped)
        return message.to_json()

    def _count(self, name: str, n: int) -> None:
        if n:
            self.counters[name] = self.counters.get(name, 0) + n


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


def _decoded(raw: Sequence[Any]) -> list[tuple[str, CaptionEntry]]:
    """``XRANGE`` entries of a caption log → (id, caption); malformed ones left out."""
    out = []
    for entry_id, fields in raw:
        with contextlib.suppress(EntryError):
            out.append((entry_id.decode(), decode_caption(fields)))
    return out


def _state_of(fields: Any) -> dict[str, Any] | None:
    """A status entry as the sources hash holds it (None: malformed)."""
    try:
        state: dict[str, Any] = json.loads(decode_status(fields).to_json())
    except EntryError:
        return None
    return state


# a read of Redis that takes this much longer than its block: Redis is not answering
STALL_S = 3.0


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
            "dropped_captions": 0,
            "frames_served": 0,
            "frames_missing": 0,
            "transcripts_served": 0,
        }
        self.latency = LatencyHistograms()  # of the live captions fanned out, per source
        self.redis_ok = False
        self.round_at = time.monotonic()  # when the last read of Redis came back
        # Redis's time when it answered again after an outage or a stall: captures could
        # not beat meanwhile, so none is judged silent from before then
        self.redis_back_ms: float | None = None
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
            self.latency.by_source.pop(gone, None)  # its series leave /metrics too
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
                self.start_replay(client, source, client.sub.cursor(source) or "0-0")

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
        if self.redis_back_ms is not None:  # heard from as of Redis coming back
            seen = [None if v is None else max(v, self.redis_back_ms) for v in seen]
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

    def _answered(self) -> None:
        """Redis answered a round: after an outage or a round that stalled (a frozen
        Redis answers nothing, and raises nothing), note when it came back."""
        now = time.monotonic()
        if not self.redis_ok or now - self.round_at > self._stall_s():
            self.redis_back_ms = self.clock.now_ms()
        self.redis_ok = True
        self.round_at = now

    def _stall_s(self) -> float:
        """A round of reads longer than this: Redis is not answering."""
        return self.config.block_ms / 1000 + STALL_S

    def health(self) -> str | None:
        """None when captions can flow; else why not (for /healthz): Redis unreachable,
        or not answering (a round longer than the read block and ``STALL_S``)."""
        if not self.redis_ok:
            return "redis unavailable"
        waited = time.monotonic() - self.round_at
        if waited > self._stall_s():
            return f"redis not answering for {waited:.0f} s"
        return None

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
                if not self.positions:
                    self._answered()
                    await asyncio.sleep(self.config.block_ms / 1000)
                    continue
                reply = await xread_async(
                    self.redis, self.positions, block_ms=self.config.block_ms, count=500
                )
                self._answered()
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
                    if not client.buffer_live(entry.source, eid, text):
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

    def start_replay(
        self, client: Client, source: str, after: str, *, restart: bool = False
    ) -> None:
        """Replay ``captions:{source}`` after ``after`` to ``client``, buffering the
        source's live captions from this moment: marked here, not when the task first
        runs, or a live caption fanned out in between would move the cursor past the
        whole replay and every replayed caption would be refused as already sent. A
        replay already running goes on, unless ``restart`` (the client subscribed
        again, from where it says now)."""
        if source in client.replaying:
            if not restart:
                return
            client.stop_replay(source)
        buffer: list[tuple[str, Callable[[], str]]] = []
        client.replaying[source] = buffer
        client.replay_tasks[source] = client.spawn(self._replay(client, source, after, buffer))

    async def _replay(
        self,
        client: Client,
        source: str,
        after: str,
        buffer: list[tuple[str, Callable[[], str]]],
    ) -> None:
        """Send ``captions:{source}`` after ``after``, then what arrived meanwhile
        (``buffer``: this replay's; a later replay of the source has its own)."""
        try:
            start = after
            while True:
                try:
                    start = await self._replay_log(client, source, start)
                except (aioredis.RedisError, OSError) as exc:
                    # Redis went away mid-replay: what was not sent is still in the log
                    log.warning("replay of %s failed (%s): the client gets a gap", source, exc)
                    buffer.clear()
                    client.sub.pause(source)
                    client.offer_gaps()
                    return
                if source not in client.replay_overflow:
                    break
                # live captions outran the client while it took the replay: what the
                # buffer dropped is in the log, after the last caption sent
                client.replay_overflow.discard(source)
                buffer.clear()
                start = client.sub.cursor(source) or start
        finally:
            if client.replaying.get(source) is buffer:  # not a later replay's
                del client.replaying[source]
                client.replay_overflow.discard(source)
                client.replay_tasks.pop(source, None)
        for eid, text in buffer:  # no await since the last read: nothing slips through
            client.offer(eid, source, text)

    async def _replay_log(self, client: Client, source: str, after: str) -> str:
        """Send the log after ``after`` to its end, as the client makes room; returns
        the last id read. Each read takes one entry more than it sends, so the last
        caption of a chunk knows whether the next one starts a new segment."""
        chunk, start = self.config.replay_chunk, after
        while True:
            raw = await self.redis.xrange(captions_key(source), min=f"({start}", count=chunk + 1)
            page, ahead = raw[:chunk], raw[chunk:]
            decoded = _decoded(page)
            following: list[CaptionEntry | None] = [entry for _, entry in decoded[1:]]
            if decoded:  # the last one's next: the first of the entry read ahead, if any
                following.append(next((entry for _, entry in _decoded(ahead)), None))
            for (eid, entry), nxt in zip(decoded, following, strict=True):
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
            if not page:
                return start
            start = str(page[-1][0].decode())
            if not ahead:
                return start
