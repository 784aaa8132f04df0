"""Batch norm folded into the convolution before it: the same outputs, fewer layers."""

from __future__ import annotations

import copy

import torch
from timm.layers.norm_act import BatchNormAct2d
from torch import nn

from captioner.encoder import EncoderSpec, build_encoder, lite_weights_path, rename_lite_keys
from captioner.fold_bn import fold_batch_norms
from captioner.preprocess import to_batch
from captioner.sample_photos import load_rgb, sample_paths


def _randomise(norm: nn.BatchNorm2d, g: torch.Generator) -> None:
    """Running statistics and affine parameters far from the identity."""
    c = norm.num_features
    norm.running_mean = torch.randn(c, generator=g)
    norm.running_var = torch.rand(c, generator=g) * 3 + 0.1
    if norm.affine:
        norm.weight.data = torch.randn(c, generator=g)
        norm.bias.data = torch.randn(c, generator=g)


class Block(nn.Module):
    """A norm first (nothing to fold into), then conv → norm pairs of every kind."""

    def __init__(self) -> None:
        super().__init__()
        self.norm_in = nn.BatchNorm2d(3)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = BatchNormAct2d(8, act_layer=nn.ReLU6)  # timm's: norm + activation
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=True)  # depthwise, bias
        self.bn2 = nn.BatchNorm2d(8, affine=False)
        self.conv3 = nn.Conv2d(8, 4, 1)
        self.bn3 = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_in(x)
        x = self.bn1(self.conv1(x))
        x = self.bn2(self.conv2(x))
        return self.bn3(self.conv3(x))  # type: ignore[no-any-return]


def test_folding_keeps_the_outputs_and_the_activation() -> None:
    g = torch.Generator().manual_seed(0)
    block = Block()
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            _randomise(m, g)
    block.eval()
    x = torch.randn(2, 3, 16, 16, generator=g) * 4
    with torch.no_grad():
        expected = block(x)
        folded = copy.deepcopy(block)
        assert fold_batch_norms(folded) == 3
        got = folded(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert isinstance(folded.norm_in, nn.BatchNorm2d)  # no convolution before it
    assert isinstance(folded.bn2, nn.Identity) and isinstance(folded.bn3, nn.Identity)
    assert not isinstance(folded.bn1, nn.BatchNorm2d)  # its ReLU6 stays, the norm goes
    assert any(isinstance(m, nn.ReLU6) for m in folded.bn1.modules())
    assert expected.shape == got.shape
    assert fold_batch_norms(folded) == 0  # nothing left to fold


def test_the_default_encoder_gives_the_features_of_its_unfolded_network() -> None:
    import timm

    encoder = build_encoder(EncoderSpec())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in encoder.modules())
    plain = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = torch.load(lite_weights_path("efficientnet_lite0"), weights_only=True)
    plain.load_state_dict(rename_lite_keys(state, [len(s) for s in plain.blocks]))
    plain.eval()
    photos = [load_rgb(p) for p in sample_paths()]
    batch = to_batch(photos, encoder.preprocess)
    with torch.inference_mode():
        got = encoder(batch)
        expected = plain.forward_features(batch).flatten(2).transpose(1, 2)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
