import itertools

import pytest
import torch

from captioner.search.search import (
    SearchConfig,
    beam_search,
    beam_search_nbest,
    greedy,
    sample,
    score_captions,
    search,
    top_candidates,
)
from captioner.vocab import SPECIALS, Vocabulary
from tests.support.factories import fitted_decoder, tiny_decoder


def _features(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 9, 16, generator=torch.Generator().manual_seed(seed))  # (B, P, D)


@pytest.mark.parametrize(
    "config",
    [
        SearchConfig(method="greedy"),
        SearchConfig(method="beam", beam=3),
        SearchConfig(method="beam", beam=4, length_penalty=0.8),
        SearchConfig(method="beam", beam=3, no_repeat_ngram=2),
        SearchConfig(method="beam", beam=3, no_repeat_words=True),
    ],
    ids=["greedy", "beam3", "beam4-lp", "beam3-norepeat", "beam3-norepeat-words"],
)
def test_a_batch_gives_the_same_tokens_as_one_by_one(
    vocab: Vocabulary, config: SearchConfig
) -> None:
    features = _features()
    decoder = fitted_decoder(len(vocab), features)
    features = features + 0.3 * _features(seed=2)  # near, not on, the fitted points
    batched = search(decoder, features, vocab, config)
    single = [search(decoder, features[i : i + 1], vocab, config)[0] for i in range(len(features))]
    assert [h.ids for h in batched] == [h.ids for h in single]
    for b, s in zip(batched, single, strict=True):
        assert b.score == pytest.approx(s.score, abs=1e-4)
    # the test means something only if the captions differ in length across the batch
    assert len({len(h.ids) for h in batched}) > 1


def test_beam_finds_a_caption_at_least_as_likely_as_greedy(vocab: Vocabulary) -> None:
    features = _features(8)
    decoder = fitted_decoder(len(vocab), features, steps=25)
    g = greedy(decoder, features, vocab, SearchConfig(method="greedy"))
    b = beam_search(decoder, features, vocab, SearchConfig(method="beam", beam=5))
    assert all(bb.score >= gg.score - 1e-5 for bb, gg in zip(b, g, strict=True))
    assert any(bb.score > gg.score + 1e-3 for bb, gg in zip(b, g, strict=True))


def test_scores_are_the_log_probability_of_the_words_and_end(vocab: Vocabulary) -> None:
    features = _features(3)
    decoder = fitted_decoder(len(vocab), features)
    for config in (SearchConfig(method="greedy"), SearchConfig(method="beam", beam=3)):
        for i, hyp in enumerate(search(decoder, features, vocab, config)):
            # rescore with teacher forcing: <start> ids <end>
            caption = torch.tensor([[vocab.start_id, *hyp.ids, vocab.end_id]])
            with torch.no_grad():
                logits, alphas = decoder(features[i : i + 1], caption)
            logp = logits.log_softmax(-1).gather(2, caption[:, 1:].unsqueeze(2)).sum()
            assert hyp.score == pytest.approx(float(logp), abs=1e-4)
            torch.testing.assert_close(hyp.attention, alphas[0, : len(hyp.ids)])


def test_score_captions_gives_what_the_search_gave_its_captions(vocab: Vocabulary) -> None:
    features = _features(6)
    decoder = fitted_decoder(len(vocab), features)
    config = SearchConfig(method="beam", beam=4, length_penalty=0.5, no_repeat_words=True)
    nbest = beam_search_nbest(decoder, features, vocab, config, n=4)
    for rank in range(2):  # each image's best and (where there is one) second caption
        hyps = [finished[min(rank, len(finished) - 1)] for finished in nbest]
        scored = score_captions(decoder, features, vocab, config, [h.ids for h in hyps])
        for hyp, got in zip(hyps, scored, strict=True):
            assert got.ids == hyp.ids
            assert got.score == pytest.approx(hyp.score, abs=1e-4)
            assert got.normalized == pytest.approx(hyp.normalized, abs=1e-4)
            torch.testing.assert_close(got.attention, hyp.attention, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="2 captions for 6 images"):
        score_captions(decoder, features, vocab, config, [[4], [5]])


