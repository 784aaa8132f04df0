"""The Redis server's clock, read from this process: one timebase for the times that
other machines compare.

A live frame's capture time is stamped by its capture's machine and judged by a
worker's ("older than --max-age-ms?"); a capture's and a worker's heartbeats are
judged by the server's. Machines' clocks differ: a capture box 5 s behind the workers
had every live frame skipped as 5 s old, and one 30 s behind was shown as a capture
"not heard from" while it ran. So every part stamps and compares in Redis's time: its
own clock plus its offset to Redis's ``TIME``, measured NTP-style (the reply is taken
to be from the middle of the round trip; of a few samples the shortest round trip
wins, so the error is under half of it: well under a millisecond on a LAN), and
measured again every ``REFRESH_S`` as clocks drift.

Until the first measurement succeeds (Redis not reachable yet), the offset is 0: the
process's own clock, as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import ResponseError

from worker.bus.cluster import redis_time, redis_time_async

log = logging.getLogger("scenecast.clock")

REFRESH_S = 60.0
SAMPLES = 3


def offset_of(sent_ns: int, reply: Sequence[Any], received_ns: int) -> tuple[int, int]:
    """(offset ns, round trip ns) of one ``TIME`` reply (seconds, microseconds) to a
    request sent and answered at these local times."""
    seconds, micros = int(reply[0]), int(reply[1])
    redis_ns = seconds * 1_000_000_000 + micros * 1_000
    return redis_ns - (sent_ns + received_ns) // 2, received_ns - sent_ns


class RedisClock:
    """This process's clock moved onto Redis's: :meth:`now_ns`, :meth:`to_redis`."""

    def __init__(self, local: Callable[[], int] = time.time_ns) -> None:
        self.local = local  # the machine's wall clock, ns (tests give a skewed one)
        self.offset_ns = 0
        self._synced_at: float | None = None  # time.monotonic() of the last measurement

    def now_ns(self) -> int:
        return self.local() + self.offset_ns

    def now_ms(self) -> float:
        return self.now_ns() / 1e6

    def to_redis(self, local_ns: int) -> int:
        """A time stamped with this machine's clock, in Redis's."""
        return local_ns + self.offset_ns

    def due(self) -> bool:
        return self._synced_at is None or time.monotonic() - self._synced_at >= REFRESH_S

    def sync(self, client: Any) -> None:
        """Measure the offset (``SAMPLES`` round trips). A lost connection propagates,
        and the offset measured before stays; a Redis that refuses ``TIME`` (renamed
        away) leaves this process on its own clock, said once."""
        samples = []
        try:
            for _ in range(SAMPLES):
                sent = self.local()
                reply = redis_time(client)
                samples.append(offset_of(sent, reply, self.local()))
        except ResponseError as exc:
            self._refused(exc)
            return
        self._keep(samples)

    async def sync_async(self, client: Any) -> None:
        """:meth:`sync` with an asyncio client."""
        samples = []
        try:
            for _ in range(SAMPLES):
                sent = self.local()
                reply = await redis_time_async(client)
                samples.append(offset_of(sent, reply, self.local()))
        except ResponseError as exc:
            self._refused(exc)
            return
        self._keep(samples)

    def _refused(self, exc: ResponseError) -> None:
        if self._synced_at is None:
            log.warning("Redis refused TIME (%s): times are on this machine's clock", exc)
        self._synced_at = time.monotonic()  # asked again at the next refresh

    def _keep(self, samples: list[tuple[int, int]]) -> None:
        self.offset_ns = min(samples, key=lambda s: s[1])[0]
        self._synced_at = time.monotonic()
