"""Segments: consecutive captions of a source that say the same thing share one.

The rule, in one place: captions "say the same thing" when their normalised texts
(lower case, whitespace collapsed to single spaces) are equal; each caption keeps the
previous one's ``segment_id`` if so, else takes the next. Live captions get their id
from the publish script (:mod:`worker.bus.publish`, atomically in Redis, from the
``norm`` this module computes); offline output (``scenecast caption``) uses
:func:`segment_ids`. A test feeds both the same texts and compares.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def normalize_text(text: str) -> str:
    """What "says the same thing" compares: lower case, whitespace collapsed."""
    return " ".join(text.lower().split())


def segment_ids(texts: Iterable[str]) -> list[int]:
    """The ``segment_id`` of each caption of one source, in order, from 0."""
    ids: list[int] = []
    previous: str | None = None
    for text in texts:
        norm = normalize_text(text)
        ids.append(0 if not ids else ids[-1] + (norm != previous))
        previous = norm
    return ids


def is_last_of_segment(ids: Sequence[int]) -> list[bool]:
    """For each caption, whether it ends its segment (known only with the next one)."""
    return [i == len(ids) - 1 or ids[i + 1] != ids[i] for i in range(len(ids))]
