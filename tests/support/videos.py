"""Small real video files for tests: scenes of known colours cut at known times."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

Color = tuple[int, int, int]  # BGR


def make_video(
    path: Path,
    *,
    scenes: list[tuple[Color, float]],
    fps: float = 10,
    size: tuple[int, int] = (160, 90),
    noise: float = 0.0,
    seed: int = 0,
) -> Path:
    """Write an MP4 (mp4v) of ``scenes``: (colour, seconds) each, in order.

    Scene ``k`` fills the frame with its colour and draws a white rectangle whose
    position depends on ``k``, so scenes differ in colour and layout. Scene ``k``
    starts at frame ``sum(round(seconds × fps) of the scenes before it)``. ``noise``
    adds Gaussian pixel noise of that σ to every frame (seeded), so frames within a
    scene are not identical. ``size`` is (width, height).
    """
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV could not write {path} with mp4v")
    rng = np.random.default_rng(seed)
    try:
        for k, (color, seconds) in enumerate(scenes):
            base = np.empty((height, width, 3), dtype=np.uint8)
            base[:] = color
            x = (k * width // 4) % (width - width // 4)
            y = (k * height // 3) % (height - height // 3)
            cv2.rectangle(base, (x, y), (x + width // 4, y + height // 3), (255, 255, 255), -1)
            for _ in range(round(seconds * fps)):
                frame = base
                if noise > 0:
                    jitter = rng.normal(0.0, noise, base.shape)
                    frame = np.clip(base + jitter, 0, 255).astype(np.uint8)
                writer.write(frame)
    finally:
        writer.release()
    return path


def scene_starts(scenes: list[tuple[Color, float]], fps: float = 10) -> list[int]:
    """The index of each scene's first frame in a video made by ``make_video``."""
    starts, index = [], 0
    for _, seconds in scenes:
        starts.append(index)
        index += round(seconds * fps)
    return starts
