"""shrink: exact sizes, close to one area resize, noise averaged, bad sizes refused."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.capture.shrink import shrink

SAMPLES = Path(__file__).resolve().parents[3] / "captioner" / "samples"


def photos() -> list[np.ndarray]:
    found = [np.asarray(cv2.imread(str(p)), np.uint8) for p in sorted(SAMPLES.glob("*.jpg"))]
    assert len(found) >= 3
    return found


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((360, 640, 3), (256, 144)),
        ((361, 641, 3), (256, 144)),  # odd sides: the last row and column are dropped
        ((1080, 1920, 3), (64, 64)),  # the sides halve a different number of times
        ((240, 320), (16, 16)),  # grey
        ((90, 160, 3), (64, 64)),  # grows on one side
        ((7, 5, 3), (1, 1)),
    ],
)
def test_gives_exactly_the_size_asked_with_the_same_channels(
    shape: tuple[int, ...], size: tuple[int, int]
) -> None:
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for area_last in (False, True):
        out = shrink(image, size, area_last=area_last)
        assert out.shape == (size[1], size[0], *shape[2:])
        assert out.dtype == np.uint8


@pytest.mark.parametrize("source", [(640, 360), (1280, 720), (1920, 1080), (3840, 2160)])
def test_close_to_one_area_resize_on_photos(source: tuple[int, int]) -> None:
    for photo in photos():
        frame = cv2.resize(photo, source, interpolation=cv2.INTER_CUBIC)
        reference = cv2.resize(frame, (256, 144), interpolation=cv2.INTER_AREA)
        assert cv2.PSNR(reference, shrink(frame, (256, 144))) >= 30.0


def test_a_flat_picture_stays_exactly_flat() -> None:
    image = np.full((1081, 1921, 3), (12, 200, 99), np.uint8)
    for area_last in (False, True):
        out = shrink(image, (256, 144), area_last=area_last)
        assert (out == np.array([12, 200, 99], np.uint8)).all()


def test_noise_is_averaged_away() -> None:
    """Each output pixel averages many input pixels: a noisy grey frame comes out flat."""
    rng = np.random.default_rng(1)
    noisy = np.clip(rng.normal(128, 20, (1080, 1920)), 0, 255).astype(np.uint8)
    assert shrink(noisy, (64, 64), area_last=True).std() < 2.0  # 20 / √(16 × 16) ≈ 1.3
    assert shrink(noisy, (256, 144)).std() < 5.0  # 20 / √(4 × 4) = 5 before the last step


def test_same_size_is_returned_as_is() -> None:
    image = np.random.default_rng(2).integers(0, 256, (144, 256, 3), dtype=np.uint8)
    assert np.array_equal(shrink(image, (256, 144)), image)


@pytest.mark.parametrize("size", [(0, 10), (10, 0), (-1, 5)])
def test_refuses_an_empty_size(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="size must be positive"):
        shrink(np.zeros((10, 10, 3), np.uint8), size)


def test_refuses_an_empty_image() -> None:
    with pytest.raises(ValueError, match=r"expected an \(H, W\)"):
        shrink(np.zeros((0, 10, 3), np.uint8), (4, 4))
