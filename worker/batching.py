"""Dynamic batching and staleness: pure policies, fed values by the worker loop.

A batch closes when it is full (``max_batch``) or when its oldest frame has waited
``max_wait_ms`` since the worker received it — the usual trade of latency for
throughput of inference servers. Live frames older than ``max_age_ms`` (capture
wall clock to now) are skipped and counted, never captioned late: captions
describe *now*. File frames are never skipped.
"""

from __future__ import annotations

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
