"""How an image of any size becomes the encoder's square input.

The preprocessing travels with the weights: every checkpoint stores its
:class:`Preprocess`, and inference fits images exactly as training did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from captioner.exceptions import InvalidImageError

FitMode = Literal["letterbox", "crop"]
FIT_MODES: tuple[str, ...] = ("letterbox", "crop")


@dataclass(frozen=True)
class Preprocess:
    """Fit (letterbox on a colour, or centre crop) to ``size``², then normalise.

    ``mean`` / ``std`` are per channel, on pixel values scaled to [0, 1].
    EfficientNet-Lite's weights expect [-1, 1]: mean 0.5, std 0.5.
    """

    size: int = 224
    fit: FitMode = "letterbox"
    fill: tuple[int, int, int] = (255, 255, 255)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.size < 32:
            raise ValueError(f"Preprocess.size must be >= 32 pixels, got {self.size}")
        if self.fit not in FIT_MODES:
            raise ValueError(f"Preprocess.fit must be one of {FIT_MODES}, got {self.fit!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        return cls(
            size=int(data["size"]),
            fit=data["fit"],
            fill=tuple(int(v) for v in data["fill"]),  # type: ignore[arg-type]
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
        )


MIN_IMAGE_SIDE = 2  # pixels: an image's shorter side, at least


def check_image(image: object, index: int = 0) -> np.ndarray:
    """An RGB uint8 array (H, W, 3), or a clear error naming what was given."""
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(
            f"image {index}: expected a numpy array (H, W, 3) of uint8 RGB, "
            f"got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise InvalidImageError(f"image {index}: expected dtype uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidImageError(
            f"image {index}: expected shape (H, W, 3) RGB, got {tuple(image.shape)}"
        )
    if image.shape[0] < MIN_IMAGE_SIDE or image.shape[1] < MIN_IMAGE_SIDE:
        raise InvalidImageError(
            f"image {index}: too small, {image.shape[1]}x{image.shape[0]} "
            f"(accepted: at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels)"
        )
    return image


def fit_geometry(height: int, width: int, size: int, fit: FitMode) -> tuple[int, int]:
    """Size (h, w) to resize to before padding (letterbox) or cropping (crop) to size²."""
    scale = size / max(height, width) if fit == "letterbox" else size / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def fit_image(image: Tensor, spec: Preprocess) -> Tensor:
    """uint8 image(s) (3, H, W) or (N, 3, H, W) → float (…, 3, S, S) in [0, 255], fitted."""
    batched = image.ndim == 4
    x = (image if batched else image.unsqueeze(0)).float()  # (N, 3, H, W)
    height, width = x.shape[2], x.shape[3]
    new_h, new_w = fit_geometry(height, width, spec.size, spec.fit)
    if (new_h, new_w) != (height, width):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True)
        x = x.clamp_(0.0, 255.0)
    s = spec.size
    if spec.fit == "crop":
        top, left = (new_h - s) // 2, (new_w - s) // 2
        out = x[:, :, top : top + s, left : left + s]  # (N, 3, S, S)
    else:
        fill = torch.tensor(spec.fill, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        out = fill.expand(x.shape[0], 3, s, s).clone()  # (N, 3, S, S)
        top, left = (s - new_h) // 2, (s - new_w) // 2
        out[:, :, top : top + new_h, left : left + new_w] = x
    return out if batched else out[0]


def check_tensor(image: Tensor, index: int = 0) -> Tensor:
    """A decoded RGB uint8 tensor (3, H, W), e.g. from ``torchvision.io.decode_jpeg``."""
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise InvalidImageError(
            f"image {index}: expected a uint8 tensor (3, H, W) RGB, "
            f"got {image.dtype} {tuple(image.shape)}"
        )
    if image.shape[1] < MIN_IMAGE_SIDE or image.shape[2] < MIN_IMAGE_SIDE:
        raise InvalidImageError(
            f"image {index}: {image.shape[2]}x{image.shape[1]} pixels is too small "
            f"(accepted: at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels)"
        )
    return image


def to_batch(
    images: Sequence[np.ndarray | Tensor], spec: Preprocess, *, device: torch.device | str = "cpu"
) -> Tensor:
    """RGB uint8 images of any sizes → normalised float batch (B, 3, S, S), channels_last.

    Each image is a numpy array (H, W, 3) or a torch tensor (3, H, W), on any device.
    Frames of one stream share a size: each size group is stacked on the host, moved
    to the device in one copy and fitted in one call, not image by image.
    """
    checked: list[np.ndarray | Tensor] = [
        check_tensor(image, i) if isinstance(image, Tensor) else check_image(image, i)
        for i, image in enumerate(images)
    ]
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(checked):
        size = (image.shape[1], image.shape[2]) if isinstance(image, Tensor) else image.shape[:2]
        by_size.setdefault((int(size[0]), int(size[1])), []).append(i)
    batch = torch.empty(len(checked), 3, spec.size, spec.size, device=device)
    for indices in by_size.values():
        group = _stack([checked[i] for i in indices], device)  # (n, 3, H, W) uint8
        batch[torch.tensor(indices, device=device)] = fit_image(group, spec)
    mean = torch.tensor(spec.mean, device=batch.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(spec.std, device=batch.device).view(1, 3, 1, 1) * 255.0
    batch = (batch - mean) / std
    return batch.contiguous(memory_format=torch.channels_last)


def _stack(images: list[np.ndarray | Tensor], device: torch.device | str) -> Tensor:
    """Same-size images → (n, 3, H, W) uint8 on ``device``; arrays in one host copy."""
    if all(isinstance(image, np.ndarray) for image in images):
        # Stacked straight into page-locked memory when the device is a GPU: the copy
        # then runs at full PCIe speed, without the driver's staging through a bounce
        # buffer (a batch of 32 photos is ~20 MB). The caching host allocator keeps the
        # buffer until the copy has finished.
        pinned = torch.device(device).type == "cuda"
        height, width = images[0].shape[:2]
        host = torch.empty((len(images), height, width, 3), dtype=torch.uint8, pin_memory=pinned)
        np.stack(images, out=host.numpy())  # (n, H, W, 3)
        # NCHW-contiguous, as fitting expects (same kernels, so the same numbers)
        moved = host.to(device, non_blocking=pinned)
        return moved.permute(0, 3, 1, 2).contiguous()
    return torch.stack(
        [
            image.to(device)
            if isinstance(image, Tensor)
            else torch.from_numpy(np.array(image)).to(device).permute(2, 0, 1)  # a copy
            for image in images
        ]
    )
