"""The caption hold: its decision alone (captioner/hold.py), then through the reranked
search with a real (tiny) decoder and neighbour index (captioner/reranked.py)."""

from __future__ import annotations

import dataclasses
import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest
import torch
import torch.multiprocessing  # registers torch's shared-memory pickling of tensors

from captioner.search.consensus import build_index
from captioner.search.hold import CUT_SIMILARITY, Frame, Shown, ShownCaptions, hold
from captioner.search.reranked import caption_search, pooled
from captioner.search.search import SearchConfig, beam_search_nbest, score_captions
from captioner.vocab import SPECIALS, Vocabulary
from tests.support.factories import fitted_decoder

# -- the decision -------------------------------------------------------------------


class Table:
    """A scoring function over a fixed table of (frame, caption) scores (0 where the
    table has none); records its calls."""

    def __init__(self, scores: dict[tuple[int, str], float]) -> None:
        self.scores = scores
        self.calls: list[list[tuple[int, str]]] = []

    def __call__(self, asked: list[tuple[int, str]]) -> list[float]:
        self.calls.append(asked)
        return [self.scores.get(pair, 0.0) for pair in asked]


def frame(source: str | None, best: str, follows: bool = True, **known: float) -> Frame[str]:
    return Frame(source, best, 1.0, follows, {best: 1.0, **known})


def test_a_still_source_keeps_its_caption_and_asks_once_for_the_whole_batch() -> None:
    frames = [frame("cam", c) for c in ("b", "c", "d", "e")]
    table = Table({(j, "a"): 0.97 for j in range(4)})
    assert hold(frames, {"cam": "a"}, table, margin=0.04) == ["a"] * 4
    assert table.calls == [[(0, "a"), (1, "a"), (2, "a"), (3, "a")]]


def test_a_caption_that_stops_fitting_gives_way_and_the_new_one_is_held() -> None:
    frames = [frame("cam", c) for c in ("b", "c", "d", "e")]
    scores = {(0, "a"): 0.99, (1, "a"): 0.9, (2, "a"): 0.99, (3, "a"): 0.99}
    scores |= {(2, "c"): 0.98, (3, "c"): 0.5}
    table = Table(scores)
    assert hold(frames, {"cam": "a"}, table, margin=0.04) == ["a", "c", "c", "e"]
    # the first call assumed "a" held through the batch; after it gave way at frame 1,
    # one more call for "c" on the frames after it
    assert table.calls == [[(0, "a"), (1, "a"), (2, "a"), (3, "a")], [(2, "c"), (3, "c")]]


def test_a_cut_takes_its_own_caption_and_holds_that() -> None:
    frames = [frame("cam", "b"), frame("cam", "c", follows=False), frame("cam", "d")]
    table = Table({(0, "a"): 1.0, (2, "c"): 0.99})
    assert hold(frames, {"cam": "a"}, table, margin=0.04) == ["a", "c", "c"]
    # a source with nothing shown before takes its own first caption
    table = Table({(1, "b"): 0.99, (2, "b"): 0.99})
    assert hold([*frames[:1], frame("cam", "c"), frame("cam", "d")], {}, table, 0.04) == ["b"] * 3


def test_scores_a_frame_already_has_are_not_asked_for() -> None:
    frames = [frame("cam", "b", a=0.99), frame("cam", "c", a=0.5)]
    table = Table({})
    assert hold(frames, {"cam": "a"}, table, margin=0.04) == ["a", "c"]
    assert table.calls == []


def test_sources_hold_apart_and_lone_images_are_never_held() -> None:
    frames = [frame("x", "b"), frame("y", "c"), frame(None, "d"), frame("x", "e"), frame("y", "f")]
    table = Table({(0, "a"): 0.99, (3, "a"): 0.99, (1, "z"): 0.5, (4, "c"): 0.99})
    assert hold(frames, {"x": "a", "y": "z"}, table, margin=0.04) == ["a", "c", "d", "a", "c"]
    assert all(j != 2 for call in table.calls for j, _ in call)


def test_margin_zero_holds_only_a_caption_at_least_as_good() -> None:
    frames = [frame("cam", "b"), frame("cam", "c")]
    assert hold(frames, {"cam": "a"}, Table({(0, "a"): 1.0, (1, "a"): 0.999}), 0.0) == ["a", "c"]
    with pytest.raises(ValueError, match="margin must be >= 0"):
        hold(frames, {}, Table({}), -0.1)


