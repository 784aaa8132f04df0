"""Whole training, evaluation and indexing runs, from a caption set's folder: what
``scenecast train``, ``evaluate`` and ``neighbours`` do, as functions of a typed config.

Each run extracts (or reads from its cache) the encoder's features of the images it
needs, then trains, scores or indexes on them; progress goes to ``log`` (and a train
run's ``train.log``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from captioner.exceptions import CheckpointError, DatasetError

if TYPE_CHECKING:
    import numpy as np

    from captioner.checkpoint import Checkpoint
    from captioner.encoder import Encoder, EncoderSpec
    from captioner.training.data import Item
    from captioner.training.evaluate import Evaluation
    from captioner.training.train import TrainSet
    from captioner.vocab import Vocabulary

Log = Callable[[str], None]


# -- train ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainRun:
    """A training run: cross-entropy from scratch, or SCST from ``scst`` (a checkpoint)."""

    data: Path  # folder with captions.json and images/
    out: Path  # checkpoints and train.log go here
    cache: Path  # encoder feature cache
    encoder: str = "efficientnet_lite0"
    encoder_weights: Path | None = None
    input_size: int = 224
    min_freq: int = 3
    max_words: int = 20
    epochs: int = 30
    batch_size: int = 128
    lr: float = 4e-4
    dropout: float = 0.5
    label_smoothing: float = 0.0
    alpha_c: float = 1.0 / 49
    dims: tuple[int, int, int] = (512, 512, 512)  # embed, attention, decoder
    early_stop: int = 4
    flip: bool = True  # add horizontally flipped images
    seed: int = 0
    threads: int = 0  # torch threads (0: torch's choice)
    log_every: int = 50
    steps_per_epoch: int = 0  # SCST only (0: the whole training set)
    scst: Path | None = None


def train_from_folder(run: TrainRun) -> Checkpoint:
    """Train, keep the best checkpoint (``out/best.pt``) and its fp16 copy
    (``out/model-fp16.pt``); returns the best."""
    import torch

    from captioner.checkpoint import save_checkpoint
    from captioner.encoder import EncoderSpec, build_encoder
    from captioner.training.data import load_dataset
    from captioner.training.features import cache_path, extract_features
    from captioner.training.train import TrainSet
    from captioner.vocab import Vocabulary

    log = file_logger(run.out / "train.log")
    if run.threads:
        torch.set_num_threads(run.threads)
    dataset = load_dataset(run.data)
    train_items, val_items = dataset.split("train"), dataset.split("val")
    vocab = Vocabulary.build((c for it in train_items for c in it.captions), min_freq=run.min_freq)
    log(
        f"{len(train_items)} train / {len(val_items)} val images; vocabulary {len(vocab)} words "
        f"(min freq {run.min_freq})"
    )
    spec = EncoderSpec(name=run.encoder, size=run.input_size)
    encoder = build_encoder(spec, weights=run.encoder_weights)
    feats = {}
    for split, items, flipped in (
        ("val", val_items, False),
        ("train", train_items, False),
        ("train", train_items, True),
    ):
        if flipped and not run.flip:
            continue
        path = cache_path(run.cache, encoder, split, flipped=flipped)
        feats[(split, flipped)] = extract_features(
            dataset, items, encoder, path, flipped=flipped, log=log
        )
    train_set = TrainSet.build(train_items, feats[("train", False)], feats.get(("train", True)))
    log(f"{len(train_set.captions)} training rows (captions × images, flips included)")
    if run.scst:
        from captioner.checkpoint import load_checkpoint
        from captioner.training.scst import ScstConfig, scst

        start = load_checkpoint(run.scst)
        if start.encoder != spec:
            raise CheckpointError(f"{run.scst} was trained on {start.encoder}, not {spec}")
        best = scst(
            ScstConfig(
                out=run.out,
                epochs=run.epochs,
                lr=run.lr,
                log_every=run.log_every,
                max_words=run.max_words,
                early_stop=run.early_stop,
                seed=run.seed,
                steps_per_epoch=run.steps_per_epoch,
            ),
            start,
            train_set=train_set,
            val_items=val_items,
            val_features=feats[("val", False)],
            log=log,
        )
    else:
        best = _train_xe(
            run, log, train_set, val_items, feats[("val", False)], vocab, spec, encoder
        )
    save_checkpoint(run.out / "model-fp16.pt", best, half=True)
    log(
        f"best val {best.metrics.get('val')} → {run.out / 'best.pt'} "
        f"(fp16 copy: {run.out / 'model-fp16.pt'})"
    )
    return best


def _train_xe(
    run: TrainRun,
    log: Log,
    train_set: TrainSet,
    val_items: Sequence[Item],
    val_features: np.ndarray,
    vocab: Vocabulary,
    spec: EncoderSpec,
    encoder: Encoder,
) -> Checkpoint:
    from captioner.model import ModelConfig
    from captioner.training.train import TrainConfig, train

    embed, attention, decoder_dim = run.dims
    model_config = ModelConfig(
        vocab_size=len(vocab),
        encoder_dim=encoder.dim,
        embed_dim=embed,
        attention_dim=attention,
        decoder_dim=decoder_dim,
        dropout=run.dropout,
    )
    config = TrainConfig(
        out=run.out,
        epochs=run.epochs,
        batch_size=run.batch_size,
        lr=run.lr,
        alpha_c=run.alpha_c,
        label_smoothing=run.label_smoothing,
        max_words=run.max_words,
        early_stop=run.early_stop,
        log_every=run.log_every,
        seed=run.seed,
    )
    return train(
        config,
        train_set=train_set,
        val_items=val_items,
        val_features=val_features,
        vocab=vocab,
        model_config=model_config,
        encoder=spec,
        preprocess=encoder.preprocess,
        log=log,
    )


def file_logger(path: Path) -> Log:
    """Print each line with the time, and append it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        stamped = f"{time.strftime('%H:%M:%S')} {line}"
        print(stamped, flush=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(stamped + "\n")

    return log


# -- evaluate ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluateRun:
    """Score a checkpoint's captions of a split (and, with ``knn_k``, the retrieval
    baseline's)."""

    data: Path
    cache: Path
    split: str = "val"
    checkpoint: Path | None = None  # None: the bundled model
    encoder_weights: Path | None = None
    search: Mapping[str, Any] = field(default_factory=dict)  # SearchConfig fields to change
    json: Path | None = None  # None: runs/evaluate/MODEL-SPLIT-beamK.json
    limit: int | None = None  # the first N images only
    knn_k: int | None = None  # also score the kNN consensus baseline with k neighbours


def evaluate_folder(run: EvaluateRun, *, log: Log = print) -> Path:
    """Print the scores (a table, then each system's length and vocabulary) and write
    them with every caption to a JSON file; returns its path."""
    from captioner.api import Captioner
    from captioner.search.reranked import reranks
    from captioner.training.data import load_dataset
    from captioner.training.evaluate import format_table, generate, score
    from captioner.training.features import cache_path, extract_features

    dataset = load_dataset(run.data)
    items = dataset.split(run.split)[: run.limit]
    if run.knn_k is not None:  # told before features are extracted
        n_train = len(dataset.split("train"))
        high = n_train - 1 if run.split == "train" else n_train  # less the query itself
        if not 1 <= run.knn_k <= high:
            raise DatasetError(
                f"--knn-k {run.knn_k}: {run.data} has {n_train} training images; accepted "
                f"here: 1 to {high}"
            )
    cap = Captioner.load(run.checkpoint, device="cpu", encoder_weights=run.encoder_weights)
    config = dataclasses.replace(cap.search_config, **run.search)
    path = cache_path(run.cache, cap.encoder, run.split, flipped=False)
    if run.limit:
        path = path.with_name(f"{run.split}-first{run.limit}.npy")
    features = extract_features(dataset, items, cap.encoder, path, log=log)
    systems: dict[str, Evaluation] = {}
    started = time.monotonic()
    name = f"{cap.model_id} ({config.method}, beam {config.beam})"
    if reranks(config, cap.neighbours):
        name = f"{name[:-1]}, consensus k={config.consensus_k})"
    hyps = generate(cap.decoder, features, cap.vocab, config, index=cap.neighbours)
    systems[name] = score(hyps, items)
    seconds = time.monotonic() - started
    if run.knn_k is not None:
        from captioner.training.baseline import knn_consensus, pool_features

        train_items = dataset.split("train")
        train_path = cache_path(run.cache, cap.encoder, "train", flipped=False)
        train_grid = extract_features(dataset, train_items, cap.encoder, train_path, log=log)
        hyps = knn_consensus(
            pool_features(train_grid),
            [it.captions[0] for it in train_items],
            pool_features(features),
            k=run.knn_k,
            exclude_self=run.split == "train",
        )
        systems[f"kNN consensus (k={run.knn_k}, {cap.encoder.name} pooled)"] = score(hyps, items)
    log(format_table({n: e.scores for n, e in systems.items()}))
    for n, e in systems.items():
        log(f"{n}: mean length {e.mean_length:.1f} words, {e.distinct_words} distinct words")
    log(f"{len(items)} images; model search {seconds:.1f}s")
    json_path = (
        run.json or Path("runs/evaluate") / f"{cap.model_id}-{run.split}-beam{config.beam}.json"
    )
    report = {
        "split": run.split,
        "images": len(items),
        "search": dataclasses.asdict(config),
        "systems": {
            n: {
                "scores": e.scores,
                "mean_length": e.mean_length,
                "distinct_words": e.distinct_words,
                "captions": [
                    {
                        "filename": it.filename,
                        "caption": " ".join(h),
                        "references": [" ".join(c) for c in it.captions],
                    }
                    for it, h in zip(items, e.hypotheses, strict=True)
                ],
            }
            for n, e in systems.items()
        },
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    log(f"wrote {json_path}")
    return json_path


# -- neighbours -------------------------------------------------------------------------


def index_neighbours(
    data: Path,
    *,
    cache: Path,
    checkpoint: Path | None = None,
    encoder_weights: Path | None = None,
    dims: int = 128,
    out: Path | None = None,
    log: Log = print,
) -> Path:
    """Index a model's training images and captions for consensus reranking; the index
    goes to ``out`` (default: NAME.neighbours.npz beside NAME.pt). Returns its path."""
    from captioner.api import Captioner
    from captioner.checkpoint import neighbours_path
    from captioner.default_model import default_weights_path
    from captioner.search.consensus import build_index, save_index
    from captioner.training.baseline import pool_features
    from captioner.training.data import load_dataset
    from captioner.training.features import cache_path, extract_features

    checkpoint = checkpoint or default_weights_path()
    dataset = load_dataset(data)
    items = dataset.split("train")
    if dims > len(items):  # told before features are extracted
        raise DatasetError(
            f"--dims {dims}: {data} has {len(items)} training images, and an "
            f"index keeps at most as many principal components; accepted here: 1 to "
            f"{len(items)}"
        )
    cap = Captioner.load(checkpoint, device="cpu", encoder_weights=encoder_weights)
    path = cache_path(cache, cap.encoder, "train", flipped=False)
    grid = extract_features(dataset, items, cap.encoder, path, log=log)
    index = build_index(
        pool_features(grid),
        [it.captions[0] for it in items],
        encoder=cap.encoder.id,
        dims=dims,
    )
    out = out or neighbours_path(checkpoint)
    save_index(out, index)
    log(f"wrote {out}: {len(index)} training images, {dims} dims ({cap.encoder.id})")
    return out
