"""Self-critical training: the sampler, the loss and a run through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from captioner.checkpoint import load_checkpoint
from captioner.metrics.cider import CiderD, cider_d
from captioner.training.scst import ScstConfig, sample_captions, scst_loss
from captioner.vocab import Vocabulary
from stream.cli.main import main
from tests.support.datasets import make_dataset
from tests.support.factories import tiny_decoder


def test_sampled_captions_mask_stops_after_end(vocab: Vocabulary) -> None:
    torch.manual_seed(0)
    decoder = tiny_decoder(len(vocab), end_bias=1.0)
    ids, logps, masks = sample_captions(
        decoder, torch.randn(3, 9, 16), vocab, samples=4, max_words=6
    )
    assert ids.shape == logps.shape == masks.shape
    assert ids.size(0) == 12 and ids.size(1) <= 7
    for seq, mask in zip(ids.tolist(), masks.tolist(), strict=True):
        real = int(sum(mask))
        assert vocab.end_id in seq[:real] or real == ids.size(1)
        if vocab.end_id in seq[:real]:
            assert seq.index(vocab.end_id) == real - 1  # the mask ends with the first <end>
        assert vocab.unk_id not in seq[:real] and vocab.pad_id not in seq[:real]
    assert logps.requires_grad
    assert bool((logps <= 0).all())


def test_loss_uses_the_mean_of_the_other_samples_as_baseline() -> None:
    # one image, 3 samples with rewards 3, 0, 0; each sample one token of log-prob -1
    logps = torch.full((3, 1), -1.0)
    masks = torch.ones(3, 1)
    rewards = torch.tensor([3.0, 0.0, 0.0])
    # baselines: (0+0)/2 = 0, (3+0)/2 = 1.5, 1.5 → advantages 3, -1.5, -1.5
    # loss = -mean(adv * logp) = -mean(-3, 1.5, 1.5) = 0
    assert float(scst_loss(logps, masks, rewards, samples=3)) == pytest.approx(0.0)
    logps = torch.tensor([[-1.0], [-2.0], [-2.0]])
    # -mean(3*-1, -1.5*-2, -1.5*-2) = -mean(-3, 3, 3) = -1
    assert float(scst_loss(logps, masks, rewards, samples=3)) == pytest.approx(-1.0)


def test_cider_scorer_with_fixed_corpus_matches_cider_d() -> None:
    refs = [
        [["a", "dog", "runs", "on", "grass"]],
        [["a", "cat", "sleeps", "on", "a", "bed"]],
        [["boats", "on", "a", "lake"]],
    ]
    hyps = [["a", "dog", "on", "grass"], ["a", "cat", "on", "a", "bed"], ["a", "lake"]]
    scorer = CiderD(refs)
    assert scorer.scores(hyps) == pytest.approx(cider_d(hyps, refs)[1])
    assert scorer.score(hyps[0], 0) > scorer.score(hyps[0], 1)


def test_config_needs_two_samples(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="samples must be >= 2"):
        ScstConfig(out=tmp_path, samples=1)


def test_scst_runs_from_a_cross_entropy_checkpoint(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", n_train=10, n_val=4)
    common = [
        "--data",
        str(root),
        "--cache",
        str(tmp_path / "cache"),
        "--min-freq",
        "1",
        "--log-every",
        "1",
    ]
    assert (
        main(
            [
                "train",
                *common,
                "--out",
                str(tmp_path / "xe"),
                "--epochs",
                "2",
                "--batch-size",
                "5",
                "--dims",
                "16",
                "16",
                "16",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                *common,
                "--out",
                str(tmp_path / "scst"),
                "--epochs",
                "1",
                "--scst",
                str(tmp_path / "xe" / "best.pt"),
                "--lr",
                "1e-4",
            ]
        )
        == 0
    )
    log = (tmp_path / "scst" / "train.log").read_text()
    assert "SCST starts from val CIDEr-D" in log and "scst epoch 1:" in log
    best = load_checkpoint(tmp_path / "scst" / "best.pt")
    assert best.vocab.words == load_checkpoint(tmp_path / "xe" / "best.pt").vocab.words
