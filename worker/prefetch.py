"""The next batch, filled by a reader thread while the model captions the current one.

The reader adds frames (read and decoded) until the batch is full; the model's thread
takes the whole batch when ``BatchPolicy`` closes it: full, or its oldest frame
waited ``max_wait_ms``. Frames that arrive while the model is busy join the batch
being filled, so batches grow with the load exactly as when reading after each
batch, but the Redis round trips and JPEG decoding overlap the model.

Time the reader spends (per stage) travels with the frames it read.

Live frames go first (``urgent_first``): a read takes up to a batch from every source,
so beside a file job's backlog the buffer can hold more than a batch, and in arrival
order a camera's frame could wait behind the job's. A source's frames keep their
order. What keeps a camera's deadline beside a job is mostly the batch limit the
worker passes to ``take`` (``batching.live_batch_cap``; BENCHMARKS.md, "A camera
beside a file job").
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from worker.batching import BatchPolicy

T = TypeVar("T")


def urgent_first(
    items: Sequence[T], urgent: Callable[[T], bool], size: int
) -> tuple[list[T], list[T]]:
    """(the batch, the rest): up to ``size`` items, the urgent ones first; each group
    keeps its order, and so does the rest."""
    first = [i for i, item in enumerate(items) if urgent(item)][:size]
    then = [i for i, item in enumerate(items) if not urgent(item)][: size - len(first)]
    taken = set(first + then)
    rest = [item for i, item in enumerate(items) if i not in taken]
    return [items[i] for i in first + then], rest


class BatchBuffer(Generic[T]):
    def __init__(self, policy: BatchPolicy, *, urgent: Callable[[T], bool] | None = None) -> None:
        self.policy = policy
        self._urgent = urgent  # items that go first into a batch (live frames)
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

    def take(self, *, timeout: float, limit: int | None = None) -> tuple[list[T], dict[str, float]]:
        """The batch once the policy closes it (or all there is, once closed): full at
        ``limit`` items when given (``batching.live_batch_cap``), else at ``max_batch``.

        Returns ``([], {})`` when nothing closed a batch within ``timeout`` s.
        """
        policy = self.policy
        if limit is not None and limit < policy.max_batch:
            policy = dataclasses.replace(policy, max_batch=max(1, limit))
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                wait_ms = policy.wait_ms(len(self._items), self._first_ms, now * 1000)
                if self._items and (wait_ms <= 0 or self._closed):
                    return self._pop(now, policy.max_batch)
                if self._closed or now >= deadline:
                    return [], {}
                self._cond.wait(min(wait_ms / 1000, deadline - now))

    def _pop(self, now: float, size: int) -> tuple[list[T], dict[str, float]]:
        """At most ``size`` items (a reclaim can overfill); the rest start a new batch."""
        if self._urgent is None:
            items, self._items = self._items[:size], self._items[size:]
        else:
            items, self._items = urgent_first(self._items, self._urgent, size)
        seconds, self._seconds = self._seconds, {}
        self._first_ms = now * 1000 if self._items else None
        self._cond.notify_all()
        return items, seconds

    def close(self) -> None:
        """No more items will come: ``take`` hands over what is left without waiting."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
