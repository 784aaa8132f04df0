"""The captioner's subcommands: ``train``, ``evaluate``, ``bench captioner``, ``describe``.

``stream/cli.py`` owns the ``scenecast`` entry point and adds these to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from captioner.exceptions import CheckpointError, DatasetError
from captioner.search.config import SearchConfig
from stream.cli.arg_types import (
    OFF,
    beam_size,
    fraction,
    length_penalty,
    margin_or_off,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    word_list,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

    from captioner.checkpoint import Checkpoint
    from captioner.encoder import Encoder, EncoderSpec
    from captioner.training.data import Item
    from captioner.training.train import TrainSet
    from captioner.vocab import Vocabulary

DEFAULT_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scenecast" / "features"
)


def add_search_flags(p: argparse.ArgumentParser, *, beam: int = 3) -> None:
    p.add_argument("--beam", type=beam_size, default=beam, help="beam size; 1 = greedy")
    p.add_argument(
        "--length-penalty",
        type=length_penalty,
        default=None,
        help="rank beams by score / length**P (default: the model's)",
    )
    p.add_argument(
        "--no-repeat-ngram",
        type=non_negative_int,
        default=None,
        help="never repeat an n-gram within a caption (default: the model's)",
    )
    p.add_argument(
        "--repeat-words",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--no-repeat-words: each word at most once, function words (a, of, the, "
        "...) excepted; --repeat-words: repeats allowed (default: the model's)",
    )
    add_consensus_flag(p)
    add_ban_words_flag(p)


def add_ban_words_flag(p: argparse.ArgumentParser) -> None:
    """``--ban-words W1,W2``: replaces the model's ``banned_words``; None: not given."""
    p.add_argument(
        "--ban-words",
        type=word_list,
        default=None,
        metavar="W1,W2",
        help="words or phrases never to write, comma-separated (e.g. 'stock,royalty,white "
        "background': no 'background' right after 'white'); '' for none (default: the "
        "model's; the bundled one bans stock,royalty)",
    )


def add_consensus_flag(p: argparse.ArgumentParser) -> None:
    """``--consensus-k K``: how many nearest training images vote on the beam's
    finished captions (captioner/consensus.py); None (not given): the model's."""
    p.add_argument(
        "--consensus-k",
        type=non_negative_int,
        default=None,
        metavar="K",
        help="rerank beam search's finished captions by agreement with the captions of "
        "the K nearest training images; 0: off (default: the model's)",
    )


def add_hold_flag(p: argparse.ArgumentParser) -> None:
    """``--hold MARGIN|off`` for the commands that caption streams (captioner/hold.py)."""
    p.add_argument(
        "--hold",
        type=margin_or_off,
        default=None,
        metavar="MARGIN",
        help="a stream keeps its caption while it scores within MARGIN of a new frame's "
        "best caption (with consensus reranking); off: every frame captioned on its own "
        f"(default: {SearchConfig().hold_margin})",
    )


