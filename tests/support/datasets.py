"""A small generated caption dataset in Karpathy's format (shapes on coloured grounds)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from PIL import Image, ImageDraw

COLORS = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "black": (10, 10, 10),
}
GROUNDS = {
    "white": (250, 250, 250),
    "gray": (128, 128, 128),
    "orange": (250, 150, 40),
    "purple": (120, 40, 160),
}
SHAPES = ("square", "circle", "triangle")


def _draw(
    shape: str, color: tuple[int, int, int], ground: tuple[int, int, int], size: tuple[int, int]
) -> Image.Image:
    w, h = size
    im = Image.new("RGB", size, ground)
    d = ImageDraw.Draw(im)
    box = (w * 0.25, h * 0.25, w * 0.75, h * 0.75)
    if shape == "square":
        d.rectangle(box, fill=color)
    elif shape == "circle":
        d.ellipse(box, fill=color)
    else:
        d.polygon([(w * 0.5, h * 0.2), (w * 0.8, h * 0.8), (w * 0.2, h * 0.8)], fill=color)
    return im


def make_dataset(root: Path, *, n_train: int = 20, n_val: int = 6) -> Path:
    """Write ``root/captions.json`` and ``root/images/*.jpg``; return root.

    Images have assorted sizes and aspect ratios; every caption is distinct.
    """
    (root / "images").mkdir(parents=True, exist_ok=True)
    combos = list(itertools.product(SHAPES, COLORS, GROUNDS))
    combos = combos[::2] + combos[1::2]  # spread shapes and colours over both splits
    entries = []
    sizes = [(160, 120), (128, 128), (96, 144), (200, 100)]
    for i, (shape, color, ground) in enumerate(combos[: n_train + n_val]):
        name = f"{i:03d}.jpg"
        _draw(shape, COLORS[color], GROUNDS[ground], sizes[i % len(sizes)]).save(
            root / "images" / name, quality=95
        )
        words = ["a", color, shape, "on", "a", ground, "background"]
        entries.append(
            {
                "filename": name,
                "split": "train" if i < n_train else "val",
                "sentences": [{"raw": " ".join(words), "tokens": words}],
            }
        )
    (root / "captions.json").write_text(json.dumps({"images": entries}))
    return root
