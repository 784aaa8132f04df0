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

import numpy as np
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


@torch.inference_mode()
def beam_search(
    decoder: Decoder, features: Tensor, vocab: Vocabulary, config: SearchConfig
) -> list[Hypothesis]:
    """Beam k for a whole batch at once, bookkeeping in tensors.

    Each image keeps k alive beams and a pool of its k best finished ones. Of the 2k
    best candidates of a step, an ``<end>`` among the first k finishes a beam; the
    first k others stay alive. An image is done when no alive beam is left (forced end
    at ``max_len``) or k beams have finished and no alive beam can still beat the worst
    of them; done images leave the batch, so the rest run on fewer rows.

    A step records only back-pointers (each alive beam's parent and word) and the
    attention maps; a finished beam is a reference (step, beam), and words and maps
    are traced back once at the end. So a step is a fixed, small number of tensor
    operations whatever the batch, with one device-to-host copy (which images are
    done) and none per image or beam.
    """
    k, vocab_size, max_len = config.beam, len(vocab), config.max_len
    batch, device = features.size(0), features.device
    banned = _banned_mask(vocab, config, device)
    rows = torch.arange(batch, device=device)  # (A,) images still searching
    feats = features.repeat_interleave(k, dim=0)  # (A*k, P, D)
    projected = decoder.project(feats)  # (A*k, P, A)
    state = decoder.init_state(feats)
    tokens = torch.full((batch * k,), vocab.start_id, dtype=torch.long, device=device)
    history = torch.empty((batch * k, 0), dtype=torch.long, device=device)  # n-gram bans only
    scores = torch.full((batch, k), NEG_INF, device=device)  # (A, k)
    scores[:, 0] = 0.0  # at step 0 all beams are the same: expand only the first
    rank = torch.arange(2 * k, device=device)  # (2k,)
    rank_after = rank + 2 * k  # candidates that are not alive sort after those that are
    slot = torch.arange(k, device=device)  # (k,)
    neg_inf = torch.tensor(NEG_INF, device=device)  # (a scalar tensor: no copy per use)
    offsets = (torch.arange(batch, device=device) * k).unsqueeze(1)  # (B, 1) first beam of row
    # the pool of finished beams, best first: [normalised score, score] and [step, beam]
    pool_value = torch.full((batch, k, 2), NEG_INF, device=device)
    pool_ref = torch.zeros((batch, k, 2), dtype=torch.long, device=device)
    trace = _Trace()
    bound_scale = float(max_len + 1) ** config.length_penalty if config.length_penalty > 0 else 1.0

    for step in range(max_len + 1):
        logits, alpha, state = decoder.step(feats, projected, tokens, state)
        trace.alphas.append(alpha)  # (A*k, P): the maps of the words chosen now
        alive_rows = rows.size(0)
        logp = _next_logp(logits, step, vocab, config, banned, history)  # (A*k, V)
        total = (scores.view(-1, 1) + logp).view(alive_rows, k * vocab_size)  # (A, k*V)
        top_scores, top_index = total.topk(2 * k, dim=1)  # (A, 2k), best first
        token = top_index.remainder(vocab_size)  # (A, 2k)
        is_end = token.eq(vocab.end_id)
        finite = top_scores.isfinite()
        offset = offsets[:alive_rows]  # (A, 1) each row's first beam

        # finished: an <end> among the k best candidates. On a CPU, asking whether
        # any beam ended costs nothing and most steps have none; on a GPU it would
        # be a second host sync per step, so the (cheap) merge always runs there.
        ends = (is_end & finite)[:, :k]  # (A, k)
        if device.type != "cpu" or bool(ends.any()):
            penalty = float(step + 1) ** config.length_penalty
            value = torch.stack(
                [torch.where(ends, top_scores[:, :k] / penalty, neg_inf), top_scores[:, :k]], 2
            )  # (A, k, 2)
            end_beams = top_index[:, :k].div(vocab_size, rounding_mode="floor") + offset
            ref = torch.stack([torch.full_like(end_beams, step), end_beams], 2)  # (A, k, 2)
            both_value = torch.cat([pool_value.index_select(0, rows), value], 1)  # (A, 2k, 2)
            both_ref = torch.cat([pool_ref.index_select(0, rows), ref], 1)
            pick = both_value[:, :, 0].topk(k, dim=1).indices.unsqueeze(2).expand(-1, -1, 2)
            pool_value[rows] = both_value.gather(1, pick)
            pool_ref[rows] = both_ref.gather(1, pick)
        worst = pool_value.index_select(0, rows)[:, -1, 0]  # (A,), -inf while not full

        # alive: the first k candidates that are not <end>; too few (tiny vocabulary):
        # dead padding beams with score -inf that copy the first alive one
        alive = finite & ~is_end  # (A, 2k)
        pick = torch.where(alive, rank, rank_after).argsort(dim=1)[:, :k]  # (A, k)
        count = alive.sum(dim=1, keepdim=True)  # (A, 1)
        dead = slot >= count  # (A, k)
        next_scores = torch.where(dead, neg_inf, top_scores.gather(1, pick))  # (A, k)
        chosen = top_index.gather(1, pick)
        chosen = torch.where(dead, chosen[:, :1], chosen)  # (A, k) into the row's k*V
        next_beams = chosen.div(vocab_size, rounding_mode="floor") + offset
        next_tokens = chosen.remainder(vocab_size)

        # done: k finished that no alive beam can beat (log-probs only fall as a beam
        # grows; with a length penalty the bound assumes the longest caption, which
        # flatters it: a conservative test), or nothing alive (bound -inf)
        bound = next_scores.max(dim=1).values  # (A,)
        done = (bound / bound_scale if bound_scale != 1.0 else bound).le(worst)
        keep = (~done).nonzero().squeeze(1)  # (A',): the one host sync of the step
        if keep.numel() == 0:
            break
        index = next_beams.index_select(0, keep).view(-1)  # (A'*k,) into this step's beams
        tokens = next_tokens.index_select(0, keep).view(-1)
        trace.parents.append(index)
        trace.words.append(tokens)
        scores = next_scores.index_select(0, keep)
        state = state.select(index)
        if config.no_repeat_ngram:
            history = torch.cat([history.index_select(0, index), tokens.unsqueeze(1)], dim=1)
        if keep.numel() != alive_rows:  # some images finished: shrink the batch
            rows = rows.index_select(0, keep)
            row_index = (keep * k).repeat_interleave(k) + slot.repeat(keep.numel())
            feats = feats.index_select(0, row_index)
            projected = projected.index_select(0, row_index)
    return trace.best(pool_value[:, 0], pool_ref[:, 0], config)


