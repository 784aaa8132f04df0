"""Score captions against references: BLEU-1..4 and CIDEr-D on a split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from captioner.metrics import score_all
from captioner.model import Decoder
from captioner.search.consensus import NeighbourIndex
from captioner.search.reranked import caption_search
from captioner.search.search import SearchConfig
from captioner.training.data import Item
from captioner.vocab import Vocabulary

METRIC_NAMES = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr-D")


@dataclass(frozen=True)
class Evaluation:
    scores: dict[str, float]
    hypotheses: list[list[str]]
    mean_length: float
    distinct_words: int


def generate(
    decoder: Decoder,
    features: np.ndarray | torch.Tensor,
    vocab: Vocabulary,
    config: SearchConfig,
    *,
    batch_size: int = 100,
    device: torch.device | None = None,
    index: NeighbourIndex | None = None,
) -> list[list[str]]:
    """Captions (as word lists) for cached grid features (N, P, D); reranked by
    consensus with ``index`` where ``config`` asks for it (``captioner.search.reranked``)."""
    decoder.eval()
    device = device or next(decoder.parameters()).device
    out: list[list[str]] = []
    for lo in range(0, len(features), batch_size):
        chunk = torch.as_tensor(np.array(features[lo : lo + batch_size]))  # a writable copy
        chunk = chunk.to(device=device, dtype=torch.float32)
        hyps = caption_search(decoder, chunk, vocab, config, index)
        out.extend(vocab.decode(h.ids) for h in hyps)
    return out


def score(hypotheses: Sequence[Sequence[str]], items: Sequence[Item]) -> Evaluation:
    references = [[list(c) for c in it.captions] for it in items]
    scores = score_all([list(h) for h in hypotheses], references)
    lengths = [len(h) for h in hypotheses]
    return Evaluation(
        scores=scores,
        hypotheses=[list(h) for h in hypotheses],
        mean_length=float(np.mean(lengths)) if lengths else 0.0,
        distinct_words=len({w for h in hypotheses for w in h}),
    )


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per system, the five metrics as columns."""
    header = "| system | " + " | ".join(METRIC_NAMES) + " |"
    lines = [header, "|---" * (len(METRIC_NAMES) + 1) + "|"]
    for name, scores in rows.items():
        cells = " | ".join(f"{scores[m]:.3f}" for m in METRIC_NAMES)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)
