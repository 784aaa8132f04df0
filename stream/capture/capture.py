"""Capture: read a source, sample frames, publish them as JPEG to ``frames:{src}``.

- Files (job mode): every frame decoded in order, sampled on media time, every
  sampled frame published; no frame is trimmed before it is captioned. Backpressure:
  while the consumer group has ``max_backlog`` frames undelivered, pending or with
  their caption parked (held back for an older frame, ``worker.bus.publish``), capture
  waits; frames already captioned (acked) are trimmed but for the newest
  ``keep_captioned`` (viewers fetch those), so Redis holds at most about
  ``max_backlog + keep_captioned`` frames of a job however long the file.
- Live sources (webcam, RTSP, HTTP, or a file with ``--live``): a reader thread
  keeps only the newest frame; sampled frames are published with ``MAXLEN ~`` so
  Redis holds a handful; a failure or stall reconnects with exponential backoff and
  jitter. Media time is the time since capture start.

Each state change (connecting, live, reconnecting, ended, error) is published to
``status:{src}`` and to the ``scenecast:sources`` hash that servers and workers read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import redis

from stream.capture.counts import CaptureCounts, ReaderFigures
from stream.capture.lease import (
    LEASE_MS,
    RELEASE_LUA,
    RENEW_LUA,
    capture_id,
    taken_message,
    waiting_message,
)
from stream.capture.liveness import HEARTBEAT_S
from stream.capture.sampler import FixedRateSampler, Sampler, SceneChangeSampler
from stream.capture.shrink import shrink
from stream.exceptions import SourceError, SourceLostError, StreamError
from stream.sources.read_ahead import read_ahead
from stream.sources.readers import FileReader, Frame, LatestFrameReader
from stream.sources.spec import SourceSpec
from stream.sources.stoppable_call import call_unless_stopped
from worker.bus.backoff import backoff_delays
from worker.bus.clock import RedisClock
from worker.bus.entries import (
    FrameEntry,
    StatusEntry,
    decode_caption,
    decode_frame,
    decode_status,
)
from worker.bus.keys import (
    GROUP,
    SOURCES_KEY,
    as_str,
    captions_key,
    capture_key,
    frames_key,
    owner_key,
    parked_key,
    preview_key,
    seq_key,
    source_keys,
    status_key,
)
from worker.bus.outage import REDIS_UNAVAILABLE, script_refusals

log = logging.getLogger("scenecast.capture")

ENCODE_THREADS = 2  # JPEG encoders working ahead of publication in file jobs
LOOKAHEAD = 4 * ENCODE_THREADS  # file jobs: frames decoded ahead of publication
DATA_LOST = (
    "Redis restarted without its data during the job: the frames not yet captioned and "
    "the captions it held went with it (a Redis with persistence, e.g. appendonly yes, "
    "keeps jobs through restarts); run the job again for all of them"
)


@dataclass(frozen=True)
class CaptureConfig:
    fps: float = 1.0  # samples per second of media time
    scene_change: bool = False  # caption on picture change (with a max interval) instead
    scene_threshold: float = 0.3
    max_interval_s: float = 10.0
    max_side: int = 256  # JPEG frames are resized so their longer side is at most this
    jpeg_quality: int = 90
    # Live sources: each published frame also at this longer side (never enlarged) in
    # preview:{src}, for viewers (/frames serves it); 0: off. File jobs publish none:
    # their frames go as fast as the workers take them, and one more encode each
    # would slow the job.
    preview_side: int = 640
    preview_quality: int = 80
    live_maxlen: int = 16  # live frames kept in Redis (MAXLEN ~)
    # File jobs: frames undelivered + pending before capture waits. A worker holds up to
    # two batches (one captioning, one read ahead): 256 keeps 4 workers at batch 32 fed,
    # and is ~5 MB of 256-px JPEGs in Redis.
    max_backlog: int = 256
    # File jobs: captioned (acked) frames kept in Redis for viewers (/frames); older
    # ones are trimmed as the job goes, so a long job does not fill Redis with JPEGs.
    keep_captioned: int = 256
    loop: bool = False  # live file: start again at its end
    # File jobs: caption the file again under a name whose job has ended (its log is
    # forgotten first); without it such a capture is refused
    restart: bool = False
    reconnect_cap_s: float = 30.0
    open_timeout_ms: int = 10_000
    read_timeout_ms: int = 5_000

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.max_side < 32:
            raise ValueError(f"max_side must be >= 32, got {self.max_side}")
        if self.preview_side and self.preview_side < self.max_side:
            raise ValueError(
                f"preview_side must be 0 (off) or >= the frames' {self.max_side} px, "
                f"got {self.preview_side}"
            )
        if self.keep_captioned < 0 or self.max_backlog < 1:
            raise ValueError(
                f"keep_captioned must be >= 0 and max_backlog >= 1, got "
                f"{self.keep_captioned} and {self.max_backlog}"
            )

    def sampler(self) -> Sampler:
        if self.scene_change:
            return SceneChangeSampler(
                threshold=self.scene_threshold,
                max_interval_s=self.max_interval_s,
                min_interval_s=1.0 / self.fps,
            )
        return FixedRateSampler(self.fps)

    @property
    def interval_ms(self) -> float:
        return 1000.0 / self.fps


def encode_jpeg(image: np.ndarray, *, max_side: int, quality: int) -> tuple[bytes, int, int]:
    """BGR frame → JPEG bytes, shrunk (aspect kept, ``shrink``) to ``max_side``."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        # never below 2 px a side (the model's least): a 1024x4 frame stays 256x2
        size = (max(2, round(width * scale)), max(2, round(height * scale)))
        image = shrink(image, size)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SourceError("a frame could not be encoded as JPEG")
    return bytes(buf.tobytes()), image.shape[1], image.shape[0]


