"""scenecast's captioner: Show, Attend and Tell over CNN grid features.

from captioner import Captioner
cap = Captioner.load()            # the bundled default model
captions = cap.caption(images)    # RGB uint8 arrays (H, W, 3) of any size
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from captioner.exceptions import (
    CaptionerError,
    CheckpointError,
    DeviceError,
    InvalidImageError,
    NoDefaultModelError,
    SearchConfigError,
    WeightsNotFoundError,
)

if TYPE_CHECKING:
    from captioner.api import Caption, Captioner
    from captioner.search.config import SearchConfig

_LAZY = {
    "Caption": "captioner.api",
    "Captioner": "captioner.api",
    "SearchConfig": "captioner.search.config",
}


def __getattr__(name: str) -> Any:
    """The model's classes, imported on first use: importing torch takes 1.5-2 s, and
    the commands that never load a model (listen, serve, status, capture) need not."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'captioner' has no attribute {name!r}")


__all__ = [
    "Caption",
    "Captioner",
    "CaptionerError",
    "CheckpointError",
    "DeviceError",
    "InvalidImageError",
    "NoDefaultModelError",
    "SearchConfig",
    "SearchConfigError",
    "WeightsNotFoundError",
]
