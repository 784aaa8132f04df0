"""The reader thread's batch buffer: closes batches as the policy says, never overfills."""

from __future__ import annotations

import threading

from worker.batching import BatchPolicy
from worker.prefetch import BatchBuffer


def test_a_full_batch_is_taken_at_once() -> None:
    buffer: BatchBuffer[int] = BatchBuffer(BatchPolicy(max_batch=4, max_wait_ms=10_000))
    buffer.add([1, 2, 3, 4], {"read": 0.5})
    assert buffer.take(timeout=5) == ([1, 2, 3, 4], {"read": 0.5})


def test_a_partial_batch_closes_after_max_wait() -> None:
    buffer: BatchBuffer[int] = BatchBuffer(BatchPolicy(max_batch=4, max_wait_ms=50))
    buffer.add([1], {})
    assert buffer.take(timeout=0.01) == ([], {})  # too early: the batch is still open
    items, _ = buffer.take(timeout=5)
    assert items == [1]


def test_frames_arriving_while_the_model_is_busy_join_the_open_batch() -> None:
    buffer: BatchBuffer[int] = BatchBuffer(BatchPolicy(max_batch=8, max_wait_ms=0))
    buffer.add([1, 2], {"read": 0.1, "decode": 0.2})
    buffer.add([3], {"read": 0.3})
    items, seconds = buffer.take(timeout=5)
    assert items == [1, 2, 3]
    assert seconds == {"read": 0.1 + 0.3, "decode": 0.2}  # the reader's time travels along


def test_room_waits_while_full_and_take_never_returns_more_than_max_batch() -> None:
    buffer: BatchBuffer[int] = BatchBuffer(BatchPolicy(max_batch=3, max_wait_ms=0))
    buffer.add([1, 2, 3, 4, 5], {})  # a reclaim may overfill
    assert buffer.room(timeout=0.01) == 0
    taker = threading.Timer(0.05, lambda: taken.append(buffer.take(timeout=1)[0]))
    taken: list[list[int]] = []
    taker.start()
    assert buffer.room(timeout=30) == 1  # a timeout would have found it still full (0)
    taker.join()
    assert taken == [[1, 2, 3]]
    assert buffer.take(timeout=1)[0] == [4, 5]


def test_after_close_what_is_left_is_handed_over_without_waiting() -> None:
    buffer: BatchBuffer[int] = BatchBuffer(BatchPolicy(max_batch=8, max_wait_ms=60_000))
    buffer.add([7], {})
    buffer.close()
    assert buffer.take(timeout=60)[0] == [7]
    assert buffer.take(timeout=60) == ([], {})  # closed and empty: returns at once


def test_urgent_items_go_first_and_every_group_keeps_its_order() -> None:
    from worker.prefetch import urgent_first

    items = ["f1", "L1", "f2", "f3", "L2", "f4"]
    live = str.startswith
    assert urgent_first(items, lambda x: live(x, "L"), 3) == (
        ["L1", "L2", "f1"],
        ["f2", "f3", "f4"],
    )
    assert urgent_first(items, lambda x: live(x, "L"), 1) == (
        ["L1"],
        ["f1", "f2", "f3", "L2", "f4"],
    )
    assert urgent_first(items, lambda x: False, 4) == (items[:4], items[4:])
    assert urgent_first([], lambda x: True, 4) == ([], [])


def test_a_buffer_hands_live_frames_first_and_closes_at_the_limit() -> None:
    buffer: BatchBuffer[str] = BatchBuffer(
        BatchPolicy(max_batch=8, max_wait_ms=60_000), urgent=lambda x: x.startswith("L")
    )
    buffer.add(["f1", "f2", "f3", "L1"], {})
    assert buffer.take(timeout=0.01) == ([], {})  # 4 of 8, and no limit: still open
    items, _ = buffer.take(timeout=5, limit=3)  # 3 are a full batch at this limit
    assert items == ["L1", "f1", "f2"]
    assert buffer.take(timeout=5, limit=1)[0] == ["f3"]
