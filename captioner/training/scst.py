"""Self-critical sequence training (Rennie et al. 2017) on CIDEr-D.

Fine-tunes a cross-entropy-trained decoder to maximise the CIDEr-D of its own
sampled captions. For each image, ``samples`` captions are drawn; each one's
advantage is its reward minus the mean reward of the image's other samples (the
baseline of Luo 2020, "A Better Variant of Self-Critical Sequence Training"), and
the loss is ``-advantage · Σ_t log p(w_t)``.

Rewards use document frequencies of the training references (:class:`CiderD`).
Checkpoints and early stopping on val CIDEr-D work as in ``train.py``.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from captioner.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from captioner.metrics.cider import CiderD
from captioner.model import Decoder
from captioner.search.search import SearchConfig
from captioner.training.data import Item
from captioner.training.evaluate import generate, score
from captioner.training.train import TrainSet, TrainState
from captioner.vocab import Vocabulary


@dataclass(frozen=True)
class ScstConfig:
    out: Path
    epochs: int = 5
    batch_size: int = 50  # images per step
    samples: int = 5  # captions sampled per image
    lr: float = 2e-5
    grad_clip: float = 5.0
    max_words: int = 16
    early_stop: int = 2
    log_every: int = 20
    steps_per_epoch: int = 0  # 0: the whole training set; else a random part each epoch
    eval_search: SearchConfig = dataclasses.field(
        default_factory=lambda: SearchConfig(method="greedy")
    )
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 2:
            raise ValueError(
                f"samples must be >= 2 (the baseline is the others' mean), got {self.samples}"
            )


def sample_captions(
    decoder: Decoder, features: Tensor, vocab: Vocabulary, *, samples: int, max_words: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Sample ``samples`` captions per image, keeping the graph for the gradient.

    features (B, P, D). Returns token ids (B·S, T), their log-probabilities (B·S, T)
    and a mask of real tokens, the final <end> included (B·S, T).
    """
    feats = features.repeat_interleave(samples, dim=0)  # (N = B·S, P, D)
    projected = decoder.project(feats)  # (N, P, A)
    state = decoder.init_state(feats)
    n = feats.size(0)
    tokens = torch.full((n,), vocab.start_id, dtype=torch.long)
    banned = torch.zeros(len(vocab))
    banned[[vocab.pad_id, vocab.start_id, vocab.unk_id]] = float("-inf")
    alive = torch.ones(n, dtype=torch.bool)
    ids, logps, masks = [], [], []
    for step in range(max_words + 1):
        logits, _, state = decoder.step(feats, projected, tokens, state)
        logp = (logits + banned).log_softmax(dim=-1)  # (N, V)
        if step == max_words:  # out of room: end here
            tokens = torch.full((n,), vocab.end_id, dtype=torch.long)
        else:
            tokens = torch.multinomial(logp.detach().exp(), 1).squeeze(1)  # (N,)
        ids.append(tokens)
        logps.append(logp.gather(1, tokens.unsqueeze(1)).squeeze(1))
        masks.append(alive.clone())
        alive = alive & tokens.ne(vocab.end_id)
        if not bool(alive.any()):
            break
    return torch.stack(ids, 1), torch.stack(logps, 1), torch.stack(masks, 1).float()


def scst_loss(logps: Tensor, masks: Tensor, rewards: Tensor, samples: int) -> Tensor:
    """Policy gradient with the leave-one-out mean of each image's samples as baseline.

    logps, masks (B·S, T); rewards (B·S,).
    """
    grouped = rewards.view(-1, samples)  # (B, S)
    baseline = (grouped.sum(1, keepdim=True) - grouped) / (samples - 1)  # (B, S)
    advantage = (grouped - baseline).reshape(-1)  # (B·S,)
    return -(advantage.unsqueeze(1) * logps * masks).sum(1).mean()


