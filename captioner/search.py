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
class _Pool:
    """The k best finished beams of every image, best first: fixed-shape tensors.

    ``norm`` is -inf in empty slots; rows are indexed by the image's place in the
    batch, so images that leave the search keep their finished beams here.
    """

    norm: Tensor  # (B, k) length-normalised score, the ranking key
    score: Tensor  # (B, k) summed log-probability
    length: Tensor  # (B, k) words
    ids: Tensor  # (B, k, max_len)
    attention: Tensor  # (B, k, max_len, P)

    @classmethod
    def empty(cls, batch: int, k: int, max_len: int, positions: int, like: Tensor) -> _Pool:
        device = like.device
        return cls(
            norm=torch.full((batch, k), NEG_INF, device=device),
            score=torch.full((batch, k), NEG_INF, device=device),
            length=torch.zeros((batch, k), dtype=torch.long, device=device),
            ids=torch.zeros((batch, k, max_len), dtype=torch.long, device=device),
            attention=torch.zeros((batch, k, max_len, positions), dtype=like.dtype, device=device),
        )

    def merge(self, rows: Tensor, candidates: _Pool) -> Tensor:
        """Keep, for each of ``rows``, the k best of its pool and ``candidates`` (A, k).

        Returns the worst kept normalised score per row (A,), -inf while not full.
        """
        k = self.norm.size(1)
        norm = torch.cat([self.norm[rows], candidates.norm], dim=1)  # (A, 2k)
        best, pick = norm.topk(k, dim=1)  # (A, k), best first
        self.norm[rows] = best
        for name in ("score", "length", "ids", "attention"):
            both = torch.cat([getattr(self, name)[rows], getattr(candidates, name)], dim=1)
            getattr(self, name)[rows] = _take(both, pick)
        return best[:, -1]


def _take(values: Tensor, index: Tensor) -> Tensor:
    """values (A, n, ...) gathered along dim 1 by index (A, m) -> (A, m, ...)."""
    rows = torch.arange(values.size(0), device=values.device).unsqueeze(1)  # (A, 1)
    return values[rows, index]


