"""Image files → captions: what ``scenecast describe`` prints, one line per file."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from captioner.exceptions import InvalidImageError


def read_images(paths: Sequence[Path]) -> list[Any]:
    """Each file as an RGB uint8 array; InvalidImageError naming the first that is not
    an image Pillow can open (before any model is loaded)."""
    from PIL import Image, UnidentifiedImageError

    from captioner.sample_photos import load_rgb

    images = []
    for path in paths:
        try:
            images.append(load_rgb(path))
        except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
            raise InvalidImageError(
                f"cannot read image {path}: {exc} "
                "(accepted: JPEG, PNG, BMP, WebP, … files Pillow can open)"
            ) from None
        except Image.DecompressionBombError as exc:  # not an OSError: Pillow's own guard
            raise InvalidImageError(f"cannot read image {path}: {exc}") from None
    return images


def describe_files(
    paths: Sequence[Path],
    *,
    checkpoint: str | Path | None = None,
    device: str | None = None,
    search: Mapping[str, Any] | None = None,
) -> list[tuple[Path, str]]:
    """(path, caption) per file, in order: the model of ``checkpoint`` (default: the
    bundled one), its stored search settings with ``search`` changed."""
    from captioner.api import Captioner

    images = read_images(paths)
    cap = Captioner.load(checkpoint, device=device)
    config = dataclasses.replace(cap.search_config, **(search or {}))
    captions = cap.caption(images, config=config)
    return [(path, caption.text) for path, caption in zip(paths, captions, strict=True)]