def _sequential(
    frames: list[Frame[str]],
    before: dict[str, str],
    scores: dict[tuple[int, str], float],
    margin: float,
) -> list[str]:
    """The rule written frame by frame, as if every frame came alone."""
    shown: dict[str, str] = dict(before)
    out = []
    for j, f in enumerate(frames):
        held = shown.get(f.source) if f.source is not None else None
        choice = f.best
        if held is not None and f.follows:
            value = f.known.get(held, scores.get((j, held)))
            assert value is not None
            if value >= f.best_score - margin:
                choice = held
        out.append(choice)
        if f.source is not None:
            shown[f.source] = choice
    return out


def test_the_batched_decision_is_the_frame_by_frame_one() -> None:
    rng = np.random.default_rng(0)
    words = ["a", "b", "c", "d", "e"]
    for _ in range(300):
        n = int(rng.integers(1, 12))
        frames = []
        for _ in range(n):
            best = str(rng.choice(words))
            others = {
                w: float(rng.uniform(0.8, 1.0)) for w in words if w != best and rng.random() < 0.3
            }
            source = [None, "x", "y"][int(rng.integers(0, 3))]
            frames.append(Frame(source, best, 1.0, bool(rng.random() < 0.8), {best: 1.0, **others}))
        scores = {(j, w): float(rng.uniform(0.85, 1.0)) for j in range(n) for w in words}
        before = {s: str(rng.choice(words)) for s in ("x", "y") if rng.random() < 0.7}
        got = hold(frames, before, Table(scores), margin=0.05)
        assert got == _sequential(frames, before, scores, 0.05)


def test_shown_captions_keep_the_most_recent_sources() -> None:
    shown = ShownCaptions(max_sources=2)
    for name in ("a", "b", "c"):
        shown.put(name, Shown(("a",), torch.zeros(3)))
    assert shown.get("a") is None and len(shown) == 2
    shown.get("b")
    shown.put("b", Shown(("b",), torch.zeros(3)))  # refreshed: now the newest
    shown.put("d", Shown(("c",), torch.zeros(3)))
    assert shown.get("c") is None and shown.get("b").tokens == ("b",)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="max_sources"):
        ShownCaptions(0)


def test_shown_captions_tell_which_states_were_set_since_a_snapshot() -> None:
    shown = ShownCaptions()
    kept, replaced = Shown(("a",), torch.zeros(3)), Shown(("b",), torch.zeros(3))
    shown.put("kept", kept)
    shown.put("replaced", replaced)
    before = shown.snapshot()
    assert shown.set_since(before) == {}
    again = Shown(("b",), torch.zeros(3))  # equal words, but put anew: set since
    shown.put("replaced", again)
    shown.put("new", kept)
    assert shown.set_since(before) == {"replaced": again, "new": kept}


def test_a_shown_state_crosses_a_process_pipe_as_its_own_bytes() -> None:
    state = Shown(("a", "cat"), torch.randn(1280))
    data = ForkingPickler.dumps(state)
    # the features travel in the message (not as a shared-memory handle, ~1 ms a state)
    assert len(data) > 1280 * 4
    back = pickle.loads(data)
    assert back.tokens == state.tokens and torch.equal(back.pooled, state.pooled)


# -- through the reranked search ---------------------------------------------------


