"""A source's caption log (``captions:{src}``) as a transcript: pure, no I/O.

``GET /captions/<source>.vtt`` (or ``.srt``, ``.jsonl``) on the server returns what
the log holds — a live source's newest ~10,000 captions, a file job's every one —
optionally only ``since`` seconds back or ``after`` a caption id. JSON lines are the
websocket's ``caption`` messages (``stream.server.server``); WebVTT and SRT are cues on media
time, made here:

- One cue per run of consecutive captions of one segment (``segment_id``, as the
  publish script assigned it), from its first caption's media time to its last one's
  end, showing its first caption's text.
- A caption lasts until the next one starts, as a recording's samples do
  (``stream.subtitles.cues``) — unless the next starts more than ``GAP_MS`` later (an
  outage, or a source that stopped): then until its own end (its frame's sampling
  interval), and a cue ends there.
- Media time goes back when a live source's capture restarted (it counts from the
  start of capture). Cues must stay in order, so from there the times are shifted to
  go on from the previous caption's end; each caption's wall-clock time stays in the
  JSON lines (``capture_ts``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from stream.subtitles.cues import Cue, to_srt, to_webvtt
from worker.bus.entries import CaptionEntry
from worker.bus.names import is_source_name

GAP_MS = 30_000.0  # more than scene-change sampling's default --max-interval (10 s)
TranscriptFormat = Literal["vtt", "srt", "jsonl"]
CONTENT_TYPES: dict[str, str] = {
    "vtt": "text/vtt; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "jsonl": "application/jsonl; charset=utf-8",
}
PATH_RULE = "/captions/<source>.vtt, .srt or .jsonl (?since=SECONDS or ?after=ID)"


def parse_transcript_path(path: str) -> tuple[str, TranscriptFormat] | None:
    """``/captions/door.vtt`` → ("door", "vtt"); None for other paths; ValueError,
    saying what is accepted, for a malformed one."""
    if not path.startswith("/captions/"):
        return None
    name = path.removeprefix("/captions/")
    source, dot, ext = name.rpartition(".")
    if not dot or ext not in CONTENT_TYPES or not is_source_name(source):
        raise ValueError(f"bad transcript path {path[:80]!r}: use {PATH_RULE}")
    return source, ext  # type: ignore[return-value]


def transcript_cues(entries: Sequence[CaptionEntry]) -> list[Cue]:
    """The cues of a source's captions, in log order (see the module docstring)."""
    cues: list[Cue] = []
    shift = 0.0  # added to media time after a capture restarted
    run_start = run_end = 0.0
    run_text: str | None = None
    run_segment = None
    previous_end = 0.0
    for i, entry in enumerate(entries):
        start = entry.pts_ms + shift
        if i and start < previous_end:  # media time went back: the capture restarted
            shift += previous_end - start
            start = previous_end
        own_end = max(entry.end_ms + shift, start)
        nxt = entries[i + 1] if i + 1 < len(entries) else None
        joined = nxt is not None and 0 <= nxt.pts_ms + shift - start <= GAP_MS
        end = max(nxt.pts_ms + shift, start) if nxt is not None and joined else own_end
        if run_text is not None and entry.segment_id == run_segment and run_end == start:
            run_end = end  # the run goes on
        else:
            if run_text is not None:
                _add(cues, run_start, run_end, run_text)
            run_start, run_end, run_text, run_segment = start, end, entry.text, entry.segment_id
        previous_end = end
    if run_text is not None:
        _add(cues, run_start, run_end, run_text)
    return cues


def _add(cues: list[Cue], start: float, end: float, text: str) -> None:
    words = " ".join(text.split())
    start_ms, end_ms = round(start), round(end)
    if words and end_ms > start_ms:
        cues.append(Cue(start_ms=start_ms, end_ms=end_ms, text=words))


def render_cues(fmt: TranscriptFormat, cues: Sequence[Cue]) -> str:
    if fmt == "vtt":
        return to_webvtt(cues)
    if fmt == "srt":
        return to_srt(cues)
    raise ValueError(f"cues are written as vtt or srt, not {fmt!r}")


QUERY_KEYS = ("since", "after", "token")  # token: read by stream/access.py


def range_start(query: dict[str, list[str]], *, now_ms: float) -> str:
    """The ``XRANGE`` start for a transcript request's query: ``-`` (the whole log),
    ``(ID`` (``after=ID``: the captions after it) or ``MS-0`` (``since=SECONDS``: the
    captions published in the last SECONDS). ValueError, saying what is accepted, for
    a bad one."""
    from stream.protocol import AHEAD_SLACK_MS, parse_stream_id

    unknown = sorted(set(query) - set(QUERY_KEYS))
    if unknown:  # a typo (?sinse=60) would otherwise serve the whole log unasked
        raise ValueError(
            f"unknown query parameter {unknown[0][:40]!r}; accepted: since=SECONDS or "
            "after=ID (and token=TOKEN when the server has one)"
        )
    for key, values in query.items():
        if len(values) > 1:
            raise ValueError(f"{key}= is given {len(values)} times; give it once")
        if not values[0]:
            raise ValueError(f"{key}= has no value (e.g. since=3600, after=1763821203123-0)")
    since, after = query.get("since"), query.get("after")
    if since and after:
        raise ValueError("give since=SECONDS or after=ID, not both")
    if after:
        try:
            ms, _ = parse_stream_id(after[0])
        except ValueError:
            raise ValueError(
                f"after={after[0][:40]!r} is not a caption id (accepted: a Redis stream id "
                "such as 1763821203123-0, as a caption's 'id' field)"
            ) from None
        if ms > now_ms + AHEAD_SLACK_MS:
            raise ValueError(
                f"after={after[0][:40]!r} is later than the server's time ({int(now_ms)} ms "
                "on its Redis's clock): no caption has that id yet (accepted: the id of a "
                "caption, as its 'id' field)"
            )
        return f"({after[0]}"
    if since:
        try:
            seconds = float(since[0])
        except ValueError:
            seconds = float("nan")
        if not (seconds > 0 and seconds < 1e9):
            raise ValueError(
                f"since={since[0][:40]!r}: expected a positive number of seconds (e.g. "
                "since=3600 for the last hour)"
            )
        return f"{max(0, int(now_ms - seconds * 1000))}-0"
    return "-"
