"""Frames decoded ahead of their batch, kept by key until the batch asks for them.

The model's process decodes each batch's JPEGs in a thread of its own as soon as
the worker's reader has them, while the model captions the batch before; the batch
then takes its frames from here. A frame that never gets captioned (skipped as
stale, or raced by the batch and decoded again there) is forgotten oldest first,
so the store stays bounded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

MISSING = object()  # ``take``: not decoded ahead (a frame that did not decode is None)


class DecodedAhead:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._images: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, image: Any) -> None:
        with self._lock:
            self._images[key] = image
            self._images.move_to_end(key)
            while len(self._images) > self.capacity:
                self._images.popitem(last=False)

    def take(self, key: str) -> Any:
        """The image decoded for ``key`` (removed), ``None`` if it did not decode, or
        ``MISSING`` if it was not decoded ahead."""
        with self._lock:
            return self._images.pop(key, MISSING)

    def __len__(self) -> int:
        with self._lock:
            return len(self._images)
