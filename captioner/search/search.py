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

import numpy as np
import torch
from torch import Tensor

from captioner.model import Decoder
from captioner.search.config import SearchConfig as SearchConfig  # the searches' settings
from captioner.search.function_words import FUNCTION_WORDS
from captioner.vocab import Vocabulary

NEG_INF = float("-inf")


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
    banned = [vocab.pad_id, vocab.start_id]
    if not config.allow_unk:
        banned.append(vocab.unk_id)
    banned += [vocab.index[w] for w in config.banned_words if w in vocab.index]  # one word
    mask = torch.zeros(len(vocab))
    mask[banned] = NEG_INF
    return mask.to(device)  # built on the host: one copy


def _repeatable_mask(vocab: Vocabulary, device: torch.device) -> Tensor:
    """(V,) bool: True for the tokens ``no_repeat_words`` lets a caption repeat."""
    repeatable = torch.zeros(len(vocab), dtype=torch.bool)
    ids = [vocab.index[w] for w in FUNCTION_WORDS if w in vocab.index]
    repeatable[ids] = True
    repeatable[vocab.pad_id] = True  # history never holds it; the ban's sink
    return repeatable.to(device)


def banned_phrases(config: SearchConfig) -> list[list[str]]:
    """The entries of ``banned_words`` that are phrases (two words or more)."""
    return [w.split() for w in config.banned_words if len(w.split()) > 1]


@dataclass(frozen=True)
class _PhraseBan:
    """Phrases of one length m: after its first m-1 words, a phrase's last is banned."""

    prefixes: Tensor  # (P, m-1) token ids
    last: Tensor  # (P,) token ids


def _phrase_bans(vocab: Vocabulary, config: SearchConfig, device: torch.device) -> list[_PhraseBan]:
    by_length: dict[int, list[list[int]]] = {}
    for words in banned_phrases(config):
        if all(w in vocab.index for w in words):  # else the model cannot write it
            by_length.setdefault(len(words), []).append([vocab.index[w] for w in words])
    bans = []
    for phrases in by_length.values():
        ids = torch.tensor(phrases, dtype=torch.long)  # (P, m)
        bans.append(_PhraseBan(ids[:, :-1].to(device), ids[:, -1].to(device)))
    return bans


@dataclass(frozen=True)
class _Bans:
    """What a search may never emit: fixed tokens, phrases, and repeats (by its config)."""

    fixed: Tensor  # (V,) additive: -inf for tokens never emitted
    repeatable: Tensor | None  # (V,) bool, with no_repeat_words: words that may repeat
    # with no_repeat_words: "and", after which the word before it may not follow
    # ("a black and black shirt": a colour may repeat, but not next to itself)
    conjunction: int | None = None
    phrases: tuple[_PhraseBan, ...] = ()

    @classmethod
    def of(cls, vocab: Vocabulary, config: SearchConfig, device: torch.device) -> _Bans:
        fixed = _banned_mask(vocab, config, device)
        phrases = tuple(_phrase_bans(vocab, config, device))
        if not config.no_repeat_words:
            return cls(fixed, None, phrases=phrases)
        repeatable = _repeatable_mask(vocab, device)
        return cls(fixed, repeatable, vocab.index.get("and"), phrases)


def _keeps_history(config: SearchConfig) -> bool:
    return bool(config.no_repeat_ngram) or config.no_repeat_words or bool(banned_phrases(config))


