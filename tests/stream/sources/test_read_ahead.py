"""Decoding ahead in a thread: order, bound, errors, and a clean stop."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from stream.sources.read_ahead import read_ahead


def test_items_come_in_order_and_all_of_them() -> None:
    with contextlib.closing(read_ahead(iter(range(100)), size=3)) as items:
        assert list(items) == list(range(100))


def test_the_producer_stays_at_most_size_ahead() -> None:
    produced: list[int] = []
    waiting = threading.Event()

    def counting() -> Iterator[int]:
        for i in range(100):
            produced.append(i)
            if len(produced) == 6:
                waiting.set()
            yield i

    with contextlib.closing(read_ahead(counting(), size=4)) as items:
        assert next(items) == 0
        waiting.wait(5)
        threading.Event().wait(0.1)  # give an unbounded producer time to run away
        # 1 taken + 4 queued + 1 in the producer's hand waiting for room
        assert len(produced) <= 6


def test_an_error_of_the_source_is_raised_to_the_consumer_after_its_items() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("disk gone")

    got: list[int] = []
    with (
        pytest.raises(OSError, match="disk gone"),
        contextlib.closing(read_ahead(failing(), size=8)) as items,
    ):
        got.extend(items)
    assert got == [1, 2]


def test_closing_early_stops_and_joins_the_thread() -> None:
    before = threading.active_count()
    items = read_ahead(iter(range(10_000)), size=2, name="test-reader")
    assert next(items) == 0
    items.close()
    assert not any(t.name == "test-reader" for t in threading.enumerate())
    assert threading.active_count() == before
