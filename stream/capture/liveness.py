"""Whether a source's capture is still there: pure, no I/O.

A capture says what it is doing (``status:{src}``: connecting, live, reconnecting,
ended, error), but one that dies without a word — killed, out of memory, its machine
gone — leaves its last word, often "live", standing for good: the viewer would show
a live camera with no captions. So every capture notes the time in ``capture:{src}``
(``seen_ms``) every ``HEARTBEAT_S`` while it runs, in a thread of its own (it beats
through open timeouts and reconnect backoffs too), and the server takes a source
whose state says its capture runs but whose heartbeat is older than ``SILENT_MS`` for
an ``error``, until the heartbeat comes back. A source without any heartbeat (a
capture older than this rule) is not judged.
"""

from __future__ import annotations

from collections.abc import Mapping

HEARTBEAT_S = 2.0
SILENT_MS = 10_000.0  # five beats missed
RUNNING = frozenset({"connecting", "live", "reconnecting"})  # states a capture is in


def silent_sources(
    states: Mapping[str, str], seen_ms: Mapping[str, float | None], *, now_ms: float
) -> dict[str, float]:
    """Source → ms since its capture was last heard, for the sources whose state says
    their capture runs and whose heartbeat is older than ``SILENT_MS``."""
    out = {}
    for source, state in states.items():
        seen = seen_ms.get(source)
        if state in RUNNING and seen is not None and now_ms - seen > SILENT_MS:
            out[source] = now_ms - seen
    return out


def silent_detail(state: str, silent_ms: float) -> str:
    """The ``detail`` of the ``error`` a silent capture's source is shown with."""
    return (
        f"its capture has not been heard from for {silent_ms / 1000:.0f} s (it said "
        f"'{state}' last): stopped without a word (killed, or its machine is gone); "
        "shown again when it is back"
    )
