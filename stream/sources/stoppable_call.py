"""A blocking call that a stop request does not have to wait for.

Opening a camera or stream blocks inside OpenCV for up to its open timeout (10 s),
with no way to cancel it, and a signal handler runs only once the call returns: Ctrl+C
on a capture whose camera froze waited out the whole timeout. Here the call runs in a
thread of its own while the caller waits on its stop event; stopped first, the caller
goes on at once and whatever the call returns later is handed to ``discard`` (a reader
to close) in that thread. A KeyboardInterrupt in the wait (Python's default Ctrl+C,
before a command installs its own handler) leaves the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Outcome(Generic[T]):
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None
        self.finished = False  # fn returned or raised (under lock)
        self.abandoned = False  # the caller went on without it (under lock)
        self.lock = threading.Lock()


def call_unless_stopped(
    fn: Callable[[], T],
    stop: threading.Event,
    *,
    discard: Callable[[T], object],
    poll_s: float = 0.05,
    name: str = "blocking-call",
) -> T | None:
    """``fn()``'s result, or None when ``stop`` was set before it returned.

    An exception ``fn`` raises is raised here (unless stopped first: then it is
    dropped, as the result would be).
    """
    outcome: _Outcome[T] = _Outcome()

    def call() -> None:
        value: T | None = None
        error: BaseException | None = None
        try:
            value = fn()
        except BaseException as exc:  # handed to the caller's thread
            error = exc
        with outcome.lock:
            outcome.finished = True
            if not outcome.abandoned:
                outcome.value, outcome.error = value, error
                outcome.done.set()
                return
        if error is None:
            discard(value)  # type: ignore[arg-type]  # fn returned it: a T

    threading.Thread(target=call, name=name, daemon=True).start()
    try:
        while not outcome.done.wait(poll_s):
            if stop.is_set():
                with outcome.lock:
                    if not outcome.finished:
                        outcome.abandoned = True
                        return None
                outcome.done.wait()  # finished just now: set at once
                break
    except BaseException:  # KeyboardInterrupt in the wait: the result is nobody's
        with outcome.lock:
            outcome.abandoned = True
            taken = outcome.finished and outcome.error is None
        if taken:
            discard(outcome.value)  # type: ignore[arg-type]  # fn returned it: a T
        raise
    if outcome.error is not None:
        raise outcome.error
    return outcome.value
