"""Batch norm folded into the convolution before it, for a frozen CNN.

A frozen encoder's batch norm (running statistics, eval mode) is an affine map per
channel: ``y = (x - mean) / sqrt(var + eps) * gamma + beta``. Applied to a
convolution's output it is the same as that convolution with its filters scaled by
``gamma / sqrt(var + eps)`` and a bias ``beta - mean * scale``, so the separate pass
over the activations goes. EfficientNet-Lite0 has 49 such pairs: on the CPU its
features for a batch of 8 took 77.9 ms instead of 115.6 (BENCHMARKS.md), and on a
GPU a batch makes 49 kernel launches fewer. Outputs agree to float rounding (~1e-5).

No I/O; works on any module whose convolution is applied directly before its batch
norm, which holds for the encoders here: timm's EfficientNet (``BatchNormAct2d``,
a ``BatchNorm2d`` with its activation, which stays) and torchvision's ResNets.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn


def fold_batch_norms(module: nn.Module) -> int:
    """Fold, in place, every ``BatchNorm2d`` registered right after a ``Conv2d`` of
    the same parent into that convolution; returns how many were folded.

    The batch norm is replaced by its activation (timm's ``BatchNormAct2d``: its
    ``drop`` and ``act``) or by ``nn.Identity``. Only for a frozen module in eval
    mode: training would no longer update (or use) batch statistics.
    """
    folded = 0
    for parent in list(module.modules()):
        names = list(parent._modules)
        for conv_name, norm_name in itertools.pairwise(names):
            conv, norm = parent._modules[conv_name], parent._modules[norm_name]
            if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)):
                continue
            if norm.running_mean is None or norm.running_var is None:
                continue  # batch statistics only: nothing fixed to fold
            _fold(conv, norm)
            parent._modules[norm_name] = _after_norm(norm)
            folded += 1
    return folded


@torch.no_grad()
def _fold(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    assert norm.running_mean is not None and norm.running_var is not None
    scale: Tensor = torch.rsqrt(norm.running_var + norm.eps)
    shift: Tensor = -norm.running_mean * scale
    if norm.affine:
        scale, shift = scale * norm.weight, shift * norm.weight + norm.bias
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1), requires_grad=False)
    conv.bias = nn.Parameter(bias, requires_grad=False)


def _after_norm(norm: nn.BatchNorm2d) -> nn.Module:
    """What stays of a folded batch norm: timm's fused activation, or nothing."""
    act, drop = getattr(norm, "act", None), getattr(norm, "drop", None)
    if isinstance(act, nn.Module):
        return nn.Sequential(drop, act) if isinstance(drop, nn.Module) else act
    return nn.Identity()
