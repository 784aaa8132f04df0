"""``scenecast status``: the deployment at a glance, read from its Redis.

For an operator asking "why no captions?" without a Prometheus at hand: the workers
heard from (their heartbeats), and per source its state, when its capture was last
heard from, the frames its stream holds and those a worker took but has not
captioned yet (pending), and its newest caption with its age. :func:`read_snapshot`
reads (one pipeline); :func:`format_report` — pure — writes the table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from stream.capture.liveness import silent_sources
from stream.server.metrics_page import heard_recently
from worker.bus.entries import decode_caption
from worker.bus.keys import (
    GROUP,
    SOURCES_KEY,
    WORKER_FORGOTTEN_MS,
    WORKERS_KEY,
    captions_key,
    capture_key,
    frames_key,
)


@dataclass(frozen=True)
class SourceRow:
    source: str
    state: str
    detail: str
    live: bool
    capture_seen_ms: float | None  # its capture's last heartbeat
    frames: int  # entries in frames:{src}
    pending: int  # taken by a worker, not captioned yet
    last_caption_ms: float | None  # the newest caption's stream id time
    last_caption: str


@dataclass(frozen=True)
class Snapshot:
    now_ms: float
    workers: Mapping[str, float]  # name → last heartbeat ms
    sources: Sequence[SourceRow]


def read_snapshot(client: Any, *, now_ms: float) -> Snapshot:
    """Everything the report shows, in two round trips."""
    registry: Mapping[bytes, bytes] = client.hgetall(SOURCES_KEY)
    infos = {k.decode(): json.loads(v) for k, v in registry.items()}
    names = sorted(infos)
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(WORKERS_KEY)
    for name in names:
        pipe.hget(capture_key(name), "seen_ms")
        pipe.xlen(frames_key(name))
        pipe.xpending(frames_key(name), GROUP)
        pipe.xrevrange(captions_key(name), count=1)
    workers, *per_source = pipe.execute(raise_on_error=False)
    rows = []
    for i, name in enumerate(names):
        seen, frames, pending, last = per_source[4 * i : 4 * i + 4]
        caption_ms, text = None, ""
        if isinstance(last, list) and last:
            entry_id, fields = last[0]
            caption_ms = float(entry_id.decode().split("-")[0])
            try:
                text = decode_caption(fields).text
            except ValueError:
                text = "(unreadable)"
        rows.append(
            SourceRow(
                source=name,
                state=str(infos[name].get("state", "")),
                detail=str(infos[name].get("detail", "")),
                live=bool(infos[name].get("live", True)),
                capture_seen_ms=float(seen) if isinstance(seen, bytes | str) else None,
                frames=frames if isinstance(frames, int) else 0,
                pending=int(pending["pending"]) if isinstance(pending, dict) else 0,
                last_caption_ms=caption_ms,
                last_caption=text,
            )
        )
    beats = {} if isinstance(workers, Exception) else workers
    return Snapshot(
        now_ms=now_ms,
        workers={k.decode(): float(v) for k, v in beats.items()},
        sources=rows,
    )


def _ago(now_ms: float, then_ms: float | None) -> str:
    if then_ms is None:
        return "-"
    seconds = max(0.0, now_ms - then_ms) / 1000
    if seconds < 60:
        return f"{seconds:.1f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def shown_state(row: SourceRow, now_ms: float) -> str:
    """The state as the server shows it: a running capture gone silent is an error."""
    silent = silent_sources(
        {row.source: row.state}, {row.source: row.capture_seen_ms}, now_ms=now_ms
    )
    return "error (capture silent)" if silent else row.state


def format_report(snap: Snapshot, *, width: int = 44) -> str:
    """The report as text: a workers line, then a table of sources."""
    now = snap.now_ms
    alive = sorted(n for n, ms in snap.workers.items() if heard_recently(ms, now))
    gone = gone_workers(snap)
    lines = [
        f"workers: {len(alive)} alive"
        + (f" ({', '.join(f'{n} {_ago(now, snap.workers[n])}' for n in alive)})" if alive else "")
        + (f"; {len(gone)} gone ({', '.join(f'{n} {_ago(now, snap.workers[n])}' for n in gone)})"
           if gone else "")
        + ("; nothing captions the sources" if not alive and snap.sources else "")
    ]  # fmt: skip
    if not snap.sources:
        return "\n".join([*lines, "sources: none yet"]) + "\n"
    header = ("SOURCE", "KIND", "STATE", "CAPTURE HEARD", "FRAMES", "PENDING", "LAST CAPTION")
    table = [header]
    for row in snap.sources:
        text = (
            row.last_caption
            if len(row.last_caption) <= width
            else row.last_caption[: width - 1] + "…"
        )
        caption = f"{_ago(now, row.last_caption_ms)}: {text}" if row.last_caption_ms else "-"
        table.append((
            row.source, "live" if row.live else "file", shown_state(row, now),
            _ago(now, row.capture_seen_ms), str(row.frames), str(row.pending), caption,
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    for r in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return "\n".join(line.rstrip() for line in lines) + "\n"


def gone_workers(snap: Snapshot) -> list[str]:
    """Workers not heard from lately, and not yet so long ago that they are forgotten
    (``WORKER_FORGOTTEN_MS``: workers then drop their heartbeats)."""
    return sorted(
        name
        for name, ms in snap.workers.items()
        if not heard_recently(ms, snap.now_ms) and snap.now_ms - ms <= WORKER_FORGOTTEN_MS
    )


def report_json(snap: Snapshot) -> str:
    """The snapshot as one JSON object (``--json``). A source's ``state`` is the one the
    table and the server show (a capture gone silent: an error); ``capture_state`` is
    what its capture last said (``shown_state``: the same as ``state``, kept for scripts
    that read it). ``workers``: those heard from within the hour, by last heartbeat."""
    out = asdict(snap)
    for row, item in zip(snap.sources, out["sources"], strict=True):
        item["capture_state"] = row.state
        item["state"] = item["shown_state"] = shown_state(row, snap.now_ms)
    out["workers"] = {
        n: ms for n, ms in snap.workers.items() if snap.now_ms - ms <= WORKER_FORGOTTEN_MS
    }
    out["workers_alive"] = sum(1 for ms in snap.workers.values() if heard_recently(ms, snap.now_ms))
    out["workers_gone"] = gone_workers(snap)
    return json.dumps(out, ensure_ascii=False)


def print_status(redis_url: str, *, as_json: bool) -> int:
    """``scenecast status``: the report (a table, or one JSON object); 0."""
    from stream.embedded_redis import check_redis
    from worker.bus.clock import RedisClock

    client = check_redis(redis_url)
    try:
        clock = RedisClock()  # heartbeats are in Redis's time (worker/bus/clock.py)
        clock.sync(client)
        snapshot = read_snapshot(client, now_ms=clock.now_ms())
    finally:
        client.close()
    print(
        report_json(snapshot) if as_json else format_report(snapshot), end="\n" if as_json else ""
    )
    return 0