class Capture:
    """One source → ``frames:{src}``. ``run()`` blocks until the source ends or ``stop()``."""

    def __init__(
        self,
        client: redis.Redis,
        spec: SourceSpec,
        config: CaptureConfig,
        *,
        clock: RedisClock | None = None,
    ) -> None:
        self.redis = client
        # frames' capture times, states and heartbeats in Redis's time: workers and
        # servers on other machines compare them with their own (worker/redis_clock.py)
        self.clock = clock or RedisClock()
        self.spec = spec
        self.config = config
        self._stop = threading.Event()
        self.waited_s = 0.0  # file jobs: time spent waiting for room under max_backlog
        self.published_at: float | None = None  # file jobs: monotonic time of the last frame
        self.frames_read = 0
        self._seq = 0
        self._published_ids: deque[tuple[int, int]] = deque()  # file jobs: for backlog()
        self._kept: deque[tuple[int, int]] = deque()  # file jobs: frame ids still in Redis
        self.trimmed = 0  # file jobs: captioned frames trimmed from Redis
        self._backlog_bound = 0  # ≥ the group's backlog of this source (file jobs)
        self._state = ("connecting", "")  # the last state, sent again after a Redis outage
        self._redis_lost = False
        self._redis_delays: Iterator[float] | None = None
        self.redis_outages = 0
        self.redis_data_lost = False  # Redis came back without frames published before
        self.counts = CaptureCounts()  # for /metrics, through capture:{src}
        self.lease_id = capture_id()  # one capture per source (stream/capture_lease.py)
        self.lease_taken_by: str | None = None  # set when another capture took the source
        self._renew = client.register_script(RENEW_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._counts_sent_at = 0.0

    def stop(self) -> None:
        self._stop.set()

    @property
    def sampled(self) -> int:
        """Frames the sampler picked so far."""
        return self.counts.own["sampled"]

    @property
    def published(self) -> int:
        """Frames published to ``frames:{src}`` so far."""
        return self.counts.own["published"]

    # -- Redis side -------------------------------------------------------------------

    def register(self) -> None:
        """Create the consumer group before the first frame, and continue the seq."""
        try:
            self.redis.xgroup_create(frames_key(self.spec.name), GROUP, id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        if self.clock.due():
            self.clock.sync(self.redis)
        last = self.redis.get(seq_key(self.spec.name))
        if last is None and self._seq > 0:  # we published, and Redis forgot: it restarted empty
            self.redis_data_lost = True
        # max: a Redis that came back empty must not restart the numbering
        self._seq = max(self._seq, int(last) if last is not None else 0)

    def status(self, state: str, detail: str = "") -> None:
        """Publish a state change; while Redis is unreachable it is kept and sent on return."""
        self._state = (state, detail)
        if self.lease_taken_by is not None:
            return  # the source is another capture's now: its states are the ones shown
        if not self._redis_lost:
            self._attempt(lambda: self._send_status_if_ours(state, detail))

    def _send_status_if_ours(self, state: str, detail: str) -> None:
        """Send a state unless another capture has taken the source meanwhile: the
        heartbeat notices within 2 s, but a capture paused past its lease (SIGSTOP, a
        frozen VM) said "reconnecting: stalled" over the new owner's "live" first."""
        if self.lease_id:
            holder: Any = self.redis.get(owner_key(self.spec.name))
            if holder is not None and holder.decode() != self.lease_id:
                self.lease_taken_by = holder.decode()
                log.error("%s", taken_message(self.spec.name, self.lease_taken_by))
                self._stop.set()
                return
        self._send_status(state, detail)

    # -- Redis outages ----------------------------------------------------------------
    #
    # Capture outlives Redis: file jobs wait and publish the same frames again (nothing
    # skipped; frames that were queued in a Redis restarted without persistence are
    # lost with it); live sources drop frames until Redis is back (captions describe
    # now). On return the group, the seq, the registry entry and the state are
    # restored, as Redis may have come back empty.

    def _attempt(self, action: Callable[[], object]) -> bool:
        """Run a Redis action, rejoining first after an outage; False: Redis unreachable."""
        try:
            if self._redis_lost:
                self._rejoin()
            action()
            return True
        except REDIS_UNAVAILABLE as exc:
            if not self._redis_lost:
                self.redis_outages += 1
                log.warning("%s: Redis unreachable (%s)", self.spec.name, exc)
            self._redis_lost = True
            return False

    def _redis_pause(self) -> None:
        """Wait one reconnect delay (exponential backoff with jitter), or until stopped."""
        if self._redis_delays is None:
            self._redis_delays = backoff_delays(cap=self.config.reconnect_cap_s)
        self._stop.wait(next(self._redis_delays))

    def _rejoin(self) -> None:
        lost_before = self.redis_data_lost
        self.register()
        if self.redis_data_lost and not lost_before and not self.spec.live:
            # said now, not hours later at the job's end: its frames went with Redis
            log.error("%s: %s", self.spec.name, DATA_LOST)
            state, detail = self._state
            self._state = (state, f"{detail}; {DATA_LOST}" if detail else DATA_LOST)
        self._published_ids.clear()  # ids of a lost stream would count as backlog forever
        self._kept.clear()
        self._backlog_bound = 0
        self._send_status_if_ours(*self._state)
        self._redis_lost, self._redis_delays = False, None
        log.info("%s: Redis reachable again", self.spec.name)

    def send_counts(self, reader: ReaderFigures | None = None, *, every_s: float = 1.0) -> None:
        """Add the counters' increments to ``capture:{src}``, at most every ``every_s``
        (0: now). While Redis is away they wait for the next call."""
        now = time.monotonic()
        if self._redis_lost or now - self._counts_sent_at < every_s:
            return
        increments = self.counts.unsent(reader)
        if not increments:
            return
        pipe = self.redis.pipeline(transaction=True)
        for name, n in increments.items():
            pipe.hincrby(capture_key(self.spec.name), name, n)
        try:
            pipe.execute()
        except REDIS_UNAVAILABLE:
            return  # counted again, with what follows, once Redis is back
        self.counts.sent(increments)
        self._counts_sent_at = now

    def _send_status(self, state: str, detail: str) -> None:
        entry = StatusEntry(self.spec.name, state, detail, self.clock.now_ns(), live=self.spec.live)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(status_key(self.spec.name), entry.encode(), maxlen=100, approximate=True)  # type: ignore[arg-type]
        pipe.hset(SOURCES_KEY, self.spec.name, entry.to_json())
        pipe.execute()
        log.info("%s: %s %s", self.spec.name, state, detail)

    def encode(self, frame: Frame) -> tuple[bytes, int, int]:
        return encode_jpeg(
            frame.image, max_side=self.config.max_side, quality=self.config.jpeg_quality
        )

    def publish(self, frame: Frame, encoded: tuple[bytes, int, int] | None = None) -> None:
        self.publish_many([(frame, encoded or self.encode(frame))])

    def publish_many(self, frames: Sequence[tuple[Frame, tuple[bytes, int, int]]]) -> None:
        """Publish encoded frames in order, in one transaction (one round trip)."""
        maxlen = self.config.live_maxlen if self.spec.live else None
        pipe = self.redis.pipeline(transaction=True)
        for i, (frame, (data, width, height)) in enumerate(frames):
            entry = FrameEntry(
                source=self.spec.name,
                seq=self._seq + i,
                pts_ms=frame.pts_ms,
                capture_ns=self.clock.to_redis(frame.wall_ns),
                width=width,
                height=height,
                jpeg=data,
                live=self.spec.live,
                interval_ms=self.config.interval_ms,
            )
            pipe.xadd(frames_key(self.spec.name), entry.encode(), maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
        pipe.set(seq_key(self.spec.name), self._seq + len(frames))
        *entry_ids, _ = pipe.execute()
        if not self.spec.live:
            ids = [_stream_id(as_str(i)) for i in entry_ids]
            self._published_ids.extend(ids)
            self._kept.extend(ids)
        self._seq += len(frames)
        self.counts.add("published", len(frames))
        if self.spec.live and self.config.preview_side:
            self._publish_previews([f for f, _ in frames], [as_str(i) for i in entry_ids])

    def _publish_previews(self, frames: Sequence[Frame], entry_ids: Sequence[str]) -> None:
        """The frames at the viewer's size, under their frame entry ids. Only for a frame
        larger than the model's; a preview lost to Redis costs only its sharpness."""
        side, maxlen = self.config.preview_side, self.config.live_maxlen
        pipe = self.redis.pipeline(transaction=False)
        for frame, entry_id in zip(frames, entry_ids, strict=True):
            if max(frame.image.shape[:2]) <= self.config.max_side:
                continue
            data, width, height = encode_jpeg(
                frame.image, max_side=side, quality=self.config.preview_quality
            )
            fields: dict[Any, Any] = {"data": data, "width": width, "height": height}
            key = preview_key(self.spec.name)
            pipe.xadd(key, fields, id=entry_id, maxlen=maxlen, approximate=True)
        # an outage: the next frame's publication meets it and waits for Redis
        with contextlib.suppress(*REDIS_UNAVAILABLE):
            pipe.execute(raise_on_error=False)

    def backlog(self) -> int:
        """Frames of this source not yet captioned: undelivered + pending in the group.

        Undelivered = the ids this capture published after the group's last delivered
        id (kept here, so no frame data travels back from Redis to count them).
        """
        pipe = self.redis.pipeline(transaction=False)  # one round trip; one slot
        pipe.xinfo_groups(frames_key(self.spec.name))
        # captions held back for an older frame still being captioned (worker.bus.publish):
        # their frames are acked, but they are not out yet
        pipe.zcard(parked_key(self.spec.name))
        groups, parked_count = pipe.execute()
        group = next((g for g in groups if as_str(g["name"]) == GROUP), None)
        if group is None:
            return 0
        parked = int(parked_count)
        last = _stream_id(as_str(group["last-delivered-id"]))
        while self._published_ids and self._published_ids[0] <= last:
            self._published_ids.popleft()
        pending = int(group["pending"])
        if len(self._kept) > self.config.keep_captioned + self.config.max_backlog:
            self._trim_captioned(last, pending)
        return len(self._published_ids) + pending + parked

    def _trim_captioned(self, last_delivered: tuple[int, int], pending: int) -> None:
        """Trim this job's captioned frames from Redis, but for the newest
        ``keep_captioned``. Captioned = before the first frame still open: the oldest
        pending (delivered, not acked) or, with none pending, the first undelivered."""
        key = frames_key(self.spec.name)
        # pending may have changed since XINFO (a worker acked its batch): XPENDING alone
        # says; with none pending, everything up to the last delivered id is acked
        oldest = self.redis.xpending(key, GROUP)["min"] if pending else None
        if oldest:
            first_open = _stream_id(as_str(oldest))
        else:
            first_open = (last_delivered[0], last_delivered[1] + 1)
        captioned = 0
        while captioned < len(self._kept) and self._kept[captioned] < first_open:
            captioned += 1
        drop = captioned - self.config.keep_captioned
        if drop <= 0:
            return
        ms, seq = self._kept[drop] if drop < len(self._kept) else first_open  # oldest kept
        self.trimmed += self.redis.xtrim(key, minid=f"{ms}-{seq}", approximate=False)
        for _ in range(drop):
            self._kept.popleft()

    def wait_for_room(self, frames: int = 1) -> int:
        """Block until at least one frame fits under ``max_backlog`` frames in the group;
        how many of ``frames`` fit now (counted as published from here). 0: stopped.

        Asks Redis only when an upper bound (the last count + frames published since)
        reaches the limit: the count can only have fallen since.
        """
        limit = self.config.max_backlog
        delay = 0.005  # doubles to 20 ms while full: ≤ 50 round trips a second
        started = time.monotonic()
        while self._backlog_bound >= limit:
            if self._stop.is_set():
                return 0
            self._backlog_bound = self.backlog()
            if self._backlog_bound >= limit:
                self._stop.wait(delay)
                delay = min(2 * delay, 0.02)
        self.waited_s += time.monotonic() - started
        fit = min(frames, limit - self._backlog_bound)
        self._backlog_bound += fit
        return fit

    # -- sources ----------------------------------------------------------------------

    def run(self) -> None:
        if not self._take_lease():
            return  # stopped while another capture held the source
        self.register()
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(done,), name="heartbeat", daemon=True)
        beat.start()
        try:
            if self.spec.live:
                self._run_live()
            else:
                self._run_file()
        except SourceError as exc:
            self.status("error", str(exc))
            raise
        finally:
            done.set()
            beat.join()
            if self.lease_taken_by is None:
                self.send_counts(every_s=0)
                with contextlib.suppress(*REDIS_UNAVAILABLE), script_refusals():
                    self._release(keys=[owner_key(self.spec.name)], args=[self.lease_id])
        if self.lease_taken_by is not None:
            raise StreamError(taken_message(self.spec.name, self.lease_taken_by))

    def _take_lease(self) -> bool:
        """Hold ``owner:{src}`` (stream/capture_lease.py), waiting while another capture
        does; False if stopped first."""
        said = False
        while not self._stop.is_set():
            try:
                with script_refusals():
                    ours = self._renew(
                        keys=[owner_key(self.spec.name)], args=[self.lease_id, LEASE_MS]
                    )
                if ours:
                    return True
                owner: Any = self.redis.get(owner_key(self.spec.name))
            except REDIS_UNAVAILABLE as exc:
                log.warning("%s: Redis unreachable (%s); retrying", self.spec.name, exc)
                owner = None
            if owner is not None and not said:
                log.warning("%s", waiting_message(self.spec.name, owner.decode()))
                said = True
            self._stop.wait(1.0)
        return False

    def _heartbeat(self, done: threading.Event) -> None:
        """Every ``HEARTBEAT_S`` until ``done``, whatever the capture is doing: note the
        time in ``capture:{src}`` (stream/capture_liveness.py) and renew the lease; a
        lease another capture took stops this one."""
        while True:
            with contextlib.suppress(*REDIS_UNAVAILABLE):
                if self.clock.due():
                    self.clock.sync(self.redis)
                self.redis.hset(capture_key(self.spec.name), "seen_ms", int(self.clock.now_ms()))
                key = owner_key(self.spec.name)
                with script_refusals():
                    ours = self._renew(keys=[key], args=[self.lease_id, LEASE_MS])
                if not ours:
                    holder: Any = self.redis.get(key)
                    self.lease_taken_by = holder.decode() if holder else "unknown"
                    log.error("%s", taken_message(self.spec.name, self.lease_taken_by))
                    self._stop.set()
                    return
            if done.wait(HEARTBEAT_S):
                return

    def _run_file(self) -> None:
        resume_after_ms = self._previous_job()
        self.status("connecting", self.spec.display)
        sampler = self.config.sampler()
        reader = FileReader.open(
            self.spec,
            open_timeout_ms=self.config.open_timeout_ms,
            read_timeout_ms=self.config.read_timeout_ms,
        )
        self.status("live", f"file job: {reader.frame_count or '?'} frames at {reader.fps:g} fps")
        # JPEG encoding (OpenCV releases the GIL) runs in threads, a few frames ahead of
        # publication; frames are still published one by one, in order.
        pending: deque[tuple[Frame, Future[tuple[bytes, int, int]]]] = deque()
        # Decoding runs in a thread too (read_ahead), overlapping the Redis round trips.
        with (
            reader,
            ThreadPoolExecutor(max_workers=ENCODE_THREADS) as pool,
            contextlib.closing(
                read_ahead(sampled_frames(reader, sampler), size=LOOKAHEAD, name="decoder")
            ) as frames,
        ):
            for frame in frames:
                if self._stop.is_set():
                    self._end_job("stopped")
                    return
                if resume_after_ms is not None and frame.pts_ms <= resume_after_ms:
                    continue  # published by the capture before, which did not end the job
                self.counts.add("sampled")
                pending.append((frame, pool.submit(self.encode, frame)))
                if len(pending) >= LOOKAHEAD:
                    self._publish_ready(pending)
            while pending and not self._stop.is_set():
                self._publish_ready(pending)
        detail = f"{self.published} frames sampled"
        if reader.decode_errors:
            detail += f", {reader.decode_errors} undecodable frames skipped"
        self.published_at = time.monotonic()
        self._wait_captioned()
        self._end_job(detail)
        while self._redis_lost and not self._stop.is_set():  # a job's end must get through
            self._redis_pause()
            self._attempt(lambda: None)  # rejoining sends the state: ended

    def _previous_job(self) -> float | None:
        """What a job run before under this name left. None: nothing (or a finished job
        forgotten for ``restart``). A job that did not end (its capture killed, or
        stopped): the media time of its last frame published, which this one resumes
        after (it read the file again from the start: 1,175 captions for 795 frames).
        A job that ended: a StreamError (captioning the file again would append its
        captions again)."""
        name = self.spec.name
        last: Any = self.redis.xrevrange(status_key(name), count=1)
        if not last:
            return None
        status = decode_status(last[0][1])
        finished = status.state == "ended" and not status.detail.startswith("stopped")
        if finished and self.config.restart:
            self.redis.delete(*(k for k in source_keys(name) if k != owner_key(name)))
            self._seq = 0
            self.register()  # the group and the numbering anew
            return None
        if finished:
            captions = self.redis.xlen(captions_key(name))
            raise StreamError(
                f"{name}: a job under this name has ended ({captions} captions in its log); "
                f"to caption the file again give --restart (its log is replaced), or "
                f"`scenecast forget {name}` first, or give this capture another --name"
            )
        resume = self._last_published_ms()
        if resume is not None:
            log.warning(
                "%s: resuming the job after %.1f s of media time: the frames before were "
                "published by a capture that did not end it",
                name,
                resume / 1000,
            )
        return resume

    def _last_published_ms(self) -> float | None:
        """The media time of the newest frame published for this source: the newest in
        its frames stream, or, all trimmed, the newest caption's."""
        frames: Any = self.redis.xrevrange(frames_key(self.spec.name), count=1)
        if frames:
            return decode_frame(frames[0][1]).pts_ms
        captions: Any = self.redis.xrevrange(captions_key(self.spec.name), count=1)
        return decode_caption(captions[0][1]).pts_ms if captions else None

    def _wait_captioned(self) -> None:
        """A file job has ended when its last caption is out, not when its last frame
        is: wait (its state still "live") until no frame of it is undelivered, pending
        or parked. Dead-lettered frames count as done; a stop ends the wait. ("ended"
        came while the workers still had the job's frames: 20 s before the first
        caption on a loaded machine.)"""
        delay = 0.01
        while not self._stop.is_set():
            with contextlib.suppress(*REDIS_UNAVAILABLE):
                if self.backlog() == 0:
                    return
            self._stop.wait(delay)
            delay = min(2 * delay, 0.25)

    def _end_job(self, detail: str) -> None:
        """A file job's "ended", saying what went with a Redis that restarted empty
        (logged when it was found)."""
        self.status("ended", f"{detail}; {DATA_LOST}" if self.redis_data_lost else detail)

    def _publish_ready(self, pending: deque[tuple[Frame, Future[tuple[bytes, int, int]]]]) -> None:
        """Publish the oldest frame (waiting for its JPEG) and the encoded ones after it,
        as many as the backlog has room for; the others go back to the front."""
        ready = [pending.popleft()]
        while pending and pending[0][1].done() and len(ready) < self.config.max_backlog:
            ready.append(pending.popleft())
        frames = [(frame, encoded.result()) for frame, encoded in ready]
        published = 0

        def room_then_publish() -> None:
            nonlocal published
            fit = self.wait_for_room(len(frames))
            if fit:
                self.publish_many(frames[:fit])
            published = fit

        while not self._attempt(room_then_publish) and not self._stop.is_set():
            self._redis_pause()  # then the same frames again: a file job skips nothing
        pending.extendleft(reversed(ready[published:]))
        self.send_counts()

    def _run_live(self) -> None:
        sampler = self.config.sampler()
        delays = backoff_delays(cap=self.config.reconnect_cap_s, rng=random.Random())
        started = time.monotonic()  # media time: since the start of capture, across reconnects
        self.status("connecting", self.spec.display)  # then one per failed attempt: reconnecting

        def open_reader() -> LatestFrameReader:
            return LatestFrameReader.open(
                self.spec,
                open_timeout_ms=self.config.open_timeout_ms,
                read_timeout_ms=self.config.read_timeout_ms,
                loop=self.config.loop,
                # a sampler that needs no pixels picks frames in the reader's thread,
                # so the frames it skips are never converted to BGR
                want=None if sampler.needs_image else lambda pts: sampler.want(pts, _NO_IMAGE),
                clock_start=started,
            )

        while not self._stop.is_set():
            try:
                # in a thread of its own: a stop (Ctrl+C) does not wait out the open
                # timeout of a camera that froze (stream/stoppable_call.py)
                reader = call_unless_stopped(
                    open_reader, self._stop, discard=LatestFrameReader.close,
                    name=f"open-{self.spec.name}",
                )  # fmt: skip
                if reader is None:
                    break  # stopped while opening
            except SourceError as exc:
                self.counts.add("reconnects")
                delay = next(delays)
                self.status("reconnecting", f"{exc}; retrying in {delay:.1f}s")
                self._stop.wait(delay)
                continue
            delays = backoff_delays(cap=self.config.reconnect_cap_s, rng=random.Random())
            try:
                ended = self._pump(reader, sampler)
            finally:
                reader.close()
                self.counts.reader_closed(reader)
            if ended:
                self.status("ended", f"{self.published} frames sampled")
                return
            if not self._stop.is_set():
                self.counts.add("reconnects")
                delay = next(delays)
                error = reader.error or SourceLostError("stream lost")
                self.status("reconnecting", f"{error}; retrying in {delay:.1f}s")
                self._stop.wait(delay)
        self.status("ended", "stopped")

    def _pump(self, reader: LatestFrameReader, sampler: Sampler) -> bool:
        """Publish sampled frames until the reader fails (False) or the source ends (True)."""
        announced = False
        while not self._stop.is_set():
            frame = reader.latest(timeout=0.5)
            self.send_counts(reader)
            if frame is None:
                if reader.ended:
                    return True
                if reader.failed.is_set():
                    return False
                continue
            if not announced:
                self.status("live", self.spec.display)
                announced = True
            self.frames_read += 1
            if not sampler.needs_image or sampler.want(frame.pts_ms, frame.image):
                self.counts.add("sampled")
                if not self._attempt(lambda: self.publish(frame)):  # noqa: B023 - called now
                    self._redis_pause()  # this frame is dropped; the reader keeps the newest
        return False


def sampled_frames(reader: FileReader, sampler: Sampler) -> Iterator[Frame]:
    """The sampled frames of a file. A sampler that needs no pixels decides before
    decoding, so skipped frames are only grabbed, never retrieved."""
    if sampler.needs_image:
        return (f for f in reader.frames() if sampler.want(f.pts_ms, f.image))
    return reader.frames(lambda index, pts: sampler.want(pts, _NO_IMAGE))


_NO_IMAGE = np.zeros((1, 1, 3), np.uint8)


def _stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def describe_sources(client: redis.Redis) -> dict[str, dict[str, object]]:
    """Every known source's latest status, from ``scenecast:sources``."""
    raw = client.hgetall(SOURCES_KEY)
    return {as_str(k): json.loads(v) for k, v in raw.items()}