def scst(
    config: ScstConfig,
    start: Checkpoint,
    *,
    train_set: TrainSet,
    val_items: Sequence[Item],
    val_features: np.ndarray,
    log: Callable[[str], None] = print,
) -> Checkpoint:
    """Fine-tune ``start`` with SCST; returns the best checkpoint on val CIDEr-D."""
    torch.manual_seed(config.seed)
    vocab = start.vocab
    out = Path(config.out)
    decoder = start.build_decoder()
    optimizer = torch.optim.Adam(decoder.parameters(), lr=config.lr)
    state = TrainState()
    last = out / "last.pt"
    if last.is_file():
        resumed = load_checkpoint(last)
        decoder.load_state_dict(resumed.decoder_state)
        optimizer.load_state_dict(resumed.train["optimizer"])
        state = TrainState(**{k: v for k, v in resumed.train.items() if k != "optimizer"})
        log(f"resuming SCST from {last}: epoch {state.epoch}")
    else:  # the starting point is the bar to beat
        hyps = generate(decoder, val_features, vocab, config.eval_search)
        state.best = score(hyps, val_items).scores["CIDEr-D"]
        save_checkpoint(out / "best.pt", dataclasses.replace(start, train={}))
        log(f"SCST starts from val CIDEr-D {state.best:.3f}")
    rewarder = CiderD([[list(c)] for c in train_set.captions])
    n = len(train_set.captions)
    steps = math.ceil(n / config.batch_size)
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)

    def checkpoint(metrics: dict[str, Any], extra: dict[str, Any]) -> Checkpoint:
        return dataclasses.replace(
            start, decoder_state=decoder.state_dict(), metrics=metrics, train=extra
        )

    while state.epoch < config.epochs and state.bad_epochs < config.early_stop:
        decoder.train()
        order = list(range(n))
        random.Random(config.seed * 100_003 + state.epoch).shuffle(order)
        started = time.monotonic()
        reward_sum = count = 0.0
        for b in range(steps):
            rows = order[b * config.batch_size : (b + 1) * config.batch_size]
            feats = train_set.features[torch.tensor(rows)].float()  # (b, P, D)
            ids, logps, masks = sample_captions(
                decoder, feats, vocab, samples=config.samples, max_words=config.max_words
            )
            words = [vocab.decode(seq) for seq in ids.tolist()]
            rewards = torch.tensor(
                [rewarder.score(w, rows[i // config.samples]) for i, w in enumerate(words)]
            )
            loss = scst_loss(logps, masks, rewards, config.samples)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(decoder.parameters(), config.grad_clip)
            optimizer.step()
            state.step += 1
            reward_sum += float(rewards.sum())
            count += len(rewards)
            if (b + 1) % config.log_every == 0 or b + 1 == steps:
                elapsed = time.monotonic() - started
                eta = elapsed / (b + 1) * (steps - b - 1)
                log(
                    f"scst epoch {state.epoch + 1} step {b + 1}/{steps} "
                    f"mean reward {reward_sum / count:.3f} {(b + 1) / elapsed:.2f} it/s "
                    f"ETA {eta:.0f}s"
                )
                reward_sum = count = 0.0
        hyps = generate(decoder, val_features, vocab, config.eval_search)
        evaluation = score(hyps, val_items)
        cider = evaluation.scores["CIDEr-D"]
        state.epoch += 1
        state.history.append({"epoch": state.epoch, **evaluation.scores})
        if cider > state.best:
            state.best, state.best_epoch, state.bad_epochs = cider, state.epoch, 0
            metrics = {"val": evaluation.scores, "epoch": state.epoch, "scst": True}
            save_checkpoint(out / "best.pt", checkpoint(metrics, {}))
        else:
            state.bad_epochs += 1
        log(
            f"scst epoch {state.epoch}: val "
            + " ".join(f"{k} {v:.3f}" for k, v in evaluation.scores.items())
            + f" (mean length {evaluation.mean_length:.1f}, "
            f"{evaluation.distinct_words} distinct words; best {state.best:.3f})"
        )
        extra = {**dataclasses.asdict(state), "optimizer": optimizer.state_dict()}
        save_checkpoint(last, checkpoint({"val": evaluation.scores}, extra))
    return load_checkpoint(out / "best.pt")
