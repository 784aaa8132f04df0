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

from worker.bus.entries import CaptionEntry
from worker.bus.keys import GROUP, captions_key, done_key, frames_key, parked_key
from worker.bus.scripts import lua
from worker.bus.segments import normalize_text

DONE_KEEP = 100_000  # (source, seq) pairs remembered for de-duplication

# Shared functions. A parked caption is the msgpack of {frame id, norm, field, value, ...}.
_FUNCTIONS = lua("publish_functions")

PUBLISH_LUA = _FUNCTIONS + lua("publish")

# Release parked captions no pending frame holds back any more (after a frame left the
# group without a caption: dead-lettered). KEYS: captions, frames, parked; ARGV: group.
# Returns how many were published.
FLUSH_LUA = _FUNCTIONS + lua("flush")


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
