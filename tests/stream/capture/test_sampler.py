"""Samplers and the scene-change measure: fed values, then a real generated video."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.capture.sampler import (
    SIGNATURE_SIZE,
    FixedRateSampler,
    Sampler,
    SceneChangeSampler,
    change_score,
    frame_signature,
)
from stream.sources.readers import FileReader
from tests.support.videos import make_video, scene_starts

SAMPLES = Path(__file__).resolve().parents[3] / "captioner" / "samples"


def solid(color: tuple[int, int, int], size: tuple[int, int] = (90, 160)) -> np.ndarray:
    image = np.empty((*size, 3), np.uint8)
    image[:] = color
    return image


PALETTES = [(40, 90, 170), (150, 110, 40), (60, 160, 70), (170, 170, 170)]  # BGR


def textured(seed: int = 0) -> np.ndarray:
    """A smooth random picture around palette colour ``seed % 4``: its own layout and
    colours, as scenes of a video have (uniformly random colours would give every
    picture the same colour histogram)."""
    rng = np.random.default_rng(seed)
    small = rng.normal(0.0, 45.0, (9, 16, 3)) + PALETTES[seed % len(PALETTES)]
    big = cv2.resize(small.astype(np.float32), (160, 90), interpolation=cv2.INTER_CUBIC)
    return np.clip(big, 0, 255).astype(np.uint8)


def noisy(image: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    jitter = np.random.default_rng(seed).normal(0.0, sigma, image.shape)
    return np.clip(image + jitter, 0, 255).astype(np.uint8)


def score(a: np.ndarray, b: np.ndarray) -> float:
    return change_score(frame_signature(a), frame_signature(b))


# --- FixedRateSampler -------------------------------------------------------------------


def kept(sampler: FixedRateSampler, times: list[float]) -> list[float]:
    return [t for t in times if sampler.want(t)]


def test_fixed_rate_keeps_the_first_frame_then_one_per_interval() -> None:
    times = [i * 100.0 for i in range(30)]  # 10 fps, 3 s
    assert kept(FixedRateSampler(1.0), times) == [0, 1000, 2000]
    assert kept(FixedRateSampler(2.5), times) == [0, 400, 800, 1200, 1600, 2000, 2400, 2800]
    assert kept(FixedRateSampler(100.0), times) == times  # faster than the source: all
    assert not FixedRateSampler.needs_image


def test_fixed_rate_is_robust_to_timestamp_jitter() -> None:
    rng = random.Random(0)
    times = [i * 100.0 + rng.uniform(-30, 30) + 5000 for i in range(300)]  # 30 s, jittery
    picks = kept(FixedRateSampler(1.0), times)
    assert len(picks) == 30  # no drift: one per second of media time
    for k, t in enumerate(picks):
        assert 5000 + k * 1000 - 30 <= t <= 5000 + k * 1000 + 130  # first frame at/after due


def test_fixed_rate_does_not_drift_with_an_uneven_interval() -> None:
    times = [i * 1000 / 30 for i in range(300)]  # 30 fps, 10 s
    assert len(kept(FixedRateSampler(3.0), times)) == 30


def test_fixed_rate_catches_up_after_a_gap_without_a_burst() -> None:
    sampler = FixedRateSampler(1.0)
    assert kept(sampler, [0, 100, 3500, 3600, 3900, 4000, 4100, 5000]) == [0, 3500, 4000, 5000]


def test_fixed_rate_starts_over_when_time_goes_back() -> None:
    sampler = FixedRateSampler(1.0)
    assert kept(sampler, [0, 500, 1000, 1500, 200, 700, 1200]) == [0, 1000, 200, 1200]


@pytest.mark.parametrize("fps", [0, -1, math.nan, math.inf])
def test_fixed_rate_validation(fps: float) -> None:
    with pytest.raises(ValueError, match="sampling rate must be a positive number"):
        FixedRateSampler(fps)


# --- frame_signature / change_score -----------------------------------------------------


def test_identical_frames_score_zero() -> None:
    image = textured()
    signature = frame_signature(image)
    assert signature.shape == (SIGNATURE_SIZE,) and signature.dtype == np.float32
    assert change_score(signature, signature) == 0.0
    assert score(image, image.copy()) == 0.0


def test_cut_between_scenes_scores_high() -> None:
    assert score(solid((0, 0, 200)), solid((200, 0, 0))) >= 0.5  # red → blue
    assert score(solid((0, 0, 0)), solid((255, 255, 255))) >= 0.9  # black → white
    assert score(textured(0), textured(1)) >= 0.3


def test_same_luminance_colour_change_still_counts() -> None:
    red, green = solid((0, 0, 255)), solid((0, 130, 0))  # the same grey level
    grey_levels = [int(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY)[0, 0]) for x in (red, green)]
    assert abs(grey_levels[0] - grey_levels[1]) <= 2
    assert score(red, green) >= 0.3


def test_noise_and_small_motion_score_low() -> None:
    image = textured(3)
    assert score(image, noisy(image, 5)) < 0.05
    assert score(image, noisy(image, 20)) < 0.1
    assert score(solid((128, 128, 128)), noisy(solid((128, 128, 128)), 10)) < 0.1  # grey
    shifted = np.roll(image, 3, axis=1)  # a 2 % pan
    assert score(image, shifted) < 0.1


def test_real_photos_score_as_cuts() -> None:
    photos = [np.asarray(cv2.imread(str(p)), np.uint8) for p in sorted(SAMPLES.glob("*.jpg"))]
    assert len(photos) >= 3
    for a, b in itertools.pairwise(photos):
        assert score(a, b) >= 0.3
        assert score(a, noisy(a, 8)) < 0.1


def test_score_is_symmetric_and_bounded() -> None:
    images = [textured(s) for s in range(4)] + [solid((0, 0, 0)), solid((255, 255, 255))]
    for a in images:
        for b in images:
            s = score(a, b)
            assert 0.0 <= s <= 1.0
            assert s == pytest.approx(score(b, a))


def test_signature_inputs() -> None:
    grey = np.full((48, 64), 77, np.uint8)
    assert score(grey, cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        frame_signature(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        frame_signature(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="signatures must have shape"):
        change_score(np.zeros(3, np.float32), np.zeros(3, np.float32))


# --- SceneChangeSampler -----------------------------------------------------------------


def run(sampler: SceneChangeSampler, frames: list[np.ndarray], fps: float = 10) -> list[int]:
    return [i for i, image in enumerate(frames) if sampler.want(i * 1000 / fps, image)]


def test_scene_sampler_emits_on_cuts() -> None:
    a, b = textured(0), textured(1)
    frames = [noisy(a, 4, s) for s in range(20)] + [noisy(b, 4, s) for s in range(20)]
    frames += [noisy(a, 4, s) for s in range(20)]
    sampler = SceneChangeSampler()
    assert sampler.needs_image
    assert run(sampler, frames) == [0, 20, 40]
    assert sampler.last_score is not None and sampler.last_score < 0.1


def test_scene_sampler_emits_at_max_interval_on_a_still_scene() -> None:
    frames = [noisy(textured(0), 3, s) for s in range(250)]  # 25 s, nothing happens
    assert run(SceneChangeSampler(max_interval_s=10), frames) == [0, 100, 200]


def test_scene_sampler_never_emits_more_often_than_min_interval() -> None:
    frames = [textured(i % 2) for i in range(40)]  # a cut on every frame (10 fps)
    assert run(SceneChangeSampler(min_interval_s=0.5), frames) == [0, 5, 10, 15, 20, 25, 30, 35]
    # a cut 0.2 s after a caption is taken once the minimum interval has passed
    frames = [textured(0)] * 2 + [textured(1)] * 18
    assert run(SceneChangeSampler(min_interval_s=0.5), frames) == [0, 5]


def test_scene_sampler_compares_with_the_last_captioned_frame() -> None:
    # a slow fade: each frame differs little from the one before, but it adds up
    a, b = textured(0).astype(np.float32), textured(1).astype(np.float32)
    frames = [((1 - t) * a + t * b).astype(np.uint8) for t in np.linspace(0, 1, 50)]
    assert max(score(x, y) for x, y in itertools.pairwise(frames)) < 0.05
    picks = run(SceneChangeSampler(max_interval_s=60), frames)
    assert len(picks) >= 2 and picks[0] == 0


def test_scene_sampler_starts_over_when_time_goes_back() -> None:
    sampler = SceneChangeSampler()
    image = textured(0)
    assert sampler.want(0, image)
    assert not sampler.want(1000, image)
    assert sampler.want(200, image)  # the source restarted its clock


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"min_interval_s": -1}, "min_interval_s"),
        ({"max_interval_s": 0.5, "min_interval_s": 0.5}, "max_interval_s"),
    ],
)
def test_scene_sampler_validation(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SceneChangeSampler(**kwargs)


def test_samplers_share_one_protocol() -> None:
    samplers: list[Sampler] = [FixedRateSampler(), SceneChangeSampler()]
    assert [s.needs_image for s in samplers] == [False, True]


# --- on a real video --------------------------------------------------------------------


def test_scene_sampler_finds_the_cuts_of_a_generated_video(tmp_path: Path) -> None:
    scenes = [((0, 0, 200), 1.0), ((0, 180, 0), 1.0), ((200, 60, 0), 1.0)]
    video = make_video(tmp_path / "cuts.mp4", scenes=scenes, noise=4)
    sampler = SceneChangeSampler(threshold=0.3, max_interval_s=10, min_interval_s=0.5)
    with FileReader.open(video) as reader:
        picks = [f.index for f in reader if sampler.want(f.pts_ms, f.image)]
    starts = scene_starts(scenes)  # [0, 10, 20]
    assert len(picks) == len(starts)
    assert all(abs(p - s) <= 1 for p, s in zip(picks, starts, strict=True))
