"""The captioner as a service calls it: ``Captioner.load().caption(images)``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from captioner.checkpoint import Checkpoint, load_checkpoint, neighbours_path
from captioner.default_model import default_weights_path
from captioner.encoder import CPU_ENCODER_CHUNK, Encoder, build_encoder
from captioner.exceptions import (
    CheckpointError,
    DeviceError,
    NoDefaultModelError,
    SearchConfigError,
)
from captioner.model import Decoder
from captioner.preprocess import to_batch
from captioner.search.config import Method, SearchConfig
from captioner.search.consensus import NeighbourIndex, load_index
from captioner.search.hold import ShownCaptions
from captioner.search.reranked import caption_search
from captioner.search.search import Hypothesis
from captioner.vocab import Vocabulary


@dataclass(frozen=True)
class Caption:
    """One image's caption.

    ``score`` is the summed log-probability of the words and the end token;
    ``attention`` holds one (grid_h, grid_w) map per word, each summing to 1.
    """

    text: str
    tokens: list[str]
    score: float
    attention: np.ndarray  # (T, grid_h, grid_w) float32


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"unsupported device {device!r}; accepted: 'cpu', 'cuda'") from None
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"unsupported device {device!r}; accepted: 'cpu', 'cuda'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} was asked for but CUDA is not available; use 'cpu'")
    return dev


class Captioner:
    """Encoder + attention decoder + vocabulary + search defaults, on one device."""

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        vocab: Vocabulary,
        *,
        search_config: SearchConfig | None = None,
        model_id: str = "scenecast",
        device: torch.device | None = None,
        neighbours: NeighbourIndex | None = None,
    ) -> None:
        self.device = device or torch.device("cpu")
        self.encoder = encoder.to(self.device).eval()
        self.decoder = decoder.to(self.device).eval()
        self.vocab = vocab
        self.search_config = search_config or SearchConfig()
        self.model_id = model_id
        self.grid = encoder.grid_size()
        # Training images' captions for consensus reranking (SearchConfig.consensus_k).
        self.neighbours = neighbours
        # What each stream's frames last showed, for the caption hold (captioner/hold.py).
        self.shown = ShownCaptions()
        # override() set the method or beam: caption() then uses them unless given a beam
        self._search_set = False

    def override(self, changes: Mapping[str, Any]) -> None:
        """Replace stored search settings for every later call, e.g. ``{"consensus_k":
        0}`` (no reranking), ``{"hold_margin": None}`` (no caption hold) or ``{"beam": 5}``
        (then :meth:`caption` searches so unless it is given a ``beam``)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(SearchConfig)})
        if unknown:
            accepted = ", ".join(f.name for f in dataclasses.fields(SearchConfig))
            raise SearchConfigError(f"no search setting {', '.join(unknown)}; accepted: {accepted}")
        self.search_config = dataclasses.replace(self.search_config, **changes)
        self._search_set = self._search_set or bool({"beam", "method"} & set(changes))

    @property
    def fit(self) -> str:
        """How an image is fitted to the model's square input ("letterbox" or "crop"):
        the attention grid covers that square."""
        return self.encoder.preprocess.fit

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        device: str | torch.device | None = None,
        encoder_weights: str | Path | None = None,
    ) -> Captioner:
        """Load a checkpoint; no path: the default model bundled with the package."""
        if path is None:
            path = default_weights_path()
            if not path.is_file():
                raise NoDefaultModelError(
                    f"no default captioner is bundled yet ({path} is missing); train one with "
                    "`scenecast train --data DIR` and pass its checkpoint: Captioner.load(PATH)"
                )
        ckpt = load_checkpoint(Path(path))
        index_path = neighbours_path(Path(path))
        neighbours = load_index(index_path) if index_path.is_file() else None
        if neighbours is not None and neighbours.encoder != ckpt.encoder_id:
            raise CheckpointError(
                f"{index_path} indexes {neighbours.encoder} features but {path} uses "
                f"{ckpt.encoder_id}; rebuild it or remove it"
            )
        return cls.from_checkpoint(
            ckpt,
            device=resolve_device(device),
            encoder_weights=Path(encoder_weights) if encoder_weights else None,
            model_id=Path(path).stem,
            neighbours=neighbours,
        )

    @classmethod
    def from_checkpoint(
        cls,
        ckpt: Checkpoint,
        *,
        device: torch.device | None = None,
        encoder_weights: Path | None = None,
        model_id: str = "scenecast",
        neighbours: NeighbourIndex | None = None,
    ) -> Captioner:
        encoder = build_encoder(ckpt.encoder, weights=encoder_weights)
        # Inference fits images exactly as training did.
        encoder.preprocess = ckpt.preprocess
        return cls(
            encoder,
            ckpt.build_decoder(),
            ckpt.vocab,
            search_config=ckpt.search,
            model_id=model_id,
            device=device,
            neighbours=neighbours,
        )

    # -- inference ---------------------------------------------------------------

    @torch.inference_mode()
    def encode(self, images: Sequence[np.ndarray | Tensor]) -> Tensor:
        """RGB uint8 images of any sizes → grid features (B, P, D).

        Arrays are (H, W, 3); tensors (3, H, W), e.g. JPEGs decoded on the GPU.
        """
        batch = to_batch(images, self.encoder.preprocess, device=self.device)  # (B, 3, S, S)
        n = batch.size(0)
        if self.device.type == "cuda":
            # cuDNN builds its plans per input shape (slow the first time): pad to a few
            # bucket sizes so a worker's varying batches reuse them. fp16 on tensor cores.
            bucket = 1 << (n - 1).bit_length()
            if bucket > n:
                pad = batch.new_zeros(bucket - n, *batch.shape[1:])
                batch = torch.cat([batch, pad]).contiguous(memory_format=torch.channels_last)
        # On a CPU the encoder runs in chunks: a 32-image batch's activations (hundreds of
        # MB at the first stages) fall out of the caches and the memory-bound depthwise
        # convolutions slow down 1.3-3x per image (BENCHMARKS.md, "Encoder chunks on the CPU").
        chunks = torch.split(batch, CPU_ENCODER_CHUNK) if self.device.type == "cpu" else (batch,)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
            grids = [self.encoder(chunk) for chunk in chunks]  # (b, P, D) each
        features: Tensor = torch.cat(grids)[:n].float()  # (B, P, D)
        return features

    def warm_up(self, max_batch: int) -> None:
        """Run every batch bucket once (on a GPU the first call of a shape is slow)."""
        image = np.zeros((64, 64, 3), dtype=np.uint8)
        size = 1
        while True:
            self.caption([image] * min(size, max_batch), beam=self.search_config.beam)
            if size >= max_batch:
                break
            size *= 2

    def caption(
        self,
        images: Sequence[np.ndarray | Tensor],
        *,
        beam: int | None = None,
        config: SearchConfig | None = None,
        sources: Sequence[str | None] | None = None,
        shown: ShownCaptions | None = None,
    ) -> list[Caption]:
        """One :class:`Caption` per image, in order. ``beam=1`` is greedy search; no
        ``beam``: 3, or the method and beam :meth:`override` set.

        ``config`` overrides the search settings stored with the model (then
        ``beam`` is ignored). ``sources`` names the stream of each image (None: a lone
        image), images of one stream in their order: a stream's frames then keep its
        caption while it still fits them (``SearchConfig.hold_margin``, with consensus
        reranking). What each stream showed before comes from ``shown`` and is updated
        there; by default the captioner's own memory (``self.shown``), kept between calls.
        """
        if config is None:
            if beam is None and self._search_set:
                config = self.search_config
            else:
                beam = 3 if beam is None else beam
                if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
                    raise SearchConfigError(f"beam must be an integer >= 1, got {beam!r}")
                method: Method = "beam" if beam > 1 else "greedy"
                config = dataclasses.replace(self.search_config, method=method, beam=beam)
        _check_call(config, sources, shown, n=len(images), vocab=len(self.vocab))
        if len(images) == 0:
            return []
        features = self.encode(images)
        return self.describe(features, config, sources=sources, shown=shown)

    def describe(
        self,
        features: Tensor,
        config: SearchConfig,
        *,
        sources: Sequence[str | None] | None = None,
        shown: ShownCaptions | None = None,
    ) -> list[Caption]:
        """Search captions for precomputed grid features (B, P, D)."""
        _check_call(config, sources, shown, n=len(features), vocab=len(self.vocab))
        features = features.to(self.device)
        hyps = caption_search(
            self.decoder,
            features,
            self.vocab,
            config,
            self.neighbours,
            sources=sources,
            shown=self.shown if shown is None else shown,
        )
        return [self._to_caption(h) for h in hyps]

    def _to_caption(self, hyp: Hypothesis) -> Caption:
        tokens = self.vocab.decode(hyp.ids)
        attention = hyp.attention.reshape(len(hyp.ids), *self.grid).numpy().astype(np.float32)
        return Caption(text=" ".join(tokens), tokens=tokens, score=hyp.score, attention=attention)


def _check_call(
    config: object,
    sources: Sequence[str | None] | None,
    shown: object,
    *,
    n: int,
    vocab: int,
) -> None:
    """What a caller passes that the search cannot use: a CaptionerError saying so (it
    was a TypeError or RuntimeError from deep inside torch)."""
    if not isinstance(config, SearchConfig):
        raise SearchConfigError(
            f"config must be a SearchConfig, got {type(config).__name__} (build one: "
            "SearchConfig(beam=5), or dataclasses.replace(cap.search_config, ...))"
        )
    if config.top_k > vocab:
        raise SearchConfigError(
            f"top_k {config.top_k} is more than the {vocab} words the model has"
        )
    if shown is not None and not isinstance(shown, ShownCaptions):
        raise SearchConfigError(f"shown must be a ShownCaptions, got {type(shown).__name__}")
    if sources is not None:
        if isinstance(sources, str):
            raise SearchConfigError("sources must be one name per image, got one string")
        if len(sources) != n:
            raise SearchConfigError(f"{len(sources)} sources for {n} images: give one per image")