def test_max_len_is_respected_and_unk_never_emitted(vocab: Vocabulary) -> None:
    decoder = tiny_decoder(len(vocab), end_bias=-50.0)  # never wants to stop
    with torch.no_grad():
        decoder.fc.bias[vocab.unk_id] += 100.0  # and loves <unk>
    for config in (
        SearchConfig(method="greedy", max_len=7),
        SearchConfig(beam=3, max_len=7),
        SearchConfig(method="sample", max_len=7, top_k=3),
    ):
        for hyp in search(decoder, _features(4), vocab, config):
            assert len(hyp.ids) == 7
            assert vocab.unk_id not in hyp.ids
            assert hyp.attention.shape == (7, 9)


def test_no_repeat_ngram_blocks_repeats(vocab: Vocabulary) -> None:
    decoder = tiny_decoder(len(vocab), end_bias=-50.0, seed=5)
    for config in (
        SearchConfig(method="greedy", max_len=15, no_repeat_ngram=2),
        SearchConfig(beam=3, max_len=15, no_repeat_ngram=2),
    ):
        for hyp in search(decoder, _features(4), vocab, config):
            bigrams = list(zip(hyp.ids, hyp.ids[1:], strict=False))
            assert len(bigrams) == len(set(bigrams))
    # and without blocking this random model does repeat bigrams
    plain = search(decoder, _features(4), vocab, SearchConfig(method="greedy", max_len=15))
    assert any(len(set(zip(h.ids, h.ids[1:], strict=False))) < len(h.ids) - 1 for h in plain)


def test_no_repeat_words_uses_each_word_once_but_function_words_freely() -> None:
    function = ["a", "of", "the"]  # in captioner.search.function_words
    vocab = Vocabulary([*SPECIALS, *function, *(f"w{i}" for i in range(12))])
    decoder = tiny_decoder(len(vocab), end_bias=-50.0, seed=5)  # it loves "of", "w0", "w5"
    function_ids = {vocab.index[w] for w in function}

    def repeats(ids: list[int]) -> set[int]:
        return {i for i in ids if ids.count(i) > 1}

    for config in (
        SearchConfig(method="greedy", max_len=14, no_repeat_words=True),
        SearchConfig(beam=3, max_len=14, no_repeat_words=True),
        SearchConfig(beam=3, max_len=14, no_repeat_words=True, no_repeat_ngram=2),
        SearchConfig(method="sample", max_len=14, no_repeat_words=True, seed=3),
    ):
        hyps = search(decoder, _features(4), vocab, config)
        assert all(len(h.ids) == 14 for h in hyps)
        assert all(repeats(h.ids) <= function_ids for h in hyps), config
        assert any(repeats(h.ids) for h in hyps)  # "of" still repeats
    # and without the ban this random model does repeat other words
    plain = search(decoder, _features(4), vocab, SearchConfig(method="greedy", max_len=14))
    assert any(repeats(h.ids) - function_ids for h in plain)


def test_no_repeat_words_never_puts_a_word_next_to_itself() -> None:
    from captioner.search.search import _Bans, _next_logp

    vocab = Vocabulary([*SPECIALS, "a", "and", "black", "white", "shirt"])
    ids = vocab.index
    history = torch.tensor(
        [
            [ids["black"], ids["and"]],  # "black and": not "black" again
            [ids["black"], ids["shirt"]],  # "black shirt": "black" may follow (a colour)
            [ids["a"], ids["and"]],  # "a and": not "a"
            [ids["shirt"], ids["black"]],  # "shirt black": not "black" twice in a row
        ]
    )
    logits = torch.zeros(4, len(vocab))
    for config, banned in (
        (SearchConfig(no_repeat_words=True), [True, False, True, True]),
        (SearchConfig(), [False, False, False, False]),  # rules of no_repeat_words
    ):
        bans = _Bans.of(vocab, config, torch.device("cpu"))
        logp = _next_logp(logits, 2, vocab, config, bans, history)
        checked = [logp[0, ids["black"]], logp[1, ids["black"]], logp[2, ids["a"]]]
        checked.append(logp[3, ids["black"]])
        assert [bool(torch.isinf(v)) for v in checked] == banned
        assert torch.isfinite(logp[:, ids["white"]]).all()  # another colour is fine


