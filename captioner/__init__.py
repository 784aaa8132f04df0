"""scenecast's captioner: Show, Attend and Tell over CNN grid features.

from captioner import Captioner
cap = Captioner.load()            # the bundled default model
captions = cap.caption(images)    # RGB uint8 arrays (H, W, 3) of any size
"""

from captioner.api import Caption, Captioner
from captioner.exceptions import (
    CaptionerError,
    CheckpointError,
    DeviceError,
    InvalidImageError,
    NoDefaultModelError,
    WeightsNotFoundError,
)
from captioner.search import SearchConfig

__all__ = [
    "Caption",
    "Captioner",
    "CaptionerError",
    "CheckpointError",
    "DeviceError",
    "InvalidImageError",
    "NoDefaultModelError",
    "SearchConfig",
    "WeightsNotFoundError",
]
