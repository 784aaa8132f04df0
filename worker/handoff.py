"""Hand work to one background thread, in order, with a bounded queue.

The worker captions batch N while this thread publishes batch N-1: Redis round
trips and entry packing leave the model's critical path (on a GPU they were as long
as the model's own batch time). Items are handled strictly in submission order, so
captions of a source still reach Redis in frame order.

An error in the thread is raised again in the submitting thread, at the next
``submit`` or at ``close``; items after a failed one are not handled.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Generic, Self, TypeVar

T = TypeVar("T")

_DONE = object()


class Handoff(Generic[T]):
    def __init__(self, handle: Callable[[T], None], *, depth: int = 2, name: str = "handoff"):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._handle = handle
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> None:
        """Queue ``item``; blocks while ``depth`` items wait."""
        self._raise_pending()
        while True:
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                self._raise_pending()  # the thread died: do not wait for it forever

    def close(self) -> None:
        """Handle everything submitted, stop the thread, raise its error if any."""
        if self._thread.is_alive():
            while self._thread.is_alive():
                try:
                    self._queue.put(_DONE, timeout=0.1)
                    break
                except queue.Full:
                    continue
            self._thread.join()
        self._raise_pending()

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            try:
                self._handle(item)  # type: ignore[arg-type]
            except BaseException as exc:  # re-raised in the submitting thread
                self._error = exc
                return

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        with contextlib.suppress(BaseException):  # already failing: keep the first error
            self.close()  # still publishes what was captioned