def test_banned_words_are_never_written(vocab: Vocabulary) -> None:
    decoder = tiny_decoder(len(vocab), end_bias=-50.0, seed=5)  # it loves w12 and w3
    features = _features(4)
    plain = search(decoder, features, vocab, SearchConfig(method="greedy", max_len=10))
    assert {"w12", "w3"} <= {vocab.words[i] for h in plain for i in h.ids}
    for config in (
        SearchConfig(method="greedy", max_len=10, banned_words=("w12", "w3", "zebra")),
        SearchConfig(beam=3, max_len=10, banned_words=("w12", "w3")),
        SearchConfig(method="sample", max_len=10, banned_words=("w12", "w3"), seed=2),
    ):
        for hyp in search(decoder, features, vocab, config):
            assert len(hyp.ids) == 10  # still full captions, of other words
            assert not {"w12", "w3"} & {vocab.words[i] for i in hyp.ids}


def test_banned_phrases_are_never_written(vocab: Vocabulary) -> None:
    decoder = tiny_decoder(len(vocab), end_bias=-50.0, seed=5)
    features = _features(4)
    plain = search(decoder, features, vocab, SearchConfig(method="greedy", max_len=10))
    # the phrases this model writes: each word and the next
    pairs = {(vocab.words[a], vocab.words[b]) for h in plain for a, b in itertools.pairwise(h.ids)}
    phrases = tuple(f"{a} {b}" for a, b in sorted(pairs)[:3])
    three = (
        f"{vocab.words[plain[0].ids[0]]} {vocab.words[plain[0].ids[1]]} "
        + (vocab.words[plain[0].ids[2]])
    )

    def written(ids: list[int], n: int) -> set[str]:
        return {" ".join(vocab.words[i] for i in ids[j : j + n]) for j in range(len(ids) - n + 1)}

    for config in (
        SearchConfig(method="greedy", max_len=10, banned_words=(*phrases, three)),
        SearchConfig(beam=3, max_len=10, banned_words=(*phrases, three, "zebra w3")),
        SearchConfig(method="sample", max_len=10, banned_words=(*phrases, three), seed=2),
    ):
        for hyp in search(decoder, features, vocab, config):
            assert len(hyp.ids) == 10  # full captions, of other words
            assert not written(hyp.ids, 2) & set(phrases), config
            assert three not in written(hyp.ids, 3), config
        # the phrases' words alone are still written
        words = {vocab.words[i] for h in search(decoder, features, vocab, config) for i in h.ids}
        assert words & {p.split()[0] for p in phrases}


def test_a_banned_phrase_bans_its_last_word_and_the_end_only_after_the_rest() -> None:
    from captioner.search.search import _Bans, _next_logp

    vocab = Vocabulary([*SPECIALS, "a", "on", "white", "background", "wall"])
    ids = vocab.index
    history = torch.tensor(
        [[ids["on"], ids["a"], ids["white"]], [ids["a"], ids["white"], ids["a"]]]
    )
    config = SearchConfig(banned_words=("white background",))
    logp = _next_logp(
        torch.zeros(2, len(vocab)),
        3,
        vocab,
        config,
        _Bans.of(vocab, config, torch.device("cpu")),
        history,
    )
    assert torch.isinf(logp[0, ids["background"]]) and torch.isinf(logp[0, vocab.end_id])
    assert torch.isfinite(logp[0, ids["wall"]])  # another word goes on from "a white"
    assert torch.isfinite(logp[1, [ids["background"], vocab.end_id]]).all()  # not after "a"


def test_banned_words_come_back_from_a_checkpoint_as_a_tuple() -> None:
    config = SearchConfig(banned_words=["stock"])  # type: ignore[arg-type]
    assert config.banned_words == ("stock",) and hash(config)
    with pytest.raises(ValueError, match="banned_words must be words or phrases"):
        SearchConfig(banned_words=("",))
    with pytest.raises(ValueError, match="banned_words must be words or phrases"):
        SearchConfig(banned_words=("  ",))