def _next_logp(
    logits: Tensor,
    step: int,
    vocab: Vocabulary,
    config: SearchConfig,
    bans: _Bans,
    history: Tensor,
) -> Tensor:
    """Log-probabilities (N, V) with bans applied; only <end> once max_len words exist."""
    logp = logits.float().log_softmax(dim=-1) + bans.fixed  # (N, V)
    if step == config.max_len:
        forced = torch.full_like(logp, NEG_INF)
        forced[:, vocab.end_id] = logp[:, vocab.end_id]
        return forced
    if config.no_repeat_ngram:
        _block_repeats(logp, history, config.no_repeat_ngram, sink=vocab.pad_id)
    if bans.repeatable is not None and history.size(1):
        # every word used so far, but function words write into <pad> (always banned)
        used = history.masked_fill(bans.repeatable[history], vocab.pad_id)  # (N, t)
        logp.scatter_(1, used, NEG_INF)
        logp.scatter_(1, history[:, -1:], NEG_INF)  # nor one twice in a row ("blue blue")
    if bans.conjunction is not None and history.size(1) >= 2:
        # "X and" never continues with X; other rows write into <pad>
        joined = history[:, -2].masked_fill(history[:, -1].ne(bans.conjunction), vocab.pad_id)
        logp.scatter_(1, joined.unsqueeze(1), NEG_INF)
    for ban in bans.phrases:
        _block_phrases(logp, history, ban, end=vocab.end_id, sink=vocab.pad_id)
    return logp


def _block_phrases(logp: Tensor, history: Tensor, ban: _PhraseBan, *, end: int, sink: int) -> None:
    """Ban, in place, each phrase's last word where the hypothesis ends with the rest of
    it, and ``<end>`` there too: the caption goes on with another word instead of
    stopping mid-phrase ("on a white" + "background" banned: "on a white bed", never
    "on a white"). Vectorised, no host sync; rows that match nothing write into
    ``sink``."""
    m = ban.prefixes.size(1)
    if history.size(1) < m:
        return
    tail = history[:, history.size(1) - m :]  # (N, m-1)
    matches = tail.unsqueeze(1).eq(ban.prefixes.unsqueeze(0)).all(dim=2)  # (N, P)
    last = ban.last.unsqueeze(0).expand_as(matches)  # (N, P)
    logp.scatter_(1, last.masked_fill(~matches, sink), NEG_INF)
    stop = torch.where(matches.any(dim=1), end, sink)  # (N,)
    logp.scatter_(1, stop.unsqueeze(1), NEG_INF)


