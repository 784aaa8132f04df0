"""stream/stoppable_call.py: a blocking call a stop does not wait for."""

from __future__ import annotations

import threading

import pytest

from stream.sources.stoppable_call import call_unless_stopped

T = 10.0


def test_the_result_comes_back_when_not_stopped() -> None:
    stop = threading.Event()
    discarded: list[object] = []
    assert call_unless_stopped(lambda: 42, stop, discard=discarded.append) == 42
    assert discarded == []


def test_an_error_of_the_call_is_raised_in_the_caller() -> None:
    def fail() -> int:
        raise ValueError("no camera at /dev/video7")

    with pytest.raises(ValueError, match="no camera"):
        call_unless_stopped(fail, threading.Event(), discard=print)


def test_stopped_first_returns_none_and_the_late_result_is_discarded() -> None:
    stop, release, discarded = threading.Event(), threading.Event(), threading.Event()
    late: list[str] = []

    def slow() -> str:
        release.wait(T)
        return "reader"

    def discard(value: str) -> None:
        late.append(value)
        discarded.set()

    timer = threading.Timer(0.1, stop.set)
    timer.start()
    assert call_unless_stopped(slow, stop, discard=discard) is None
    assert late == []  # still blocked when the caller went on
    release.set()
    assert discarded.wait(T)
    assert late == ["reader"]  # closed, not leaked


def test_a_stop_already_set_still_takes_a_result_that_is_ready() -> None:
    """Stopped before the call: the caller still waits one poll, and a result that is
    there by then is returned (the caller checks its stop next), not thrown away."""
    stop = threading.Event()
    stop.set()
    assert call_unless_stopped(lambda: "fast", stop, discard=print, poll_s=1.0) == "fast"
