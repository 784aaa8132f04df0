"""Training proves learning: a tiny set is overfit until its captions come back exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from captioner.checkpoint import load_checkpoint
from captioner.encoder import EncoderSpec, build_encoder
from captioner.model import ModelConfig
from captioner.search.search import SearchConfig
from captioner.training.data import load_dataset
from captioner.training.evaluate import generate
from captioner.training.features import cache_path, extract_features
from captioner.training.train import TrainConfig, TrainSet, encode_captions, train
from captioner.vocab import Vocabulary
from tests.support.datasets import make_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = make_dataset(tmp_path_factory.mktemp("shapes"), n_train=20, n_val=6)
    return root, tmp_path_factory.mktemp("cache")


def test_overfits_twenty_images_until_captions_are_reproduced(
    shapes: tuple[Path, Path], tmp_path: Path
) -> None:
    root, cache = shapes
    dataset = load_dataset(root)
    items = dataset.split("train")
    encoder = build_encoder(EncoderSpec())
    features = extract_features(
        dataset,
        items,
        encoder,
        cache_path(cache, encoder, "train", flipped=False),
        log=lambda _: None,
    )
    vocab = Vocabulary.build((c for it in items for c in it.captions), min_freq=1)
    model_config = ModelConfig(
        vocab_size=len(vocab),
        encoder_dim=encoder.dim,
        embed_dim=64,
        attention_dim=64,
        decoder_dim=128,
        dropout=0.0,
    )
    config = TrainConfig(
        out=tmp_path,
        epochs=120,
        batch_size=20,
        lr=3e-3,
        early_stop=120,
        decay_patience=1000,
        log_every=1000,
        alpha_c=0.0,
    )
    lines: list[str] = []
    best = train(
        config,
        train_set=TrainSet.build(items, features),
        val_items=items,
        val_features=features,
        vocab=vocab,
        model_config=model_config,
        encoder=EncoderSpec(),
        preprocess=encoder.preprocess,
        log=lines.append,
    )
    captions = generate(best.build_decoder(), features, vocab, SearchConfig(method="greedy"))
    assert captions == [list(it.captions[0]) for it in items]
    assert best.metrics["val"]["CIDEr-D"] == pytest.approx(10.0, abs=1e-6)
    assert any(line.startswith("epoch 1 step 1/1 loss") for line in lines)


def test_training_resumes_from_last_checkpoint(shapes: tuple[Path, Path], tmp_path: Path) -> None:
    root, cache = shapes
    dataset = load_dataset(root)
    items, val = dataset.split("train"), dataset.split("val")
    encoder = build_encoder(EncoderSpec())
    feats = extract_features(
        dataset,
        items,
        encoder,
        cache_path(cache, encoder, "train", flipped=False),
        log=lambda _: None,
    )
    val_feats = extract_features(
        dataset, val, encoder, cache_path(cache, encoder, "val", flipped=False), log=lambda _: None
    )
    vocab = Vocabulary.build((c for it in items for c in it.captions), min_freq=1)
    model_config = ModelConfig(
        vocab_size=len(vocab),
        encoder_dim=encoder.dim,
        embed_dim=16,
        attention_dim=16,
        decoder_dim=16,
    )
    kwargs = dict(
        train_set=TrainSet.build(items, feats),
        val_items=val,
        val_features=val_feats,
        vocab=vocab,
        model_config=model_config,
        encoder=EncoderSpec(),
        preprocess=encoder.preprocess,
    )
    lines: list[str] = []
    train(
        TrainConfig(out=tmp_path, epochs=2, batch_size=8, early_stop=10), log=lines.append, **kwargs
    )  # type: ignore[arg-type]
    first = load_checkpoint(tmp_path / "last.pt")
    assert first.train["epoch"] == 2
    train(
        TrainConfig(out=tmp_path, epochs=3, batch_size=8, early_stop=10), log=lines.append, **kwargs
    )  # type: ignore[arg-type]
    resumed = load_checkpoint(tmp_path / "last.pt")
    assert any("resuming from" in line and "epoch 2" in line for line in lines)
    assert resumed.train["epoch"] == 3
    assert [h["epoch"] for h in resumed.train["history"]] == [1, 2, 3]
    assert resumed.train["step"] == 3 * 3  # 20 images / batch 8 = 3 steps an epoch


def test_flipped_captions_swap_left_and_right() -> None:
    from captioner.training.data import Item

    items = [Item("a.jpg", "train", (("a", "dog", "on", "the", "left"),))]
    feats = np.zeros((1, 4, 8), dtype=np.float16)
    flipped = np.ones((1, 4, 8), dtype=np.float16)
    ts = TrainSet.build(items, feats, flipped)
    assert ts.captions == [("a", "dog", "on", "the", "left"), ("a", "dog", "on", "the", "right")]
    assert ts.features.shape == (2, 4, 8)
    assert float(ts.features[1].float().mean()) == 1.0


def test_encode_captions_pads_and_truncates() -> None:
    vocab = Vocabulary.build([["a", "b", "c"]], min_freq=1)
    out = encode_captions([["a", "b", "c"], ["zzz"]], vocab, max_words=2)
    a, b = vocab.index["a"], vocab.index["b"]
    assert out.tolist() == [[1, a, b, 2], [1, 3, 2, 0]]