def _block_repeats(logp: Tensor, history: Tensor, n: int, *, sink: int) -> None:
    """Ban, in place, every token that would repeat an n-gram of its own hypothesis.

    Vectorised, and without a host sync: each earlier (n-1)-gram equal to the
    hypothesis' last n-1 tokens bans the token that followed it; windows that do not
    match write their -inf into ``sink``, a token that is always banned (``<pad>``).
    logp (N, V), history (N, t).
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
    logp.scatter_(1, followers.masked_fill(~matches, sink), NEG_INF)


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
    bans = _Bans.of(vocab, config, device)
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
        logp = _next_logp(logits, step, vocab, config, bans, history)  # (B, V)
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


@torch.inference_mode()
def score_captions(
    decoder: Decoder,
    features: Tensor,
    vocab: Vocabulary,
    config: SearchConfig,
    captions: list[list[int]],
) -> list[Hypothesis]:
    """Given captions (token ids, no special tokens), one per image (B, P, D), scored
    as a search would have scored them: the summed log-probability of the words and
    ``<end>``, normalised by ``config.length_penalty``, and each word's attention map.

    Teacher forcing, all rows at once. A search's bans only ever set log-probabilities
    to -inf without renormalising, so a caption that obeys them scores here exactly
    what it scored in the search that found it (a test checks it against beam search).
    """
    batch, device = features.size(0), features.device
    if len(captions) != batch:
        raise ValueError(f"{len(captions)} captions for {batch} images")
    lengths = [len(c) for c in captions]
    steps = max(lengths, default=0) + 1  # each caption's words, then <end>
    targets = torch.full((batch, steps), vocab.pad_id, dtype=torch.long)
    for row, ids in enumerate(captions):
        targets[row, : len(ids) + 1] = torch.tensor([*ids, vocab.end_id], dtype=torch.long)
    targets = targets.to(device)
    projected = decoder.project(features)  # (B, P, A)
    state = decoder.init_state(features)
    tokens = torch.full((batch,), vocab.start_id, dtype=torch.long, device=device)
    logps, alphas = [], []
    for step in range(steps):
        logits, alpha, state = decoder.step(features, projected, tokens, state)
        logp = logits.float().log_softmax(dim=-1)  # (B, V)
        logps.append(logp.gather(1, targets[:, step : step + 1]).squeeze(1))  # (B,)
        alphas.append(alpha)
        tokens = targets[:, step]
    per_word = torch.stack(logps, dim=1).cpu()  # (B, steps)
    attention = torch.stack(alphas, dim=1).float().cpu()  # (B, steps, P)
    out = []
    for row, n in enumerate(lengths):
        score = float(per_word[row, : n + 1].sum())
        normalized = _normalize(score, n, config)
        out.append(Hypothesis(captions[row], score, attention[row, :n], normalized))
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
    """Beam k for a whole batch at once: each image's best finished beam (see
    :func:`beam_search_nbest`)."""
    return [finished[0] for finished in beam_search_nbest(decoder, features, vocab, config, n=1)]


@torch.inference_mode()
def beam_search_nbest(
    decoder: Decoder, features: Tensor, vocab: Vocabulary, config: SearchConfig, *, n: int
) -> list[list[Hypothesis]]:
    """Beam k for a whole batch at once; each image's ``min(n, k)`` best finished beams,
    best first (fewer only when fewer finished, e.g. a tiny vocabulary).

    Each image keeps k alive beams and a pool of its k best finished ones. Of the 2k
    best candidates of a step, an ``<end>`` among the first k finishes a beam; the
    first k others stay alive. An image is done when no alive beam is left (forced end
    at ``max_len``) or k beams have finished and no alive beam can still beat the worst
    of them; done images leave the batch, so the rest run on fewer rows.

    Where the work runs: the model, the log-probabilities and the top 2k candidates on
    the device; the bookkeeping (a few (A, 2k) arrays) in NumPy on the host, after one
    small copy per step. On a GPU, where a step is bound by kernel launches, that is
    cheaper than doing the bookkeeping as device kernels, and it never copies anything
    per image or per beam. A step records back-pointers (each alive beam's parent and
    word); a finished beam is a reference (step, beam), traced back once at the end.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    k, vocab_size, max_len = config.beam, len(vocab), config.max_len
    batch, device = features.size(0), features.device
    bans = _Bans.of(vocab, config, device)
    feats = features.repeat_interleave(k, dim=0)  # (A*k, P, D)
    projected = decoder.project(feats)  # (A*k, P, A)
    state = decoder.init_state(feats)
    tokens = torch.full((batch * k,), vocab.start_id, dtype=torch.long, device=device)
    history = torch.empty((batch * k, 0), dtype=torch.long, device=device)  # repeat bans only
    scores = torch.full((batch, k), NEG_INF, device=device)  # (A, k)
    scores[:, 0] = 0.0  # at step 0 all beams are the same: expand only the first
    book = _Bookkeeping(batch, k, vocab_size, vocab.end_id, config)
    alphas: list[Tensor] = []  # per step, (A_s*k, P): the maps of the words chosen then
    exact_in_float = k * vocab_size < 2**24  # candidate indices survive a float32 copy

    for step in range(max_len + 1):
        logits, alpha, state = decoder.step(feats, projected, tokens, state)
        alphas.append(alpha)
        logp = _next_logp(logits, step, vocab, config, bans, history)  # (A*k, V)
        top_scores, top_index = top_candidates(scores.view(-1, 1) + logp, k)  # (A, 2k)
        if exact_in_float:  # one copy to the host per step
            top = torch.cat([top_scores, top_index.to(top_scores.dtype)], dim=1).cpu().numpy()
            host_scores, host_index = top[:, : 2 * k], top[:, 2 * k :].astype(np.int64)
        else:
            host_scores, host_index = top_scores.cpu().numpy(), top_index.cpu().numpy()
        nxt = book.step(step, host_scores, host_index)
        if nxt is None:  # every image is done
            break
        moved = torch.from_numpy(np.stack([nxt.parents, nxt.words])).to(device)  # one copy
        parents, tokens = moved[0], moved[1]  # (A'*k,)
        scores = torch.from_numpy(nxt.scores).to(device)
        state = state.select(parents)
        if _keeps_history(config):
            history = torch.cat([history.index_select(0, parents), tokens.unsqueeze(1)], 1)
        if nxt.kept is not None:  # some images finished: shrink the batch
            row_index = torch.from_numpy(_beams_of(nxt.kept, k)).to(device)
            feats = feats.index_select(0, row_index)
            projected = projected.index_select(0, row_index)
    return book.nbest(_host_steps(alphas), n)