@torch.inference_mode()
def beam_search(
    decoder: Decoder, features: Tensor, vocab: Vocabulary, config: SearchConfig
) -> list[Hypothesis]:
    """Beam k for a whole batch at once, bookkeeping in tensors.

    Each image keeps k alive beams and a pool of its k best finished ones. Of the 2k
    best candidates of a step, an ``<end>`` among the first k finishes a beam; the
    first k others stay alive. An image is done when no alive beam is left (forced end
    at ``max_len``) or k beams have finished and no alive beam can still beat the worst
    of them; done images leave the batch, so the rest run on fewer rows. One small
    device-to-host copy per step (which images are done), none per beam.
    """
    k, vocab_size, max_len = config.beam, len(vocab), config.max_len
    batch, positions, device = features.size(0), features.size(1), features.device
    banned = _banned_mask(vocab, config, device)
    rows = torch.arange(batch, device=device)  # (A,) images still searching
    feats = features.repeat_interleave(k, dim=0)  # (A*k, P, D)
    projected = decoder.project(feats)  # (A*k, P, A)
    state = decoder.init_state(feats)
    tokens = torch.full((batch * k,), vocab.start_id, dtype=torch.long, device=device)
    history = torch.empty((batch * k, 0), dtype=torch.long, device=device)  # (A*k, t)
    attn: Tensor | None = None  # (A*k, t, P), dtype of the attention maps
    scores = torch.full((batch, k), NEG_INF, device=device)  # (A, k)
    scores[:, 0] = 0.0  # at step 0 all beams are the same: expand only the first
    rank = torch.arange(2 * k, device=device)  # (2k,)
    slot = torch.arange(k, device=device)  # (k,)
    pool: _Pool | None = None
    bound_scale = float(max_len + 1) ** config.length_penalty if config.length_penalty > 0 else 1.0

    for step in range(max_len + 1):
        logits, alpha, state = decoder.step(feats, projected, tokens, state)
        if attn is None:
            attn = alpha.new_empty((batch * k, 0, positions))
        if pool is None:
            pool = _Pool.empty(batch, k, max_len, positions, alpha)
        alive_rows = rows.size(0)
        logp = _next_logp(logits, step, vocab, config, banned, history)  # (A*k, V)
        total = (scores.view(-1, 1) + logp).view(alive_rows, k * vocab_size)  # (A, k*V)
        top_scores, top_index = total.topk(2 * k, dim=1)  # (A, 2k), best first
        origin = top_index.div(vocab_size, rounding_mode="floor")  # (A, 2k) beam in row
        token = top_index.remainder(vocab_size)  # (A, 2k)
        beam_index = origin + (torch.arange(alive_rows, device=device) * k).unsqueeze(1)
        finite = top_scores.isfinite()
        is_end = token.eq(vocab.end_id)

        # finished: an <end> among the k best candidates. On a CPU, asking whether
        # any beam ended costs nothing and most steps have none; on a GPU it would
        # be a second host sync per step, so the (cheap) merge always runs there.
        ends = (is_end & finite)[:, :k]  # (A, k)
        if device.type != "cpu" or bool(ends.any()):
            end_beams = beam_index[:, :k].reshape(-1)  # (A*k,)
            candidates = _Pool(
                norm=torch.where(
                    ends, top_scores[:, :k] / float(step + 1) ** config.length_penalty, NEG_INF
                ),
                score=top_scores[:, :k],
                length=torch.full_like(end_beams, step).view(alive_rows, k),
                ids=_pad(history.index_select(0, end_beams), max_len).view(alive_rows, k, max_len),
                attention=_pad(attn.index_select(0, end_beams).transpose(1, 2), max_len)
                .transpose(1, 2)
                .reshape(alive_rows, k, max_len, positions),
            )
            worst = pool.merge(rows, candidates)  # (A,)
        else:
            worst = pool.norm.index_select(0, rows)[:, -1]

        # alive: the first k candidates that are not <end>; too few (tiny vocabulary):
        # dead padding beams with score -inf that copy the first alive one
        alive = ~is_end & finite  # (A, 2k)
        pick = torch.where(alive, rank, rank + 2 * k).argsort(dim=1)[:, :k]  # (A, k)
        count = alive.sum(dim=1, keepdim=True)  # (A, 1)
        dead = slot.unsqueeze(0) >= count  # (A, k)
        next_scores = torch.where(dead, NEG_INF, top_scores.gather(1, pick))
        next_beams = beam_index.gather(1, pick)
        next_beams = torch.where(dead, next_beams[:, :1], next_beams)
        next_tokens = token.gather(1, pick)
        next_tokens = torch.where(dead, next_tokens[:, :1], next_tokens)

        # done: nothing alive, or k finished that no alive beam can beat (log-probs only
        # fall as a beam grows; with a length penalty the bound assumes the longest
        # caption, which flatters it: a conservative test)
        bound = next_scores.max(dim=1).values / bound_scale  # (A,)
        done = count.squeeze(1).eq(0) | (worst.isfinite() & bound.le(worst))
        keep = (~done).nonzero().squeeze(1)  # (A',): the one host sync of the step
        if keep.numel() == 0:
            break
        index = next_beams.index_select(0, keep).view(-1)  # (A'*k,)
        tokens = next_tokens.index_select(0, keep).view(-1)
        scores = next_scores.index_select(0, keep)
        state = state.select(index)
        history = torch.cat([history.index_select(0, index), tokens.unsqueeze(1)], dim=1)
        attn = torch.cat(
            [attn.index_select(0, index), alpha.index_select(0, index).unsqueeze(1)], 1
        )
        if keep.numel() != alive_rows:  # some images finished: shrink the batch
            rows = rows.index_select(0, keep)
            row_index = (keep * k).repeat_interleave(k) + slot.repeat(keep.numel())
            feats = feats.index_select(0, row_index)
            projected = projected.index_select(0, row_index)
    assert pool is not None
    return _best(pool, config)


def _pad(values: Tensor, length: int) -> Tensor:
    """Right-pad the last dimension with zeros to ``length``."""
    return torch.nn.functional.pad(values, (0, length - values.size(-1)))


def _best(pool: _Pool, config: SearchConfig) -> list[Hypothesis]:
    """The best finished beam of every image, copied to the host once."""
    lengths = pool.length[:, 0].tolist()
    scores = pool.score[:, 0].tolist()
    norms = pool.norm[:, 0].tolist()
    ids = pool.ids[:, 0].cpu()
    attention = pool.attention[:, 0].float().cpu()
    return [
        Hypothesis(ids[b, :n].tolist(), scores[b], attention[b, :n], norms[b])
        for b, n in enumerate(lengths)
    ]
