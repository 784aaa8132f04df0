"""How a search turns features into words: :class:`SearchConfig`, validated once.

Apart from ``captioner.search.search`` so that commands can read and check search settings
(flags, checkpoints' stored settings) without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from captioner.exceptions import SearchConfigError

Method = Literal["greedy", "beam", "sample"]
METHODS: tuple[str, ...] = ("greedy", "beam", "sample")


@dataclass(frozen=True)
class SearchConfig:
    """How to turn features into words. Validated once, here."""

    method: Method = "beam"
    beam: int = 3
    max_len: int = 20
    length_penalty: float = 0.0  # rank finished beams by score / (length ** length_penalty)
    no_repeat_ngram: int = 0  # 0: off; n: never repeat an n-gram within a caption
    no_repeat_words: bool = False  # each word at most once, function words excepted
    # never emitted: words, or phrases of several ("white background": "background" is
    # banned right after "white"); words the model lacks make an entry void
    banned_words: tuple[str, ...] = ()
    allow_unk: bool = False
    top_k: int = 0  # sampling: 0 = the whole vocabulary
    temperature: float = 1.0
    seed: int = 0
    # Beam search: rerank each image's finished beams by their agreement with the
    # captions of its k nearest training images (captioner/consensus.py); 0: off, and
    # off for a model without a neighbour index.
    consensus_k: int = 0
    consensus_weight: float = 0.02  # of the model's normalised log-prob beside consensus
    # A frame of a stream keeps its source's caption while that caption scores within
    # this of the frame's best (captioner/hold.py); None: every frame on its own. Only
    # with consensus reranking (its score), and only where the caller names sources.
    hold_margin: float | None = 0.04

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SearchConfigError(f"unknown search method {self.method!r}; accepted: {METHODS}")
        for name in ("beam", "max_len", "no_repeat_ngram", "top_k", "seed", "consensus_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SearchConfigError(f"{name} must be an integer, got {value!r}")
        for name in ("length_penalty", "temperature", "consensus_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SearchConfigError(f"{name} must be a number, got {value!r}")
        if self.beam < 1:
            raise SearchConfigError(f"beam must be >= 1, got {self.beam}")
        if self.max_len < 1:
            raise SearchConfigError(f"max_len must be >= 1, got {self.max_len}")
        if isinstance(self.banned_words, str):  # a str is a sequence of letters
            raise SearchConfigError(
                f"banned_words must be a sequence of words or phrases, got the string "
                f"{self.banned_words!r} (for one: ({self.banned_words!r},))"
            )
        object.__setattr__(self, "banned_words", tuple(self.banned_words))  # from a list too
        if not all(isinstance(w, str) and w.split() for w in self.banned_words):
            raise SearchConfigError(
                f"banned_words must be words or phrases, got {self.banned_words!r}"
            )
        if not math.isfinite(self.length_penalty):
            raise SearchConfigError(
                f"length_penalty must be a finite number, got {self.length_penalty}"
            )
        if self.no_repeat_ngram < 0 or self.top_k < 0:
            raise SearchConfigError("no_repeat_ngram and top_k must be >= 0")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise SearchConfigError(
                f"temperature must be a finite number > 0, got {self.temperature}"
            )
        if self.consensus_k < 0:
            raise SearchConfigError(f"consensus_k must be >= 0, got {self.consensus_k}")
        if not (math.isfinite(self.consensus_weight) and self.consensus_weight >= 0):
            raise SearchConfigError(f"consensus_weight must be >= 0, got {self.consensus_weight}")
        if self.hold_margin is not None and (
            isinstance(self.hold_margin, bool)
            or not isinstance(self.hold_margin, int | float)
            or not (math.isfinite(self.hold_margin) and self.hold_margin >= 0)
        ):
            raise SearchConfigError(
                f"hold_margin must be >= 0 or None (off), got {self.hold_margin!r}"
            )
