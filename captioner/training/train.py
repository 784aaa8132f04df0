"""Train the attention decoder on cached encoder features.

Teacher forcing, Adam, gradient clipping, the learning rate halved when val
CIDEr-D stops improving, early stopping on val CIDEr-D. ``OUT/last.pt`` holds the
optimizer too and a run started again with the same OUT resumes from it;
``OUT/best.pt`` is the best model so far on val.

Horizontally flipped images (their features cached separately) double the data;
their captions swap "left" and "right".
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

from captioner.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from captioner.encoder import EncoderSpec
from captioner.model import Decoder, ModelConfig, caption_loss
from captioner.preprocess import Preprocess
from captioner.search.search import SearchConfig
from captioner.training.data import Item
from captioner.training.evaluate import generate, score
from captioner.vocab import Vocabulary

_MIRROR = {"left": "right", "right": "left"}


@dataclass(frozen=True)
class TrainConfig:
    out: Path
    epochs: int = 30
    batch_size: int = 128
    lr: float = 4e-4
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    alpha_c: float = 1.0 / 49  # λ of Σ_p (1 − Σ_t α)²: 1/P ≈ the usual mean-over-cells form
    label_smoothing: float = 0.0
    max_words: int = 20
    lr_decay: float = 0.5  # factor when val CIDEr-D has not improved for `decay_patience`
    decay_patience: int = 1
    early_stop: int = 4  # epochs without val improvement before stopping
    log_every: int = 50
    eval_search: SearchConfig = dataclasses.field(
        default_factory=lambda: SearchConfig(method="greedy")
    )
    seed: int = 0
    threads: int = 0  # torch threads; 0 = torch's default

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


@dataclass
class TrainSet:
    """Features (N, P, D) float16 with their captions; flipped copies appended."""

    features: torch.Tensor
    captions: list[tuple[str, ...]]  # one per row: each image × each reference

    @classmethod
    def build(
        cls,
        items: Sequence[Item],
        features: np.ndarray,
        flipped: np.ndarray | None = None,
    ) -> TrainSet:
        rows, captions = [], []
        for i, item in enumerate(items):
            for cap in item.captions:
                rows.append(i)
                captions.append(cap)
        base = torch.from_numpy(np.array(features))  # (N, P, D) fp16, read into memory
        index = torch.tensor(rows)
        feats = [base.index_select(0, index)]
        caps = list(captions)
        if flipped is not None:
            feats.append(torch.from_numpy(np.array(flipped)).index_select(0, index))
            caps += [tuple(_MIRROR.get(w, w) for w in c) for c in captions]
        return cls(torch.cat(feats), caps)


def encode_captions(
    captions: Sequence[Sequence[str]], vocab: Vocabulary, max_words: int
) -> torch.Tensor:
    """(N, max_words + 2) ids: <start> words <end> <pad>…"""
    out = torch.full((len(captions), max_words + 2), vocab.pad_id, dtype=torch.long)
    for i, cap in enumerate(captions):
        ids = vocab.encode(cap, max_len=max_words)
        out[i, : len(ids)] = torch.tensor(ids)
    return out


@dataclass
class TrainState:
    epoch: int = 0
    step: int = 0
    best: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    since_decay: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def train(
    config: TrainConfig,
    *,
    train_set: TrainSet,
    val_items: Sequence[Item],
    val_features: np.ndarray,
    vocab: Vocabulary,
    model_config: ModelConfig,
    encoder: EncoderSpec,
    preprocess: Preprocess,
    log: Callable[[str], None] = print,
) -> Checkpoint:
    """Train until ``epochs`` or early stopping; return the best checkpoint."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    out = Path(config.out)
    decoder = Decoder(model_config)
    optimizer = torch.optim.Adam(
        decoder.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    state = TrainState()
    last = out / "last.pt"
    if last.is_file():
        resumed = load_checkpoint(last)
        if resumed.vocab.words != vocab.words or resumed.config != model_config:
            raise ValueError(f"{last} is from a different vocabulary or model; use another --out")
        decoder.load_state_dict(resumed.decoder_state)
        optimizer.load_state_dict(resumed.train["optimizer"])
        state = TrainState(**{k: v for k, v in resumed.train.items() if k != "optimizer"})
        log(f"resuming from {last}: epoch {state.epoch}, best val CIDEr-D {state.best:.3f}")

    targets = encode_captions(train_set.captions, vocab, config.max_words)  # (N, L)
    lengths = targets.ne(vocab.pad_id).sum(1)  # (N,)
    n = len(targets)
    steps_per_epoch = math.ceil(n / config.batch_size)

    def make_checkpoint(metrics: dict[str, Any], train_extra: dict[str, Any]) -> Checkpoint:
        return Checkpoint(
            config=model_config,
            encoder=encoder,
            preprocess=preprocess,
            vocab=vocab,
            decoder_state=decoder.state_dict(),
            search=config.eval_search,
            metrics=metrics,
            train=train_extra,
        )

    while state.epoch < config.epochs and state.bad_epochs < config.early_stop:
        decoder.train()
        order = list(range(n))
        random.Random(config.seed * 100_003 + state.epoch).shuffle(order)  # resumable
        started = time.monotonic()
        running = running_ce = 0.0
        for b in range(steps_per_epoch):
            idx = torch.tensor(order[b * config.batch_size : (b + 1) * config.batch_size])
            width = int(lengths[idx].max())
            caps = targets[idx, :width]  # (b, L)
            feats = train_set.features[idx].float()  # (b, P, D)
            logits, alphas = decoder(feats, caps, vocab.pad_id)  # (b, L-1, V), (b, L-1, P)
            loss, ce = caption_loss(
                logits,
                alphas,
                caps[:, 1:],
                pad_id=vocab.pad_id,
                alpha_c=config.alpha_c,
                label_smoothing=config.label_smoothing,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(decoder.parameters(), config.grad_clip)
            optimizer.step()
            state.step += 1
            running += loss.item()
            running_ce += ce.item()
            if (b + 1) % config.log_every == 0 or b + 1 == steps_per_epoch:
                done = b + 1
                elapsed = time.monotonic() - started
                eta = elapsed / done * (steps_per_epoch - done)
                k = config.log_every if (b + 1) % config.log_every == 0 else done % config.log_every
                log(
                    f"epoch {state.epoch + 1} step {done}/{steps_per_epoch} "
                    f"loss {running / k:.3f} ce {running_ce / k:.3f} "
                    f"lr {optimizer.param_groups[0]['lr']:.2e} "
                    f"{done / elapsed:.1f} it/s ETA {eta:.0f}s"
                )
                running = running_ce = 0.0
        epoch_time = time.monotonic() - started
        hyps = generate(decoder, val_features, vocab, config.eval_search)
        evaluation = score(hyps, val_items)
        cider = evaluation.scores["CIDEr-D"]
        state.epoch += 1
        state.history.append(
            {"epoch": state.epoch, "seconds": round(epoch_time, 1), **evaluation.scores}
        )
        improved = cider > state.best
        if improved:
            state.best, state.best_epoch, state.bad_epochs, state.since_decay = (
                cider,
                state.epoch,
                0,
                0,
            )
            metrics = {
                "val": evaluation.scores,
                "epoch": state.epoch,
                "search": config.eval_search.method,
            }
            save_checkpoint(out / "best.pt", make_checkpoint(metrics, {}))
        else:
            state.bad_epochs += 1
            state.since_decay += 1
            if state.since_decay >= config.decay_patience:
                for group in optimizer.param_groups:
                    group["lr"] *= config.lr_decay
                state.since_decay = 0
        log(
            f"epoch {state.epoch} done in {epoch_time:.0f}s: val "
            + " ".join(f"{k} {v:.3f}" for k, v in evaluation.scores.items())
            + f" (mean length {evaluation.mean_length:.1f}, "
            f"{evaluation.distinct_words} distinct words)"
            + (" *best*" if improved else f" (best {state.best:.3f} at epoch {state.best_epoch})")
        )
        extra = {**dataclasses.asdict(state), "optimizer": optimizer.state_dict()}
        save_checkpoint(last, make_checkpoint({"val": evaluation.scores}, extra))
    if state.bad_epochs >= config.early_stop:
        log(f"early stop: no val CIDEr-D gain for {config.early_stop} epochs")
    return load_checkpoint(out / "best.pt")
