import numpy as np
import pytest
import torch

from captioner.exceptions import InvalidImageError
from captioner.preprocess import Preprocess, fit_geometry, fit_image, to_batch


def test_letterbox_keeps_aspect_and_pads_with_the_fill_colour() -> None:
    image = torch.zeros(3, 50, 100, dtype=torch.uint8)  # black, 2:1
    out = fit_image(image, Preprocess(size=64, fill=(255, 0, 0)))
    assert out.shape == (3, 64, 64)
    # 100x50 → 64x32, centred: rows 16..47 image, the rest red
    assert torch.all(out[:, 16:48, :] == 0)
    assert torch.all(out[0, :16] == 255) and torch.all(out[1:, :16] == 0)
    assert torch.all(out[0, 48:] == 255)


def test_crop_fills_the_square() -> None:
    image = torch.full((3, 50, 100), 7, dtype=torch.uint8)
    image[:, :, :20] = 200  # the left fifth differs and is cropped away
    out = fit_image(image, Preprocess(size=32, fit="crop"))
    assert out.shape == (3, 32, 32)
    assert torch.allclose(out, torch.full_like(out, 7.0), atol=0.5)


def test_fit_geometry() -> None:
    assert fit_geometry(360, 640, 224, "letterbox") == (126, 224)
    assert fit_geometry(360, 640, 224, "crop") == (224, 398)


def test_batch_is_normalised_and_channels_last() -> None:
    images = [np.full((10, 20, 3), 255, np.uint8), np.zeros((30, 30, 3), np.uint8)]
    batch = to_batch(images, Preprocess(size=32, fill=(0, 0, 0)))
    assert batch.shape == (2, 3, 32, 32)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert float(batch[0].max()) == pytest.approx(1.0)  # 255 → +1 with mean=std=0.5
    assert float(batch[1].min()) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("not an image", "numpy array"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((10, 10), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((10, 10, 4), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((1, 10, 3), np.uint8), "too small"),
    ],
)
def test_bad_images_get_clear_errors(image: object, message: str) -> None:
    with pytest.raises(InvalidImageError, match=message):
        to_batch([np.zeros((8, 8, 3), np.uint8), image], Preprocess(size=32))  # type: ignore[list-item]
