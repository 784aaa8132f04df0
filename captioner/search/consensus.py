"""Consensus reranking: of beam search's finished captions, the one its neighbours agree with.

Beam search ends with k finished captions per image, ranked by the model's own
length-normalised log-probability. A model trained on 13 k single-reference alt-texts
ranks them poorly: on cc3m-photos val the caption chosen by agreement with the captions
of the training images that look most like the image scores higher CIDEr-D than the
model's first choice (captioner/MODEL_CARD.md, step 8). This is the consensus idea of
Devlin et al. 2015 (the retrieval baseline of ``captioner.training.baseline``) used as a
reranker of generated captions, not as a source of them: the words are always the
model's own.

- Images are compared by the cosine of their mean-pooled grid features, projected on
  the first principal axes of the training images' (``build_index``): 13 k × 128 fp16
  keys ship beside the checkpoint instead of 13 k × 1280.
- Agreement of a candidate with a neighbour's caption is CIDEr-D's similarity (clipped
  tf-idf n-gram cosine for n = 1..4 times the Gaussian length penalty), with document
  frequencies over the training captions; a candidate's consensus is the mean over its
  ``k`` neighbours.

NumPy, token lists and torch's CPU matrix products (see ``NeighbourIndex.nearest``);
no I/O but ``save_index`` / ``load_index``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from captioner.exceptions import CheckpointError
from captioner.metrics.bleu import ngram_counts
from captioner.search.ngram_table import NgramTable

_NGram = tuple[str, ...]
_MAX_N = 4
_SIGMA = 6.0  # CIDEr-D's length penalty
FORMAT = 1  # of the saved index


@dataclass(eq=False)
class NeighbourIndex:
    """Training images (as projected pooled features) and their captions.

    The captions' tf-idf n-gram vectors are built once, at construction, as flat arrays
    (one row of ids and weights per caption), so scoring an image's candidates against
    its neighbours is a handful of NumPy operations.
    """

    encoder: str  # "efficientnet_lite0-224": the features the keys come from
    mean: npt.NDArray[np.float32]  # (D,) mean of the training images' pooled features
    axes: npt.NDArray[np.float32]  # (D, d) principal axes
    keys: npt.NDArray[np.float16]  # (N, d) training images, projected, L2-normalised
    captions: list[list[str]]  # N captions, tokens

    def __post_init__(self) -> None:
        n, d = self.keys.shape
        if len(self.captions) != n or self.axes.shape != (self.mean.shape[0], d):
            raise CheckpointError(
                f"inconsistent neighbour index: {n} keys of {d} dims, {len(self.captions)} "
                f"captions, axes {self.axes.shape}, mean {self.mean.shape}"
            )
        self._on_device: dict[torch.device, tuple[Tensor, Tensor, Tensor]] = {}
        self._log_docs = math.log(max(1, n))
        self._table = NgramTable(self.captions)  # every n-gram of the captions, as ids
        seen = self._table.occurrences  # each (caption, n-gram) once, by caption
        doc_freq = np.bincount(seen.gram, minlength=self._table.size).astype(np.float64)
        self._idf = self._log_docs - np.log(np.maximum(doc_freq, 1))
        # the captions' tf-idf entries, one row per caption (all their n-grams are known)
        self._ref_ids = seen.gram
        self._ref_weights = seen.count * self._idf[seen.gram]
        squares = np.bincount(
            seen.caption * _MAX_N + seen.order, weights=self._ref_weights**2, minlength=n * _MAX_N
        )
        self._ref_norms = np.sqrt(squares).reshape(-1, _MAX_N)
        self._ref_offsets = np.concatenate([[0], np.cumsum(np.bincount(seen.caption, minlength=n))])
        self._ref_lengths = np.array([len(c) for c in self.captions], dtype=np.float64)
        self._key_width = self._table.size + 1  # join keys: image * width + n-gram id

    def __len__(self) -> int:
        return len(self.captions)

    def nearest(self, pooled: np.ndarray | Tensor, k: int) -> npt.NDArray[np.intp]:
        """Indices (B, k) of the k training images most similar to each row, nearest first.

        The products run in torch, not NumPy: NumPy's BLAS threads keep spinning after a
        call and took the cores from the decoder's next steps (a batch-1 caption was a
        third slower; BENCHMARKS.md, "Consensus reranking")."""
        if not 1 <= k <= len(self):
            raise ValueError(f"k must be in [1, {len(self)}], got {k}")
        query = torch.as_tensor(pooled, dtype=torch.float32)  # a tensor stays on its device
        mean, axes, keys = self._tensors(query.device)
        projected = torch.nn.functional.normalize((query - mean) @ axes, dim=1)  # (B, d)
        sims = projected @ keys.T  # (B, N)
        top = sims.topk(k, dim=1).indices.cpu().numpy()
        out: npt.NDArray[np.intp] = top.astype(np.intp)
        return out

    def _tensors(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """The mean, axes and keys as float32 tensors on ``device`` (moved once)."""
        if device not in self._on_device:
            mean, axes, keys = (
                torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)
                for a in (self.mean, self.axes, self.keys)
            )
            self._on_device[device] = (mean, axes, keys)
        return self._on_device[device]

    def consensus(
        self, candidates: Sequence[Sequence[str]], neighbours: Sequence[int]
    ) -> npt.NDArray[np.float64]:
        """Each candidate's mean CIDEr-D similarity (without the factor 10 / 4) to the
        captions of ``neighbours`` (indices into the index): for n = 1..4,
        ``sum_g min(c_g, r_g) * r_g / (|c| |r|)`` over tf-idf weights, summed over n,
        times ``exp(-(len c - len r)^2 / 72)``, averaged over the neighbours."""
        return self.consensus_batch([candidates], np.asarray([neighbours], dtype=np.intp))[0]

    def consensus_batch(
        self, candidates: Sequence[Sequence[Sequence[str]]], neighbours: np.ndarray
    ) -> list[npt.NDArray[np.float64]]:
        """:meth:`consensus` for a batch: ``candidates[b]`` against the captions of
        ``neighbours[b]`` (B, K). One pass of array operations for the whole batch: the
        candidates' and the neighbours' n-grams are joined on (image, n-gram)."""
        refs = np.asarray(neighbours, dtype=np.intp).reshape(len(candidates), -1)  # (B, K)
        k = refs.shape[1]
        sizes = [len(c) for c in candidates]
        flat = [list(c) for image in candidates for c in image]
        if not flat or k == 0:
            return [np.zeros(n) for n in sizes]
        owners = np.repeat(np.arange(len(candidates)), sizes)  # (C,) image of each candidate
        cand_of, ids, orders, weights, cand_norms = self._entries(
            [ngram_counts(c, _MAX_N) for c in flat]
        )
        ref_keys, ref_of, ref_weights = self._neighbour_entries(refs)
        # join: each candidate entry with every neighbour entry of its image and n-gram
        cand_keys = owners[cand_of] * self._key_width + ids
        lo = np.searchsorted(ref_keys, cand_keys, side="left")
        hits = np.searchsorted(ref_keys, cand_keys, side="right") - lo
        left = np.repeat(np.arange(len(cand_keys)), hits)
        right = _ranges(lo, hits)
        mine, theirs = weights[left], ref_weights[right]
        cell = (cand_of[left] * k + ref_of[right] % k) * _MAX_N + orders[left]
        clipped = np.minimum(mine, theirs) * theirs  # CIDEr-D: min(c_g, r_g) * r_g
        summed = np.bincount(cell, weights=clipped, minlength=len(flat) * k * _MAX_N)
        dots = summed.astype(np.float64).reshape(len(flat), k, _MAX_N)  # (C, K, 4)
        cand_refs = refs[owners]  # (C, K)
        denominator = cand_norms[:, None, :] * self._ref_norms[cand_refs]  # (C, K, 4)
        similarity = np.divide(
            dots, denominator, out=np.zeros_like(dots), where=denominator > 0
        ).sum(axis=2)
        delta = np.array([len(c) for c in flat], np.float64)[:, None] - self._ref_lengths[cand_refs]
        scores = (similarity * np.exp(-(delta**2) / (2 * _SIGMA**2))).mean(axis=1)  # (C,)
        return list(np.split(scores, np.cumsum(sizes)[:-1]))

    def _entries(self, counts: list[dict[_NGram, int]]) -> tuple[np.ndarray, ...]:
        """Candidates' n-grams the training captions have, as entries (candidate, id,
        order, tf-idf weight), and each candidate's norms (C, 4) over all its n-grams
        (one no training caption has gets the largest idf, log N, and matches nothing)."""
        grams = [g for cc in counts for g in cc]
        owner = np.repeat(np.arange(len(counts)), [len(cc) for cc in counts])
        ids = self._table.ids(grams)
        orders = np.fromiter((len(g) - 1 for g in grams), dtype=np.intp, count=len(grams))
        tf = np.fromiter((n for cc in counts for n in cc.values()), np.float64, len(grams))
        known = ids >= 0
        idf = np.full(len(grams), self._log_docs)
        idf[known] = self._idf[ids[known]]
        weights = tf * idf
        squares = np.bincount(
            owner * _MAX_N + orders, weights=weights**2, minlength=len(counts) * _MAX_N
        )
        norms = np.sqrt(squares).reshape(-1, _MAX_N)
        return owner[known], ids[known], orders[known], weights[known], norms

    def _neighbour_entries(self, refs: np.ndarray) -> tuple[np.ndarray, ...]:
        """The n-gram entries of the captions of ``refs`` (B, K), sorted by their key
        (image, id): (keys, flat index of the (image, neighbour) pair, weights)."""
        starts = self._ref_offsets[refs].ravel()  # (B*K,)
        lengths = self._ref_offsets[refs + 1].ravel() - starts
        pair = np.repeat(np.arange(refs.size), lengths)
        take = _ranges(starts, lengths)
        keys = (pair // refs.shape[1]) * self._key_width + self._ref_ids[take]
        order = np.argsort(keys, kind="stable")
        return keys[order], pair[order], self._ref_weights[take][order]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> npt.NDArray[np.intp]:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])``, vectorised."""
    ends = np.cumsum(lengths)
    out: npt.NDArray[np.intp] = np.repeat(starts - ends + lengths, lengths) + np.arange(
        int(ends[-1]) if len(ends) else 0
    )
    return out


