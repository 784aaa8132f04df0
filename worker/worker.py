"""The caption worker: consumer group ``captioners`` over every source's frames.

Per batch: discover sources → read frames (``XREADGROUP``) into a batch across all
sources until it is full or its oldest frame waited ``max_wait_ms`` → decode JPEGs
(on the GPU when there is one) → skip and ack stale live frames → caption the
batch → publish each caption and ack its frame atomically, each source's captions in
``seq`` order whichever worker finishes first (``worker.bus.publish``).
``run()`` overlaps the stages in three threads (reader, model, publisher) so the
model never waits on Redis or on decoding; ``step()`` does one batch in one thread.

Recovery: every ``claim_every_s`` the worker takes over the frames of a consumer
whose heartbeat stopped (``worker.takeover``) and frames pending longer than
``claim_idle_ms`` of a consumer with no recent heartbeat, or held ``STUCK_IDLE_MS``
(``XPENDING`` + ``XCLAIM``: a living worker's are not taken for being slow); a frame
delivered ``max_deliveries`` times without success (one that kills the workers that
take it, say) goes to ``deadletter:{src}`` and is acked, as does at once a frame that
is malformed or whose JPEG does not decode. A ``NOGROUP`` error (Redis restarted without
persistence) re-creates the group. ``stop()`` (SIGTERM) stops reading; the frames
in hand are captioned, published and acked, the worker leaves the groups where it
holds nothing, then ``run()`` returns.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import redis

from captioner.search.hold import ShownCaptions
from worker.batching import BatchPolicy, MovingAverage, live_batch_cap, split_stale
from worker.bus import cluster
from worker.bus.backoff import backoff_delays
from worker.bus.clock import RedisClock
from worker.bus.entries import FrameEntry, decode_frame
from worker.bus.exceptions import EntryError
from worker.bus.keys import (
    CAPTION_CPU,
    GROUP,
    METRICS_KEY,
    SOURCES_KEY,
    STAGE_PREFIX,
    WORKER_FORGOTTEN_MS,
    WORKER_SEEN_MS,
    WORKERS_KEY,
    as_str,
    deadletter_key,
    frames_key,
    shown_key,
    source_of_key,
)
from worker.bus.outage import REDIS_UNAVAILABLE, script_refusals
from worker.bus.publish import (
    FLUSH_LUA,
    PUBLISH_LUA,
    Publication,
    flush_args,
    outcome,
    publish_args,
)
from worker.captioning import CaptionLike, caption_entry
from worker.decode import decode_jpegs
from worker.handoff import Handoff
from worker.prefetch import BatchBuffer
from worker.shown import (
    FIELDS,
    SHOWN_LUA,
    LocalShown,
    SeqShown,
    decode_shown,
    newest_before,
    shown_args,
)
from worker.takeover import (
    LEAVE_LUA,
    TAKEOVER_IDLE_MS,
    TAKEOVER_LUA,
    gone_consumers,
    pending_by_consumer,
    taken_entries,
)

log = logging.getLogger("scenecast.worker")

SHARED_KEEP = 4096  # sources whose state in Redis a worker remembers between reads
HEARTBEAT_S = 2.0  # how often a worker notes in WORKERS_KEY that it is alive
FORGET_EVERY_S = 60.0  # how often a worker drops the heartbeats of workers long gone
# a living worker's frame pending this long is taken all the same: it is stuck, not slow
STUCK_IDLE_MS = 300_000
# a frame stamped further ahead of Redis's clock than this is malformed: captures stamp
# frames in Redis's time, so it is no clock skew (and a live one would never go stale)
FUTURE_LIMIT_S = 60.0
UNDECODABLE = "not a decodable JPEG of at least 2x2 pixels"  # a dead letter's reason
LIVE_RECENT_S = 10.0  # live frames read this recently: batches kept to their deadline


class CaptionFn(Protocol):
    """One caption per image, in order; ``None`` for one it could not read (with
    ``WorkerConfig.model_decodes`` the images are the frames' JPEG bytes). ``sources``:
    each image's source, a source's frames in stream order; ``shown``: what each
    source showed before, updated in place (the caption hold:
    ``captioner.api.Captioner.caption``; ``worker.shown``)."""

    def __call__(
        self, images: Sequence[Any], sources: Sequence[str], shown: ShownCaptions, /
    ) -> Sequence[CaptionLike | None]: ...


@runtime_checkable
class TimesItsStages(Protocol):
    """A caption function that says how its last call's time divides (the model's
    process: ``{"model_decode": s, "caption": s}``); the worker counts the rest of the call
    as "transfer". ``last_cpu_s``: the CPU time of the thread that ran the model."""

    last_stages: dict[str, float]
    last_cpu_s: float


@dataclass(frozen=True)
class WorkerConfig:
    policy: BatchPolicy = field(default_factory=BatchPolicy)
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}")
    # One blocking read. Short: stop() is prompt, and an idle worker looks for new
    # sources after each empty read (a new file job starts within ~block_ms).
    block_ms: int = 100
    claim_idle_ms: int = 30_000
    claim_every_s: float = 5.0
    max_deliveries: int = 3
    live_caption_maxlen: int = 10_000
    attention: bool = True
    model: str = "scenecast"
    fit: str = "letterbox"  # the model's fit of a frame to its input (captioner.Preprocess.fit)
    device: str = "cpu"  # where the reader decodes JPEGs
    # the caption function takes the JPEG bytes and decodes them itself (ModelProcess)
    model_decodes: bool = False
    sources_every_s: float = 1.0  # a busy worker looks for new sources this often
    reconnect_cap_s: float = 30.0  # Redis unreachable: longest wait between attempts


@dataclass
class WorkerStats:
    batches: int = 0
    captioned: int = 0
    stale: int = 0
    duplicates: int = 0
    parked: int = 0  # file-job captions held back until older frames were captioned
    late: int = 0  # live captions dropped: a newer one of the source was published first
    failed: int = 0
    deadlettered: int = 0
    claimed: int = 0
    reconnects: int = 0  # times Redis was unreachable and the worker started again
    batch_sizes: list[int] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, summed
    caption_cpu_s: float = 0.0  # the model's thread's CPU time in the caption stage

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if isinstance(v, int)}


@dataclass
class _Pending:
    entry_id: str
    frame: FrameEntry


class Worker:
    def __init__(
        self,
        client: redis.Redis,
        caption: CaptionFn,
        config: WorkerConfig | None = None,
        *,
        clock: RedisClock | None = None,
    ) -> None:
        self.redis = client
        # staleness, latency and heartbeats in Redis's time: frames are stamped in it by
        # captures on other machines (worker/redis_clock.py)
        self.clock = clock or RedisClock()
        self.caption = caption
        self.config = config or WorkerConfig()
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._publish = client.register_script(PUBLISH_LUA)
        self._flush = client.register_script(FLUSH_LUA)
        self._write_shown = client.register_script(SHOWN_LUA)
        self._take_over = client.register_script(TAKEOVER_LUA)
        self._leave = client.register_script(LEAVE_LUA)
        self._shown = LocalShown()  # what this worker's sources show (model thread only)
        # what Redis said they show (other workers' captions), read with their frames
        self._shared: dict[str, SeqShown | None] = {}
        self._sources: list[str] = []
        self._sources_at = 0.0
        self._claimed_at = 0.0
        self._beat_at = -HEARTBEAT_S  # the first heartbeat goes at once
        self._forgot_at = time.monotonic()  # run() forgets once as it starts
        self._live_at = -LIVE_RECENT_S  # time.monotonic() of the last live frame read
        self._per_frame = MovingAverage()  # ms of the model's time per frame, lately
        self._groups: set[str] = set()
        self._stats_lock = threading.Lock()

    # -- life cycle -------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking work; the batch in hand is still published and acked."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, until: Callable[[], bool] | None = None) -> WorkerStats:
        """Work until :meth:`stop` (or ``until()`` is true), in three threads.

        A reader thread reads and decodes the next batch (``BatchBuffer``) while this
        thread captions the current one and a publisher thread publishes the one
        before (in order). On stop, frames already read are still captioned, and
        everything captioned is published and acked before this returns.

        Redis unreachable: wait (exponential backoff with jitter, capped) and start
        again. Frames read but not published stay pending in Redis and are reclaimed
        (``_reclaim``); a restarted Redis without its data gets its groups back.
        """
        log.info("worker %s started", self.config.consumer)
        with contextlib.suppress(*REDIS_UNAVAILABLE):
            self.clock.sync(self.redis)
            self._forget_gone_workers()
        delays: Iterator[float] | None = None
        while not self._stop.is_set() and not (until and until()):
            batches = self.stats.batches
            try:
                self._run_pipelined(until)
            except REDIS_UNAVAILABLE as exc:
                if delays is None or self.stats.batches != batches:  # worked since: start over
                    delays = backoff_delays(cap=self.config.reconnect_cap_s)
                delay = next(delays)
                self.stats.reconnects += 1
                log.warning("Redis unreachable (%s): retrying in %.1f s", exc, delay)
                self._groups.clear()  # Redis may come back empty: re-create the groups
                self._sources_at = 0.0
                self._stop.wait(delay)
        with contextlib.suppress(*REDIS_UNAVAILABLE):
            self._leave_groups()
            self.redis.hdel(WORKERS_KEY, self.config.consumer)  # gone: not one of the live
        log.info("worker %s stopped: %s", self.config.consumer, self.stats.as_dict())
        return self.stats

    def heartbeat(self) -> None:
        """Note in ``WORKERS_KEY`` that this worker is alive, every ``HEARTBEAT_S`` at
        most (the server's ``scenecast_workers`` counts the recent ones)."""
        now = time.monotonic()
        if now - self._beat_at < HEARTBEAT_S:
            return
        if self.clock.due():
            self.clock.sync(self.redis)
        self.redis.hset(WORKERS_KEY, self.config.consumer, int(self.clock.now_ms()))
        self._beat_at = now
        if now - self._forgot_at >= FORGET_EVERY_S:  # not only at start: a lone worker too
            self._forget_gone_workers()
            self._forgot_at = now

    def _leave_groups(self) -> None:
        """Leave each source's group where this worker holds nothing (``LEAVE_LUA``)."""
        scripts = [
            (self._leave, [frames_key(s)], [GROUP, self.config.consumer]) for s in self._sources
        ]
        if scripts:
            cluster.run_scripts(self.redis, scripts)

    def _forget_gone_workers(self) -> None:
        """Drop the heartbeats of workers not heard from in an hour (killed ones leave
        theirs), so the hash stays as small as the pool."""
        beats: Any = self.redis.hgetall(WORKERS_KEY)
        cut = self.clock.now_ms() - WORKER_FORGOTTEN_MS
        gone = [name for name, ms in beats.items() if float(ms) < cut]
        if gone:
            self.redis.hdel(WORKERS_KEY, *gone)

    def _run_pipelined(self, until: Callable[[], bool] | None) -> None:
        buffer: BatchBuffer[_Decoded] = BatchBuffer(
            self.config.policy, urgent=lambda d: d.pending.frame.live
        )
        halt = threading.Event()
        failure: list[BaseException] = []
        reader = threading.Thread(
            target=self._read_ahead, args=(buffer, halt, failure), name="reader", daemon=True
        )
        timeout = self.config.block_ms / 1000
        with Handoff(self._publish_batch, depth=2, name="publisher") as publisher:
            reader.start()
            try:
                while not self._stop.is_set() and not (until and until()) and not failure:
                    batch = buffer.take(timeout=timeout, limit=self._batch_limit())
                    self._caption_decoded(*batch, publisher.submit)
            finally:
                halt.set()
                buffer.close()
                reader.join()
            while True:  # frames read before the stop are still captioned
                decoded, seconds = buffer.take(timeout=0)
                if not decoded:
                    break
                self._caption_decoded(decoded, seconds, publisher.submit)
        if failure:
            raise failure[0]

    def step(self) -> int:
        """One batch, all in this thread: gather (or time out), caption, publish.

        Returns the number of frames handled.
        """
        self.heartbeat()
        started = time.perf_counter()
        batch = self._reclaim() if self._claim_due() else []
        batch += self._gather(self.config.policy.room(len(batch)))
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        decoded = self._decode_fresh(batch)
        seconds = {"read": read_s, "decode": time.perf_counter() - started}
        self._caption_decoded(decoded, seconds, self._publish_batch)
        return len(batch)

    def _read_ahead(
        self, buffer: BatchBuffer[_Decoded], halt: threading.Event, failure: list[BaseException]
    ) -> None:
        """The reader thread: fill the next batch until ``halt``."""
        try:
            while not halt.is_set():
                self.heartbeat()
                room = buffer.room(timeout=self.config.block_ms / 1000)
                if room == 0 or halt.is_set():
                    continue
                started = time.perf_counter()
                got = self._reclaim() if self._claim_due() else []
                if len(got) < room:
                    got += self._read_once(room - len(got), block_ms=self.config.block_ms)
                read_s = time.perf_counter() - started
                started = time.perf_counter()
                decoded = self._decode_fresh(got)
                buffer.add(decoded, {"read": read_s, "decode": time.perf_counter() - started})
        except BaseException as exc:  # raised again by run()
            failure.append(exc)
            buffer.close()

    # -- sources and groups -----------------------------------------------------------

    def sources(self) -> list[str]:
        now = time.monotonic()
        if now - self._sources_at >= self.config.sources_every_s:
            names = sorted(as_str(k) for k in self.redis.hkeys(SOURCES_KEY))
            for name in names:
                if name not in self._groups:
                    self._ensure_group(name)
            self._sources, self._sources_at = names, now
        return self._sources

    def _ensure_group(self, source: str) -> None:
        try:
            # id 0: a group re-created after a restart still sees the frames in the stream
            self.redis.xgroup_create(frames_key(source), GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(source)

    # -- reading ----------------------------------------------------------------------

    def _gather(self, room: int) -> list[_Pending]:
        """Read until the policy closes the batch (``step()``; ``run()`` reads ahead)."""
        policy = self.config.policy
        batch: list[_Pending] = []
        first_arrival: float | None = None
        while room > 0 and not self._stop.is_set():
            wait = policy.wait_ms(len(batch), first_arrival, time.monotonic() * 1000)
            if wait <= 0:
                break
            got = self._read_once(room, block_ms=int(min(wait, self.config.block_ms)))
            if got and first_arrival is None:
                first_arrival = time.monotonic() * 1000
            batch += got
            room -= len(got)
            if not got and not batch:
                return batch  # idle: let the caller check for stop and reclaim
        return batch

    def _read_once(self, room: int, *, block_ms: int) -> list[_Pending]:
        """One blocking read of up to ``room`` frames over every source.

        After an empty read (or with no sources yet) the next read looks for new
        sources first, so an idle worker starts on a new source within ~``block_ms``.
        """
        sources = self.sources()
        if not sources:
            self._stop.wait(block_ms / 1000)
            self._sources_at = 0.0
            return []
        got = self._read(sources, count=room, block_ms=max(block_ms, 1))
        if not got:
            self._sources_at = 0.0
        return got

    def _read(self, sources: Sequence[str], *, count: int, block_ms: int) -> list[_Pending]:
        streams: dict[Any, Any] = {frames_key(s): ">" for s in sources}
        try:
            reply = cluster.xreadgroup(
                self.redis, GROUP, self.config.consumer, streams, count=count, block_ms=block_ms
            )
        except redis.ResponseError as exc:
            if "UNBLOCKED" in str(exc):  # a stream deleted while read: a forgotten source
                log.info("a source's frames were deleted while read (forgotten?): %s", exc)
            elif "NOGROUP" in str(exc):
                log.warning("consumer group missing (Redis restarted?): re-creating")
            else:
                raise
            # the registry as it is now: a forgotten source's stream is not made again
            self._groups.clear()
            self._sources_at = 0.0
            self.sources()
            return []
        frames = self._parse(list(reply or []))
        if any(p.frame.live for p in frames):
            self._live_at = time.monotonic()  # the next batch is kept to their deadline
        return frames

    def _parse(self, reply: Sequence[Any]) -> list[_Pending]:
        out = []
        for key, entries in reply:
            for entry_id, fields in entries:
                eid = as_str(entry_id)
                if not fields:  # trimmed away (MAXLEN) while pending
                    self.redis.xack(key, GROUP, eid)
                    continue
                try:
                    frame = decode_frame(fields)
                    ahead_s = (frame.capture_ns - self.clock.now_ns()) / 1e9
                    if ahead_s > FUTURE_LIMIT_S:  # both in Redis's time: not a clock skew
                        raise EntryError(f"captured {ahead_s:.0f} s in the future")
                    out.append(_Pending(eid, frame))
                except EntryError as exc:
                    source = source_of_key(key)
                    log.warning("malformed frame %s in %s: %s", eid, key, exc)
                    self._dead_letter(source, eid, fields, f"malformed entry: {exc}")
        return out

    # -- recovery ---------------------------------------------------------------------

    def _claim_due(self) -> bool:
        now = time.monotonic()
        if now - self._claimed_at < self.config.claim_every_s:
            return False
        self._claimed_at = now
        return True

    def _reclaim(self) -> list[_Pending]:
        """Take over the frames of consumers that are gone (``worker.takeover``), and
        frames idle in another consumer's pending list for ``claim_idle_ms`` whose
        consumer is not heard from either (no heartbeat at all), or has held them for
        ``STUCK_IDLE_MS``; release parked captions that nothing holds back any more.
        A living worker's frames are never taken for being slow: they were (its frames
        idle 22 s under load, captioned twice)."""
        sources = self.sources()
        self._release_parked(sources)
        if not sources:
            return []
        beats: Any = self.redis.hgetall(WORKERS_KEY)  # one read for both paths
        beats_ms = {as_str(name): float(ms) for name, ms in beats.items()}
        taken = self._take_over_gone(sources, beats_ms)
        seen = {p.entry_id for p in taken}
        now_ms = self.clock.now_ms()
        alive = {
            name
            for name, ms in beats_ms.items()
            if now_ms - ms <= WORKER_SEEN_MS and name != self.config.consumer
        }
        for source in sources:
            key = frames_key(source)
            try:
                rows: Any = self.redis.xpending_range(
                    key,
                    GROUP,
                    min="-",
                    max="+",
                    count=self.config.policy.max_batch,
                    idle=self.config.claim_idle_ms,
                )
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    self._groups.discard(source)
                    continue
                raise
            ids: list[Any] = [
                as_str(row["message_id"])
                for row in rows
                if as_str(row["message_id"]) not in seen
                and (
                    as_str(row["consumer"]) not in alive
                    or int(row["time_since_delivered"]) >= STUCK_IDLE_MS
                )
            ]
            if not ids:
                continue
            reply: Any = self.redis.xclaim(
                key, GROUP, self.config.consumer, self.config.claim_idle_ms, ids
            )
            entries = [(eid, fields) for eid, fields in reply if eid is not None]
            got = {as_str(eid) for eid, _ in entries}
            gone = [i for i in ids if i not in got]
            if gone:  # deleted from the stream while pending (a live stream's MAXLEN)
                self.redis.xack(key, GROUP, *gone)
            claimed = self._parse([(key, entries)])
            if claimed:
                deliveries = self._deliveries(key, [p.entry_id for p in claimed])
                taken += self._keep_claimed(source, claimed, deliveries)
        return taken

    def _take_over_gone(
        self, sources: Sequence[str], beats_ms: Mapping[str, float]
    ) -> list[_Pending]:
        """The frames held by consumers not heard from for ``WORKER_SEEN_MS``
        (``beats_ms``: each worker's last heartbeat): one round trip (each source's
        pending summary), and one script per gone consumer that holds frames."""
        pipe = self.redis.pipeline(transaction=False)
        for source in sources:
            pipe.xpending(frames_key(source), GROUP)
        summaries = pipe.execute(raise_on_error=False)
        now_ms = self.clock.now_ms()
        taken: list[_Pending] = []
        for source, summary in zip(sources, summaries, strict=True):
            if isinstance(summary, Exception):  # NOGROUP: the next read re-creates it
                self._groups.discard(source)
                continue
            gone = gone_consumers(
                pending_by_consumer(summary),
                beats_ms,
                now_ms=now_ms,
                me=self.config.consumer,
                seen_ms=WORKER_SEEN_MS,
            )
            key = frames_key(source)
            for consumer in gone:
                with script_refusals():
                    reply = self._take_over(
                        keys=[key],
                        args=[
                            GROUP,
                            consumer,
                            self.config.consumer,
                            TAKEOVER_IDLE_MS,
                            self.config.policy.max_batch,
                        ],
                    )
                entries = taken_entries(reply)
                if not entries:
                    continue
                log.warning(
                    "worker %s is gone (not heard from for %d s): taking over %d frames of %s",
                    consumer,
                    WORKER_SEEN_MS // 1000,
                    len(entries),
                    source,
                )
                claimed = self._parse([(key, [(eid, fields) for eid, fields, _ in entries])])
                deliveries = {eid: n for eid, _, n in entries}
                taken += self._keep_claimed(source, claimed, deliveries)
        return taken

    def _keep_claimed(
        self, source: str, claimed: Sequence[_Pending], deliveries: Mapping[str, int]
    ) -> list[_Pending]:
        """Claimed frames, but for those delivered too often: dead-lettered."""
        self.stats.claimed += len(claimed)
        self._count(claimed=len(claimed))
        kept = []
        for p in claimed:
            if deliveries.get(p.entry_id, 0) > self.config.max_deliveries:
                self._dead_letter(source, p.entry_id, None, "too many deliveries")
            else:
                kept.append(p)
        return kept

    def _release_parked(self, sources: Sequence[str]) -> None:
        """Publish the parked captions of ``sources`` that no pending frame holds back
        (``worker.bus.publish``): after a frame left the group without a caption."""
        if sources:
            cluster.run_scripts(self.redis, [(self._flush, *flush_args(s)) for s in sources])

    def _deliveries(self, key: str, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for entry_id in ids:
            rows = self.redis.xpending_range(key, GROUP, min=entry_id, max=entry_id, count=1)
            if rows:
                out[entry_id] = int(rows[0]["times_delivered"])
        return out

    def _dead_letter(
        self, source: str, entry_id: str, fields: dict[Any, Any] | None, reason: str
    ) -> None:
        key = frames_key(source)
        if fields is None:
            got: Any = self.redis.xrange(key, min=entry_id, max=entry_id, count=1)
            fields = dict(got[0][1]) if got else {}
        letter: dict[Any, Any] = {**fields, b"dead_reason": reason, b"frame_id": entry_id}
        pipe = self.redis.pipeline(transaction=True)  # one slot: the source's (worker/cluster.py)
        pipe.xadd(deadletter_key(source), letter, maxlen=1000, approximate=True)
        pipe.xack(key, GROUP, entry_id)
        pipe.execute()
        self._release_parked([source])  # the captions this frame held back
        self._count(deadlettered=1)
        with self._stats_lock:  # the reader and the model's thread both dead-letter
            self.stats.deadlettered += 1
        log.warning("frame %s of %s dead-lettered: %s", entry_id, source, reason)

    # -- processing -------------------------------------------------------------------

    def _count(self, pipe: Any = None, /, **counts: int) -> None:
        """Add to the shared counters that ``/metrics`` reports (all workers summed)."""
        pipe = pipe or self.redis.pipeline(transaction=False)
        for name, n in counts.items():
            if n:
                pipe.hincrby(METRICS_KEY, name, n)
        pipe.execute()

    def _skip_stale(self, frames: Sequence[_Pending], *, ahead_ms: float = 0.0) -> list[int]:
        """Ack and count stale live frames (one round trip); the indices of the others.
        ``ahead_ms``: judged as of that much later (when a batch about to be captioned
        will be done: a frame that would be stale then is not worth the model's time)."""
        fresh, stale = split_stale(
            self.config.policy,
            [(p.frame.live, p.frame.capture_ns) for p in frames],
            self.clock.now_ns() + int(ahead_ms * 1e6),  # capture_ns is in Redis's time too
        )
        if stale:
            pipe = self.redis.pipeline(transaction=False)
            for i in stale:
                pipe.xack(frames_key(frames[i].frame.source), GROUP, frames[i].entry_id)
            pipe.hincrby(METRICS_KEY, "stale", len(stale))
            pipe.execute()
            with self._stats_lock:  # the reader and the model's thread both skip
                self.stats.stale += len(stale)
        return fresh

    def _decode_fresh(self, frames: Sequence[_Pending]) -> list[_Decoded]:
        """The frames not stale yet, decoded (stale ones acked and counted, undecodable
        ones counted and dead-lettered)."""
        frames = [frames[i] for i in self._skip_stale(frames)]
        if not frames:
            return []
        self._read_shared({p.frame.source for p in frames})
        if self.config.model_decodes:
            return [_Decoded(p, p.frame.jpeg) for p in frames]
        images = decode_jpegs([p.frame.jpeg for p in frames], device=self.config.device)
        self._undecodable([p for p, im in zip(frames, images, strict=True) if im is None])
        return [_Decoded(p, im) for p, im in zip(frames, images, strict=True) if im is not None]

    def _undecodable(self, frames: Sequence[_Pending]) -> None:
        """Frames whose JPEG does not decode: counted and dead-lettered at once. The
        bytes decode nowhere else either (what nvJPEG refuses is retried on the CPU), and
        a frame left pending would hold back its file job's later captions."""
        if not frames:
            return
        with self._stats_lock:  # the reader and the model's thread both count
            self.stats.failed += len(frames)
        self._count(failed=len(frames))
        for p in frames:
            fields: dict[Any, Any] = p.frame.encode()
            self._dead_letter(p.frame.source, p.entry_id, fields, UNDECODABLE)

    def _caption_decoded(
        self,
        decoded: list[_Decoded],
        seconds: dict[str, float],
        publish: Callable[[_Captioned], None],
    ) -> None:
        """Skip what went stale while waiting, caption the rest, hand it to ``publish``."""
        if not decoded:
            return
        # a live frame whose caption would be done past the max age (the model's recent
        # time a frame, for the batch) is skipped now, not captioned to be dropped
        expected_ms = (self._per_frame.value or 0.0) * len(decoded)
        pendings = [d.pending for d in decoded]
        fresh = [decoded[i] for i in self._skip_stale(pendings, ahead_ms=expected_ms)]
        if not fresh:
            return
        started, cpu = time.perf_counter(), time.thread_time()
        frames = [d.pending.frame for d in fresh]
        shown = self._shown_before(frames)
        before = shown.snapshot()
        captions = self.caption([d.image for d in fresh], [f.source for f in frames], shown)
        call_s = time.perf_counter() - started
        self._per_frame.add(call_s * 1000 / len(fresh))
        seconds = {**seconds, **self._caption_stages(call_s)}
        cpu_s = time.thread_time() - cpu
        if isinstance(self.caption, TimesItsStages):
            cpu_s = self.caption.last_cpu_s
        last = {f.source: f.seq for f in frames}  # each source's state is of its last frame
        states = {
            s: SeqShown(last[s], st) for s, st in shown.set_since(before).items() if s in last
        }
        self._shown.update(states)
        done = [(d.pending, c) for d, c in zip(fresh, captions, strict=True) if c is not None]
        # the model could not decode them
        self._undecodable([d.pending for d, c in zip(fresh, captions, strict=True) if c is None])
        if done:  # a live caption that is late now says what is gone: stale, not shown
            on_time = set(self._skip_stale([p for p, _ in done]))
            done = [d for i, d in enumerate(done) if i in on_time]
        if done:
            pending, kept = zip(*done, strict=True)
            done_ns = self.clock.now_ns()
            publish(_Captioned(list(pending), list(kept), done_ns, seconds, cpu_s, states))

    def _batch_limit(self) -> int | None:
        """While live frames flow (read in the last ``LIVE_RECENT_S``), batches short
        enough for their deadline (``batching.live_batch_cap``); else none."""
        if time.monotonic() - self._live_at > LIVE_RECENT_S:
            return None
        return live_batch_cap(self.config.policy, self._per_frame.value)

    def _caption_stages(self, call_s: float) -> dict[str, float]:
        """The caption call's seconds by stage: all "caption", or as the caption
        function divides them (``TimesItsStages``) with the rest as "transfer"."""
        if not isinstance(self.caption, TimesItsStages) or not self.caption.last_stages:
            return {"caption": call_s}
        inside = self.caption.last_stages
        return {**inside, "transfer": max(call_s - sum(inside.values()), 0.0)}

    def _read_shared(self, sources: set[str]) -> None:
        """What Redis says these sources show (one round trip, by the thread that read
        their frames: off the model's path); the model's thread takes it from there."""
        pipe = self.redis.pipeline(transaction=False)
        for source in sources:
            pipe.hmget(shown_key(source), list(FIELDS))
        if len(self._shared) > SHARED_KEEP:
            self._shared.clear()
        for source, values in zip(sources, pipe.execute(), strict=True):
            self._shared[source] = decode_shown(values, self.config.model)

    def _shown_before(self, frames: Sequence[FrameEntry]) -> ShownCaptions:
        """What each source of the batch showed before its first frame here: this
        worker's state or Redis's (another worker's) as read with the frames, the
        newer (worker.shown)."""
        first: dict[str, int] = {}
        for f in frames:
            first.setdefault(f.source, f.seq)
        shown = ShownCaptions()
        for source, seq in first.items():
            state = newest_before(seq, self._shown.get(source), self._shared.get(source))
            if state is not None:
                shown.put(source, state)
        return shown

    def _publish_batch(self, done: _Captioned) -> None:
        """Each caption published and its frame acked atomically; counters in one trip."""
        started = time.perf_counter()
        calls = []
        for p, c in zip(done.frames, done.captions, strict=True):
            f = p.frame
            entry = caption_entry(
                f,
                c,
                model=self.config.model,
                fit=self.config.fit,
                latency_ms=(done.done_ns - f.capture_ns) / 1e6,
                attention=self.config.attention,
            )
            maxlen = self.config.live_caption_maxlen if f.live else 0
            calls.append((self._publish, *publish_args(Publication(entry, p.entry_id, maxlen))))
        for source, state in done.shown.items():
            calls.append((self._write_shown, *shown_args(source, state, self.config.model)))
        results = [outcome(r) for r in cluster.run_scripts(self.redis, calls)[: len(done.frames)]]
        parked, late = results.count("parked"), results.count("late")
        duplicates = results.count("duplicate")
        captioned = len(results) - late - duplicates  # published now, or once in order
        seconds = {**done.seconds, "publish": time.perf_counter() - started}
        counters = self.redis.pipeline(transaction=False)
        for stage, value in seconds.items():
            counters.hincrbyfloat(METRICS_KEY, f"{STAGE_PREFIX}{stage}", value)
            self.stats.seconds[stage] = self.stats.seconds.get(stage, 0.0) + value
        counters.hincrbyfloat(METRICS_KEY, CAPTION_CPU, done.caption_cpu_s)
        self.stats.caption_cpu_s += done.caption_cpu_s
        self._count(
            counters,
            captioned=captioned,
            duplicates=duplicates,
            parked=parked,
            late=late,
            batches=1,
        )
        self.stats.captioned += captioned
        self.stats.duplicates += duplicates
        self.stats.parked += parked
        self.stats.late += late
        self.stats.batches += 1
        self.stats.batch_sizes.append(len(done.frames))
        del self.stats.batch_sizes[:-1000]


@dataclass
class _Decoded:
    pending: _Pending
    image: Any  # RGB (H, W, 3) array, (3, H, W) tensor on the GPU, or JPEG bytes: model_decodes


@dataclass
class _Captioned:
    frames: list[_Pending]
    captions: Sequence[CaptionLike]
    done_ns: int  # when the model finished: the captions' latency ends here
    seconds: dict[str, float]  # read, decode, caption
    caption_cpu_s: float  # CPU time of the model's thread while captioning
    shown: dict[str, SeqShown]  # what the sources show now, for shown:{src}
