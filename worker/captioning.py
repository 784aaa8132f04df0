"""Frames → caption entries, as every worker makes them: the stored caption of a frame
(:func:`caption_entry`, the worker loop's), and a whole batch decoded and captioned in the
caller's process (:func:`caption_frames`: ``scenecast caption`` without Redis, so it
writes the very entries workers publish). ``caption_frames`` is the one function of
``worker`` that ``stream`` calls; the rest of it ``stream`` reaches through Redis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from worker.bus.entries import CaptionEntry, FrameEntry, quantize_attention
from worker.decode import decode_jpegs

if TYPE_CHECKING:
    from captioner.api import Captioner
    from captioner.search.hold import ShownCaptions


class CaptionLike(Protocol):
    """What the worker needs of a caption (``captioner.Caption`` has it)."""

    @property
    def text(self) -> str: ...
    @property
    def tokens(self) -> list[str]: ...
    @property
    def score(self) -> float: ...
    @property
    def attention(self) -> np.ndarray: ...


def caption_entry(
    frame: FrameEntry,
    caption: CaptionLike,
    *,
    model: str,
    fit: str,
    latency_ms: float,
    attention: bool,
) -> CaptionEntry:
    """The stored caption of ``frame`` (shared with ``scenecast caption``'s in-process path,
    so both produce the very same entries)."""
    maps = np.asarray(caption.attention)  # (T, h, w)
    return CaptionEntry(
        source=frame.source,
        seq=frame.seq,
        pts_ms=frame.pts_ms,
        end_ms=frame.pts_ms + frame.interval_ms,
        capture_ns=frame.capture_ns,
        text=caption.text,
        tokens=list(caption.tokens),
        score=caption.score,
        model=model,
        latency_ms=latency_ms,
        attention=quantize_attention(maps) if attention else b"",
        grid=(maps.shape[1], maps.shape[2]) if attention and maps.ndim == 3 else (0, 0),
        fit=fit if attention else "",
    )


def caption_frames(
    frames: Sequence[FrameEntry], captioner: Captioner, *, beam: int, shown: ShownCaptions
) -> list[CaptionEntry] | None:
    """Decode and caption one batch as a worker does: the entries a worker publishes, with
    attention; None when a frame's JPEG does not decode. ``shown``: the caller's own
    caption-hold memory."""
    images = decode_jpegs([f.jpeg for f in frames], device=str(captioner.device))
    if any(image is None for image in images):
        return None
    captions = captioner.caption(
        [im for im in images if im is not None],
        beam=beam,
        sources=[f.source for f in frames],
        shown=shown,
    )
    return [
        caption_entry(
            f, c, model=captioner.model_id, fit=captioner.fit, latency_ms=0.0, attention=True
        )
        for f, c in zip(frames, captions, strict=True)
    ]
