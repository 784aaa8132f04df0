"""The permissively licensed photos bundled in ``captioner/samples`` (see LICENSES.md there)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


def sample_paths() -> list[Path]:
    folder = Path(str(resources.files("captioner").joinpath("samples")))
    return sorted(folder.glob("*.jpg"))


def load_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3), upright: a photo stored sideways with an
    EXIF orientation (as phones store them) is turned as a viewer shows it."""
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def sample_images() -> list[np.ndarray]:
    """The bundled sample photos, RGB uint8, each its own size, sorted by file name."""
    return [load_rgb(p) for p in sample_paths()]
