"""Batched caption search over grid features: greedy, beam and top-k sampling.

Every function takes a whole batch of images' features ``(B, P, D)`` and returns one
:class:`Hypothesis` per image, in order. Rows never interact: a batch gives the same
tokens as the same images one at a time (tests check it for greedy and beam).

Conventions shared by all three:
- ``<pad>``, ``<start>`` and (unless allowed) ``<unk>`` are never emitted;
- at most ``max_len`` words, then ``<end>`` is forced;
- ``score`` is the summed log-probability of the words and the final ``<end>``;
- ``attention[t]`` is the attention map (P,) of the step that emitted word t.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from captioner.model import Decoder
from captioner.vocab import Vocabulary

Method = Literal["greedy", "beam", "sample"]
METHODS: tuple[str, ...] = ("greedy", "beam", "sample")
NEG_INF = float("-inf")


@dataclass(frozen=True)
class SearchConfig:
    """How to turn features into words. Validated once, here."""

    method: Method = "beam"
    beam: int = 3
    max_len: int = 20
    length_penalty: float = 0.0  # rank finished beams by score / (length ** length_penalty)
    no_repeat_ngram: int = 0  # 0: off; n: never repeat an n-gram within a caption
    allow_unk: bool = False
    top_k: int = 0  # sampling: 0 = the whole vocabulary
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown search method {self.method!r}; accepted: {METHODS}")
        if self.beam < 1:
            raise ValueError(f"beam must be >= 1, got {self.beam}")
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")
        if self.no_repeat_ngram < 0 or self.top_k < 0:
            raise ValueError("no_repeat_ngram and top_k must be >= 0")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


@dataclass
class Hypothesis:
    """One caption for one image, in token ids (no special tokens)."""

    ids: list[int]
    score: float
    attention: Tensor  # (T, P), one map per word
    normalized: float = field(default=0.0)


def search(
    decoder: Decoder, features: Tensor, vocab: Vocabulary, config: SearchConfig
) -> list[Hypothesis]:
    """Dispatch on ``config.method``. features (B, P, D)."""
    if config.method == "beam" and config.beam > 1:
        return beam_search(decoder, features, vocab, config)
    if config.method == "sample":
        return sample(decoder, features, vocab, config)
    return greedy(decoder, features, vocab, config)


# -- shared masks -------------------------------------------------------------------


def _banned_mask(vocab: Vocabulary, config: SearchConfig, device: torch.device) -> Tensor:
    """(V,) additive mask: -inf for tokens never emitted."""
    mask = torch.zeros(len(vocab), device=device)
    mask[[vocab.pad_id, vocab.start_id]] = NEG_INF
    if not config.allow_unk:
        mask[vocab.unk_id] = NEG_INF
    return mask


def _next_logp(
    logits: Tensor,
    step: int,
    vocab: Vocabulary,
    config: SearchConfig,
    banned: Tensor,
    history: Tensor,
) -> Tensor:
    """Log-probabilities (N, V) with bans applied; only <end> once max_len words exist."""
    logp = logits.float().log_softmax(dim=-1) + banned  # (N, V)
    if step == config.max_len:
        forced = torch.full_like(logp, NEG_INF)
        forced[:, vocab.end_id] = logp[:, vocab.end_id]
        return forced
    if config.no_repeat_ngram:
        _block_repeats(logp, history, config.no_repeat_ngram)
    return logp


def _block_repeats(logp: Tensor, history: Tensor, n: int) -> None:
    """Ban, in place, every token that would repeat an n-gram of its own hypothesis.

    Vectorised: each earlier (n-1)-gram equal to the hypothesis' last n-1 tokens bans
    the token that followed it. logp (N, V), history (N, t).
    """
    steps = history.size(1)
    if steps < n:
        return
    if n == 1:
        logp.scatter_(1, history, NEG_INF)
        return
    windows = history.unfold(1, n - 1, 1)[:, :-1]  # (N, t-n+1, n-1): all but the last
    prefix = history[:, steps - n + 1 :].unsqueeze(1)  # (N, 1, n-1)
    matches = windows.eq(prefix).all(dim=2)  # (N, t-n+1)
    followers = history[:, n - 1 :]  # (N, t-n+1): the token after each window
    banned = torch.where(matches, followers, followers.new_full((), -1))
    rows, cols = banned.ge(0).nonzero(as_tuple=True)
    logp[rows, banned[rows, cols]] = NEG_INF


# -- greedy and sampling --------------------------------------------------------------


@torch.inference_mode()
def greedy(
    decoder: Decoder, features: Tensor, vocab: Vocabulary, config: SearchConfig
) -> list[Hypothesis]:
    return _left_to_right(decoder, features, vocab, config, generator=None)


@torch.inference_mode()
def sample(
    decoder: Decoder, features: Tensor, vocab: Vocabulary, config: SearchConfig
) -> list[Hypothesis]:
    """Top-k sampling with a seeded generator: the same seed gives the same captions."""
    generator = torch.Generator(device=features.device).manual_seed(config.seed)
    return _left_to_right(decoder, features, vocab, config, generator=generator)


def _left_to_right(
    decoder: Decoder,
    features: Tensor,
    vocab: Vocabulary,
    config: SearchConfig,
    generator: torch.Generator | None,
) -> list[Hypothesis]:
    """One token per image per step: argmax (no generator) or a top-k sample."""
    batch = features.size(0)
    device = features.device
    banned = _banned_mask(vocab, config, device)
    projected = decoder.project(features)  # (B, P, A)
    state = decoder.init_state(features)
    tokens = torch.full((batch,), vocab.start_id, dtype=torch.long, device=device)  # (B,)
    history = torch.empty((batch, 0), dtype=torch.long, device=device)  # (B, t)
    alphas = []
    scores = torch.zeros(batch, device=device)  # (B,)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)  # (B,)
    lengths = torch.full((batch,), config.max_len, dtype=torch.long, device=device)
    for step in range(config.max_len + 1):
        logits, alpha, state = decoder.step(features, projected, tokens, state)
        logp = _next_logp(logits, step, vocab, config, banned, history)  # (B, V)
        if generator is None:
            tokens = logp.argmax(dim=-1)  # (B,)
        else:
            tokens = _sample_top_k(logp, config, generator)
        step_logp = logp.gather(1, tokens.unsqueeze(1)).squeeze(1)  # (B,)
        scores = scores + torch.where(finished, 0.0, step_logp)
        ended = tokens.eq(vocab.end_id) & ~finished
        lengths = torch.where(ended, step, lengths)
        finished = finished | ended
        history = torch.cat([history, tokens.unsqueeze(1)], dim=1)
        alphas.append(alpha)
        if bool(finished.all()):
            break
    attention = torch.stack(alphas, dim=1).float()  # (B, T, P)
    out = []
    for row in range(batch):
        n = int(lengths[row])
        ids = history[row, :n].tolist()
        score = float(scores[row])
        out.append(Hypothesis(ids, score, attention[row, :n].cpu(), _normalize(score, n, config)))
    return out


def _sample_top_k(logp: Tensor, config: SearchConfig, generator: torch.Generator) -> Tensor:
    logits = logp / config.temperature  # (B, V)
    if config.top_k:
        kth = logits.topk(config.top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, NEG_INF)
    probs = logits.softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)


def _normalize(score: float, words: int, config: SearchConfig) -> float:
    return float(score / float(words + 1) ** config.length_penalty)


# -- beam search ----------------------------------------------------------------------


@dataclass
class _Finished:
    """The finished beams of one image, best first, at most ``beam`` of them."""

    beam: int
    items: list[Hypothesis] = field(default_factory=list)

    def add(self, hyp: Hypothesis) -> None:
        self.items.append(hyp)
        self.items.sort(key=lambda h: -h.normalized)
        del self.items[self.beam :]

    def full(self) -> bool:
        return len(self.items) >= self.beam

    def worst(self) -> float:
        return self.items[-1].normalized


@torch.inference_mode()
def beam_search(
    decoder: Decoder, features: Tensor, vocab: Vocabulary, config: SearchConfig
) -> list[Hypothesis]:
    """Beam k for a whole batch at once.

    Each image keeps k alive beams and its own list of finished ones. A beam that
    emits ``<end>`` among the k best candidates moves to the finished list; the
    image is done when k beams have finished and no alive beam can still beat the
    worst of them. Done images leave the batch, so the rest run on fewer rows.
    """
    k, vocab_size = config.beam, len(vocab)
    batch, device = features.size(0), features.device
    banned = _banned_mask(vocab, config, device)
    rows = list(range(batch))  # images still searching, in batch order
    feats = features.repeat_interleave(k, dim=0)  # (A*k, P, D)
    projected = decoder.project(feats)  # (A*k, P, A)
    state = decoder.init_state(feats)
    tokens = torch.full((batch * k,), vocab.start_id, dtype=torch.long, device=device)
    history = torch.empty((batch * k, 0), dtype=torch.long, device=device)  # (A*k, t)
    attn = torch.empty((batch * k, 0, features.size(1)), device=device)  # (A*k, t, P)
    scores = torch.full((batch, k), NEG_INF, device=device)  # (A, k)
    scores[:, 0] = 0.0  # at step 0 all beams are the same: expand only the first
    done = [_Finished(k) for _ in range(batch)]

    for step in range(config.max_len + 1):
        logits, alpha, state = decoder.step(feats, projected, tokens, state)
        logp = _next_logp(logits, step, vocab, config, banned, history)  # (A*k, V)
        total = (scores.view(-1, 1) + logp).view(len(rows), k * vocab_size)  # (A, k*V)
        top_scores, top_index = total.topk(2 * k, dim=1)  # (A, 2k)
        keep_rows: list[int] = []
        keep_beams: list[int] = []  # flat index into the A*k current beams
        keep_tokens: list[int] = []
        keep_scores: list[float] = []
        for a, (cand_scores, cand_index) in enumerate(
            zip(top_scores.tolist(), top_index.tolist(), strict=True)
        ):
            row = rows[a]
            alive: list[tuple[int, int, float]] = []
            for rank, (value, flat) in enumerate(zip(cand_scores, cand_index, strict=True)):
                origin, token = divmod(flat, vocab_size)
                if value == NEG_INF or len(alive) == k:
                    break
                beam_index = a * k + origin
                if token == vocab.end_id:
                    if rank < k:  # only ends among the k best candidates count
                        done[row].add(_finished(history, attn, beam_index, step, value, config))
                    continue
                alive.append((beam_index, token, value))
            if _row_done(done[row], alive, config):
                continue
            while len(alive) < k:  # too few candidates (tiny vocabulary): dead padding beams
                alive.append((alive[0][0], alive[0][1], NEG_INF))
            keep_rows.append(a)
            for beam_index, token, value in alive:
                keep_beams.append(beam_index)
                keep_tokens.append(token)
                keep_scores.append(value)
        if not keep_rows:
            break
        index = torch.tensor(keep_beams, device=device)
        rows = [rows[a] for a in keep_rows]
        tokens = torch.tensor(keep_tokens, device=device)
        scores = torch.tensor(keep_scores, device=device).view(len(rows), k)
        state = state.select(index)
        history = torch.cat([history.index_select(0, index), tokens.unsqueeze(1)], dim=1)
        attn = torch.cat(
            [attn.index_select(0, index), alpha.index_select(0, index).unsqueeze(1)], 1
        )
        if len(keep_rows) * k != feats.size(0):  # some images finished: shrink the batch
            row_index = torch.tensor(keep_rows, device=device).repeat_interleave(k) * k
            feats = feats.index_select(0, row_index)
            projected = projected.index_select(0, row_index)
    return [finished.items[0] for finished in done]


def _finished(
    history: Tensor, attn: Tensor, beam_index: int, step: int, score: float, config: SearchConfig
) -> Hypothesis:
    ids = history[beam_index].tolist()
    return Hypothesis(ids, score, attn[beam_index].float().cpu(), _normalize(score, step, config))


def _row_done(
    finished: _Finished, alive: list[tuple[int, int, float]], config: SearchConfig
) -> bool:
    """No alive beam (forced end at max_len), or k finished that no alive beam can beat.

    Log-probabilities only fall as a beam grows, so with no length penalty the best
    alive score is a bound. With a penalty, the bound assumes the beam ends at the
    longest allowed length, which flatters it — a conservative test.
    """
    if not alive:
        return True
    if not finished.full():
        return False
    bound = max(value for _, _, value in alive)
    if config.length_penalty > 0:
        bound /= float(config.max_len + 1) ** config.length_penalty
    return bound <= finished.worst()
