"""Iterate in a background thread, a bounded number of items ahead of the consumer.

Video decoding (OpenCV releases the GIL) then overlaps what the consumer does with
each frame: publishing to Redis in a file job, captioning in ``scenecast caption``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def read_ahead(
    items: Iterator[T], *, size: int, name: str = "read-ahead"
) -> Generator[T, None, None]:
    """``items`` produced by a thread, at most ``size`` ahead; its errors re-raised here.

    Close the generator (``contextlib.closing``) to stop and join the thread before
    closing what it reads from.
    """
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                box.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("end", None)
        except BaseException as exc:  # handed to the consumer, raised there
            put("error", exc)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()
