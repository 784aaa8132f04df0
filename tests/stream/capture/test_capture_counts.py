"""CaptureCounts: what a capture counted, sent to Redis in increments, across readers."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from stream.capture.counts import CaptureCounts


@dataclass
class Reader:
    frames_read: int = 0
    dropped: int = 0
    bad_reads: int = 0


def test_increments_are_sent_once_and_failed_sends_are_not_lost() -> None:
    counts = CaptureCounts()
    reader = Reader(frames_read=10, dropped=2)
    counts.add("sampled", 3)
    first = counts.unsent(reader)
    assert first == {"read": 10, "overwritten": 2, "sampled": 3}
    counts.sent(first)
    assert counts.unsent(reader) == {}  # nothing moved
    reader.frames_read, reader.bad_reads = 25, 1
    counts.add("published", 3)
    lost = counts.unsent(reader)  # say Redis was away: not marked sent
    assert lost == {"read": 15, "bad_reads": 1, "published": 3}
    counts.add("published")
    assert counts.unsent(reader) == {"read": 15, "bad_reads": 1, "published": 4}


def test_a_new_reader_after_a_reconnect_counts_on_from_the_closed_ones() -> None:
    counts = CaptureCounts()
    old = Reader(frames_read=40, dropped=5, bad_reads=10)
    counts.sent(counts.unsent(old))
    counts.reader_closed(old)
    counts.add("reconnects")
    new = Reader(frames_read=3)  # counts from 0 again
    assert counts.unsent(new) == {"read": 3, "reconnects": 1}
    assert counts.totals(new) == {"read": 43, "overwritten": 5, "bad_reads": 10, "reconnects": 1}
    assert counts.totals() == {"read": 40, "overwritten": 5, "bad_reads": 10, "reconnects": 1}


def test_unknown_counter() -> None:
    with pytest.raises(ValueError, match="unknown capture counter 'frames'; accepted"):
        CaptureCounts().add("frames")