@dataclass
class _Trace:
    """Per step: the attention maps of the step's beams, and for the next step's beams
    their parent (an index into this step's beams) and their word."""

    alphas: list[Tensor] = field(default_factory=list)  # (A_s*k, P)
    parents: list[Tensor] = field(default_factory=list)  # (A_{s+1}*k,)
    words: list[Tensor] = field(default_factory=list)  # (A_{s+1}*k,)

    def best(self, value: Tensor, ref: Tensor, config: SearchConfig) -> list[Hypothesis]:
        """Each image's best finished beam, traced back: value (B, 2) [normalised, score],
        ref (B, 2) [step, beam]. One copy to the host of everything, then pure indexing."""
        alphas = _host_steps(self.alphas)
        parents = _host_steps(self.parents)
        words = _host_steps(self.words)
        out = []
        for (norm, score), (length, beam) in zip(value.tolist(), ref.tolist(), strict=True):
            ids = [0] * length
            maps = np.empty((length, alphas[0].shape[1]), dtype=np.float32)
            for t in range(length - 1, -1, -1):  # word t was chosen at step t
                ids[t] = int(words[t][beam])
                beam = int(parents[t][beam])
                maps[t] = alphas[t][beam]
            out.append(Hypothesis(ids, score, torch.from_numpy(maps), norm))
        return out


def _host_steps(steps: list[Tensor]) -> list[np.ndarray]:
    """Per-step tensors copied to the host in one transfer, split back per step."""
    if not steps:
        return []
    joined = torch.cat(steps).cpu()
    if joined.is_floating_point():
        joined = joined.float()
    return list(np.split(joined.numpy(), np.cumsum([t.size(0) for t in steps])[:-1]))
