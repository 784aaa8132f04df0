"""What counts as Redis going away, for the parts that wait for it to come back.

Unreachable (a connection refused or reset, a timeout) and, as well, refusing writes: a
Redis at its ``maxmemory`` with ``noeviction`` answers every write with OOM (and a
transaction holding one with EXECABORT). Capture, workers and jobs treat all of these
alike: wait with backoff, count what a live source drops meanwhile, tell the clients,
and go on by themselves once Redis takes writes again (they exited with a traceback on
the first refused write).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis
from redis.exceptions import ExecAbortError, OutOfMemoryError, ResponseError

REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    OutOfMemoryError,
    ExecAbortError,
)

_OOM = "OOM command not allowed"  # Redis's refusal, also inside a script's error


@contextlib.contextmanager
def script_refusals() -> Iterator[None]:
    """Run Lua scripts with a write refused for memory raised as ``OutOfMemoryError``:
    inside a script it comes back as a plain ``ResponseError`` ("Error running script
    ... -OOM command not allowed ..."), which would be taken for a bug."""
    try:
        yield
    except ResponseError as exc:
        if _OOM in str(exc) and not isinstance(exc, OutOfMemoryError):
            raise OutOfMemoryError(str(exc)) from exc
        raise
