"""Consensus reranking: the neighbour index, its scores, and the reranked search."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from captioner.checkpoint import neighbours_path
from captioner.exceptions import CheckpointError
from captioner.metrics.bleu import ngram_counts
from captioner.search.consensus import NeighbourIndex, build_index, combined, load_index, save_index
from captioner.search.reranked import caption_search, pooled
from captioner.search.search import SearchConfig, beam_search, beam_search_nbest
from captioner.vocab import Vocabulary
from tests.support.factories import fitted_decoder

CAPTIONS = [
    "a cat sitting on a bed",
    "a cat on a white bed",
    "a dog running on the beach",
    "a cup of coffee on a table",
    "a cup of coffee and a cake",
    "the view of the city at night",
    "a man riding a bike on the road",
    "a black cat on a red sofa",
]


def _index(captions: list[str] = CAPTIONS, dims: int = 4, seed: int = 0) -> NeighbourIndex:
    rng = np.random.default_rng(seed)
    pooled_features = rng.standard_normal((len(captions), 16)).astype(np.float32)
    pooled_features /= np.linalg.norm(pooled_features, axis=1, keepdims=True)
    tokens = [c.split() for c in captions]
    return build_index(pooled_features, tokens, encoder="efficientnet_lite0-224", dims=dims)


def _reference_consensus(
    captions: list[list[str]], candidate: list[str], neighbours: list[int]
) -> float:
    """CIDEr-D's similarity written out with dicts, document frequencies over ``captions``."""
    log_n = math.log(len(captions))
    doc_freq: dict[tuple[str, ...], int] = {}
    for c in captions:
        for g in ngram_counts(c, 4):
            doc_freq[g] = doc_freq.get(g, 0) + 1

    def vector(c: list[str]) -> list[dict[tuple[str, ...], float]]:
        v: list[dict[tuple[str, ...], float]] = [{} for _ in range(4)]
        for g, tf in ngram_counts(c, 4).items():
            v[len(g) - 1][g] = tf * (log_n - math.log(max(1, doc_freq.get(g, 0))))
        return v

    def norm(d: dict[tuple[str, ...], float]) -> float:
        return math.sqrt(sum(w * w for w in d.values()))

    total = 0.0
    cand = vector(candidate)
    for j in neighbours:
        ref = vector(captions[j])
        value = 0.0
        for n in range(4):
            if norm(cand[n]) and norm(ref[n]):
                dot = sum(
                    min(w, ref[n].get(g, 0.0)) * ref[n].get(g, 0.0) for g, w in cand[n].items()
                )
                value += dot / (norm(cand[n]) * norm(ref[n]))
        value *= math.exp(-((len(candidate) - len(captions[j])) ** 2) / 72.0)
        total += value
    return total / len(neighbours)


def test_consensus_is_the_cider_d_similarity_to_the_neighbours_captions() -> None:
    index = _index()
    candidates = [
        ["a", "cat", "sitting", "on", "a", "bed"],  # one neighbour's caption, word for word
        ["a", "cat", "on", "a", "sofa"],
        ["a", "plane", "in", "the", "sky"],  # nothing in common but "a", "the"
        ["zebra", "zebra", "unknownword"],  # words no training caption has
        [],
    ]
    neighbours = [0, 1, 7]
    scores = index.consensus(candidates, neighbours)
    expected = [_reference_consensus(index.captions, c, neighbours) for c in candidates]
    np.testing.assert_allclose(scores, expected, rtol=1e-12, atol=1e-15)
    assert scores[0] > scores[1] > scores[2] >= 0.0
    assert scores[3] == 0.0 and scores[4] == 0.0
    assert index.consensus([], neighbours).shape == (0,)


def test_a_batch_scores_each_image_as_alone() -> None:
    index = _index()
    rng = np.random.default_rng(5)
    words = [*sorted({w for c in CAPTIONS for w in c.split()}), "unknownword"]
    batch = [
        [list(rng.choice(words, size=rng.integers(0, 9))) for _ in range(rng.integers(0, 5))]
        for _ in range(7)
    ]
    neighbours = rng.integers(0, len(CAPTIONS), size=(7, 4))  # repeats allowed
    scores = index.consensus_batch(batch, neighbours)
    assert [len(s) for s in scores] == [len(c) for c in batch]
    for cands, row, got in zip(batch, neighbours, scores, strict=True):
        np.testing.assert_allclose(got, index.consensus(cands, row), rtol=1e-12, atol=1e-15)
        expected = [_reference_consensus(index.captions, list(c), list(row)) for c in cands]
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert any(s.max() > 0 for s in scores if len(s))


def test_nearest_are_the_most_similar_training_images_nearest_first() -> None:
    rng = np.random.default_rng(3)
    train = rng.standard_normal((50, 16)).astype(np.float32)
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    index = build_index(train, [["w"]] * 50, encoder="e-1", dims=16)  # all axes: exact
    queries = train[[4, 17]] + 0.01 * rng.standard_normal((2, 16)).astype(np.float32)
    nearest = index.nearest(queries, k=5)
    assert nearest.shape == (2, 5)
    assert list(nearest[:, 0]) == [4, 17]
    projected = (queries - index.mean) @ index.axes
    projected /= np.linalg.norm(projected, axis=1, keepdims=True)
    sims = projected @ index.keys.astype(np.float32).T
    for row, got in zip(sims, nearest, strict=True):
        assert list(got) == list(np.argsort(-row, kind="stable")[:5])
    with pytest.raises(ValueError, match=r"k must be in \[1, 50\]"):
        index.nearest(queries, k=51)


