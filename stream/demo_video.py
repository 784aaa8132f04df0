"""The bundled demo video: the sample photos (see captioner/samples/LICENSES.md), 4 s
each, with a slow pan and zoom, 640×360 at 10 fps. ``make run`` loops it as a camera.

Regenerate with ``python -m stream.demo_video`` (deterministic).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from captioner.sample_photos import load_rgb, sample_paths

SIZE = (640, 360)
FPS = 10
SECONDS_EACH = 4


def demo_video_path() -> Path:
    return Path(str(resources.files("stream").joinpath("assets/demo.mp4")))


def _frame(image: np.ndarray, t: float) -> np.ndarray:
    """A 16:9 window that slowly zooms in (1.0 → 1.15) over the photo, BGR."""
    h, w = image.shape[:2]
    aspect = SIZE[0] / SIZE[1]
    base_w = min(w, h * aspect)
    zoom = 1.0 + 0.15 * t
    cw, ch = base_w / zoom, base_w / zoom / aspect
    cx, cy = w / 2 + (w - cw) / 2 * 0.3 * t, h / 2
    x0, y0 = max(0.0, min(w - cw, cx - cw / 2)), max(0.0, min(h - ch, cy - ch / 2))
    crop = image[int(y0) : int(y0 + ch), int(x0) : int(x0 + cw)]
    frame = cv2.resize(crop, SIZE, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame[:, :, ::-1])


def make_demo_video(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), FPS, SIZE)
    try:
        for path in sample_paths():
            image = load_rgb(path)
            n = FPS * SECONDS_EACH
            for i in range(n):
                writer.write(_frame(image, i / (n - 1)))
    finally:
        writer.release()
    return out


if __name__ == "__main__":
    print(make_demo_video(demo_video_path()))
