"""Publish a caption and acknowledge its frame in one atomic step (a Lua script).

The script runs on the source's hash slot (``captions:{src}``, ``frames:{src}``
and ``done:{src}`` share the tag), so it works on a Redis Cluster too. It:

1. acknowledges the frame in the consumer group (``XACK``);
2. drops the caption if this (source, seq) was already published — delivery is
   at-least-once, so a reclaimed frame can be captioned twice;
3. assigns the segment: the previous caption's ``segment_id``, or one more when
   the normalised text differs (the rule of :mod:`worker.segments`; doing it here,
   atomically, gives every reader the same ids);
4. appends the caption to ``captions:{src}`` (trimmed ``MAXLEN ~`` for live sources),
   with the frame's entry id (``frame``), so a viewer can fetch the picture it describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.queue import GROUP, CaptionEntry, captions_key, check_source, frames_key
from worker.segments import normalize_text

DONE_KEEP = 100_000  # (source, seq) pairs remembered for de-duplication

PUBLISH_LUA = """
local added = redis.call('ZADD', KEYS[3], 'NX', ARGV[3], ARGV[3])
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
if added == 0 then return false end
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[6]) - 1)
local segment = 0
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  local fields = last[1][2]
  local norm, seg
  for i = 1, #fields, 2 do
    if fields[i] == 'norm' then norm = fields[i + 1]
    elseif fields[i] == 'segment_id' then seg = tonumber(fields[i + 1]) end
  end
  if seg then
    segment = seg
    if norm ~= ARGV[4] then segment = seg + 1 end
  end
end
local args = {KEYS[1]}
if tonumber(ARGV[5]) > 0 then
  table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, ARGV[5])
end
table.insert(args, '*')
for i = 7, #ARGV do table.insert(args, ARGV[i]) end
table.insert(args, 'norm'); table.insert(args, ARGV[4])
table.insert(args, 'segment_id'); table.insert(args, tostring(segment))
table.insert(args, 'frame'); table.insert(args, ARGV[2])
return redis.call('XADD', unpack(args))
"""


def done_key(source: str) -> str:
    return f"done:{{{check_source(source)}}}"


@dataclass(frozen=True)
class Publication:
    """One caption to publish for the frame entry ``frame_id``."""

    caption: CaptionEntry
    frame_id: str
    maxlen: int = 0  # 0: keep every caption (file jobs); else trim ~maxlen (live)


def publish_args(pub: Publication) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of :data:`PUBLISH_LUA` for one publication."""
    c = pub.caption
    keys = [captions_key(c.source), frames_key(c.source), done_key(c.source)]
    fields = c.encode()
    fields.pop("segment_id")  # assigned by the script
    argv: list[Any] = [GROUP, pub.frame_id, c.seq, normalize_text(c.text), pub.maxlen, DONE_KEEP]
    for name, value in fields.items():
        argv.extend((name, value))
    return keys, argv