def top_candidates(total: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Each image's 2k best continuations: scores (A, 2k), best first, and flat indices
    beam * V + word into its k×V candidates. ``total`` (A*k, V), an image's k beams
    in consecutive rows.

    In two stages, each beam's 2k best, then the image's 2k best of those k·2k (the
    image's 2k best are among them). Same candidates as one top-k over (A, k·V), but
    every call stays on the GPU's single-block top-k: from 21 rows of 10,000 or more
    (a batch of 32 at beam 3, V = 3,664) PyTorch switches to a multi-block radix
    select, measured on an H100 at 262 µs of host time per call against 76 µs, every
    step of a search whose steps are bound by the host (BENCHMARKS.md).
    """
    vocab_size = total.size(1)
    per_beam = min(2 * k, vocab_size)  # fewer in a toy vocabulary (k·V >= 2k still holds)
    beam_scores, words = total.topk(per_beam, dim=1)  # (A*k, per_beam), best first
    pooled = beam_scores.view(-1, k * per_beam)  # (A, k*per_beam)
    top_scores, pick = pooled.topk(2 * k, dim=1)  # (A, 2k)
    beam = torch.div(pick, per_beam, rounding_mode="floor")
    return top_scores, beam * vocab_size + words.view(-1, k * per_beam).gather(1, pick)


@dataclass
class _Next:
    """The next step's beams, decided on the host."""

    parents: np.ndarray  # (A'*k,) each beam's parent among this step's beams
    words: np.ndarray  # (A'*k,) the word it adds
    scores: np.ndarray  # (A', k)
    kept: np.ndarray | None  # rows of this step still searching; None: all of them


def _beams_of(rows: np.ndarray, k: int) -> np.ndarray:
    """Flat beam indices (len(rows)*k,) of the given rows."""
    return (rows[:, None] * k + np.arange(k)).ravel()


class _Bookkeeping:
    """Beam search's host side: alive beams, finished pools, back-pointers. NumPy only.

    Row a of a step is the a-th image still searching; ``rows`` maps it to the batch.
    """

    def __init__(
        self, batch: int, k: int, vocab_size: int, end_id: int, config: SearchConfig
    ) -> None:
        self.k, self.vocab_size, self.end_id, self.config = k, vocab_size, end_id, config
        self.rows = np.arange(batch)
        # the pool of finished beams per image, best first; -inf: an empty place
        self.pool_norm = np.full((batch, k), -np.inf, dtype=np.float32)
        self.pool_score = np.full((batch, k), -np.inf, dtype=np.float32)
        self.pool_step = np.zeros((batch, k), dtype=np.int64)
        self.pool_beam = np.zeros((batch, k), dtype=np.int64)
        self.parents: list[np.ndarray] = []  # per step, (A_{s+1}*k,): index into step s
        self.words: list[np.ndarray] = []  # per step, (A_{s+1}*k,): the word chosen
        penalty = config.length_penalty
        self.bound_scale = float(config.max_len + 1) ** penalty if penalty > 0 else 1.0

    def step(self, step: int, top_scores: np.ndarray, top_index: np.ndarray) -> _Next | None:
        """The 2k best candidates of every row (A, 2k) → the next beams, or None when
        every image is done."""
        k = self.k
        alive_rows = len(self.rows)
        token = top_index % self.vocab_size  # (A, 2k)
        beam = top_index // self.vocab_size + (np.arange(alive_rows) * k)[:, None]  # flat
        finite = np.isfinite(top_scores)
        is_end = token == self.end_id

        # finished: an <end> among the k best candidates, into the pool (stable sort:
        # a tie keeps the beam that finished first)
        ends = is_end[:, :k] & finite[:, :k]
        if ends.any():
            penalty = np.float32(float(step + 1) ** self.config.length_penalty)
            norm = np.where(ends, top_scores[:, :k] / penalty, np.float32(-np.inf))
            r = self.rows
            both_norm = np.concatenate([self.pool_norm[r], norm], axis=1)  # (A, 2k)
            order = np.argsort(-both_norm, axis=1, kind="stable")[:, :k]
            take = np.arange(alive_rows)[:, None], order
            self.pool_norm[r] = both_norm[take]
            self.pool_score[r] = np.concatenate([self.pool_score[r], top_scores[:, :k]], 1)[take]
            steps = np.full((alive_rows, k), step, dtype=np.int64)
            self.pool_step[r] = np.concatenate([self.pool_step[r], steps], 1)[take]
            self.pool_beam[r] = np.concatenate([self.pool_beam[r], beam[:, :k]], 1)[take]
        worst = self.pool_norm[self.rows, -1]  # (A,), -inf while not full

        # alive: the first k candidates that are not <end>; too few (tiny vocabulary):
        # dead padding beams with score -inf that copy the first alive one
        alive = finite & ~is_end  # (A, 2k)
        pick = np.argsort(~alive, axis=1, kind="stable")[:, :k]  # alive first, in rank order
        count = alive.sum(axis=1, keepdims=True)  # (A, 1)
        dead = np.arange(k) >= count  # (A, k)
        take = np.arange(alive_rows)[:, None], pick
        next_scores = np.where(dead, np.float32(-np.inf), top_scores[take])
        next_beams = np.where(dead, beam[take][:, :1], beam[take])
        next_tokens = np.where(dead, token[take][:, :1], token[take])

        # done: k finished that no alive beam can beat (log-probs only fall as a beam
        # grows; with a length penalty the bound assumes the longest caption, which
        # flatters it: a conservative test), or nothing alive (bound -inf)
        bound = next_scores.max(axis=1) / np.float32(self.bound_scale)
        keep = np.flatnonzero(~(bound <= worst))
        if len(keep) == 0:
            return None
        parents, words = next_beams[keep].ravel(), next_tokens[keep].ravel()
        self.parents.append(parents)
        self.words.append(words)
        if len(keep) == alive_rows:
            return _Next(parents, words, next_scores, kept=None)
        self.rows = self.rows[keep]
        return _Next(parents, words, next_scores[keep], kept=keep)

    def nbest(self, alphas: list[np.ndarray], n: int) -> list[list[Hypothesis]]:
        """Each image's ``n`` best finished beams (best first), words and maps traced back.
        The best one is always there: at ``max_len`` every alive beam is forced to end."""
        return [
            [self._trace(b, j, alphas) for j in range(min(n, self.k)) if j == 0 or self._has(b, j)]
            for b in range(len(self.pool_norm))
        ]

    def _has(self, b: int, j: int) -> bool:
        return bool(np.isfinite(self.pool_norm[b, j]))

    def _trace(self, b: int, j: int, alphas: list[np.ndarray]) -> Hypothesis:
        length, beam = int(self.pool_step[b, j]), int(self.pool_beam[b, j])
        ids = [0] * length
        maps = np.empty((length, alphas[0].shape[1]), dtype=np.float32)
        for t in range(length - 1, -1, -1):  # word t was chosen at step t
            ids[t] = int(self.words[t][beam])
            beam = int(self.parents[t][beam])
            maps[t] = alphas[t][beam]
        score, norm = float(self.pool_score[b, j]), float(self.pool_norm[b, j])
        return Hypothesis(ids, score, torch.from_numpy(maps), norm)


def _host_steps(steps: list[Tensor]) -> list[np.ndarray]:
    """Per-step tensors copied to the host in one transfer, split back per step."""
    if not steps:
        return []
    joined = torch.cat(steps).cpu()
    if joined.is_floating_point():
        joined = joined.float()
    return list(np.split(joined.numpy(), np.cumsum([t.size(0) for t in steps])[:-1]))
