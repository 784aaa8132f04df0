"""Checkpoints: state_dicts plus everything that rebuilds the model. Never pickled modules.

A checkpoint is a plain dict loaded with ``torch.load(..., weights_only=True)``:

    format, version      "scenecast-captioner", 1
    model                ModelConfig fields
    encoder              {"name", "size"}: the backbone the features came from
    preprocess           Preprocess fields: how images were fitted and normalised
    vocab                list of words, ids in order
    decoder              the decoder's state_dict (float32, or float16 to ship)
    search               the SearchConfig tuned on val (inference default)
    metrics              val scores and the like
    train                optional: optimizer state, epoch, … (to resume training)
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from captioner.encoder import EncoderSpec
from captioner.exceptions import CheckpointError
from captioner.model import Decoder, ModelConfig
from captioner.preprocess import Preprocess
from captioner.search.config import SearchConfig
from captioner.vocab import Vocabulary

FORMAT, VERSION = "scenecast-captioner", 1


@dataclass
class Checkpoint:
    config: ModelConfig
    encoder: EncoderSpec
    preprocess: Preprocess
    vocab: Vocabulary
    decoder_state: dict[str, torch.Tensor]
    search: SearchConfig = field(default_factory=SearchConfig)
    metrics: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    @property
    def encoder_id(self) -> str:
        """ "efficientnet_lite0-224": the features this model reads (and a neighbour
        index must be built from)."""
        return f"{self.encoder.name}-{self.encoder.size}"

    def build_decoder(self) -> Decoder:
        decoder = Decoder(self.config)
        state = {
            k: v.float() if v.is_floating_point() else v for k, v in self.decoder_state.items()
        }
        decoder.load_state_dict(state, strict=True)
        return decoder.eval()


def save_checkpoint(path: Path, ckpt: Checkpoint, *, half: bool = False) -> None:
    """Write atomically (temp file + rename): a crash never leaves half a checkpoint."""
    state = {
        k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
        for k, v in ckpt.decoder_state.items()
    }
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": ckpt.config.to_dict(),
        "encoder": asdict(ckpt.encoder),
        "preprocess": ckpt.preprocess.to_dict(),
        "vocab": list(ckpt.vocab.words),
        "decoder": state,
        "search": asdict(ckpt.search),
        "metrics": ckpt.metrics,
        "train": ckpt.train,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        # torch's own text runs to a page, with advice (weights_only=False) that would
        # run whatever code the file holds; what the user needs is what is accepted
        raise CheckpointError(
            f"{path}: not a readable checkpoint (torch.load found no tensors and plain "
            f"data in it: {type(exc).__name__}); accepted: a .pt file written by "
            "scenecast train, or no --checkpoint for the bundled model"
        ) from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a scenecast captioner checkpoint (no format {FORMAT!r})"
        )
    if raw.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {raw.get('version')}; this build reads {VERSION}"
        )
    try:
        search = dict(raw.get("search") or {})
        return Checkpoint(
            config=ModelConfig(**raw["model"]),
            encoder=EncoderSpec(**raw["encoder"]),
            preprocess=Preprocess.from_dict(raw["preprocess"]),
            vocab=Vocabulary(raw["vocab"]),
            decoder_state=raw["decoder"],
            search=SearchConfig(**search),
            metrics=dict(raw.get("metrics") or {}),
            train=dict(raw.get("train") or {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed checkpoint ({exc})") from exc


def neighbours_path(checkpoint: Path) -> Path:
    """Where a checkpoint's neighbour index lives (captioner/consensus.py): beside it,
    ``NAME.neighbours.npz`` for ``NAME.pt``. Optional: without it nothing is reranked."""
    return checkpoint.with_name(f"{checkpoint.stem}.neighbours.npz")
