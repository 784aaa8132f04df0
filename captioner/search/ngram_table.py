"""Every 1..4-gram of a corpus of captions as an integer id, found with array operations.

The consensus index (``captioner.search.consensus``) needs, for its 13 k training captions,
which n-grams each caption has and how often: 460 k occurrences of 221 k distinct
n-grams. Counted in Python (a dict per caption, then a dict of all n-grams) that took
~1 s of every model load; here it is a few sorts.

An n-gram is its words' ids (1-based; 0 pads a shorter n-gram to 4), packed in two
int64 keys (words 1-2, words 3-4), each pair of keys interned by ``np.unique``, and the
pair of those ids interned again: exact, with no limit on the vocabulary but int64's
(about 3·10⁹ distinct words).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MAX_N = 4


@dataclass(frozen=True)
class Occurrences:
    """Each (caption, n-gram) pair of the corpus once, grouped by caption in order."""

    caption: npt.NDArray[np.intp]  # (E,) caption index
    gram: npt.NDArray[np.intp]  # (E,) n-gram id
    order: npt.NDArray[np.intp]  # (E,) n - 1
    count: npt.NDArray[np.intp]  # (E,) times the n-gram occurs in the caption


class NgramTable:
    """The n-grams (n = 1..4) of ``captions``: ids ``0..size-1``, their occurrences, and
    the ids of any other n-grams (:meth:`ids`, -1 for those the corpus lacks)."""

    def __init__(self, captions: Sequence[Sequence[str]]) -> None:
        self._words: dict[str, int] = {}
        lengths = np.array([len(c) for c in captions], dtype=np.intp)
        total = int(lengths.sum())
        words = np.fromiter(
            (self._words.setdefault(w, len(self._words) + 1) for c in captions for w in c),
            dtype=np.int64,
            count=total,
        )
        self._base = len(self._words) + 1
        padded = np.concatenate([words, np.zeros(MAX_N, np.int64)])
        caption_of = np.repeat(np.arange(len(captions)), lengths)  # (T,) per token
        left = np.repeat(lengths, lengths) - (
            np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        )  # (T,) tokens from here to the caption's end
        starts, orders = [], []
        for n in range(1, MAX_N + 1):
            at = np.flatnonzero(left >= n)
            starts.append(at)
            orders.append(np.full(len(at), n - 1, dtype=np.intp))
        start, order = np.concatenate(starts), np.concatenate(orders)
        grams = np.stack(
            [np.where(j <= order, padded[start + j], 0) for j in range(MAX_N)], axis=1
        )  # (M, 4) word ids, 0-padded
        first, second = self._keys(grams)
        self._first, first_id = np.unique(first, return_inverse=True)
        self._second, second_id = np.unique(second, return_inverse=True)
        self._grams, gram = np.unique(first_id * len(self._second) + second_id, return_inverse=True)
        self.size = len(self._grams)
        self.order_of = np.empty(self.size, dtype=np.intp)
        self.order_of[gram] = order
        pair, count = np.unique(caption_of[start] * self.size + gram, return_counts=True)
        self.occurrences = Occurrences(
            caption=(pair // self.size).astype(np.intp),
            gram=(pair % self.size).astype(np.intp),
            order=self.order_of[pair % self.size],
            count=count.astype(np.intp),
        )

    def _keys(self, grams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(M, 4) word ids → two int64 keys each (words 1-2, words 3-4)."""
        return grams[:, 0] * self._base + grams[:, 1], grams[:, 2] * self._base + grams[:, 3]

    def ids(self, grams: Sequence[Sequence[str]]) -> npt.NDArray[np.intp]:
        """The id of each n-gram (1 to 4 words), -1 where the corpus lacks it."""
        if not grams:
            return np.zeros(0, dtype=np.intp)
        rows = np.zeros((len(grams), MAX_N), dtype=np.int64)
        for row, gram in enumerate(grams):
            rows[row, : len(gram)] = [self._words.get(w, -1) for w in gram]
        known = (rows >= 0).all(axis=1)
        rows[~known] = 0
        out = np.full(len(grams), -1, dtype=np.intp)
        first, second = self._keys(rows)
        first_id, second_id = _find(self._first, first), _find(self._second, second)
        both = known & (first_id >= 0) & (second_id >= 0)
        out[both] = _find(self._grams, first_id[both] * len(self._second) + second_id[both])
        return out


def _find(sorted_keys: np.ndarray, keys: np.ndarray) -> npt.NDArray[np.intp]:
    """Index of each key in ``sorted_keys`` (unique, ascending), -1 where absent."""
    at = np.searchsorted(sorted_keys, keys)
    found = at < len(sorted_keys)
    found[found] = sorted_keys[at[found]] == keys[found]
    return np.where(found, at, -1).astype(np.intp)
