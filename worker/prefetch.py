"""The next batch, filled by a reader thread while the model captions the current one.

The reader adds frames (read and decoded) until the batch is full; the model's thread
takes the whole batch when ``BatchPolicy`` closes it: full, or its oldest frame
waited ``max_wait_ms``. Frames that arrive while the model is busy join the batch
being filled, so batches grow with the load exactly as when reading after each
batch, but the Redis round trips and JPEG decoding overlap the model.

Time the reader spends (per stage) travels with the frames it read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Generic, TypeVar

from worker.batching import BatchPolicy

T = TypeVar("T")


class BatchBuffer(Generic[T]):
    def __init__(self, policy: BatchPolicy) -> None:
        self.policy = policy
        self._items: list[T] = []
        self._first_ms: float | None = None  # when the oldest item arrived
        self._seconds: dict[str, float] = {}
        self._closed = False
        self._cond = threading.Condition()

    def room(self, *, timeout: float) -> int:
        """Free places in the batch; waits up to ``timeout`` s while there are none."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or len(self._items) < self.policy.max_batch, timeout
            )
            return self.policy.room(len(self._items))

    def add(self, items: Sequence[T], seconds: dict[str, float]) -> None:
        """Append frames (possibly none) and the time it took to get them."""
        with self._cond:
            if items and not self._items:
                self._first_ms = time.monotonic() * 1000
            self._items.extend(items)
            for stage, value in seconds.items():
                self._seconds[stage] = self._seconds.get(stage, 0.0) + value
            self._cond.notify_all()

    def take(self, *, timeout: float) -> tuple[list[T], dict[str, float]]:
        """The batch once the policy closes it (or all there is, once closed).

        Returns ``([], {})`` when nothing closed a batch within ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                wait_ms = self.policy.wait_ms(len(self._items), self._first_ms, now * 1000)
                if self._items and (wait_ms <= 0 or self._closed):
                    return self._pop(now)
                if self._closed or now >= deadline:
                    return [], {}
                self._cond.wait(min(wait_ms / 1000, deadline - now))

    def _pop(self, now: float) -> tuple[list[T], dict[str, float]]:
        """At most ``max_batch`` items (a reclaim can overfill); the rest start a new batch."""
        size = self.policy.max_batch
        items, self._items = self._items[:size], self._items[size:]
        seconds, self._seconds = self._seconds, {}
        self._first_ms = now * 1000 if self._items else None
        self._cond.notify_all()
        return items, seconds

    def close(self) -> None:
        """No more items will come: ``take`` hands over what is left without waiting."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
