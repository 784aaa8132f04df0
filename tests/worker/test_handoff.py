"""The worker's publisher thread: order, draining, errors that reach the submitter."""

from __future__ import annotations

import threading
import time

import pytest

from worker.handoff import Handoff


def test_items_are_handled_in_order_and_close_drains_them() -> None:
    seen: list[int] = []

    def slow(item: int) -> None:
        time.sleep(0.002)
        seen.append(item)

    with Handoff(slow, depth=2) as handoff:
        for i in range(50):
            handoff.submit(i)
    assert seen == list(range(50))  # all handled before the block ends


def test_submit_blocks_while_depth_items_wait() -> None:
    release = threading.Event()
    handoff: Handoff[int] = Handoff(lambda item: release.wait(5), depth=1)
    handoff.submit(0)  # taken by the thread, which now waits
    time.sleep(0.05)
    handoff.submit(1)  # fills the queue
    blocked = threading.Thread(target=handoff.submit, args=(2,))
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive()  # no room: the submitter waits (bounded memory)
    release.set()
    blocked.join(5)
    assert not blocked.is_alive()
    handoff.close()


def test_an_error_in_the_thread_is_raised_in_the_submitter() -> None:
    def fail_on_three(item: int) -> None:
        if item == 3:
            raise ConnectionError("redis went away")

    handoff: Handoff[int] = Handoff(fail_on_three, depth=1)
    with pytest.raises(ConnectionError, match="redis went away"):
        for i in range(100):  # the dead thread never makes submit hang
            handoff.submit(i)
    with pytest.raises(ConnectionError):
        handoff.close()


def test_leaving_on_an_error_keeps_that_error_and_still_drains() -> None:
    seen: list[int] = []
    with pytest.raises(KeyError), Handoff(seen.append, depth=4) as handoff:
        handoff.submit(1)
        handoff.submit(2)
        raise KeyError("model failed")
    assert seen == [1, 2]  # what was handed off before the error was still handled


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth"):
        Handoff(print, depth=0)
