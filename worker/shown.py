"""What each source shows, shared between workers through Redis (the caption hold).

The caption hold (``captioner/hold.py``) needs, for a source's next frame, the caption
the source showed last and that frame's pooled features. Workers of one consumer
group take a source's frames in turns (Redis hands each new frame to whichever
worker asks first), so a worker's own memory would be of frames two or more back and
each worker would hold a caption of its own: captions alternating between workers.
So each worker writes what a source shows to ``shown:{src}`` (same hash tag as the
source's streams) when it publishes, and reads it with the source's frames; it keeps
its own copy too, which is newer than Redis's while its last batch is still being
published. Whichever is newer (by frame ``seq``) wins; a state from this frame or
later (a frame reclaimed out of order) is not used.

``SHOWN_LUA`` writes only a newer state, so a slow worker cannot roll a source back;
the key expires an hour after its last write. Pure functions but the script.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from captioner.search.hold import Shown
from worker.bus.keys import shown_key
from worker.bus.scripts import lua

SHOWN_TTL_MS = 3_600_000
FIELDS = ("seq", "model", "tokens", "pooled")

SHOWN_LUA = lua("shown")


@dataclass(frozen=True)
class SeqShown:
    """A source's shown caption as of its frame ``seq``."""

    seq: int
    shown: Shown


def shown_args(
    source: str, state: SeqShown, model: str
) -> tuple[list[str], list[bytes | str | int]]:
    """KEYS and ARGV of :data:`SHOWN_LUA`: the pooled features as float16 bytes."""
    pooled = state.shown.pooled.detach().cpu().numpy().astype(np.float16).tobytes()
    tokens = " ".join(state.shown.tokens)
    return [shown_key(source)], [state.seq, model, tokens, pooled, SHOWN_TTL_MS]


def decode_shown(values: list[bytes | None], model: str) -> SeqShown | None:
    """An ``HMGET`` of :data:`FIELDS`; None if absent, malformed or another model's."""
    if len(values) != len(FIELDS) or any(v is None for v in values):
        return None
    seq, owner, tokens, pooled = values
    assert seq is not None and owner is not None and tokens is not None and pooled is not None
    if owner.decode() != model or len(pooled) % 2:
        return None
    try:
        number = int(seq)
    except ValueError:
        return None
    vector = torch.from_numpy(np.frombuffer(pooled, dtype=np.float16).astype(np.float32))
    words = tuple(tokens.decode().split())
    return SeqShown(number, Shown(words, vector)) if words else None


def newest_before(first_seq: int, mine: SeqShown | None, shared: SeqShown | None) -> Shown | None:
    """What a source showed before its frame ``first_seq``: the newer of this worker's
    and Redis's states, if it is from an earlier frame."""
    states = [s for s in (mine, shared) if s is not None and s.seq < first_seq]
    return max(states, key=lambda s: s.seq).shown if states else None


class LocalShown:
    """A worker's own states, for the most recently captioned sources: each batch's
    replace the ones before, whatever their ``seq`` (a source whose numbering started
    again must not be stuck behind its old frames; an older frame reclaimed from a dead
    worker leaves an older state here, and Redis's newer one wins next time)."""

    def __init__(self, max_sources: int = 1024) -> None:
        self.max_sources = max_sources
        self._states: OrderedDict[str, SeqShown] = OrderedDict()

    def get(self, source: str) -> SeqShown | None:
        return self._states.get(source)

    def update(self, states: Mapping[str, SeqShown]) -> None:
        for source, state in states.items():
            self._states[source] = state
            self._states.move_to_end(source)
        while len(self._states) > self.max_sources:
            self._states.popitem(last=False)
