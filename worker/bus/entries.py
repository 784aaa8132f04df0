"""The Redis stream entries capture, workers and servers exchange: frames, captions, statuses.

Everything here is pure: entries are encoded to and decoded from the flat
``{field: bytes}`` maps of Redis streams, and decoding validates every field.
No pickle anywhere. Capture publishes frames through :func:`encode_frame`, the
worker reads them with :func:`decode_frame` and publishes :func:`encode_caption`,
the server reads captions with :func:`decode_caption`.

Key names are in :mod:`worker.bus.keys`, the source-name rule in :mod:`worker.bus.names`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worker.bus.exceptions import EntryError
from worker.bus.names import check_source

PROTOCOL_VERSION = 1
STATES = ("connecting", "live", "reconnecting", "ended", "error")
# a frame whose JPEG decodes to less than this a side is dead-lettered: the model takes
# no smaller image (captioner.preprocess.MIN_IMAGE_SIDE; a test checks they agree)
MIN_FRAME_SIDE = 2


# -- field helpers ------------------------------------------------------------------------


def _text(fields: Mapping[bytes, bytes], name: str) -> str:
    try:
        return fields[name.encode()].decode("utf-8")
    except KeyError:
        raise EntryError(f"entry lacks field {name!r}") from None
    except UnicodeDecodeError:
        raise EntryError(f"field {name!r} is not UTF-8") from None


def _int(fields: Mapping[bytes, bytes], name: str) -> int:
    value = _text(fields, name)
    try:
        return int(value)
    except ValueError:
        raise EntryError(f"field {name!r} is not an integer: {value!r}") from None


def _count(fields: Mapping[bytes, bytes], name: str) -> int:
    """A field that counts from 0 (a sequence number)."""
    value = _int(fields, name)
    if value < 0:
        raise EntryError(f"field {name!r} must be >= 0, got {value}")
    return value


def _float(fields: Mapping[bytes, bytes], name: str) -> float:
    value = _text(fields, name)
    try:
        return float(value)
    except ValueError:
        raise EntryError(f"field {name!r} is not a number: {value!r}") from None


def _check_version(fields: Mapping[bytes, bytes]) -> None:
    version = _int(fields, "v")
    if version != PROTOCOL_VERSION:
        raise EntryError(
            f"entry has protocol version {version}; this build reads {PROTOCOL_VERSION}"
        )


# -- frames -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameEntry:
    """One sampled frame: JPEG bytes plus where and when it came from."""

    source: str
    seq: int  # monotonic per source, from 0
    pts_ms: float  # media time: container PTS for files, time since capture start for live
    capture_ns: int  # wall clock (UTC, ns since the epoch) when the frame was read
    width: int
    height: int
    jpeg: bytes
    live: bool
    interval_ms: float  # the sampling interval: a caption covers [pts, pts + interval)
    codec: str = "jpeg"

    def encode(self) -> dict[str, bytes | str | int | float]:
        return {
            "v": PROTOCOL_VERSION,
            "source": check_source(self.source),
            "seq": self.seq,
            "pts_ms": f"{self.pts_ms:.3f}",
            "capture_ns": self.capture_ns,
            "width": self.width,
            "height": self.height,
            "codec": self.codec,
            "live": int(self.live),
            "interval_ms": f"{self.interval_ms:.3f}",
            "data": self.jpeg,
        }


def decode_frame(fields: Mapping[bytes, bytes]) -> FrameEntry:
    _check_version(fields)
    codec = _text(fields, "codec")
    if codec != "jpeg":
        raise EntryError(f"frame codec {codec!r} is not supported; accepted: 'jpeg'")
    try:
        data = fields[b"data"]
    except KeyError:
        raise EntryError("entry lacks field 'data'") from None
    return FrameEntry(
        source=check_source(_text(fields, "source")),
        seq=_count(fields, "seq"),
        pts_ms=_float(fields, "pts_ms"),
        capture_ns=_int(fields, "capture_ns"),
        width=_int(fields, "width"),
        height=_int(fields, "height"),
        jpeg=bytes(data),
        live=_int(fields, "live") == 1,
        interval_ms=_float(fields, "interval_ms"),
        codec=codec,
    )


# -- captions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptionEntry:
    """A caption of one frame, as stored in ``captions:{src}``."""

    source: str
    seq: int
    pts_ms: float
    end_ms: float
    capture_ns: int
    text: str
    tokens: list[str]
    score: float
    model: str
    latency_ms: float  # capture → caption published
    attention: bytes = b""  # uint8 grids, one per token, row-major; empty when not sent
    grid: tuple[int, int] = (0, 0)
    fit: str = ""  # how the model fitted the frame to its square input (the grid covers it)
    segment_id: int = -1  # assigned atomically on publish (see worker.bus.publish)
    frame_id: str = ""  # the frame's entry in frames:{src}, stored by the publish script
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> dict[str, bytes | str | int | float]:
        out: dict[str, bytes | str | int | float] = {
            "v": PROTOCOL_VERSION,
            "source": check_source(self.source),
            "seq": self.seq,
            "pts_ms": f"{self.pts_ms:.3f}",
            "end_ms": f"{self.end_ms:.3f}",
            "capture_ns": self.capture_ns,
            "text": self.text,
            "tokens": json.dumps(self.tokens, ensure_ascii=False),
            "score": f"{self.score:.6f}",
            "model": self.model,
            "latency_ms": f"{self.latency_ms:.3f}",
            "segment_id": self.segment_id,
        }
        if self.attention:
            out["attention"] = self.attention
            out["grid"] = f"{self.grid[0]}x{self.grid[1]}"
            if self.fit:
                out["fit"] = self.fit
        return out

    def attention_maps(self) -> np.ndarray:
        """(tokens, h, w) uint8, 255 = the most attended cell of that word."""
        h, w = self.grid
        if not self.attention or not h or not w:
            return np.zeros((0, 0, 0), dtype=np.uint8)
        return np.frombuffer(self.attention, dtype=np.uint8).reshape(-1, h, w)


def quantize_attention(maps: np.ndarray) -> bytes:
    """Per-token attention (T, h, w) floats → uint8 bytes, each map scaled to its max."""
    if maps.size == 0:
        return b""
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    scaled = np.rint(maps / np.maximum(peak, 1e-12) * 255.0)
    return bytes(scaled.clip(0, 255).astype(np.uint8).tobytes())


def decode_caption(fields: Mapping[bytes, bytes]) -> CaptionEntry:
    _check_version(fields)
    try:
        tokens = json.loads(_text(fields, "tokens"))
    except json.JSONDecodeError:
        raise EntryError("field 'tokens' is not a JSON list") from None
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise EntryError("field 'tokens' is not a JSON list of strings")
    grid = (0, 0)
    attention = bytes(fields.get(b"attention", b""))
    if attention:
        h, _, w = _text(fields, "grid").partition("x")
        grid = (int(h), int(w))
    return CaptionEntry(
        source=check_source(_text(fields, "source")),
        seq=_int(fields, "seq"),
        pts_ms=_float(fields, "pts_ms"),
        end_ms=_float(fields, "end_ms"),
        capture_ns=_int(fields, "capture_ns"),
        text=_text(fields, "text"),
        tokens=tokens,
        score=_float(fields, "score"),
        model=_text(fields, "model"),
        latency_ms=_float(fields, "latency_ms"),
        attention=attention,
        grid=grid,
        fit=_choice(fields, "fit", FITS) if attention else "",
        segment_id=_int(fields, "segment_id"),
        frame_id=_entry_id(fields, "frame"),
    )


FITS = ("", "letterbox", "crop")  # how the model fitted the frame ("": not stored)
_ENTRY_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


def _choice(fields: Mapping[bytes, bytes], name: str, accepted: tuple[str, ...]) -> str:
    value = bytes(fields.get(name.encode(), b"")).decode(errors="replace")
    if value not in accepted:
        raise EntryError(f"field {name!r} is {value!r}; accepted: {', '.join(accepted[1:])}")
    return value


def _entry_id(fields: Mapping[bytes, bytes], name: str) -> str:
    """An optional stream entry id field ("" when absent)."""
    value = bytes(fields.get(name.encode(), b"")).decode(errors="replace")
    if value and not _ENTRY_ID.fullmatch(value):
        raise EntryError(f"field {name!r} is {value!r}, not a stream entry id such as '1-0'")
    return value


# -- status -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusEntry:
    source: str
    state: str
    detail: str
    ts_ns: int
    live: bool = True

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise EntryError(f"unknown state {self.state!r}; accepted: {', '.join(STATES)}")

    def encode(self) -> dict[str, str | int]:
        return {
            "v": PROTOCOL_VERSION,
            "source": check_source(self.source),
            "state": self.state,
            "detail": self.detail,
            "ts_ns": self.ts_ns,
            "live": int(self.live),
        }

    def to_json(self) -> str:
        return json.dumps(
            {"state": self.state, "detail": self.detail, "ts_ns": self.ts_ns, "live": self.live}
        )


def decode_status(fields: Mapping[bytes, bytes]) -> StatusEntry:
    _check_version(fields)
    return StatusEntry(
        source=check_source(_text(fields, "source")),
        state=_text(fields, "state"),
        detail=_text(fields, "detail"),
        ts_ns=_int(fields, "ts_ns"),
        live=_int(fields, "live") == 1,
    )