def test_sampling_is_reproducible_with_a_seed_and_varies_across_seeds(vocab: Vocabulary) -> None:
    decoder = tiny_decoder(len(vocab), end_bias=2.0)
    with torch.no_grad():
        decoder.fc.weight.div_(20.0)  # flat distributions: samples differ
    features = _features(5)
    a = sample(decoder, features, vocab, SearchConfig(method="sample", top_k=10, seed=7))
    b = sample(decoder, features, vocab, SearchConfig(method="sample", top_k=10, seed=7))
    c = sample(decoder, features, vocab, SearchConfig(method="sample", top_k=10, seed=8))
    assert [h.ids for h in a] == [h.ids for h in b]
    assert [h.ids for h in a] != [h.ids for h in c]


def test_top_k_sampling_only_draws_from_the_k_best(vocab: Vocabulary) -> None:
    decoder = tiny_decoder(len(vocab), end_bias=-50.0)
    features = _features(1)
    config = SearchConfig(method="sample", top_k=1, max_len=6, seed=3)
    greedy_ids = greedy(decoder, features, vocab, SearchConfig(method="greedy", max_len=6))[0].ids
    assert sample(decoder, features, vocab, config)[0].ids == greedy_ids


def test_search_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="accepted"):
        SearchConfig(method="nucleus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="beam"):
        SearchConfig(beam=0)
    with pytest.raises(ValueError, match="length_penalty must be a finite number"):
        SearchConfig(length_penalty=float("nan"))


def test_beam_with_fewer_candidates_than_beams_is_exact() -> None:
    """One word besides <end>: fewer live candidates than beams at every step (dead
    padding beams). Only max_len + 1 captions exist; beam 3 must pick the best of them
    by its ranking (score / (words + 1) ** length_penalty), in a batch as alone."""
    vocab = Vocabulary([*SPECIALS, "w0"])
    features = _features(4)
    lengths = set()
    for seed, end_bias in ((0, -1.0), (1, -3.0), (2, -2.0), (1, -1.0)):
        decoder = tiny_decoder(len(vocab), seed=seed, end_bias=end_bias)
        config = SearchConfig(method="beam", beam=3, max_len=4, length_penalty=0.7)
        batched = search(decoder, features, vocab, config)
        for i, hyp in enumerate(batched):
            ranked = []
            for words in range(config.max_len + 1):
                caption = torch.tensor([[vocab.start_id, *[4] * words, vocab.end_id]])
                with torch.no_grad():
                    logits, _ = decoder(features[i : i + 1], caption)
                # the score: the model's log-probabilities of the words and <end>
                logp = logits[0].log_softmax(-1).gather(1, caption[0, 1:, None]).sum()
                ranked.append((float(logp) / (words + 1) ** 0.7, words))
            assert len(hyp.ids) == max(ranked)[1]
            assert hyp.ids == [4] * len(hyp.ids)
            single = search(decoder, features[i : i + 1], vocab, config)[0]
            assert single.ids == hyp.ids
            lengths.add(len(hyp.ids))
    assert lengths == {0, 1, 2, 3, 4}  # every length won somewhere: the test can fail


@pytest.mark.parametrize(("images", "k", "vocab_size"), [(1, 3, 50), (32, 3, 3664), (5, 4, 3)])
def test_two_stage_candidates_equal_one_top_k_over_all_beams(
    images: int, k: int, vocab_size: int
) -> None:
    gen = torch.Generator().manual_seed(images * 100 + k)
    total = torch.randn(images * k, vocab_size, generator=gen)  # distinct: no ties
    total[::k, :2] = float("-inf")  # banned tokens
    scores, index = top_candidates(total, k)
    want_scores, want_index = total.view(images, k * vocab_size).topk(2 * k, dim=1)
    assert torch.equal(scores, want_scores)
    assert torch.equal(index, want_index)


def test_two_stage_candidates_at_the_first_step_expand_only_the_first_beam() -> None:
    # step 0: beams 1..k-1 have score -inf, so every finite candidate is beam 0's
    k, vocab_size = 3, 10
    logp = torch.log_softmax(torch.randn(k, vocab_size), dim=1)
    total = torch.tensor([0.0, float("-inf"), float("-inf")]).view(-1, 1) + logp
    scores, index = top_candidates(total, k)
    assert torch.isfinite(scores).all()
    assert (index < vocab_size).all()  # all from beam 0
    assert torch.equal(scores[0], logp[0].topk(2 * k).values)
