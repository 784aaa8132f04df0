"""Search with consensus reranking: the decoder's search, then the neighbours' choice.

``caption_search`` is what inference calls (``Captioner.describe``, ``scenecast
evaluate``): plain :func:`captioner.search.search.search`, unless the config asks for
consensus reranking of a beam search and the model has a neighbour index; then each
image's finished beams are reranked by :mod:`captioner.search.consensus`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from captioner.model import Decoder
from captioner.search.consensus import NeighbourIndex, combined
from captioner.search.hold import CUT_SIMILARITY, Frame, Shown, ShownCaptions, hold
from captioner.search.search import (
    Hypothesis,
    SearchConfig,
    beam_search_nbest,
    score_captions,
    search,
)
from captioner.vocab import Vocabulary


def reranks(config: SearchConfig, index: NeighbourIndex | None) -> bool:
    """Whether ``config`` reranks with ``index``."""
    return (
        index is not None and config.consensus_k > 0 and config.method == "beam" and config.beam > 1
    )


def pooled(features: Tensor) -> Tensor:
    """Grid features (B, P, D) → mean over the grid, L2-normalised (B, D), on their device."""
    mean = features.float().mean(dim=1)  # (B, D)
    return torch.nn.functional.normalize(mean, dim=1)


def caption_search(
    decoder: Decoder,
    features: Tensor,
    vocab: Vocabulary,
    config: SearchConfig,
    index: NeighbourIndex | None = None,
    *,
    sources: Sequence[str | None] | None = None,
    shown: ShownCaptions | None = None,
) -> list[Hypothesis]:
    """One hypothesis per image (B, P, D): searched, and reranked where asked for.

    ``sources`` (one per image, in stream order; None: a lone image) and ``shown``
    (what each source showed before) turn on the caption hold of
    :mod:`captioner.search.hold` when the config has a ``hold_margin``; ``shown`` is updated.
    """
    if index is None or not reranks(config, index):
        return search(decoder, features, vocab, config)
    finished = beam_search_nbest(decoder, features, vocab, config, n=config.beam)
    keys = pooled(features)
    neighbours = index.nearest(keys, min(config.consensus_k, len(index)))
    words = [[vocab.decode(h.ids) for h in candidates] for candidates in finished]
    agreement = index.consensus_batch(words, neighbours)
    scores = [
        combined(agree, np.array([h.normalized for h in candidates]), config.consensus_weight)
        for candidates, agree in zip(finished, agreement, strict=True)
    ]
    if sources is None or shown is None or config.hold_margin is None:
        return [cands[int(np.argmax(s))] for cands, s in zip(finished, scores, strict=True)]
    if len(sources) != len(finished):
        raise ValueError(f"{len(sources)} sources for {len(finished)} images")
    held = _Held(decoder, features, vocab, config, index, neighbours)
    return held.choose(finished, scores, keys, list(sources), shown)


class _Held:
    """The caption hold over one batch's reranked candidates (captioner/hold.py)."""

    def __init__(
        self,
        decoder: Decoder,
        features: Tensor,
        vocab: Vocabulary,
        config: SearchConfig,
        index: NeighbourIndex,
        neighbours: np.ndarray,
    ) -> None:
        self.decoder, self.features, self.vocab, self.config = decoder, features, vocab, config
        self.index, self.neighbours = index, neighbours
        self.forced: dict[tuple[int, tuple[int, ...]], Hypothesis] = {}

    def choose(
        self,
        finished: list[list[Hypothesis]],
        scores: list[np.ndarray],
        keys: Tensor,
        sources: list[str | None],
        shown: ShownCaptions,
    ) -> list[Hypothesis]:
        follows = _follows(keys, sources, shown)
        frames = []
        for j, (candidates, s) in enumerate(zip(finished, scores, strict=True)):
            best = int(np.argmax(s))
            frames.append(
                Frame(
                    source=sources[j],
                    best=tuple(candidates[best].ids),
                    best_score=float(s[best]),
                    follows=follows[j],
                    known={tuple(h.ids): float(v) for h, v in zip(candidates, s, strict=True)},
                )
            )
        before = {}
        for name in {s for s in sources if s is not None}:
            if (m := shown.get(name)) is not None and (ids := self._ids(m.tokens)) is not None:
                before[name] = ids
        margin = self.config.hold_margin
        assert margin is not None
        chosen = hold(frames, before, self._score, margin)
        out = []
        for j, ids in enumerate(chosen):
            own = [h for h in finished[j] if tuple(h.ids) == ids]
            out.append(own[0] if own else self.forced[(j, ids)])
        last = {source: j for j, source in enumerate(sources) if source is not None}
        for source, j in last.items():  # what each source shows after its last frame here
            words = tuple(self.vocab.decode(chosen[j]))
            shown.put(
                source, Shown(tokens=words, pooled=keys[j].float().cpu().clone())
            )  # not a view: the batch goes
        return out

    def _ids(self, tokens: tuple[str, ...]) -> tuple[int, ...] | None:
        """A shown caption's token ids; None if this model lacks one of its words (a
        caption another model wrote: not held)."""
        ids = tuple(self.vocab.index.get(w, -1) for w in tokens)
        return None if -1 in ids or not ids else ids

    def _score(self, asked: list[tuple[int, tuple[int, ...]]]) -> list[float]:
        """Shown captions scored on frames: teacher forcing, then the neighbours' vote."""
        rows = [j for j, _ in asked]
        captions = [list(ids) for _, ids in asked]
        index = torch.tensor(rows, device=self.features.device)
        hyps = score_captions(
            self.decoder, self.features.index_select(0, index), self.vocab, self.config, captions
        )
        agreement = self.index.consensus_batch(
            [[self.vocab.decode(ids)] for ids in captions], self.neighbours[rows]
        )
        weight = self.config.consensus_weight
        out = []
        for pair, h, agree in zip(asked, hyps, agreement, strict=True):
            self.forced[pair] = h
            out.append(float(combined(agree, np.array([h.normalized]), weight)[0]))
        return out


def _follows(keys: Tensor, sources: Sequence[str | None], shown: ShownCaptions) -> list[bool]:
    """For each frame, whether it continues its source's previous frame (in this batch,
    or the one ``shown`` remembers): cosine of pooled features >= CUT_SIMILARITY."""
    pairs: list[tuple[int, Tensor]] = []  # (frame, its predecessor's pooled features)
    last: dict[str, int] = {}
    for j, source in enumerate(sources):
        if source is None:
            continue
        if source in last:
            pairs.append((j, keys[last[source]]))
        elif (before := shown.get(source)) is not None and before.pooled.shape == keys.shape[1:]:
            pairs.append((j, before.pooled.to(keys.device, torch.float32)))
        last[source] = j
    follows = [False] * len(sources)
    if pairs:
        rows = torch.tensor([j for j, _ in pairs], device=keys.device)
        previous = torch.stack([p for _, p in pairs])  # (n, D)
        cosines = (keys.index_select(0, rows) * previous).sum(dim=1).cpu().tolist()
        for (j, _), cosine in zip(pairs, cosines, strict=True):
            follows[j] = cosine >= CUT_SIMILARITY
    return follows
