"""Word vocabulary: tokens ↔ ids, with the four special tokens at fixed ids."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Lower-case words without punctuation, as the dataset's ``tokens`` are."""
    return _WORD.findall(text.lower())


class Vocabulary:
    """Ids 0..3 are ``<pad> <start> <end> <unk>``; words follow in a fixed order."""

    def __init__(self, words: Sequence[str]) -> None:
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}, got {tuple(words[:4])}")
        if len(set(words)) != len(words):
            raise ValueError("a vocabulary must not repeat a word")
        self.words: list[str] = list(words)
        self.index: dict[str, int] = {w: i for i, w in enumerate(self.words)}

    pad_id, start_id, end_id, unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, captions: Iterable[Sequence[str]], *, min_freq: int = 3) -> Vocabulary:
        """Words seen at least ``min_freq`` times, most frequent first (ties: alphabetical)."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counts = Counter(w for tokens in captions for w in tokens)
        kept = sorted(
            (w for w, n in counts.items() if n >= min_freq and w not in SPECIALS),
            key=lambda w: (-counts[w], w),
        )
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Sequence[str], *, max_len: int | None = None) -> list[int]:
        """``<start> w1 .. wn <end>``, words beyond ``max_len`` dropped, unknown → ``<unk>``."""
        words = tokens if max_len is None else tokens[:max_len]
        ids = [self.index.get(w, self.unk_id) for w in words]
        return [self.start_id, *ids, self.end_id]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words of ``ids`` up to the first ``<end>``, without special tokens."""
        words = []
        for i in ids:
            if i == self.end_id:
                break
            if i in (self.pad_id, self.start_id):
                continue
            words.append(self.words[i])
        return words
