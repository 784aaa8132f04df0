"""Errors that are part of the captioner's API."""


class CaptionerError(Exception):
    """Base class of every error the captioner raises on purpose."""


class InvalidImageError(CaptionerError, ValueError):
    """An input image is not an RGB uint8 array (H, W, 3)."""


class WeightsNotFoundError(CaptionerError, FileNotFoundError):
    """A weight file that must exist locally is missing (nothing is downloaded)."""


class CheckpointError(CaptionerError, ValueError):
    """A checkpoint file is missing, unreadable or not a scenecast checkpoint."""


class NoDefaultModelError(CaptionerError, FileNotFoundError):
    """``Captioner.load()`` was called without a path and no default model is bundled."""


class DeviceError(CaptionerError, ValueError):
    """The device asked for is unknown, or CUDA was asked for where there is none."""


class DatasetError(CaptionerError, ValueError):
    """A caption dataset (Karpathy JSON + image folder) is malformed."""


class SearchConfigError(CaptionerError, ValueError):
    """A search setting of the wrong type or out of range (``SearchConfig``, ``caption()``)."""
