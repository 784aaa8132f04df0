"""CIDEr-D exactly as the COCO caption evaluation computes it.

Reference implementation: ``pycocoevalcap/cider/cider_scorer.py`` (``CiderScorer``) and
``pycocoevalcap/cider/cider.py`` in https://github.com/tylin/coco-caption, the same code that
the ``pycocoevalcap`` package (https://github.com/salaniz/pycocoevalcap) ships. What COCO
reports as "CIDEr" is this CIDEr-D variant (clipped tf-idf products, Gaussian length
penalty, x10), with document frequencies taken from the references of the evaluated corpus.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from captioner.metrics.bleu import check_corpus, ngram_counts

__all__ = ["CiderD", "cider_d"]

_NGram = tuple[str, ...]


class _TfIdf:
    """One sentence as per-order tf-idf vectors (``counts2vec`` in cider_scorer.py)."""

    __slots__ = ("length", "norms", "vecs")

    def __init__(
        self,
        words: Sequence[str],
        n: int,
        doc_freq: dict[_NGram, float],
        log_num_images: float,
    ) -> None:
        self.vecs: list[dict[_NGram, float]] = [{} for _ in range(n)]
        squares = [0.0] * n
        for ngram, term_freq in ngram_counts(words, n).items():
            # idf = log(N) - log(max(1, df)); an n-gram no reference has gets df = 1.
            log_df = float(np.log(max(1.0, doc_freq.get(ngram, 0.0))))
            weight = float(term_freq) * (log_num_images - log_df)
            self.vecs[len(ngram) - 1][ngram] = weight
            squares[len(ngram) - 1] += weight**2
        self.norms = [float(np.sqrt(s)) for s in squares]
        # N.B.: the reference counts the *bigrams* (``if n == 1: length += term_freq``, n being
        # the 0-based order), i.e. len(words) - 1 for a non-empty sentence. Only differences of
        # lengths are used, so this matters only when one of the two sentences is empty.
        self.length = max(len(words) - 1, 0)


def _similarity(hyp: _TfIdf, ref: _TfIdf, n: int, sigma: float) -> list[float]:
    """Clipped cosine per order times the Gaussian length penalty (``sim`` in the reference)."""
    delta = float(hyp.length - ref.length)
    penalty = math.e ** (-(delta**2) / (2 * sigma**2))
    values: list[float] = []
    for k in range(n):
        ref_vec = ref.vecs[k]
        value = 0.0
        for ngram, hyp_weight in hyp.vecs[k].items():
            ref_weight = ref_vec.get(ngram, 0.0)
            # CIDEr-D clipping: min(vec_hyp, vec_ref) * vec_ref instead of vec_hyp * vec_ref.
            value += min(hyp_weight, ref_weight) * ref_weight
        if hyp.norms[k] != 0 and ref.norms[k] != 0:
            value /= hyp.norms[k] * ref.norms[k]
        values.append(value * penalty)
    return values


def cider_d(
    hypotheses: Sequence[Sequence[str]],
    references: Sequence[Sequence[Sequence[str]]],
    *,
    sigma: float = 6.0,
    n: int = 4,
) -> tuple[float, list[float]]:
    """CIDEr-D of tokenized ``hypotheses`` against their tokenized ``references``.

    Returns ``(corpus score, per-item scores)``: the corpus score is the mean of the per-item
    scores, as pycocoevalcap's ``Cider().compute_score`` returns. As in ``cider_scorer.py``:

    * ``df(g)`` = number of items whose references (any of them) contain n-gram ``g``,
      counted over this corpus only; ``idf(g) = log(N) - log(max(1, df(g)))``, N = items;
    * each sentence becomes, per order k = 1..n, a vector ``tf(g) * idf(g)``;
    * against one reference, order k scores
      ``sum_g min(h(g), r(g)) * r(g) / (|h| * |r|)`` (0 if a norm is 0), times
      ``exp(-delta^2 / (2 sigma^2))`` with ``delta`` the difference of the two lengths;
    * an item's score is the mean over the n orders, averaged over its references, x10.

    With a single item every idf is log(1) - log(1) = 0, so every score is 0 (as in the
    reference). pycocoevalcap only supports ``n=4``; other values extend the same formula.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    check_corpus(hypotheses, references)
    scores = CiderD(references, sigma=sigma, n=n).scores(hypotheses)
    return float(np.mean(np.array(scores))), scores


class CiderD:
    """CIDEr-D with document frequencies fixed by a reference corpus.

    ``cider_d`` builds one for the evaluated corpus. Self-critical training builds one
    over the training references once, then scores many sampled captions of item ``i``
    with ``score(hyp, i)``: the reference tf-idf vectors are computed only once.
    """

    def __init__(
        self, references: Sequence[Sequence[Sequence[str]]], *, sigma: float = 6.0, n: int = 4
    ) -> None:
        self.n, self.sigma = n, sigma
        # Document frequency: each item adds 1 for every distinct n-gram of its references.
        doc_freq: dict[_NGram, float] = {}
        for refs in references:
            seen: set[_NGram] = set()
            for ref in refs:
                seen.update(ngram_counts(ref, n))
            for ngram in seen:
                doc_freq[ngram] = doc_freq.get(ngram, 0.0) + 1.0
        self.doc_freq = doc_freq
        self.log_num_images = float(np.log(float(len(references))))
        self.refs = [
            [_TfIdf(ref, n, doc_freq, self.log_num_images) for ref in refs] for refs in references
        ]

    def score(self, hypothesis: Sequence[str], item: int) -> float:
        """CIDEr-D of one hypothesis against the references of item ``item``."""
        hyp_vec = _TfIdf(hypothesis, self.n, self.doc_freq, self.log_num_images)
        total = np.zeros(self.n)
        for ref_vec in self.refs[item]:
            total += np.array(_similarity(hyp_vec, ref_vec, self.n, self.sigma))
        return float(np.mean(total)) / len(self.refs[item]) * 10.0

    def scores(self, hypotheses: Sequence[Sequence[str]]) -> list[float]:
        """One score per item, hypothesis ``i`` against the references of item ``i``."""
        return [self.score(hyp, i) for i, hyp in enumerate(hypotheses)]
