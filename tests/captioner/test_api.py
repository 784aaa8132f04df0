"""Checkpoints round-trip and the public API captions any-sized images in order."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from captioner import (
    Captioner,
    CaptionerError,
    CheckpointError,
    NoDefaultModelError,
    SearchConfigError,
)
from captioner import api as api_module
from captioner.checkpoint import load_checkpoint, save_checkpoint
from captioner.encoder import EncoderSpec
from captioner.preprocess import Preprocess
from captioner.search.search import SearchConfig
from captioner.vocab import SPECIALS, Vocabulary
from tests.support.factories import checkpoint_of

VOCAB = Vocabulary([*SPECIALS, *(f"w{i}" for i in range(30))])


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, size=s, dtype=np.uint8)
        for s in [(240, 320, 3), (100, 100, 3), (64, 200, 3)]
    ]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, checkpoint_of(max_len=8))
    return path


def test_checkpoint_round_trip(saved: Path) -> None:
    original = checkpoint_of(max_len=8)
    loaded = load_checkpoint(saved)
    assert loaded.config == original.config
    assert loaded.vocab.words == VOCAB.words
    assert loaded.encoder == EncoderSpec()
    assert loaded.preprocess == Preprocess()
    assert loaded.search == SearchConfig(max_len=8)
    assert loaded.metrics == {"val": {"CIDEr-D": 0.5}}
    for name, tensor in original.decoder_state.items():
        torch.testing.assert_close(loaded.decoder_state[name], tensor)
    features = torch.randn(2, 49, 1280)
    from captioner.search.search import search

    a = search(original.build_decoder(), features, VOCAB, SearchConfig(beam=3))
    b = search(loaded.build_decoder(), features, VOCAB, SearchConfig(beam=3))
    assert [h.ids for h in a] == [h.ids for h in b]


def test_half_precision_checkpoint_loads_as_float32(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "half.pt", checkpoint_of(), half=True)
    loaded = load_checkpoint(tmp_path / "half.pt")
    assert loaded.decoder_state["fc.weight"].dtype == torch.float16
    assert loaded.build_decoder().fc.weight.dtype == torch.float32


def test_bad_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as caught:
        load_checkpoint(tmp_path / "junk.pt")
    assert "accepted: a .pt file written by scenecast train" in str(caught.value)
    assert "weights_only" not in str(caught.value)  # torch's advice to run the file's code
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a scenecast captioner checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a pickled module is refused
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "module.pt")


def test_caption_returns_one_caption_per_image_in_order(saved: Path) -> None:
    cap = Captioner.load(saved, device="cpu")
    images = _images()
    batched = cap.caption(images, beam=3)
    single = [cap.caption([im], beam=3)[0] for im in images]
    assert [c.tokens for c in batched] == [c.tokens for c in single]
    assert len({c.text for c in batched}) > 1  # the images get different captions
    for c in batched:
        assert c.text == " ".join(c.tokens)
        assert c.attention.shape == (len(c.tokens), 7, 7)
        np.testing.assert_allclose(c.attention.sum(axis=(1, 2)), 1.0, rtol=1e-5)
        assert c.score < 0
    assert cap.caption([]) == []


def test_greedy_is_beam_one(saved: Path) -> None:
    cap = Captioner.load(saved, device="cpu")
    images = _images()
    greedy = cap.caption(images, beam=1)
    explicit = cap.caption(images, config=SearchConfig(method="greedy", max_len=8))
    assert [c.tokens for c in greedy] == [c.tokens for c in explicit]


def test_load_without_a_bundled_default_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_module, "default_weights_path", lambda: tmp_path / "default.pt")
    with pytest.raises(NoDefaultModelError, match="no default captioner"):
        Captioner.load()


def test_bad_device_is_a_clear_error(saved: Path) -> None:
    from captioner import DeviceError

    with pytest.raises(DeviceError, match="accepted: 'cpu', 'cuda'"):
        Captioner.load(saved, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available; use 'cpu'"):
            Captioner.load(saved, device="cuda")


def test_override_of_the_beam_is_what_caption_searches_with(saved: Path) -> None:
    """``override({"beam": 5})`` was ignored: caption()'s own beam=3 won."""
    cap = Captioner.load(saved, device="cpu")
    used: list[SearchConfig] = []
    describe = cap.describe

    def spy(features: torch.Tensor, config: SearchConfig, **kw: object) -> object:
        used.append(config)
        return describe(features, config, **kw)  # type: ignore[arg-type]

    cap.describe = spy  # type: ignore[method-assign]
    cap.caption(_images()[:1])
    cap.override({"consensus_k": 0})  # other settings leave the API's beam 3
    cap.caption(_images()[:1])
    cap.override({"beam": 5})
    cap.caption(_images()[:1])
    cap.caption(_images()[:1], beam=1)  # a beam given still wins
    assert [(c.method, c.beam) for c in used] == [
        ("beam", 3),
        ("beam", 3),
        ("beam", 5),
        ("greedy", 1),
    ]
    with pytest.raises(SearchConfigError, match="no search setting beams; accepted: method, beam"):
        cap.override({"beams": 5})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda cap, im: cap.caption(im, beam=3.0), "beam must be an integer >= 1, got 3.0"),
        (lambda cap, im: cap.caption(im, config={"beam": 3}), "config must be a SearchConfig"),
        (
            lambda cap, im: cap.caption(im, config=SearchConfig(method="sample", top_k=10_000)),
            "top_k 10000 is more than the 34 words",
        ),
        (lambda cap, im: cap.caption(im, shown={}), "shown must be a ShownCaptions, got dict"),
        (lambda cap, im: cap.caption(im, sources=["a"]), "1 sources for 3 images"),
        (lambda cap, im: cap.caption(im, sources="abc"), "one name per image, got one string"),
        (lambda cap, im: cap.caption([torch.zeros(3, 1, 5, dtype=torch.uint8)]), "too small"),
    ],
)
def test_what_a_search_cannot_use_is_a_captioner_error(
    saved: Path, call: Any, message: str
) -> None:
    """These were TypeError / RuntimeError from deep inside torch, or silently wrong
    (sources of the wrong length without the hold; a 1-pixel tensor captioned)."""
    cap = Captioner.load(saved, device="cpu")
    cap.override({"hold_margin": None})
    with pytest.raises(CaptionerError, match=re.escape(message)):
        call(cap, _images())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"banned_words": "cat"}, "got the string 'cat' (for one: ('cat',))"),
        ({"beam": 3.0}, "beam must be an integer, got 3.0"),
        ({"beam": True}, "beam must be an integer, got True"),
        ({"temperature": float("inf")}, "temperature must be a finite number > 0, got inf"),
        ({"top_k": "5"}, "top_k must be an integer, got '5'"),
        ({"hold_margin": "0.1"}, "hold_margin must be >= 0 or None (off), got '0.1'"),
    ],
)
def test_bad_search_settings_are_captioner_errors(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(SearchConfigError, match=re.escape(message)):
        SearchConfig(**settings)
