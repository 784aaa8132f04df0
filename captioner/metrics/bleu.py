"""Corpus BLEU-1..n exactly as the COCO caption evaluation computes it.

Reference implementation: ``pycocoevalcap/bleu/bleu_scorer.py`` (``BleuScorer.compute_score``)
and ``pycocoevalcap/bleu/bleu.py`` (``Bleu.compute_score``, which calls it with
``option="closest"``) in https://github.com/tylin/coco-caption, the same code that the
``pycocoevalcap`` package (https://github.com/salaniz/pycocoevalcap) ships.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["check_corpus", "corpus_bleu", "ngram_counts"]

# The smoothing constants of bleu_scorer.py: ``tiny`` keeps a zero match count at (almost)
# zero, ``small`` keeps a zero guess count from dividing by zero.
_TINY = 1e-15
_SMALL = 1e-9


def check_corpus(
    hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]]
) -> None:
    """Raise ``ValueError`` unless there is one non-empty reference list per hypothesis.

    Sentences must be token lists: a bare ``str`` (which would be read as a list of
    characters) is refused as well.
    """
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise ValueError("hypotheses and references must be sequences of token lists, not str")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"got {len(hypotheses)} hypotheses but {len(references)} reference lists; "
            "there must be exactly one reference list per hypothesis"
        )
    if not hypotheses:
        raise ValueError("the corpus is empty: need at least one hypothesis")
    for i, (hyp, refs) in enumerate(zip(hypotheses, references, strict=True)):
        if isinstance(hyp, str):
            raise ValueError(f"hypothesis {i} is a str; pass a list of tokens")
        if isinstance(refs, str):
            raise ValueError(f"references of item {i} is a str; pass a list of token lists")
        if len(refs) == 0:
            raise ValueError(f"item {i} has an empty reference list; need at least one reference")
        for j, ref in enumerate(refs):
            if isinstance(ref, str):
                raise ValueError(f"reference {j} of item {i} is a str; pass a list of tokens")


def ngram_counts(words: Sequence[str], n: int) -> dict[tuple[str, ...], int]:
    """Counts of every 1..n-gram of ``words`` (``precook`` in the pycocoevalcap scorers).

    Insertion order is the reference's: all unigrams left to right, then bigrams, and so on.
    """
    counts: dict[tuple[str, ...], int] = {}
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            ngram = tuple(words[i : i + k])
            counts[ngram] = counts.get(ngram, 0) + 1
    return counts


def _closest_ref_len(ref_lens: Sequence[int], hyp_len: int) -> int:
    # ``min((abs(l - testlen), l) for l in reflen)[1]``: the closest length, ties -> the shorter.
    return min((abs(length - hyp_len), length) for length in ref_lens)[1]


def corpus_bleu(
    hypotheses: Sequence[Sequence[str]],
    references: Sequence[Sequence[Sequence[str]]],
    max_n: int = 4,
) -> list[float]:
    """Corpus-level BLEU-1..``max_n`` as pycocoevalcap's ``Bleu(max_n).compute_score``.

    ``hypotheses[i]`` is the tokenized caption of item ``i`` and ``references[i]`` its
    tokenized reference captions (at least one). The computation, as in ``bleu_scorer.py``:

    * per hypothesis, ``correct[k]`` = sum over its k-grams of
      ``min(count in hypothesis, max count in any one reference)`` and
      ``guess[k] = max(0, len(hyp) - k + 1)``; both are summed over the corpus;
    * per hypothesis, the effective reference length is the reference length closest to the
      hypothesis length (ties: the shorter one, ``option="closest"``); these and the
      hypothesis lengths are summed over the corpus;
    * ``BLEU-n = (prod_{k<=n} (correct_k + 1e-15) / (guess_k + 1e-9)) ** (1/n)``, times
      ``exp(1 - 1/ratio)`` when ``ratio = (hyp_len + 1e-15) / (ref_len + 1e-9) < 1``.

    Returns ``[BLEU-1, ..., BLEU-max_n]``.
    """
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1, got {max_n}")
    check_corpus(hypotheses, references)

    total_correct = [0] * max_n
    total_guess = [0] * max_n
    total_hyp_len = 0
    total_ref_len = 0
    for hyp, refs in zip(hypotheses, references, strict=True):
        # cook_refs: reference lengths and, per n-gram, its largest count in one reference.
        ref_lens: list[int] = []
        max_ref_counts: dict[tuple[str, ...], int] = {}
        for ref in refs:
            ref_lens.append(len(ref))
            for ngram, count in ngram_counts(ref, max_n).items():
                max_ref_counts[ngram] = max(max_ref_counts.get(ngram, 0), count)
        # cook_test: clipped matches and guesses per order.
        hyp_len = len(hyp)
        for ngram, count in ngram_counts(hyp, max_n).items():
            total_correct[len(ngram) - 1] += min(max_ref_counts.get(ngram, 0), count)
        for k in range(1, max_n + 1):
            total_guess[k - 1] += max(0, hyp_len - k + 1)
        total_hyp_len += hyp_len
        total_ref_len += _closest_ref_len(ref_lens, hyp_len)

    ratio = (total_hyp_len + _TINY) / (total_ref_len + _SMALL)  # N.B.: avoids 0 / 0
    brevity = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
    scores: list[float] = []
    precision_product = 1.0
    for nn in range(1, max_n + 1):
        precision_product *= float(total_correct[nn - 1] + _TINY) / (total_guess[nn - 1] + _SMALL)
        scores.append(precision_product ** (1.0 / nn) * brevity)
    return scores