def search_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The stored search settings that ``--consensus-k``, ``--ban-words`` and ``--hold``
    replace (those given), for :meth:`captioner.api.Captioner.override`."""
    changes: dict[str, Any] = {}
    if getattr(args, "consensus_k", None) is not None:
        changes["consensus_k"] = args.consensus_k
    if getattr(args, "ban_words", None) is not None:
        changes["banned_words"] = args.ban_words
    hold = getattr(args, "hold", None)
    if hold is not None:
        changes["hold_margin"] = None if hold == OFF else hold
    return changes


def add_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = sub.add_parser("train", help="train the decoder on a Karpathy-format caption set")
    t.add_argument("--data", type=Path, required=True, help="folder with captions.json and images/")
    t.add_argument("--out", type=Path, default=Path("runs/train"), help="checkpoints go here")
    t.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="encoder feature cache")
    t.add_argument("--encoder", default="efficientnet_lite0")
    t.add_argument("--encoder-weights", type=Path, default=None)
    t.add_argument("--input-size", type=positive_int, default=224)
    t.add_argument("--min-freq", type=positive_int, default=3)
    t.add_argument("--max-words", type=positive_int, default=20)
    t.add_argument("--epochs", type=positive_int, default=30)
    t.add_argument("--batch-size", type=positive_int, default=128)
    t.add_argument("--lr", type=positive_float, default=4e-4)
    t.add_argument("--dropout", type=fraction, default=0.5)
    t.add_argument("--label-smoothing", type=fraction, default=0.0)
    t.add_argument("--alpha-c", type=non_negative_float, default=1.0 / 49)
    t.add_argument(
        "--dims",
        type=positive_int,
        nargs=3,
        default=(512, 512, 512),
        metavar=("EMBED", "ATTENTION", "DECODER"),
    )
    t.add_argument("--early-stop", type=positive_int, default=4)
    t.add_argument("--no-flip", action="store_true", help="do not add flipped images")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=non_negative_int, default=0)
    t.add_argument("--log-every", type=positive_int, default=50)
    t.add_argument(
        "--steps-per-epoch",
        type=int,
        default=0,
        help="SCST only: steps per epoch (0 = the whole training set)",
    )
    t.add_argument(
        "--scst",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="fine-tune this cross-entropy checkpoint with self-critical training "
        "on CIDEr-D (use a small --lr, e.g. 2e-5)",
    )
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="BLEU-1..4 and CIDEr-D on a split")
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--split", default="val", choices=("train", "val", "test"))
    e.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled model")
    e.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    e.add_argument("--encoder-weights", type=Path, default=None)
    e.add_argument(
        "--json",
        type=Path,
        default=None,
        help="write scores and captions here (default: runs/evaluate/MODEL-SPLIT-beamK.json)",
    )
    e.add_argument("--limit", type=positive_int, default=None, help="first N images only")
    e.add_argument(
        "--baseline",
        choices=("knn",),
        default=None,
        help="also score the nearest-neighbour retrieval baseline (Devlin et al. 2015)",
    )
    e.add_argument("--knn-k", type=positive_int, default=30, help="neighbours for the baseline")
    add_search_flags(e)
    e.set_defaults(func=cmd_evaluate)

    n = sub.add_parser(
        "neighbours",
        help="index a model's training images and captions for consensus reranking",
    )
    n.add_argument("--data", type=Path, required=True, help="the model's training caption set")
    n.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled model")
    n.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    n.add_argument("--encoder-weights", type=Path, default=None)
    n.add_argument("--dims", type=positive_int, default=128, help="principal components kept")
    n.add_argument(
        "--out", type=Path, default=None, help="default: NAME.neighbours.npz beside NAME.pt"
    )
    n.set_defaults(func=cmd_neighbours)

    d = sub.add_parser("describe", help="caption image files and print one line each")
    d.add_argument("images", nargs="+", type=Path)
    d.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled model")
    d.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    add_search_flags(d, beam=5)  # as the service captions (stream/caption.py, SERVICE_BEAM)
    d.set_defaults(func=cmd_describe)


# -- train ------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from captioner.checkpoint import save_checkpoint
    from captioner.encoder import EncoderSpec, build_encoder
    from captioner.training.data import load_dataset
    from captioner.training.features import cache_path, extract_features
    from captioner.training.train import TrainSet
    from captioner.vocab import Vocabulary

    log = _logger(args.out / "train.log")
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = load_dataset(args.data)
    train_items, val_items = dataset.split("train"), dataset.split("val")
    vocab = Vocabulary.build((c for it in train_items for c in it.captions), min_freq=args.min_freq)
    log(
        f"{len(train_items)} train / {len(val_items)} val images; vocabulary {len(vocab)} words "
        f"(min freq {args.min_freq})"
    )
    spec = EncoderSpec(name=args.encoder, size=args.input_size)
    encoder = build_encoder(spec, weights=args.encoder_weights)
    feats = {}
    for split, items, flipped in (
        ("val", val_items, False),
        ("train", train_items, False),
        ("train", train_items, True),
    ):
        if flipped and args.no_flip:
            continue
        path = cache_path(args.cache, encoder, split, flipped=flipped)
        feats[(split, flipped)] = extract_features(
            dataset, items, encoder, path, flipped=flipped, log=log
        )
    train_set = TrainSet.build(train_items, feats[("train", False)], feats.get(("train", True)))
    log(f"{len(train_set.captions)} training rows (captions × images, flips included)")
    if args.scst:
        from captioner.checkpoint import load_checkpoint
        from captioner.training.scst import ScstConfig, scst

        start = load_checkpoint(args.scst)
        if start.encoder != spec:
            raise CheckpointError(f"{args.scst} was trained on {start.encoder}, not {spec}")
        best = scst(
            ScstConfig(
                out=args.out,
                epochs=args.epochs,
                lr=args.lr,
                log_every=args.log_every,
                max_words=args.max_words,
                early_stop=args.early_stop,
                seed=args.seed,
                steps_per_epoch=args.steps_per_epoch,
            ),
            start,
            train_set=train_set,
            val_items=val_items,
            val_features=feats[("val", False)],
            log=log,
        )
    else:
        best = _train_xe(
            args, log, train_set, val_items, feats[("val", False)], vocab, spec, encoder
        )
    save_checkpoint(args.out / "model-fp16.pt", best, half=True)
    log(
        f"best val {best.metrics.get('val')} → {args.out / 'best.pt'} "
        f"(fp16 copy: {args.out / 'model-fp16.pt'})"
    )
    return 0


def _train_xe(
    args: argparse.Namespace,
    log: Callable[[str], None],
    train_set: TrainSet,
    val_items: Sequence[Item],
    val_features: np.ndarray,
    vocab: Vocabulary,
    spec: EncoderSpec,
    encoder: Encoder,
) -> Checkpoint:
    from captioner.model import ModelConfig
    from captioner.training.train import TrainConfig, train

    embed, attention, decoder_dim = args.dims
    model_config = ModelConfig(
        vocab_size=len(vocab),
        encoder_dim=encoder.dim,
        embed_dim=embed,
        attention_dim=attention,
        decoder_dim=decoder_dim,
        dropout=args.dropout,
    )
    config = TrainConfig(
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        alpha_c=args.alpha_c,
        label_smoothing=args.label_smoothing,
        max_words=args.max_words,
        early_stop=args.early_stop,
        log_every=args.log_every,
        seed=args.seed,
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


def _logger(path: Path) -> Callable[[str], None]:
    path.parent.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        stamped = f"{time.strftime('%H:%M:%S')} {line}"
        print(stamped, flush=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(stamped + "\n")

    return log


# -- evaluate ---------------------------------------------------------------------------


def _search_config(args: argparse.Namespace, base: SearchConfig) -> SearchConfig:
    changes: dict[str, Any] = {"method": "beam" if args.beam > 1 else "greedy", "beam": args.beam}
    if args.length_penalty is not None:
        changes["length_penalty"] = args.length_penalty
    if args.no_repeat_ngram is not None:
        changes["no_repeat_ngram"] = args.no_repeat_ngram
    if args.repeat_words is not None:
        changes["no_repeat_words"] = not args.repeat_words
    if args.ban_words is not None:
        changes["banned_words"] = args.ban_words
    if args.consensus_k is not None:
        changes["consensus_k"] = args.consensus_k
    return dataclasses.replace(base, **changes)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from captioner.api import Captioner
    from captioner.search.reranked import reranks
    from captioner.training.data import load_dataset
    from captioner.training.evaluate import Evaluation, format_table, generate, score
    from captioner.training.features import cache_path, extract_features

    dataset = load_dataset(args.data)
    items = dataset.split(args.split)[: args.limit]
    if args.baseline == "knn":  # told before features are extracted
        n_train = len(dataset.split("train"))
        high = n_train - 1 if args.split == "train" else n_train  # less the query itself
        if not 1 <= args.knn_k <= high:
            raise DatasetError(
                f"--knn-k {args.knn_k}: {args.data} has {n_train} training images; accepted "
                f"here: 1 to {high}"
            )
    cap = Captioner.load(args.checkpoint, device="cpu", encoder_weights=args.encoder_weights)
    config = _search_config(args, cap.search_config)
    path = cache_path(args.cache, cap.encoder, args.split, flipped=False)
    if args.limit:
        path = path.with_name(f"{args.split}-first{args.limit}.npy")
    features = extract_features(dataset, items, cap.encoder, path, log=print)
    systems: dict[str, Evaluation] = {}
    started = time.monotonic()
    name = f"{cap.model_id} ({config.method}, beam {config.beam})"
    if reranks(config, cap.neighbours):
        name = f"{name[:-1]}, consensus k={config.consensus_k})"
    hyps = generate(cap.decoder, features, cap.vocab, config, index=cap.neighbours)
    systems[name] = score(hyps, items)
    seconds = time.monotonic() - started
    if args.baseline == "knn":
        from captioner.training.baseline import knn_consensus, pool_features

        train_items = dataset.split("train")
        train_path = cache_path(args.cache, cap.encoder, "train", flipped=False)
        train_grid = extract_features(dataset, train_items, cap.encoder, train_path, log=print)
        hyps = knn_consensus(
            pool_features(train_grid),
            [it.captions[0] for it in train_items],
            pool_features(features),
            k=args.knn_k,
            exclude_self=args.split == "train",
        )
        systems[f"kNN consensus (k={args.knn_k}, {cap.encoder.name} pooled)"] = score(hyps, items)
    print(format_table({n: e.scores for n, e in systems.items()}))
    for n, e in systems.items():
        print(f"{n}: mean length {e.mean_length:.1f} words, {e.distinct_words} distinct words")
    print(f"{len(items)} images; model search {seconds:.1f}s")
    json_path = (
        args.json or Path("runs/evaluate") / f"{cap.model_id}-{args.split}-beam{args.beam}.json"
    )
    report = {
        "split": args.split,
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
    print(f"wrote {json_path}")
    return 0


# -- neighbours -------------------------------------------------------------------------


def cmd_neighbours(args: argparse.Namespace) -> int:
    from captioner.api import Captioner
    from captioner.checkpoint import neighbours_path
    from captioner.default_model import default_weights_path
    from captioner.search.consensus import build_index, save_index
    from captioner.training.baseline import pool_features
    from captioner.training.data import load_dataset
    from captioner.training.features import cache_path, extract_features

    checkpoint = args.checkpoint or default_weights_path()
    dataset = load_dataset(args.data)
    items = dataset.split("train")
    if args.dims > len(items):  # told before features are extracted
        raise DatasetError(
            f"--dims {args.dims}: {args.data} has {len(items)} training images, and an "
            f"index keeps at most as many principal components; accepted here: 1 to "
            f"{len(items)}"
        )
    cap = Captioner.load(checkpoint, device="cpu", encoder_weights=args.encoder_weights)
    path = cache_path(args.cache, cap.encoder, "train", flipped=False)
    grid = extract_features(dataset, items, cap.encoder, path, log=print)
    index = build_index(
        pool_features(grid),
        [it.captions[0] for it in items],
        encoder=cap.encoder.id,
        dims=args.dims,
    )
    out = args.out or neighbours_path(checkpoint)
    save_index(out, index)
    print(f"wrote {out}: {len(index)} training images, {args.dims} dims ({cap.encoder.id})")
    return 0


# -- describe ---------------------------------------------------------------------------


def cmd_describe(args: argparse.Namespace) -> int:
    from PIL import Image, UnidentifiedImageError

    from captioner.api import Captioner
    from captioner.sample_photos import load_rgb

    images = []
    for path in args.images:
        try:
            images.append(load_rgb(path))
        except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
            print(
                f"scenecast: error: cannot read image {path}: {exc} "
                "(accepted: JPEG, PNG, BMP, WebP, … files Pillow can open)",
                file=sys.stderr,
            )
            return 2
        except Image.DecompressionBombError as exc:  # not an OSError: Pillow's own guard
            print(f"scenecast: error: cannot read image {path}: {exc}", file=sys.stderr)
            return 2
    cap = Captioner.load(args.checkpoint, device=args.device)
    config = _search_config(args, cap.search_config)
    for path, caption in zip(args.images, cap.caption(images, config=config), strict=True):
        print(f"{path.name}: {caption.text}")
    return 0
