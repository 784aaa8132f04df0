"""Children that die with their parent (Linux): no orphans even when the parent is
killed (SIGKILL, a second Ctrl+C) without running its own clean-up."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


def parent_death_preexec(sig: signal.Signals) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess``: the kernel sends ``sig`` to the child when
    the thread that started it exits. libc is loaded here, before the fork, so the
    child only makes one system call. None where the platform has no such signal."""
    prctl = _prctl()
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return preexec


def die_with_parent(sig: signal.Signals, parent_pid: int) -> None:
    """Called in a child (e.g. a multiprocessing one): ``sig`` when the parent exits.
    If the parent is already gone, the signal is sent at once."""
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent_pid:  # died before the call: nobody will signal us
        os.kill(os.getpid(), sig)
