"""Per-frame captions of a recording → timed samples → cues → WebVTT / SRT / JSON lines.

Pure: values in, text out; no files, no Redis, no OpenCV (``stream.subtitles.caption`` is the
shell).

Timing (``time_samples``)
-------------------------
Each sampled frame's caption covers media time from its frame's time to the next sampled
frame's time. The last one runs for one *tail* past its frame, but never past the end of
the video. ``stream.subtitles.caption`` passes as the tail the sampling interval (1/fps) at a
fixed rate, and ``max_interval`` in scene-change mode (a frame is sampled at least that
often, so the picture did not change enough for longer than that: the last caption holds
to the end of the video unless the video runs on for more than ``max_interval`` after
it). The end of the video is its last frame's time plus that frame's duration (the gap
between the last two frames; for a one-frame video, one frame at the container's rate).
Times are rounded to whole milliseconds once, here, so every format shows the same ones.

Segments and cues (``time_samples``, ``merge_cues``)
----------------------------------------------------
Consecutive samples whose normalised text (lower case, whitespace collapsed; the rule of
``worker.bus.segments``, the one the live pipeline's segments use) is the
same share a ``segment_id``; ``is_final`` marks a segment's last sample. One segment is
one cue, from its first sample's start to its last sample's end, showing its first
sample's text. A segment whose text is empty gets no cue (the screen stays blank there);
so does one that would last 0 ms.

Formats
-------
- WebVTT: ``WEBVTT``, a blank line, then cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` + text,
  separated by blank lines. ``&``, ``<`` and ``>`` are escaped as character references
  (so a text can hold neither a tag nor ``-->``).
- SRT: cues numbered from 1, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``. SRT has no escapes: a
  ``-->`` inside a text is written ``->`` so parsers do not take the line for a timing.
- Both: hours are not capped at 99; a text is one line (newlines would end the cue).
- JSON lines: one object per *sample* (not per cue): ``seq`` (0-based, in media order),
  ``t_start_ms``, ``t_end_ms`` (this sample's own span), ``text``, ``tokens``, ``score``
  (the model's summed log-probability, rounded to 4 decimals), ``segment_id``,
  ``is_final`` and, when asked for, ``attention``: ``{"grid": [h, w], "weights":
  [[h·w integers 0–255] per token]}`` (each map scaled to its peak: the websocket
  caption's format), or ``null`` for a caption with no words. Keys in that order,
  compact separators, UTF-8: the same samples always give the same bytes.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Literal

from stream.exceptions import StreamError
from stream.protocol import Attention
from worker.bus.segments import is_last_of_segment, segment_ids

__all__ = [
    "ACCEPTED_OUTPUTS",
    "Cue",
    "OutputFormat",
    "SampleCaption",
    "TimedSample",
    "format_timestamp",
    "merge_cues",
    "output_format",
    "render",
    "time_samples",
    "to_jsonl",
    "to_srt",
    "to_webvtt",
]

OutputFormat = Literal["vtt", "srt", "jsonl"]
STDOUT = "-"
_SUFFIXES: dict[str, OutputFormat] = {".vtt": "vtt", ".srt": "srt", ".jsonl": "jsonl"}
ACCEPTED_OUTPUTS = (
    ".vtt (WebVTT), .srt (SubRip), .jsonl (JSON lines), or - for JSON lines on stdout"
)
SCORE_DECIMALS = 4


def output_format(path: str) -> OutputFormat:
    """The format an output path asks for, by its extension (any case); ``-`` is JSONL."""
    if path == STDOUT:
        return "jsonl"
    suffix = PurePath(path).suffix.lower()
    try:
        return _SUFFIXES[suffix]
    except KeyError:
        what = f"extension {suffix!r}" if suffix else "no extension"
        raise StreamError(
            f"cannot tell the output format of {path!r} ({what}); accepted: {ACCEPTED_OUTPUTS}"
        ) from None


# -- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SampleCaption:
    """The caption of one sampled frame, as both ways of captioning deliver it."""

    seq: int  # 0-based, in media order
    pts_ms: float  # the frame's media time
    text: str
    tokens: tuple[str, ...]
    score: float  # summed log-probability of the words and <end>
    attention: Attention | None = None  # one uint8 map per token; None when not sent


@dataclass(frozen=True, slots=True)
class TimedSample:
    """A sample with the media time it covers, [start_ms, end_ms), and its segment."""

    sample: SampleCaption
    start_ms: int
    end_ms: int
    segment_id: int
    is_final: bool  # the last sample of its segment


@dataclass(frozen=True, slots=True)
class Cue:
    start_ms: int
    end_ms: int
    text: str


# -- timing and merging ----------------------------------------------------------------------


def time_samples(
    samples: Sequence[SampleCaption], *, tail_ms: float, media_end_ms: float | None
) -> list[TimedSample]:
    """Spans and segments of ``samples`` (in media order); see the module docstring.

    ``tail_ms``: the most the last sample may last; ``media_end_ms``: where the video ends
    (None: unknown, the tail alone decides).
    """
    if not (math.isfinite(tail_ms) and tail_ms > 0):
        raise ValueError(f"tail_ms must be a positive number of milliseconds, got {tail_ms!r}")
    for before, after in itertools.pairwise(samples):
        if after.seq <= before.seq or after.pts_ms < before.pts_ms:
            raise ValueError(
                f"samples must be in media order: seq {before.seq} at {before.pts_ms} ms is "
                f"followed by seq {after.seq} at {after.pts_ms} ms"
            )
    if not samples:
        return []
    starts = [_ms(s.pts_ms) for s in samples]
    last = samples[-1].pts_ms
    end = last + tail_ms
    if media_end_ms is not None and media_end_ms > last:
        end = min(end, media_end_ms)
    ends = [*starts[1:], max(_ms(end), starts[-1])]
    segments = segment_ids(s.text for s in samples)
    finals = is_last_of_segment(segments)
    return [
        TimedSample(
            sample=sample,
            start_ms=starts[i],
            end_ms=ends[i],
            segment_id=segments[i],
            is_final=finals[i],
        )
        for i, sample in enumerate(samples)
    ]


def merge_cues(timed: Sequence[TimedSample]) -> list[Cue]:
    """One cue per segment with words in it and a positive duration."""
    cues: list[Cue] = []
    first: TimedSample | None = None
    for item in timed:
        if first is None or item.segment_id != first.segment_id:
            first = item
        if not item.is_final:
            continue
        text = " ".join(first.sample.text.split())
        if text and item.end_ms > first.start_ms:
            cues.append(Cue(start_ms=first.start_ms, end_ms=item.end_ms, text=text))
    return cues


def _ms(value: float) -> int:
    """Milliseconds, halves rounded up (not to even): 1.5 → 2, 2.5 → 3."""
    return math.floor(value + 0.5)


# -- formats ---------------------------------------------------------------------------------


def format_timestamp(ms: int, *, separator: str = ".") -> str:
    """``3723004`` → ``"01:02:03.004"`` (``separator=","`` for SRT); hours may exceed 99."""
    if ms < 0:
        raise ValueError(f"a subtitle time cannot be negative, got {ms} ms")
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def escape_webvtt(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_srt(text: str) -> str:
    return " ".join(text.split()).replace("-->", "->")


def to_webvtt(cues: Sequence[Cue]) -> str:
    blocks = [
        f"{format_timestamp(c.start_ms)} --> {format_timestamp(c.end_ms)}\n"
        f"{escape_webvtt(c.text)}\n"
        for c in cues
    ]
    return "\n".join(["WEBVTT\n", *blocks])


def to_srt(cues: Sequence[Cue]) -> str:
    blocks = [
        f"{i}\n{format_timestamp(c.start_ms, separator=',')} --> "
        f"{format_timestamp(c.end_ms, separator=',')}\n{escape_srt(c.text)}\n"
        for i, c in enumerate(cues, start=1)
    ]
    return "\n".join(blocks)


def sample_record(item: TimedSample, *, attention: bool) -> dict[str, Any]:
    """One JSON line's object (keys in output order)."""
    s = item.sample
    record: dict[str, Any] = {
        "seq": s.seq,
        "t_start_ms": item.start_ms,
        "t_end_ms": item.end_ms,
        "text": s.text,
        "tokens": list(s.tokens),
        "score": round(s.score, SCORE_DECIMALS),
        "segment_id": item.segment_id,
        "is_final": item.is_final,
    }
    if attention:
        record["attention"] = s.attention.to_dict() if s.attention is not None else None
    return record


def to_jsonl(timed: Sequence[TimedSample], *, attention: bool = False) -> str:
    return "".join(
        json.dumps(
            sample_record(item, attention=attention),
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        )
        + "\n"
        for item in timed
    )


def render(fmt: OutputFormat, timed: Sequence[TimedSample], *, attention: bool = False) -> str:
    """The whole output file's text (``attention`` applies to JSONL only)."""
    if fmt == "vtt":
        return to_webvtt(merge_cues(timed))
    if fmt == "srt":
        return to_srt(merge_cues(timed))
    if fmt == "jsonl":
        return to_jsonl(timed, attention=attention)
    raise ValueError(f"unknown output format {fmt!r}; accepted: vtt, srt, jsonl")
