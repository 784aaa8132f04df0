"""The captioner's subcommands: ``train``, ``evaluate``, ``neighbours``, ``describe``; and
the search flags that the service's commands share.

Training, evaluation and indexing runs are ``captioner.training.run``'s; ``describe``
captions image files with ``captioner.api``. ``stream.cli.main`` adds these to the
``scenecast`` entry point.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    pass

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


# -- train, evaluate, neighbours ---------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from captioner.training.run import TrainRun, train_from_folder

    train_from_folder(
        TrainRun(
            data=args.data,
            out=args.out,
            cache=args.cache,
            encoder=args.encoder,
            encoder_weights=args.encoder_weights,
            input_size=args.input_size,
            min_freq=args.min_freq,
            max_words=args.max_words,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            dropout=args.dropout,
            label_smoothing=args.label_smoothing,
            alpha_c=args.alpha_c,
            dims=tuple(args.dims),
            early_stop=args.early_stop,
            flip=not args.no_flip,
            seed=args.seed,
            threads=args.threads,
            log_every=args.log_every,
            steps_per_epoch=args.steps_per_epoch,
            scst=args.scst,
        )
    )
    return 0


def search_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The SearchConfig fields that ``evaluate`` and ``describe``'s search flags set."""
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
    return changes


def _search_config(args: argparse.Namespace, base: SearchConfig) -> SearchConfig:
    return dataclasses.replace(base, **search_changes(args))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from captioner.training.run import EvaluateRun, evaluate_folder

    evaluate_folder(
        EvaluateRun(
            data=args.data,
            cache=args.cache,
            split=args.split,
            checkpoint=args.checkpoint,
            encoder_weights=args.encoder_weights,
            search=search_changes(args),
            json=args.json,
            limit=args.limit,
            knn_k=args.knn_k if args.baseline == "knn" else None,
        )
    )
    return 0


def cmd_neighbours(args: argparse.Namespace) -> int:
    from captioner.training.run import index_neighbours

    index_neighbours(
        args.data,
        cache=args.cache,
        checkpoint=args.checkpoint,
        encoder_weights=args.encoder_weights,
        dims=args.dims,
        out=args.out,
    )
    return 0


# -- describe ---------------------------------------------------------------------------


def cmd_describe(args: argparse.Namespace) -> int:
    from captioner.describe import describe_files

    lines = describe_files(
        args.images, checkpoint=args.checkpoint, device=args.device, search=search_changes(args)
    )
    for path, text in lines:
        print(f"{path.name}: {text}")
    return 0
