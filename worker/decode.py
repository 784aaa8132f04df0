"""JPEG frames → RGB images: on the GPU with nvJPEG when the worker runs on CUDA."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from worker.bus.entries import MIN_FRAME_SIDE

if TYPE_CHECKING:  # torch is imported where a GPU decodes: the CLI's start need not pay
    import torch

log = logging.getLogger("scenecast.worker")


DECODE_ON = ("device", "cpu")  # the worker's --decode choices
MIN_SIDE = MIN_FRAME_SIDE  # pixels: what the captioner takes


def decode_device(decode_on: str, model_device: str) -> str:
    """The device JPEG frames are decoded on: ``decode_on`` "device" = the model's
    (nvJPEG when it is a GPU), "cpu" = OpenCV whatever the model runs on."""
    if decode_on not in DECODE_ON:
        raise ValueError(f"decode_on must be 'device' or 'cpu', got {decode_on!r}")
    return model_device if decode_on == "device" else "cpu"


def decode_jpegs(
    blobs: Sequence[bytes], *, device: str = "cpu"
) -> list[np.ndarray | torch.Tensor | None]:
    """One RGB image per blob, ``None`` where the bytes are not a decodable JPEG (or
    decode to an image under ``MIN_SIDE`` pixels a side, which the model cannot take).

    CPU: OpenCV, arrays (H, W, 3). CUDA: ``torchvision.io.decode_jpeg(device='cuda')``
    on the whole batch, tensors (3, H, W) left on the GPU; a batch with a corrupt
    frame falls back to one-by-one so the good frames still go through, and a frame
    nvJPEG refuses is decoded by OpenCV and moved to the GPU: ``None`` means that no
    decoder can read it (the worker dead-letters it at once).
    """
    if device.partition(":")[0] == "cuda":
        images = _decode_cuda(blobs, device)
    else:
        images = [_decode_cpu(b) for b in blobs]
    return [image if image is None or _usable(image) else None for image in images]


def _usable(image: np.ndarray | torch.Tensor) -> bool:
    """At least MIN_SIDE pixels a side: (H, W, 3) arrays, (3, H, W) tensors."""
    height, width = image.shape[:2] if isinstance(image, np.ndarray) else image.shape[1:3]
    return min(height, width) >= MIN_SIDE


def _decode_cpu(blob: bytes) -> np.ndarray | None:
    if not blob:
        return None
    if _IMREAD_RGB is not None:  # OpenCV ≥ 4.10 decodes straight to RGB
        image: np.ndarray | None = cv2.imdecode(np.frombuffer(blob, dtype=np.uint8), _IMREAD_RGB)
        return image
    image = cv2.imdecode(np.frombuffer(blob, dtype=np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


_IMREAD_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)


def _decode_cuda(blobs: Sequence[bytes], device: str) -> list[np.ndarray | torch.Tensor | None]:
    """nvJPEG on a side stream, finished before returning.

    torchvision makes the calling thread's current stream wait for its decoder
    (``decode_jpegs_cuda``: ``event.block(current_stream)``); from the worker's reader
    that is the default stream, the one the model's thread launches its search on, so
    the model's kernels queued after a read-ahead decode waited for it. On a stream of
    its own, waited for here (in the reader, off the model's path), the images are
    complete when the model's thread gets them; ``record_stream`` keeps the allocator
    from reusing their memory for the next decode before the caller's stream (the
    default stream in every thread of the worker) has read them.
    """
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    consumer = torch.cuda.current_stream(torch.device(device))
    side = _side_stream(device)
    data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    out: list[np.ndarray | torch.Tensor | None] = []
    with torch.cuda.stream(side):
        try:
            out.extend(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:  # a corrupt frame: one by one, so the good ones go through
            for blob, d in zip(blobs, data, strict=True):
                try:
                    out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
                except RuntimeError as exc:
                    log.warning("nvJPEG refused a frame (%s); decoding it with OpenCV", exc)
                    out.append(_cpu_onto(blob, device))
    side.synchronize()
    for image in out:
        if isinstance(image, torch.Tensor):
            image.record_stream(consumer)
    return out


def _cpu_onto(blob: bytes, device: str) -> torch.Tensor | None:
    """OpenCV's decoding of ``blob`` as a (3, H, W) tensor on ``device``; None if it
    cannot decode it either."""
    import torch

    image = _decode_cpu(blob)
    if image is None:
        return None
    return torch.from_numpy(image).permute(2, 0, 1).contiguous().to(device)


_side_streams: dict[str, torch.cuda.Stream] = {}


def _side_stream(device: str) -> torch.cuda.Stream:
    """One decoding stream per device (and process), made on first use."""
    import torch

    if device not in _side_streams:
        _side_streams[device] = torch.cuda.Stream(torch.device(device))  # type: ignore[no-untyped-call]
    return _side_streams[device]
