"""Helpers that put frames into Redis as capture does (through worker.bus.entries)."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import redis

from worker.bus.entries import CaptionEntry, FrameEntry, StatusEntry
from worker.bus.keys import GROUP, SOURCES_KEY, frames_key, status_key


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:] = color[::-1]  # RGB → BGR for OpenCV
    cv2.rectangle(image, (10, 10), (30, 30), (255, 255, 255), -1)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return bytes(buf.tobytes())


def register(client: redis.Redis, source: str, *, live: bool) -> None:
    client.xgroup_create(frames_key(source), GROUP, id="$", mkstream=True)
    client.hset(SOURCES_KEY, source, json.dumps({"state": "live", "live": live}))


def set_status(client: redis.Redis, source: str, state: str, detail: str = "") -> None:
    """A source's state change, published as capture publishes it."""
    entry = StatusEntry(source, state, detail, time.time_ns())
    client.xadd(status_key(source), entry.encode())  # type: ignore[arg-type]
    client.hset(SOURCES_KEY, source, entry.to_json())


def add_frame(
    client: redis.Redis,
    source: str,
    seq: int,
    *,
    data: bytes,
    live: bool = False,
    age_ms: float = 0.0,
    interval_ms: float = 1000.0,
) -> str:
    frame = FrameEntry(
        source=source,
        seq=seq,
        pts_ms=seq * interval_ms,
        capture_ns=time.time_ns() - int(age_ms * 1e6),
        width=64,
        height=48,
        jpeg=data,
        live=live,
        interval_ms=interval_ms,
    )
    entry_id = client.xadd(frames_key(source), frame.encode())  # type: ignore[arg-type]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def publish_caption(
    client: redis.Redis,
    source: str,
    seq: int,
    text: str,
    *,
    pts_ms: float | None = None,
    frame_id: str | None = None,
    frame_data: bytes = b"",
    grid: tuple[int, int] = (0, 0),
) -> str | None:
    """Publish a caption for a new frame of ``source`` as the worker does (Lua script).

    ``frame_data``: the new frame's JPEG; ``grid`` (h, w): attention maps, word ``i``
    looking at cell ``i`` only (row-major)."""
    from worker.bus.publish import PUBLISH_LUA, Publication, publish_args

    script = redis.Redis.register_script(client, PUBLISH_LUA)  # works for pipelines too
    entry = caption(source, seq, text, pts_ms=pts_ms, grid=grid)
    frame_id = frame_id or f"{seq + 1}-0"  # explicit, so that a pipeline can queue it
    frame = {"seq": seq, "data": frame_data} if frame_data else {"seq": seq}
    client.xadd(frames_key(source), frame, id=frame_id)  # type: ignore[arg-type]
    keys, argv = publish_args(Publication(entry, frame_id))
    result = script(keys=keys, args=argv, client=client)
    return result.decode() if isinstance(result, bytes) else result


def caption(
    source: str,
    seq: int,
    text: str,
    *,
    pts_ms: float | None = None,
    grid: tuple[int, int] = (0, 0),
) -> CaptionEntry:
    """A worker's caption of ``source``'s frame ``seq`` (a second each, from ``pts_ms``)."""
    start = seq * 1000.0 if pts_ms is None else pts_ms
    return CaptionEntry(
        source=source,
        seq=seq,
        pts_ms=start,
        end_ms=start + 1000.0,
        capture_ns=time.time_ns(),
        text=text,
        tokens=text.split(),
        score=-1.0,
        model="test",
        latency_ms=1.0,
        attention=_one_cell_maps(len(text.split()), grid),
        grid=grid,
        fit="letterbox",
    )


def _one_cell_maps(words: int, grid: tuple[int, int]) -> bytes:
    h, w = grid
    if not h * w:
        return b""
    maps = np.zeros((words, h * w), np.uint8)
    maps[np.arange(words), np.arange(words) % (h * w)] = 255
    return maps.tobytes()