def test_the_kept_candidate_has_most_agreement_then_the_models_order() -> None:
    def kept(agree: list[float], model: list[float], weight: float) -> int:
        return int(np.argmax(combined(np.array(agree), np.array(model), weight)))

    assert kept([0.1, 0.3, 0.2], [-1.0, -2.0, -1.5], 0.0) == 1
    assert kept([0.2, 0.2], [-1.0, -1.2], 0.0) == 0  # tie: the model's first
    # a large weight of the model's score gives the model's own choice back
    assert kept([0.1, 0.3], [-1.0, -2.0], 1.0) == 0
    assert combined(np.array([0.5]), np.array([-2.0]), 0.02)[0] == pytest.approx(0.46)


def test_an_index_round_trips_through_its_file(tmp_path: Path) -> None:
    index = _index()
    path = tmp_path / "m.neighbours.npz"
    save_index(path, index)
    loaded = load_index(path)
    assert loaded.encoder == index.encoder and loaded.captions == index.captions
    np.testing.assert_array_equal(loaded.keys, index.keys)
    np.testing.assert_array_equal(loaded.axes, index.axes)
    candidates = [c.split() for c in CAPTIONS[:3]]
    np.testing.assert_array_equal(
        loaded.consensus(candidates, [0, 2, 5]), index.consensus(candidates, [0, 2, 5])
    )


def test_a_bad_index_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.neighbours.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match=r"bad\.neighbours\.npz is not a scenecast"):
        load_index(path)
    np.savez(path, format=np.array(99))
    with pytest.raises(CheckpointError, match="format 99, expected 1"):
        load_index(path)
    with pytest.raises(CheckpointError, match="inconsistent neighbour index"):
        dataclasses.replace(_index(), captions=[["a"]])


def _features(n: int = 5, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 9, 16, generator=torch.Generator().manual_seed(seed))  # (B, P, D)


def test_nbest_is_each_images_finished_beams_best_first(vocab: Vocabulary) -> None:
    features = _features()
    decoder = fitted_decoder(len(vocab), features)
    config = SearchConfig(method="beam", beam=4)
    nbest = beam_search_nbest(decoder, features, vocab, config, n=4)
    best = beam_search(decoder, features, vocab, config)
    assert [h[0].ids for h in nbest] == [h.ids for h in best]
    for finished in nbest:
        assert 1 <= len(finished) <= 4
        norms = [h.normalized for h in finished]
        assert norms == sorted(norms, reverse=True)
        assert len({tuple(h.ids) for h in finished}) == len(finished)
    assert any(len(f) > 1 for f in nbest)
    assert all(len(f) == 1 for f in beam_search_nbest(decoder, features, vocab, config, n=1))
    with pytest.raises(ValueError, match="n must be >= 1"):
        beam_search_nbest(decoder, features, vocab, config, n=0)


def test_reranked_search_picks_the_candidate_the_neighbours_agree_with(
    vocab: Vocabulary,
) -> None:
    features = _features()
    decoder = fitted_decoder(len(vocab), features)
    config = SearchConfig(method="beam", beam=4, consensus_k=2, consensus_weight=0.0)
    nbest = beam_search_nbest(decoder, features, vocab, config, n=4)
    row = next(i for i, f in enumerate(nbest) if len(f) > 1)
    wanted = vocab.decode(nbest[row][-1].ids)  # the model's last choice for that image
    # training images: the row's own pooled feature (twice) with the wanted caption, and
    # far-away ones with captions of other words
    own = pooled(features[row : row + 1])[0]
    far = -own
    train = np.stack([own, own, far, far, far])
    index = build_index(
        train,
        [wanted, wanted, ["<zz>"], ["<yy>"], ["<xx>"]],
        encoder="efficientnet_lite0-224",
        dims=5,
    )
    reranked = caption_search(decoder, features[row : row + 1], vocab, config, index)
    assert reranked[0].ids == nbest[row][-1].ids
    assert reranked[0].ids != nbest[row][0].ids
    # off: the model's own best
    off = dataclasses.replace(config, consensus_k=0)
    assert caption_search(decoder, features[row : row + 1], vocab, off, index)[0].ids == (
        nbest[row][0].ids
    )
    # a batch reranks each image as it would alone
    batched = caption_search(decoder, features, vocab, config, index)
    single = [
        caption_search(decoder, features[i : i + 1], vocab, config, index)[0]
        for i in range(len(features))
    ]
    assert [h.ids for h in batched] == [h.ids for h in single]


def test_the_index_beside_a_checkpoint_is_loaded_and_checked(tmp_path: Path) -> None:
    from captioner.api import Captioner
    from captioner.checkpoint import save_checkpoint
    from tests.support.factories import checkpoint_of

    path = tmp_path / "model.pt"
    save_checkpoint(path, checkpoint_of(consensus_k=3))
    assert Captioner.load(path, device="cpu").neighbours is None  # optional
    save_index(neighbours_path(path), _index())
    cap = Captioner.load(path, device="cpu")
    assert cap.neighbours is not None and len(cap.neighbours) == len(CAPTIONS)
    assert neighbours_path(path).name == "model.neighbours.npz"
    cap.override({})  # keeps the stored settings
    assert cap.search_config.consensus_k == 3
    cap.override({"consensus_k": 0})
    assert cap.search_config.consensus_k == 0
    other = dataclasses.replace(_index(), encoder="resnet50-224")
    save_index(neighbours_path(path), other)
    with pytest.raises(CheckpointError, match="indexes resnet50-224 features but"):
        Captioner.load(path, device="cpu")
