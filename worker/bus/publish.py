"""Publish a caption and acknowledge its frame in one atomic step (a Lua script).

The script runs on the source's hash slot (``captions:{src}``, ``frames:{src}``,
``done:{src}`` and ``parked:{src}`` share the tag), so it works on a Redis Cluster
too. It:

1. acknowledges the frame in the consumer group (``XACK``);
2. drops the caption if this (source, seq) was already published — delivery is
   at-least-once, so a reclaimed frame can be captioned twice;
3. keeps the caption log in seq order when several workers caption one source (each
   takes its own batch; the second can finish first):

   - a live source (``maxlen > 0``): a caption older (smaller seq) than the newest one
     published is dropped as ``late`` — captions describe now, and one that arrives
     after a newer one would take the screen back in time;
   - a file job (``maxlen == 0``): every caption is kept, in order. One whose frame
     has an older frame still pending in the group (being captioned elsewhere) waits
     in ``parked:{src}`` (a sorted set by seq); each publication then appends, in seq
     order, every parked caption older than the oldest frame still pending. A frame
     that leaves the group with no caption (dead-lettered) releases the ones behind it
     through :data:`FLUSH_LUA`;

4. assigns the segment: the previous caption's ``segment_id``, or one more when
   the normalised text differs (the rule of :mod:`worker.bus.segments`; doing it here,
   atomically and in seq order, gives every reader the same ids);
5. appends the caption to ``captions:{src}`` (trimmed ``MAXLEN ~`` for live sources),
   with the frame's entry id (``frame``), so a viewer can fetch the picture it describes.

The script returns the new entry's id, ``parked``, ``late``, or nil for a duplicate
(:func:`outcome` names them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from worker.bus.entries import GROUP, CaptionEntry, captions_key, check_source, frames_key
from worker.bus.segments import normalize_text

DONE_KEEP = 100_000  # (source, seq) pairs remembered for de-duplication

# Shared functions. A parked caption is the msgpack of {frame id, norm, field, value, ...}.
_FUNCTIONS = """
local function stream_id(id)
  local ms, sq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(sq)
end
local function before(a, b)
  local am, as = stream_id(a)
  local bm, bs = stream_id(b)
  return am < bm or (am == bm and as < bs)
end
local function oldest_pending(frames, group)
  local got = redis.pcall('XPENDING', frames, group, '-', '+', 1)
  if type(got) ~= 'table' or got.err or #got == 0 then return nil end
  return got[1][1]
end
local function newest(captions)
  local last = redis.call('XREVRANGE', captions, '+', '-', 'COUNT', 1)
  if #last == 0 then return nil end
  local out, fields = {}, last[1][2]
  for i = 1, #fields, 2 do out[fields[i]] = fields[i + 1] end
  return out
end
local function append(captions, maxlen, frame, norm, fields, last)
  local segment = 0
  if last and last['segment_id'] then
    segment = tonumber(last['segment_id'])
    if last['norm'] ~= norm then segment = segment + 1 end
  end
  local args = {captions}
  if maxlen > 0 then
    table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, maxlen)
  end
  table.insert(args, '*')
  for i = 1, #fields do table.insert(args, fields[i]) end
  table.insert(args, 'norm'); table.insert(args, norm)
  table.insert(args, 'segment_id'); table.insert(args, tostring(segment))
  table.insert(args, 'frame'); table.insert(args, frame)
  return redis.call('XADD', unpack(args))
end
local function flush(captions, parked, open)
  local ids = {}
  while true do
    local head = redis.call('ZRANGE', parked, 0, 0)
    if #head == 0 then break end
    local item = cmsgpack.unpack(head[1])
    if open and before(open, item[1]) then break end
    redis.call('ZREMRANGEBYRANK', parked, 0, 0)
    local fields = {}
    for i = 3, #item do fields[#fields + 1] = item[i] end
    ids[item[1]] = append(captions, 0, item[1], item[2], fields, newest(captions))
  end
  return ids
end
"""

PUBLISH_LUA = (
    _FUNCTIONS
    + """
local captions, frames, done, parked = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, frame, seq, norm = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local maxlen = tonumber(ARGV[5])
local added = redis.call('ZADD', done, 'NX', seq, seq)
redis.call('XACK', frames, group, frame)
if added == 0 then return false end
redis.call('ZREMRANGEBYRANK', done, 0, -tonumber(ARGV[6]) - 1)
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
if maxlen > 0 then
  local last = newest(captions)
  if last and last['seq'] and tonumber(last['seq']) > tonumber(seq) then return 'late' end
  return append(captions, maxlen, frame, norm, fields, last)
end
local open = oldest_pending(frames, group)
if redis.call('ZCARD', parked) == 0 and not (open and before(open, frame)) then
  return append(captions, 0, frame, norm, fields, newest(captions))  -- nothing to wait for
end
local item = {frame, norm}
for i = 1, #fields do item[#item + 1] = fields[i] end
redis.call('ZADD', parked, seq, cmsgpack.pack(item))
return flush(captions, parked, open)[frame] or 'parked'
"""
)

# Release parked captions no pending frame holds back any more (after a frame left the
# group without a caption: dead-lettered). KEYS: captions, frames, parked; ARGV: group.
# Returns how many were published.
FLUSH_LUA = (
    _FUNCTIONS
    + """
local n = 0
for _ in pairs(flush(KEYS[1], KEYS[3], oldest_pending(KEYS[2], ARGV[1]))) do n = n + 1 end
return n
"""
)


def done_key(source: str) -> str:
    return f"done:{{{check_source(source)}}}"


def parked_key(source: str) -> str:
    return f"parked:{{{check_source(source)}}}"


@dataclass(frozen=True)
class Publication:
    """One caption to publish for the frame entry ``frame_id``."""

    caption: CaptionEntry
    frame_id: str
    maxlen: int = 0  # 0: keep every caption (file jobs); else trim ~maxlen (live)


def publish_args(pub: Publication) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of :data:`PUBLISH_LUA` for one publication."""
    c = pub.caption
    keys = [captions_key(c.source), frames_key(c.source), done_key(c.source), parked_key(c.source)]
    fields = c.encode()
    fields.pop("segment_id")  # assigned by the script
    argv: list[Any] = [GROUP, pub.frame_id, c.seq, normalize_text(c.text), pub.maxlen, DONE_KEEP]
    for name, value in fields.items():
        argv.extend((name, value))
    return keys, argv


def flush_args(source: str) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of :data:`FLUSH_LUA` for ``source``."""
    return [captions_key(source), frames_key(source), parked_key(source)], [GROUP]


Outcome = Literal["published", "parked", "late", "duplicate"]


def outcome(result: object) -> Outcome:
    """The publish script's answer in a word: ``published`` (the new entry's id),
    ``parked`` (held back for older frames; published by a later call), ``late`` (a live
    caption older than one published: dropped) or ``duplicate`` (nil: dropped)."""
    if result is None:
        return "duplicate"
    text = result.decode() if isinstance(result, bytes) else result
    if text == "parked" or text == "late":
        return text
    if isinstance(text, str) and "-" in text:
        return "published"
    raise ValueError(f"not an answer of the publish script: {result!r}")
