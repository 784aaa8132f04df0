"""captioner.search.ngram_table: the ids and counts a dict of n-grams would give."""

from __future__ import annotations

import numpy as np

from captioner.metrics.bleu import ngram_counts
from captioner.search.ngram_table import NgramTable


def test_each_captions_ngrams_and_counts_are_a_dicts() -> None:
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(12)]
    captions = [list(rng.choice(words, size=rng.integers(0, 9))) for _ in range(200)]
    captions[5] = ["a", "a", "a", "a", "a"]  # repeats within a caption
    table = NgramTable(captions)
    seen = table.occurrences
    assert np.all(np.diff(seen.caption) >= 0)  # grouped by caption, in order
    names: dict[int, tuple[str, ...]] = {}
    for c, caption in enumerate(captions):
        expected = ngram_counts(caption, 4)
        mine = seen.caption == c
        got = dict(zip(seen.gram[mine].tolist(), seen.count[mine].tolist(), strict=True))
        ids = table.ids(list(expected))
        assert (ids >= 0).all() and len(set(ids.tolist())) == len(expected)
        assert {int(i): expected[g] for i, g in zip(ids, expected, strict=True)} == got
        for i, g in zip(ids.tolist(), expected, strict=True):
            assert names.setdefault(i, g) == g  # one id, one n-gram, across captions
            assert table.order_of[i] == len(g) - 1
    assert table.size == len(names)


def test_ngrams_the_corpus_lacks_have_no_id() -> None:
    table = NgramTable([["a", "cat", "on", "a", "bed"], ["a", "dog"]])
    ids = table.ids([("a",), ("a", "cat"), ("cat", "a"), ("zebra",), ("a", "zebra"), ("a", "dog")])
    assert ids[0] >= 0 and ids[1] >= 0 and ids[5] >= 0
    assert list(ids[[2, 3, 4]]) == [-1, -1, -1]
    assert table.ids([]).shape == (0,)
    empty = NgramTable([[], []])
    assert empty.size == 0 and list(empty.ids([("a",)])) == [-1]
