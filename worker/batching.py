"""Dynamic batching and staleness: pure policies, fed values by the worker loop.

A batch closes when it is full (``max_batch``) or when its oldest frame has waited
``max_wait_ms`` since the worker received it — the usual trade of latency for
throughput of inference servers. Live frames older than ``max_age_ms`` (capture
wall clock to now) are skipped and counted, never captioned late: captions
describe *now*. File frames are never skipped.

While live frames flow, a batch is also kept short enough to caption in a third of
``max_age_ms`` (``live_batch_cap``): a live frame that arrives as a batch starts waits
that batch out, then its own, and so is captioned within two thirds of its max age
even beside a file job's full batches. On a GPU a full batch takes a fraction of
that and the cap never bites; on a CPU, where batching gains little, it does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchPolicy:
    max_batch: int = 32
    max_wait_ms: float = 50.0
    max_age_ms: float = 3000.0

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.max_wait_ms < 0 or self.max_age_ms <= 0:
            raise ValueError("max_wait_ms must be >= 0 and max_age_ms > 0")

    def room(self, pending: int) -> int:
        """How many more frames the batch takes."""
        return max(0, self.max_batch - pending)

    def wait_ms(self, pending: int, first_arrival_ms: float | None, now_ms: float) -> float:
        """How long to block for more frames before closing the batch (0: close now).

        Nothing pending: no deadline (the caller blocks in short slices).
        """
        if pending >= self.max_batch:
            return 0.0
        if pending == 0 or first_arrival_ms is None:
            return float("inf")
        return max(0.0, first_arrival_ms + self.max_wait_ms - now_ms)

    def is_stale(self, *, live: bool, capture_ns: int, now_ns: int) -> bool:
        """A live frame captured more than ``max_age_ms`` ago is stale; file frames never are."""
        return live and (now_ns - capture_ns) / 1e6 > self.max_age_ms


class MovingAverage:
    """An exponentially weighted mean (``value``: None until the first sample)."""

    def __init__(self, weight: float = 0.3) -> None:
        if not 0 < weight <= 1:
            raise ValueError(f"weight must be in (0, 1], got {weight}")
        self.weight = weight
        self.value: float | None = None

    def add(self, sample: float) -> None:
        w = self.weight
        self.value = sample if self.value is None else (1 - w) * self.value + w * sample


LIVE_SHARE = 1 / 3  # of max_age_ms: the longest a batch may caption while live frames flow


def live_batch_cap(policy: BatchPolicy, per_frame_ms: float | None) -> int:
    """The largest batch that captions in ``LIVE_SHARE`` of ``max_age_ms`` at
    ``per_frame_ms`` a frame (at least 1); ``max_batch`` before anything was timed."""
    if per_frame_ms is None or per_frame_ms <= 0:
        return policy.max_batch
    fits = math.floor(policy.max_age_ms * LIVE_SHARE / per_frame_ms)
    return max(1, min(policy.max_batch, fits))


def split_stale(
    policy: BatchPolicy, frames: Sequence[tuple[bool, int]], now_ns: int
) -> tuple[list[int], list[int]]:
    """Indices of (fresh, stale) frames, given each frame's (live, capture_ns)."""
    fresh: list[int] = []
    stale: list[int] = []
    for i, (live, capture_ns) in enumerate(frames):
        (
            stale if policy.is_stale(live=live, capture_ns=capture_ns, now_ns=now_ns) else fresh
        ).append(i)
    return fresh, stale
