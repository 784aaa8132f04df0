"""Which consumers count as gone (worker.takeover, pure)."""

from __future__ import annotations

from worker.takeover import gone_consumers, pending_by_consumer


def test_a_consumer_holding_frames_unheard_for_longer_than_seen_ms_is_gone() -> None:
    pending = {"old": 3, "fresh": 2, "never": 1, "idle": 0, "me": 4, "edge": 1}
    beats = {"old": 1_000.0, "fresh": 9_500.0, "idle": 0.0, "me": 0.0, "edge": 5_000.0}
    gone = gone_consumers(pending, beats, now_ms=10_000.0, me="me", seen_ms=5_000)
    # "never": no heartbeat at all (killed over an hour ago, or never a worker);
    # "edge": heard exactly seen_ms ago still counts as alive
    assert gone == ["never", "old"]


def test_the_pending_summary_is_read_per_consumer() -> None:
    summary = {
        "pending": 3,
        "consumers": [{"name": b"w1", "pending": 2}, {"name": b"w2", "pending": 1}],
    }
    assert pending_by_consumer(summary) == {"w1": 2, "w2": 1}
    assert pending_by_consumer({"pending": 0, "consumers": []}) == {}
