"""Caption hold: a source keeps its caption while the new frames still fit it.

Each frame captioned on its own gets a new wording almost every time, even when
nothing moved: on a still scene filmed with a slight camera shake (val photos,
five frames each), 80 % of consecutive frames changed caption, because beam search
and the consensus vote flip on small perturbations. A viewer sees a caption that
never settles, and subtitles get a new cue every second.

The hold is hysteresis on the search's own score (consensus + weight × normalised
log-probability, :mod:`captioner.search.reranked`). A frame that continues its source's
picture (the cosine of its pooled features with the previous frame's is at least
:data:`CUT_SIMILARITY`) keeps the caption its source shows, scored on this frame by
teacher forcing, as long as that score is within ``margin`` of the best caption the
search found for this frame. Otherwise (a cut, or a caption that no longer fits) the
frame takes its own best caption. On that test video, margin 0.04 cut the changes
to 7 % with CIDEr-D no lower (captioner/MODEL_CARD.md, "Caption hold").

This module is the decision, without a model: :func:`hold` walks each source's
frames in order and asks a scoring function for the scores it lacks. Frames of one
source in one batch depend on each other (a frame holds what the previous one
showed); rather than scoring them one at a time, it assumes the caption held at a
frame stays held through the rest of that picture, asks for all those scores in one
call, and goes on from there: one call per batch, plus one per caption that stops
fitting within a batch. :class:`ShownCaptions` remembers what each source showed
between batches.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from torch import Tensor

# Frames less similar than this to their predecessor start afresh (a cut). Pooled
# EfficientNet-Lite0 features: consecutive frames of one scene under camera shake
# and slow zoom are >= 0.86 (1st percentile; median 0.95), different val photos
# <= 0.61 (max of 999 pairs).
CUT_SIMILARITY = 0.8

K = TypeVar("K", bound=Hashable)  # a caption, as its search hands it over (token ids)


@dataclass(frozen=True)
class Shown:
    """What a source shows: its caption, and the frame it was last shown for."""

    tokens: tuple[str, ...]
    pooled: Tensor  # (D,) on the CPU: L2-normalised mean of the frame's grid features

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with its features as a NumPy array. Through a multiprocessing pipe
        (the worker and its model's process swap states every batch) torch sends a
        tensor through shared memory and a file-descriptor handshake: ~1 ms a state
        against ~0.01 ms."""
        return (_shown, (self.tokens, self.pooled.numpy()))


def _shown(tokens: tuple[str, ...], pooled: np.ndarray) -> Shown:
    return Shown(tokens, torch.from_numpy(pooled))


class ShownCaptions:
    """The caption each source showed last, for the sources seen most recently."""

    def __init__(self, max_sources: int = 1024) -> None:
        if max_sources < 1:
            raise ValueError(f"max_sources must be >= 1, got {max_sources}")
        self.max_sources = max_sources
        self._shown: OrderedDict[str, Shown] = OrderedDict()

    def __len__(self) -> int:
        return len(self._shown)

    def get(self, source: str) -> Shown | None:
        return self._shown.get(source)

    def snapshot(self) -> dict[str, Shown]:
        """The states now, for :meth:`set_since`."""
        return dict(self._shown)

    def set_since(self, snapshot: dict[str, Shown]) -> dict[str, Shown]:
        """The states put since ``snapshot`` was taken (a captioner's updates)."""
        return {s: st for s, st in self._shown.items() if st is not snapshot.get(s)}

    def put(self, source: str, shown: Shown) -> None:
        self._shown[source] = shown
        self._shown.move_to_end(source)
        while len(self._shown) > self.max_sources:
            self._shown.popitem(last=False)


@dataclass(frozen=True)
class Frame(Generic[K]):
    """One image of a batch, as the hold sees it."""

    source: str | None  # None: a lone image, never held
    best: K  # the caption its own search chose
    best_score: float
    follows: bool  # continues the picture of its source's previous frame (no cut)
    known: dict[K, float]  # scores it already has (its candidates'), by caption


ScoreFn = Callable[[list[tuple[int, K]]], Sequence[float]]


def hold(
    frames: Sequence[Frame[K]],
    before: dict[str, K],
    score: ScoreFn[K],
    margin: float,
) -> list[K]:
    """The caption each frame shows, in order.

    ``before``: what each source showed before this batch. ``score`` gets (frame
    index, caption) pairs and returns their scores on those frames, comparable with
    ``best_score``. A frame holds its source's shown caption when it ``follows`` and
    that caption scores at least ``best_score - margin`` on it.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    known = [dict(f.known) for f in frames]
    shown: list[K | None] = [None] * len(frames)
    chains: dict[str, list[int]] = {}
    for j, f in enumerate(frames):
        if f.source is None:
            shown[j] = f.best
        else:
            chains.setdefault(f.source, []).append(j)
    walks = [_Walk(source, chain) for source, chain in chains.items()]
    while walks:
        asked: list[tuple[int, K]] = []
        for walk in walks:
            while walk.pos < len(walk.chain):
                j = walk.chain[walk.pos]
                f = frames[j]
                held = shown[walk.chain[walk.pos - 1]] if walk.pos else before.get(walk.source)
                if held is None or not f.follows:
                    shown[j] = f.best
                elif held in known[j]:
                    shown[j] = held if known[j][held] >= f.best_score - margin else f.best
                else:  # assume it stays held through this picture: ask for all of it
                    rest = walk.chain[walk.pos :]
                    run = [rest[0], *_while_follows(frames, rest[1:])]
                    asked += [(i, held) for i in run if held not in known[i]]
                    break
                walk.pos += 1
        walks = [w for w in walks if w.pos < len(w.chain)]
        if not asked:
            break
        for (i, caption), value in zip(asked, score(asked), strict=True):
            known[i][caption] = float(value)
    out: list[K] = []
    for decided in shown:
        assert decided is not None  # every chain was walked to its end
        out.append(decided)
    return out


@dataclass
class _Walk:
    source: str
    chain: list[int]  # the source's frames in this batch, in order
    pos: int = 0  # the next one to decide


def _while_follows(frames: Sequence[Frame[K]], chain: Sequence[int]) -> list[int]:
    """The leading frames of ``chain`` that continue the picture."""
    out = []
    for j in chain:
        if not frames[j].follows:
            break
        out.append(j)
    return out
