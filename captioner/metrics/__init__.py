"""Caption evaluation metrics as the COCO caption evaluation (pycocoevalcap) computes them.

Pure Python + numpy (no Java, no network). Inputs are already tokenized: one list of
lower-case words per hypothesis, and per hypothesis a non-empty list of tokenized references.
"""

from __future__ import annotations

from collections.abc import Sequence

from captioner.metrics.bleu import corpus_bleu
from captioner.metrics.cider import cider_d

__all__ = ["cider_d", "corpus_bleu", "score_all"]


def score_all(
    hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]]
) -> dict[str, float]:
    """Corpus BLEU-1..4 and CIDEr-D: keys ``BLEU-1`` .. ``BLEU-4`` and ``CIDEr-D``."""
    bleu = corpus_bleu(hypotheses, references, max_n=4)
    scores = {f"BLEU-{k}": value for k, value in enumerate(bleu, start=1)}
    scores["CIDEr-D"] = cider_d(hypotheses, references)[0]
    return scores
