"""Frames a gone worker left pending: taken over at once, not after ``claim_idle_ms``.

A worker killed mid-batch (the OOM killer, a lost spot machine) leaves the frames it
had read pending in the group. ``XAUTOCLAIM`` takes any frame idle for
``claim_idle_ms`` (30 s: longer than the slowest batch, so a live worker's frames are
never taken from it), and until then a file job's later captions wait in
``parked:{src}`` behind them (worker/publish.py): the job stands still for half a
minute. But every worker notes itself in ``WORKERS_KEY`` every 2 s, so a consumer
holding frames that has not been heard from for ``WORKER_SEEN_MS`` (10 s) is gone,
and its frames are taken over then (:func:`gone_consumers`, pure; :data:`TAKEOVER_LUA`).

Should a slow worker be taken for gone (a machine so starved that its reader thread
missed five heartbeats), both caption the frame and the publish script keeps the
first caption and drops the other as a duplicate: work is lost, never a caption.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from worker.bus.keys import as_str
from worker.bus.scripts import lua

# A frame is taken over only when it was not delivered in the last TAKEOVER_IDLE_MS:
# of two workers taking over the same gone consumer at once, the second finds the
# frames just claimed by the first (their idle time reset) and leaves them.
TAKEOVER_IDLE_MS = 2_000

# Claims a gone consumer's frames (what it takes and returns: worker/bus/lua/takeover.lua).
TAKEOVER_LUA = lua("takeover")

# A stopping worker leaves each group it holds nothing of (worker/bus/lua/leave.lua).
LEAVE_LUA = lua("leave")


def gone_consumers(
    pending: Mapping[str, int],
    beats_ms: Mapping[str, float],
    *,
    now_ms: float,
    me: str,
    seen_ms: float,
) -> list[str]:
    """The consumers of ``pending`` (consumer → frames it holds) that hold frames and
    whose last heartbeat (``beats_ms``, Redis's clock) is older than ``seen_ms`` or
    missing; never ``me``."""
    return sorted(
        name
        for name, count in pending.items()
        if count > 0 and name != me and (name not in beats_ms or now_ms - beats_ms[name] > seen_ms)
    )


def pending_by_consumer(summary: Mapping[str, Any]) -> dict[str, int]:
    """redis-py's ``XPENDING`` summary → consumer → frames it holds."""
    return {as_str(c["name"]): int(c["pending"]) for c in summary.get("consumers") or ()}


def taken_entries(reply: Sequence[Any]) -> list[tuple[str, dict[bytes, bytes], int]]:
    """:data:`TAKEOVER_LUA`'s reply → (entry id, fields, deliveries) per frame."""
    out = []
    for entry_id, flat, deliveries in reply:
        fields = {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}
        out.append((as_str(entry_id), fields, int(deliveries)))
    return out