def _stream(n: int, noise: float, seed: int = 1) -> torch.Tensor:
    """n frames of one picture (B, P, D) with a little noise each."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, 9, 16, generator=g)
    return base + noise * torch.randn(n, 9, 16, generator=g)


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    """Two streams of six frames (each frame follows the one before), a decoder, an
    index and a search config with the hold."""
    vocab = Vocabulary([*SPECIALS, *(f"w{i}" for i in range(30))])
    features = torch.cat([_stream(6, 0.2), _stream(6, 0.2, seed=2)])
    keys = pooled(features)
    cosines = (keys[1:] * keys[:-1]).sum(dim=1)
    assert all(float(c) >= CUT_SIMILARITY for i, c in enumerate(cosines) if i != 5)
    decoder = fitted_decoder(
        len(vocab), torch.randn(10, 9, 16, generator=torch.Generator().manual_seed(3))
    )
    nbest = beam_search_nbest(decoder, features, vocab, SearchConfig(beam=4), n=4)
    # an index whose captions are the candidates themselves, at the frames' own features
    captions = [vocab.decode(c[-1].ids) for c in nbest]
    index = build_index(keys.numpy(), captions, encoder="efficientnet_lite0-224", dims=8)
    config = SearchConfig(beam=4, consensus_k=3, consensus_weight=0.02, hold_margin=0.05)
    return vocab, decoder, features, index, config


def test_a_stream_holds_across_calls_as_in_one_call(setup) -> None:  # type: ignore[no-untyped-def]
    vocab, decoder, features, index, config = setup
    sources = ["s"] * 6 + ["t"] * 6
    whole = caption_search(
        decoder, features, vocab, config, index, sources=sources, shown=ShownCaptions()
    )
    shown = ShownCaptions()
    parts = [
        h
        for lo, hi in ((0, 2), (2, 3), (3, 9), (9, 12))
        for h in caption_search(
            decoder, features[lo:hi], vocab, config, index, sources=sources[lo:hi], shown=shown
        )
    ]
    assert [h.ids for h in parts] == [h.ids for h in whole]
    assert shown.get("s") is not None and shown.get("s").tokens == tuple(vocab.decode(whole[5].ids))  # type: ignore[union-attr]


def test_held_captions_change_less_and_are_scored_on_their_own_frame(setup) -> None:  # type: ignore[no-untyped-def]
    vocab, decoder, features, index, config = setup
    sources = ["s"] * 6 + ["t"] * 6
    alone = caption_search(decoder, features, vocab, config, index)  # no sources: no hold
    held = caption_search(
        decoder, features, vocab, config, index, sources=sources, shown=ShownCaptions()
    )

    def changes(hyps: list) -> int:  # type: ignore[type-arg]
        return sum(hyps[i].ids != hyps[i - 1].ids for i in (*range(1, 6), *range(7, 12)))

    assert changes(alone) > 0, "the test stream must flicker without the hold"
    assert changes(held) < changes(alone)
    forced = score_captions(decoder, features, vocab, config, [h.ids for h in held])
    for h, f in zip(held, forced, strict=True):
        assert h.score == pytest.approx(f.score, abs=1e-4)
        assert torch.allclose(h.attention, f.attention, atol=1e-5)
    off = dataclasses.replace(config, hold_margin=None)
    unheld = caption_search(
        decoder, features, vocab, off, index, sources=sources, shown=ShownCaptions()
    )
    assert [h.ids for h in unheld] == [h.ids for h in alone]


def test_a_cut_is_captioned_afresh_whatever_the_margin(setup) -> None:  # type: ignore[no-untyped-def]
    vocab, decoder, features, index, config = setup
    loose = dataclasses.replace(config, hold_margin=1e6)  # holds anything that follows
    two = torch.cat([features[:1], features[6:7]])  # two different pictures
    assert float(pooled(two)[0] @ pooled(two)[1]) < CUT_SIMILARITY
    got = caption_search(
        decoder, two, vocab, loose, index, sources=["s", "s"], shown=ShownCaptions()
    )
    alone = caption_search(decoder, two, vocab, loose, index)
    assert [h.ids for h in got] == [h.ids for h in alone]
    same = caption_search(
        decoder, features[:6], vocab, loose, index, sources=["s"] * 6, shown=ShownCaptions()
    )
    assert all(h.ids == same[0].ids for h in same)


def test_a_shown_caption_this_model_cannot_score_is_not_held(setup) -> None:  # type: ignore[no-untyped-def]
    vocab, decoder, features, index, config = setup
    loose = dataclasses.replace(config, hold_margin=1e6)
    frame = features[1:2]
    alone = caption_search(decoder, frame, vocab, loose, index)
    keys = pooled(frame)[0]
    for before in (
        Shown(("w1", "not-a-word"), keys),  # a word this model lacks (another model's caption)
        Shown(("w1", "w2"), torch.ones(3)),  # features of another size (another encoder)
    ):
        shown = ShownCaptions()
        shown.put("s", before)
        got = caption_search(decoder, frame, vocab, loose, index, sources=["s"], shown=shown)
        assert got[0].ids == alone[0].ids
    shown = ShownCaptions()
    shown.put("s", Shown(("w1", "w2"), keys))  # one it can: held, with this margin
    got = caption_search(decoder, frame, vocab, loose, index, sources=["s"], shown=shown)
    assert vocab.decode(got[0].ids) == ["w1", "w2"]


def test_a_held_state_keeps_only_its_own_features_not_its_batch(setup) -> None:  # type: ignore[no-untyped-def]
    """It kept a view of the whole batch's pooled tensor: one stream's memory held every
    image of the batch it came from."""
    vocab, decoder, features, index, config = setup
    shown = ShownCaptions()
    caption_search(decoder, features, vocab, config, index, sources=["s"] * 12, shown=shown)
    held = shown.get("s")
    assert held is not None
    pooled = held.pooled
    assert pooled.untyped_storage().nbytes() == pooled.numel() * pooled.element_size()
