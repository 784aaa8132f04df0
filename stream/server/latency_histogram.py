"""Capture → caption latency per source, as a Prometheus histogram: pure, no I/O.

The server sees every caption it fans out, each with its ``latency_ms`` (capture of
the frame → caption published, measured by the worker), so ``/metrics`` can show the
distribution an operator alerts on — e.g. the p95 against one batch + 150 ms —
without a client measuring it:
``histogram_quantile(0.95, rate(scenecast_caption_latency_seconds_bucket[5m]))``.
Every server counts every caption (each reads all of ``captions:*``); scrape one, or
take the max over servers.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

BUCKETS_S = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
NAME = "scenecast_caption_latency_seconds"


@dataclass
class Histogram:
    """Counts per upper bound (cumulative when written), their sum and count."""

    bounds: Sequence[float] = BUCKETS_S
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        if list(self.bounds) != sorted(set(self.bounds)) or not self.bounds:
            raise ValueError(f"bucket bounds must be increasing, got {self.bounds}")
        self.counts = [0] * (len(self.bounds) + 1)  # the last: +Inf only

    def observe(self, value: float) -> None:
        if not value >= 0:  # negative or NaN: a clock that went back; not a latency
            return
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1


@dataclass
class LatencyHistograms:
    """One :class:`Histogram` per source."""

    by_source: dict[str, Histogram] = field(default_factory=dict)

    def observe(self, source: str, latency_ms: float) -> None:
        self.by_source.setdefault(source, Histogram()).observe(latency_ms / 1000.0)

    def lines(self) -> list[str]:
        """The Prometheus text exposition of every source's histogram."""
        out = [f"# TYPE {NAME} histogram"] if self.by_source else []
        for source, h in sorted(self.by_source.items()):
            running = 0
            for bound, count in zip([*h.bounds, float("inf")], h.counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                out.append(f'{NAME}_bucket{{source="{source}",le="{le}"}} {running}')
            out += [
                f'{NAME}_sum{{source="{source}"}} {h.total:.6f}',
                f'{NAME}_count{{source="{source}"}} {h.n}',
            ]
        return out
