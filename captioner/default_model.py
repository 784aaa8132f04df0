"""Where the default model bundled with the package lives, found without importing torch
(a command can check for it before it starts anything)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_WEIGHTS = "weights/default.pt"


def default_weights_path() -> Path:
    return Path(str(resources.files("captioner").joinpath(DEFAULT_WEIGHTS)))
