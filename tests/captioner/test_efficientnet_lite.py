"""captioner.efficientnet_lite is timm's ``tf_efficientnet_liteN``: same parameter names
and shapes (a strict load), same outputs, at even and odd input sizes (TensorFlow's
asymmetric "same" padding)."""

from __future__ import annotations

import pytest
import torch

from captioner.efficientnet_lite import EfficientNetLite, round_channels, same_padding

timm = pytest.importorskip("timm")  # a dev dependency: the reference, never imported at run time


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_the_same_network_as_timms(name: str) -> None:
    reference = timm.create_model(f"tf_{name}", pretrained=False).eval()
    torch.manual_seed(0)
    for module in reference.modules():  # running statistics that are not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    ours = EfficientNetLite(name).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    for size in (224, 231):
        images = torch.rand(2, 3, size, size) * 2 - 1
        with torch.inference_mode():
            want, got = reference.forward_features(images), ours.forward_features(images)
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(ours.forward_head(got), reference.forward_head(want))


def test_same_padding_and_channel_rounding() -> None:
    assert same_padding(224, 3, 2) == (0, 1)  # the odd pixel at the bottom / right
    assert same_padding(225, 3, 2) == (1, 1)
    assert same_padding(224, 5, 2) == (1, 2)
    assert same_padding(7, 3, 1) == (1, 1)
    assert [round_channels(c * 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [
        16, 24, 48, 88, 120, 208, 352,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="accepted"):
        EfficientNetLite("efficientnet_lite9")
