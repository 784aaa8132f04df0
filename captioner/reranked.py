"""Search with consensus reranking: the decoder's search, then the neighbours' choice.

``caption_search`` is what inference calls (``Captioner.describe``, ``scenecast
evaluate``): plain :func:`captioner.search.search`, unless the config asks for
consensus reranking of a beam search and the model has a neighbour index; then each
image's finished beams are reranked by :mod:`captioner.consensus`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from captioner.consensus import NeighbourIndex, choose
from captioner.model import Decoder
from captioner.search import Hypothesis, SearchConfig, beam_search_nbest, search
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
) -> list[Hypothesis]:
    """One hypothesis per image (B, P, D): searched, and reranked where asked for."""
    if index is None or not reranks(config, index):
        return search(decoder, features, vocab, config)
    finished = beam_search_nbest(decoder, features, vocab, config, n=config.beam)
    neighbours = index.nearest(pooled(features), min(config.consensus_k, len(index)))
    words = [[vocab.decode(h.ids) for h in candidates] for candidates in finished]
    agreement = index.consensus_batch(words, neighbours)
    chosen = []
    for candidates, agree in zip(finished, agreement, strict=True):
        model = np.array([h.normalized for h in candidates])
        chosen.append(candidates[choose(agree, model, config.consensus_weight)])
    return chosen
