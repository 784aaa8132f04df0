"""Shrinking frames: the area average at exact halves, then bilinear for the rest.

One ``cv2.resize(..., INTER_AREA)`` at a non-integer scale is slow: 0.80 ms from
640×360 to 256×144 and 6 ms from 1920×1080 on this project's 2-core CI machine —
more than decoding the frame; capture paid it for every published frame, and the
scene-change sampler for every decoded one. Halving with ``INTER_AREA`` takes
OpenCV's vectorised 2× path, so the same shrink done as halvings (of each side while
it is at least twice its target) and one bilinear step for the remaining factor
(< 2, where bilinear barely aliases) costs 0.21 and 0.65 ms, within 30–48 dB PSNR
of the single area resize on the sample photos (``tests/test_shrink.py``);
BENCHMARKS.md has the effect on captions (none measurable).
"""

from __future__ import annotations

import cv2
import numpy as np


def shrink(image: np.ndarray, size: tuple[int, int], *, area_last: bool = False) -> np.ndarray:
    """``image`` (H, W) or (H, W, C) uint8 → ``size`` = (width, height), same channels.

    Halves each side (area average; an odd last row or column is dropped) while it
    is at least twice its target, then resizes bilinearly: < 2× left on both sides.
    ``area_last``: that last step as an area average too — slower when the remainder
    is large, for statistics (the scene-change thumbnail) where averaging out noise
    matters more than a fraction of a millisecond.
    """
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"shrink: size must be positive (width, height), got {size}")
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"shrink: expected an (H, W) or (H, W, C) image, got {image.shape}")
    h, w = image.shape[:2]
    while w >= 2 * width or h >= 2 * height:
        fx, fy = (2 if w >= 2 * width else 1), (2 if h >= 2 * height else 1)
        even = image[: h - h % fy, : w - w % fx]
        h, w = h // fy, w // fx
        image = cv2.resize(even, (w, h), interpolation=cv2.INTER_AREA)
    if (w, h) == (width, height):
        return image
    last = cv2.INTER_AREA if area_last else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=last)
