"""The nearest-neighbour retrieval baseline (Devlin et al. 2015) on hand-made vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from captioner.training.baseline import (
    knn_consensus,
    knn_nearest,
    nearest_neighbours,
    pool_features,
)


def _unit(rows: list[list[float]]) -> np.ndarray:
    array = np.array(rows, dtype=np.float32)
    unit: np.ndarray = array / np.linalg.norm(array, axis=1, keepdims=True)
    return unit


# Training images around the query direction (1, 0), and one far from it. By cosine to (1, 0):
# outlier (2) 0.995 > dog (1) 0.981 > dog (3) 0.958 > dog (4) 0.919 >> far away (0) 0.1.
TRAIN = _unit([[0.1, 1.0], [1.0, 0.2], [1.0, 0.1], [1.0, 0.3], [1.0, 0.43]])
CAPTIONS = [
    ["a", "red", "car", "on", "a", "highway"],
    ["a", "brown", "dog", "runs", "in", "the", "park"],
    ["a", "plate", "of", "pasta", "with", "basil"],
    ["the", "brown", "dog", "runs", "on", "the", "beach"],
    ["a", "brown", "dog", "runs", "on", "the", "grass"],
]
QUERY = _unit([[1.0, 0.0]])


def test_neighbours_are_the_most_similar_by_cosine() -> None:
    query = _unit([[1.0, 0.0], [0.0, 1.0]])
    neighbours = nearest_neighbours(TRAIN, query, k=5)
    cosines = query @ TRAIN.T
    for row, sims in zip(neighbours, cosines, strict=True):
        assert sorted(row.tolist()) == [0, 1, 2, 3, 4]
        assert list(sims[row]) == sorted(sims, reverse=True)
    assert neighbours[0].tolist() == [2, 1, 3, 4, 0]
    assert neighbours[1].tolist()[0] == 0
    # cosine, not Euclidean distance on unnormalised vectors: the scale of a row does not count
    assert nearest_neighbours(TRAIN, 7.0 * query, k=2).tolist() == neighbours[:, :2].tolist()


def test_neighbour_ties_go_to_the_lower_training_index() -> None:
    train = _unit([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert nearest_neighbours(train, _unit([[1.0, 0.0]]), k=2).tolist() == [[1, 2]]


def test_consensus_skips_the_nearest_outlier_that_knn_nearest_picks() -> None:
    # The 4 nearest are the outlier (nearest) and the three dog captions.
    assert nearest_neighbours(TRAIN, QUERY, k=4).tolist() == [[2, 1, 3, 4]]
    assert knn_nearest(TRAIN, CAPTIONS, QUERY) == [CAPTIONS[2]]
    # Caption 4 shares "a brown dog runs" with 1 and "brown dog runs on the" with 3: the others
    # agree with it most, although it is the farthest of the four.
    assert knn_consensus(TRAIN, CAPTIONS, QUERY, k=4) == [CAPTIONS[4]]
    # the far-away image does not join in before k = 5, and then changes nothing
    assert knn_consensus(TRAIN, CAPTIONS, QUERY, k=5) == [CAPTIONS[4]]
    assert knn_consensus(TRAIN, CAPTIONS, QUERY, k=1) == knn_nearest(TRAIN, CAPTIONS, QUERY)


def test_consensus_ties_go_to_the_nearer_neighbour() -> None:
    # "red cat" and "cat red" agree exactly as much with each other (same words, no shared
    # bigram, same length): whichever is nearer to the query wins, whatever its index.
    captions = [["a", "dog"], ["red", "cat"], ["cat", "red"]]
    train = _unit([[0.0, 1.0], [1.0, 0.2], [1.0, 0.1]])
    assert knn_consensus(train, captions, _unit([[1.0, 0.0]]), k=2) == [["cat", "red"]]
    assert knn_consensus(train, captions, _unit([[1.0, 0.3]]), k=2) == [["red", "cat"]]


def _order_by_cosine(i: int) -> list[int]:
    sims = (TRAIN @ TRAIN[i]).tolist()
    return sorted(range(len(sims)), key=lambda j: (-sims[j], j))


def test_exclude_self_drops_each_image_from_its_own_neighbours() -> None:
    with_self = nearest_neighbours(TRAIN, TRAIN, k=2)
    assert with_self[:, 0].tolist() == [0, 1, 2, 3, 4]  # each image is its own nearest
    without = nearest_neighbours(TRAIN, TRAIN, k=4, exclude_self=True)
    for i, row in enumerate(without):
        assert i not in row.tolist()
        assert row.tolist() == [j for j in _order_by_cosine(i) if j != i][:4]
    # without itself, each image gets the caption of its nearest other image
    nearest_other = [_order_by_cosine(i)[1] for i in range(len(TRAIN))]
    assert nearest_other == [4, 3, 1, 1, 3]
    assert knn_nearest(TRAIN, CAPTIONS, TRAIN, exclude_self=True) == [
        CAPTIONS[j] for j in nearest_other
    ]
    assert knn_nearest(TRAIN, CAPTIONS, TRAIN) == CAPTIONS


def test_exclude_self_takes_query_i_as_training_image_i() -> None:
    # a prefix of the training images (e.g. an evaluation on the first images only)
    assert nearest_neighbours(TRAIN, TRAIN[:2], k=4, exclude_self=True).tolist() == (
        nearest_neighbours(TRAIN, TRAIN, k=4, exclude_self=True)[:2].tolist()
    )
    with pytest.raises(ValueError, match="exclude_self"):
        nearest_neighbours(TRAIN[:2], TRAIN, k=1, exclude_self=True)


@pytest.mark.parametrize(
    ("k", "exclude_self", "accepted"),
    [
        (0, False, r"\[1, 5\]"),
        (-1, False, r"\[1, 5\]"),
        (6, False, r"\[1, 5\]"),
        (5, True, r"\[1, 4\]"),
    ],
)
def test_bad_k_is_a_value_error_naming_the_value_and_the_range(
    k: int, exclude_self: bool, accepted: str
) -> None:
    query = TRAIN if exclude_self else QUERY
    with pytest.raises(ValueError, match=rf"k={k}") as info:
        knn_consensus(TRAIN, CAPTIONS, query, k=k, exclude_self=exclude_self)
    assert info.match(accepted)


def test_captions_must_match_the_training_rows() -> None:
    with pytest.raises(ValueError, match="one caption per training image"):
        knn_consensus(TRAIN, CAPTIONS[:-1], QUERY, k=2)


@pytest.mark.parametrize("batch", [1, 2, 3, 1024])
def test_pool_features_averages_then_normalises(batch: int) -> None:
    grid = np.array(
        [
            [[3.0, 0.0], [3.0, 8.0]],  # mean (3, 4) -> (0.6, 0.8)
            [[0.0, -2.0], [0.0, 0.0]],  # mean (0, -1) -> (0, -1)
            [[1.0, 1.0], [-1.0, -1.0]],  # mean (0, 0): stays zero
        ],
        dtype=np.float16,
    )
    grid.setflags(write=False)  # as a read-only memmap
    pooled = pool_features(grid, batch=batch)
    assert pooled.dtype == np.float32
    assert pooled.shape == (3, 2)
    np.testing.assert_allclose(pooled, [[0.6, 0.8], [0.0, -1.0], [0.0, 0.0]], atol=1e-6)


def test_pool_features_reads_a_memmap(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grid = rng.normal(size=(7, 5, 4)).astype(np.float16)
    path = tmp_path / "grid.npy"
    np.save(path, grid)
    mapped = np.load(path, mmap_mode="r")
    pooled = pool_features(mapped, batch=3)
    expected = grid.astype(np.float64).mean(axis=1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(pooled, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-6)


def test_pool_features_rejects_a_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"\(N, P, D\)"):
        pool_features(np.zeros((3, 4), dtype=np.float16))
