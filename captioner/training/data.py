"""Caption datasets in Karpathy's JSON format, plus their image folder.

``{"images": [{"filename", "split", "sentences": [{"tokens", "raw"}]}]}``; images
live in ``DIR/images/`` (or next to the JSON). ``split`` is train / val / test
(``restval`` counts as train).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from captioner.exceptions import DatasetError
from captioner.vocab import tokenize

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Item:
    """One image and its reference captions (each a list of tokens)."""

    filename: str
    split: str
    captions: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class CaptionDataset:
    root: Path
    image_dir: Path
    items: tuple[Item, ...]

    def split(self, name: str) -> list[Item]:
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; accepted: {', '.join(SPLITS)}")
        chosen = [it for it in self.items if it.split == name]
        if not chosen:
            raise DatasetError(f"{self.root}: no images in split {name!r}")
        return chosen

    def load_image(self, item: Item) -> np.ndarray:
        """RGB uint8 (H, W, 3)."""
        with Image.open(self.image_dir / item.filename) as im:
            return np.asarray(im.convert("RGB"))


def load_dataset(root: Path, *, captions_file: str = "captions.json") -> CaptionDataset:
    """Read ``root/captions.json`` and check that it is well formed."""
    root = Path(root)
    path = root / captions_file if root.is_dir() else root
    if not path.is_file():
        raise DatasetError(
            f"caption file not found: {path} (expected Karpathy-format JSON, "
            f"DIR/{captions_file} with DIR/images/)"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("images"), list):
        raise DatasetError(f'{path}: expected an object with an "images" list (Karpathy format)')
    items = []
    for n, entry in enumerate(raw["images"]):
        try:
            split = "train" if entry["split"] == "restval" else entry["split"]
            captions = tuple(
                tuple(s.get("tokens") or tokenize(s["raw"])) for s in entry["sentences"]
            )
            items.append(Item(filename=str(entry["filename"]), split=split, captions=captions))
        except (KeyError, TypeError) as exc:
            raise DatasetError(
                f'{path}: image {n} lacks a field ({exc}); each needs "filename", "split" '
                'and "sentences" with "tokens" or "raw"'
            ) from exc
        if split not in SPLITS:
            raise DatasetError(f"{path}: image {n} has split {split!r}; accepted: {SPLITS}")
    base = path.parent
    image_dir = base / "images" if (base / "images").is_dir() else base
    return CaptionDataset(root=base, image_dir=image_dir, items=tuple(items))
