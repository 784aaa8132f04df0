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

from worker.bus.entries import as_str

# A frame is taken over only when it was not delivered in the last TAKEOVER_IDLE_MS:
# of two workers taking over the same gone consumer at once, the second finds the
# frames just claimed by the first (their idle time reset) and leaves them.
TAKEOVER_IDLE_MS = 2_000

# KEYS[1] frames:{src}; ARGV: group, the gone consumer, this consumer, min idle (ms),
# count. Claims the gone consumer's frames idle at least that long (XCLAIM: each one's
# delivery count goes up, so a frame that kills its workers is still given up on);
# frames deleted from the stream while pending (a live stream's MAXLEN) are acked.
# The gone consumer is deleted from the group once it holds nothing (a deleted
# consumer that turns out alive is re-created by its next read; it held nothing to
# lose). Returns {id, {field, value, ...}, deliveries} per frame taken.
TAKEOVER_LUA = """
local key, group, gone, me = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local rows = redis.call('XPENDING', key, group, 'IDLE', ARGV[4], '-', '+', ARGV[5], gone)
local out = {}
if #rows > 0 then
  local ids, delivered = {}, {}
  for i, row in ipairs(rows) do
    ids[i] = row[1]
    delivered[row[1]] = row[4]
  end
  local got = {}
  for _, entry in ipairs(redis.call('XCLAIM', key, group, me, ARGV[4], unpack(ids))) do
    if entry then
      got[entry[1]] = true
      out[#out + 1] = {entry[1], entry[2], delivered[entry[1]] + 1}
    end
  end
  for _, id in ipairs(ids) do
    if not got[id] then redis.call('XACK', key, group, id) end
  end
end
if #redis.call('XPENDING', key, group, '-', '+', 1, gone) == 0 then
  redis.call('XGROUP', 'DELCONSUMER', key, group, gone)
end
return out
"""

# KEYS[1] frames:{src}; ARGV: group, consumer. A stopping worker leaves the group of
# each source it holds nothing of, so the group lists the workers there are, not
# every worker there ever was. 1: left; 0: it holds frames (kept); -1: no group.
LEAVE_LUA = """
local ok, rows = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if not ok then return -1 end
if #rows > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


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