def _project(
    pooled: np.ndarray, mean: npt.NDArray[np.float32], axes: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    projected = (np.asarray(pooled, dtype=np.float32) - mean) @ axes
    norms = np.linalg.norm(projected, axis=1, keepdims=True)
    safe = np.where(norms > 0, norms, np.float32(1.0))
    return np.asarray(projected / safe, dtype=np.float32)


def combined(
    consensus: np.ndarray, model_scores: np.ndarray, model_weight: float
) -> npt.NDArray[np.float64]:
    """Candidates' scores for reranking: ``consensus + model_weight * model score`` (the
    model's length-normalised log-probability). The one kept is the first highest
    (``np.argmax``): a tie goes to the model's own order."""
    return np.asarray(consensus, dtype=np.float64) + model_weight * np.asarray(
        model_scores, dtype=np.float64
    )


def build_index(
    pooled: np.ndarray, captions: Sequence[Sequence[str]], *, encoder: str, dims: int = 128
) -> NeighbourIndex:
    """An index of training images from their L2-normalised pooled features (N, D)
    (``captioner.training.baseline.pool_features``) and captions; keys keep ``dims`` principal
    components."""
    features = np.asarray(pooled, dtype=np.float32)
    if features.ndim != 2 or len(features) != len(captions):
        raise ValueError(
            f"need pooled features (N, D) for N captions; got {features.shape} and "
            f"{len(captions)} captions"
        )
    if not 1 <= dims <= min(features.shape):
        raise ValueError(f"dims must be in [1, {min(features.shape)}], got {dims}")
    mean = features.mean(axis=0)
    _, _, vt = np.linalg.svd(features - mean, full_matrices=False)
    axes = np.ascontiguousarray(vt[:dims].T, dtype=np.float32)  # (D, dims)
    keys = _project(features, mean, axes).astype(np.float16)
    return NeighbourIndex(
        encoder=encoder, mean=mean, axes=axes, keys=keys, captions=[list(c) for c in captions]
    )


def save_index(path: Path, index: NeighbourIndex) -> None:
    """One ``.npz`` (no pickle): arrays, and the captions as UTF-8 lines."""
    text = "\n".join(" ".join(c) for c in index.captions).encode("utf-8")
    np.savez_compressed(
        path,
        format=np.array(FORMAT),
        encoder=np.frombuffer(index.encoder.encode("utf-8"), dtype=np.uint8),
        mean=index.mean,
        axes=index.axes,
        keys=index.keys,
        captions=np.frombuffer(text, dtype=np.uint8),
    )


def load_index(path: Path) -> NeighbourIndex:
    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data["format"]) != FORMAT:
                raise CheckpointError(
                    f"{path}: neighbour index format {int(data['format'])}, expected {FORMAT}"
                )
            text = data["captions"].tobytes().decode("utf-8")
            return NeighbourIndex(
                encoder=data["encoder"].tobytes().decode("utf-8"),
                mean=data["mean"].astype(np.float32),
                axes=data["axes"].astype(np.float32),
                keys=data["keys"].astype(np.float16),
                captions=[line.split() for line in text.split("\n")],
            )
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not a scenecast neighbour index: {exc}") from exc
