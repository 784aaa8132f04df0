"""What a capture saw of its source, counted for /metrics. Pure: no I/O.

Capture keeps a ``CaptureCounts`` per source; every second (and at the end) it adds
``unsent()`` to the source's hash in Redis (``worker.bus.entries.capture_key``) and marks it
``sent``. A failed write is sent with the next one: nothing is counted twice or lost.
Live readers are replaced at each reconnect, each counting from 0: ``reader_closed``
folds a reader's final figures into the totals, ``totals(reader)`` adds the open one's.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

# the hash's fields, each a counter since the capture started
FIELDS = ("read", "sampled", "published", "overwritten", "bad_reads", "reconnects")


class ReaderFigures(Protocol):
    """What a live reader counts (``stream.sources.readers.LatestFrameReader``)."""

    @property
    def frames_read(self) -> int: ...

    @property
    def dropped(self) -> int: ...

    @property
    def bad_reads(self) -> int: ...


class CaptureCounts:
    def __init__(self) -> None:
        self.own: Counter[str] = Counter()  # counted by the capture loop itself
        self._closed_readers: Counter[str] = Counter()
        self._sent: Counter[str] = Counter()

    def add(self, field: str, n: int = 1) -> None:
        if field not in FIELDS:
            raise ValueError(f"unknown capture counter {field!r}; accepted: {FIELDS}")
        self.own[field] += n

    def reader_closed(self, reader: ReaderFigures) -> None:
        self._closed_readers += _figures(reader)

    def totals(self, reader: ReaderFigures | None = None) -> Counter[str]:
        """Every counter so far, with the open reader's figures if one is given."""
        total = self.own + self._closed_readers
        if reader is not None:
            total += _figures(reader)
        return total

    def unsent(self, reader: ReaderFigures | None = None) -> dict[str, int]:
        """Increments since the last ``sent`` (only the counters that moved)."""
        total = self.totals(reader)
        return {f: total[f] - self._sent[f] for f in FIELDS if total[f] > self._sent[f]}

    def sent(self, increments: dict[str, int]) -> None:
        self._sent.update(increments)


def _figures(reader: ReaderFigures) -> Counter[str]:
    return Counter(
        {"read": reader.frames_read, "overwritten": reader.dropped, "bad_reads": reader.bad_reads}
    )
