"""Hand-computed checks of captioner.metrics (BLEU and CIDEr-D as pycocoevalcap computes them).

Every expected value is derived in the comments next to it. Notation for BLEU:
``c_k / g_k`` = clipped k-gram matches / k-gram guesses summed over the corpus, and
``BLEU-n = (prod_{k<=n} (c_k + 1e-15) / (g_k + 1e-9)) ** (1/n) * BP`` with
``BP = exp(1 - ref_len / hyp_len)`` when the corpus hypothesis length is the shorter.
For CIDEr-D: ``L = log(2)`` is the idf of an n-gram found in the references of one of two
images, and an image scores ``10 * mean_k(cos_k) * exp(-delta^2 / 72)`` per reference, with
``delta`` the difference in bigram counts (= word counts) of hypothesis and reference.
"""

from __future__ import annotations

import math

import pytest

from captioner.metrics import cider_d, corpus_bleu, score_all


def s(text: str) -> list[str]:
    """A tokenized sentence."""
    return text.split()


# --------------------------------------------------------------------------------------- BLEU


def test_bleu_perfect_match_is_one() -> None:
    # 6 words: c_k = g_k = 6, 5, 4, 3 -> every ratio is 1 (up to 1e-9 / g_k), BP = 1.
    hyp = s("the cat sat on the mat")
    assert corpus_bleu([hyp], [[hyp]]) == pytest.approx([1.0, 1.0, 1.0, 1.0])


def test_bleu_clips_unigram_counts_and_applies_brevity_penalty() -> None:
    # hyp "the the the the" (4 words), ref "the cat is on the mat" (6 words).
    # Unigrams: "the" x4 in hyp, x2 in ref -> clipped to 2: p1 = 2/4 (unclipped would be 4/4).
    # Bigrams: "the the" x3, absent from ref -> c2 = 0, g2 = 3; c3 = 0, g3 = 2; c4 = 0, g4 = 1.
    # BP = exp(1 - 6/4) = exp(-0.5).
    # BLEU-1 = 0.5 * exp(-0.5) = 0.30327...
    # BLEU-2 = (0.5 * 1e-15/3) ** (1/2) * exp(-0.5)   (the tiny constant keeps it > 0)
    # BLEU-3 = (0.5 * 1e-15/3 * 1e-15/2) ** (1/3) * exp(-0.5)
    # BLEU-4 = (0.5 * 1e-15/3 * 1e-15/2 * 1e-15/1) ** (1/4) * exp(-0.5)
    bp = math.exp(-0.5)
    expected = [
        0.5 * bp,
        (0.5 * 1e-15 / 3) ** (1 / 2) * bp,
        (0.5 * 1e-15 / 3 * 1e-15 / 2) ** (1 / 3) * bp,
        (0.5 * 1e-15 / 3 * 1e-15 / 2 * 1e-15) ** (1 / 4) * bp,
    ]
    got = corpus_bleu([s("the the the the")], [[s("the cat is on the mat")]])
    assert got == pytest.approx(expected, rel=1e-6)
    assert got[0] == pytest.approx(0.3032653298563167, rel=1e-9)


def test_bleu_clips_to_the_max_count_in_one_reference_not_the_sum() -> None:
    # hyp "the the the the"; refs "the cat" and "the dog" each hold "the" once, so the clip is
    # max(1, 1) = 1, not 1 + 1 = 2: p1 = 1/4. Both refs have 2 words and hyp has 4 -> BP = 1.
    got = corpus_bleu([s("the the the the")], [[s("the cat"), s("the dog")]])
    assert got[0] == pytest.approx(0.25)


def test_bleu_brevity_penalty_uses_the_closest_reference_length() -> None:
    # hyp "the cat sat" (3 words); refs of 7 and 4 words. Closest to 3 is 4 (not 7, not the
    # average 5.5): BP = exp(1 - 4/3) = exp(-1/3).
    # All hyp n-grams occur in the first ref: p1 = 3/3, p2 = 2/2, p3 = 1/1.
    # p4: g4 = max(0, 3 - 4 + 1) = 0 and c4 = 0 -> (0 + 1e-15) / (0 + 1e-9) = 1e-6,
    # so BLEU-4 = (1 * 1 * 1 * 1e-6) ** (1/4) * BP = 10**-1.5 * exp(-1/3).
    hyp = s("the cat sat")
    refs = [s("the cat sat on the red mat"), s("a cat sat down")]
    bp = math.exp(-1 / 3)
    assert corpus_bleu([hyp], [refs]) == pytest.approx([bp, bp, bp, 1e-6**0.25 * bp], rel=1e-6)


def test_bleu_closest_reference_length_tie_takes_the_shorter() -> None:
    # hyp has 4 words; refs have 3 and 5 words, both at distance 1 -> the shorter (3) is used,
    # so hyp_len 4 >= ref_len 3 and BP = 1. (Taking 5 would give BP = exp(1 - 5/4) = 0.7788.)
    # Unigrams the/cat/sat (ref 1) and down (ref 2) all match: BLEU-1 = 4/4 = 1.
    hyp = s("the cat sat down")
    refs = [s("the cat sat"), s("a cat sat down here")]
    assert corpus_bleu([hyp], [refs], max_n=1) == pytest.approx([1.0])


def test_bleu_sums_counts_over_the_corpus_before_dividing() -> None:
    # Image A: hyp = ref = "a cat"            -> c1 = 2/g1 = 2, c2 = 1/g2 = 1, g3 = g4 = 0.
    # Image B: hyp "one two three four five six", ref "one x y z w v"
    #                                          -> c1 = 1/g1 = 6, c2 = 0/g2 = 5, c3 = 0/g3 = 4.
    # Lengths: hyp 2 + 6 = 8, ref 2 + 6 = 8 -> BP = 1.
    # Corpus p1 = (2 + 1) / (2 + 6) = 3/8 (the mean of sentence p1s would be (1 + 1/6)/2 = 7/12).
    # Corpus p2 = (1 + 0) / (1 + 5) = 1/6 -> BLEU-2 = sqrt(3/8 * 1/6) = sqrt(1/16) = 0.25.
    # Corpus p3 = (0 + 1e-15) / 4 -> BLEU-3 = (1/16 * 2.5e-16) ** (1/3) = 1.5625e-17 ** (1/3)
    #                                       = 2.5e-6.
    hyps = [s("a cat"), s("one two three four five six")]
    refs = [[s("a cat")], [s("one x y z w v")]]
    got = corpus_bleu(hyps, refs)
    assert got[:3] == pytest.approx([0.375, 0.25, 2.5e-6], rel=1e-6)


def test_bleu_brevity_penalty_is_computed_on_corpus_lengths() -> None:
    # Image A: hyp "a cat" (2) vs ref "a cat sat down" (4): short on its own.
    # Image B: hyp "the dog ran in the park" (6) vs ref "the dog ran in" (4): long on its own.
    # Corpus lengths 8 vs 8 -> BP = 1 (no per-sentence penalty).
    # Matches: A 2/2; B the (2 in hyp, clipped to 1), dog, ran, in = 4/6 -> p1 = 6/8 = 0.75.
    hyps = [s("a cat"), s("the dog ran in the park")]
    refs = [[s("a cat sat down")], [s("the dog ran in")]]
    assert corpus_bleu(hyps, refs, max_n=1) == pytest.approx([0.75])


def test_bleu_max_n_sets_the_number_of_scores() -> None:
    # Same perfect match as above, up to bigrams only.
    hyp = s("a black cat")
    assert corpus_bleu([hyp], [[hyp]], max_n=2) == pytest.approx([1.0, 1.0])


# ------------------------------------------------------------------------------------ CIDEr-D


def test_cider_identical_captions_with_unique_words_score_ten() -> None:
    # Two images, no word shared: every n-gram has df = 1, idf = log(2/1) = L > 0.
    # hyp == ref -> for each order k = 1..4 the tf-idf vectors are equal: clipped product
    # sum(min(v, v) * v) = |v|^2, so cos_k = 1; delta = 0 -> penalty 1.
    # Per image: 10 * mean(1, 1, 1, 1) / 1 reference = 10.0; corpus mean 10.0.
    hyps = [s("black cat sits down"), s("small dog runs away")]
    score, per_image = cider_d(hyps, [[h] for h in hyps])
    assert per_image == pytest.approx([10.0, 10.0])
    assert score == pytest.approx(10.0)


def test_cider_orders_without_ngrams_count_as_zero() -> None:
    # 2-word captions have no 3- or 4-grams: those norms are 0 and pycocoevalcap leaves the
    # cosine at 0. Per image: 10 * mean(1, 1, 0, 0) = 5.0.
    hyps = [s("black cat"), s("small dog")]
    score, per_image = cider_d(hyps, [[h] for h in hyps])
    assert per_image == pytest.approx([5.0, 5.0])
    assert score == pytest.approx(5.0)


def test_cider_word_in_every_image_references_has_zero_idf() -> None:
    # "the" is in the references of both images: df = 2, idf = log(2) - log(2) = 0.
    # Image 1: hyp "the mat" vs ref "the cat".
    #   unigrams: hyp (the: 0, mat: L [df 0 -> max(1, 0) = 1 -> idf L]), ref (the: 0, cat: L)
    #   numerator = min(0, 0) * 0 + min(L, 0) * 0 = 0 -> cos_1 = 0 although "the" matches.
    #   bigram "the mat" is not in the ref -> cos_2 = 0; no 3-, 4-grams -> score 0.0.
    # Image 2: hyp = ref = "the dog": unigram vectors (0, L) and (0, L) -> cos_1 = 1;
    #   bigram "the dog" (df 1, idf L) -> cos_2 = 1; cos_3 = cos_4 = 0 -> 10 * 2/4 = 5.0.
    # Corpus: (0 + 5) / 2 = 2.5.
    hyps = [s("the mat"), s("the dog")]
    refs = [[s("the cat")], [s("the dog")]]
    score, per_image = cider_d(hyps, refs)
    assert per_image == pytest.approx([0.0, 5.0])
    assert score == pytest.approx(2.5)


def test_cider_partial_overlap_cosines() -> None:
    # Image 1: hyp "red cat ran" vs ref "red cat sat"; image 2: "big dog barks" both sides.
    # Every n-gram has idf L (df 1, or df 0 -> 1 for "ran", "cat ran", "red cat ran"), so with
    # tf = 1 each cos_k = (shared k-grams) / sqrt(hyp k-grams * ref k-grams):
    #   k=1: red, cat shared -> 2/3;  k=2: "red cat" shared -> 1/2;  k=3: 0/1;  k=4: none -> 0.
    # delta = 0 -> image 1 = 10 * (2/3 + 1/2) / 4 = 70/24 = 2.9166...
    # Image 2: cos = 1, 1, 1, 0 -> 10 * 3/4 = 7.5.  Corpus = (70/24 + 7.5) / 2.
    hyps = [s("red cat ran"), s("big dog barks")]
    refs = [[s("red cat sat")], [s("big dog barks")]]
    score, per_image = cider_d(hyps, refs)
    assert per_image == pytest.approx([70 / 24, 7.5])
    assert score == pytest.approx((70 / 24 + 7.5) / 2)


def test_cider_idf_weights_rare_ngrams_more() -> None:
    # Three images, refs "cat sat", "cat ran", "dog ran" (N = 3).
    # df: cat 2, ran 2 -> idf a = log(3/2); sat 1, dog 1 -> idf b = log(3).
    # Image 1: hyp "cat ran" vs ref "cat sat":
    #   hyp unigram vector (cat: a, ran: a), ref (cat: a, sat: b)
    #   numerator = min(a, a) * a = a^2; norms sqrt(2) a and sqrt(a^2 + b^2)
    #   cos_1 = a / (sqrt(2) * sqrt(a^2 + b^2)) = 0.24483...; bigrams differ -> cos_2 = 0.
    #   score = 10 * cos_1 / 4 = 0.61207...
    # Images 2, 3: hyp = ref (2 words) -> cos_1 = cos_2 = 1 -> 5.0 each.
    a, b = math.log(1.5), math.log(3.0)
    image1 = 10 * (a / (math.sqrt(2) * math.sqrt(a * a + b * b))) / 4
    hyps = [s("cat ran"), s("cat ran"), s("dog ran")]
    refs = [[s("cat sat")], [s("cat ran")], [s("dog ran")]]
    score, per_image = cider_d(hyps, refs)
    assert per_image == pytest.approx([image1, 5.0, 5.0])
    assert per_image[0] == pytest.approx(0.61207438, rel=1e-6)
    assert score == pytest.approx((image1 + 10.0) / 3)


@pytest.mark.parametrize("sigma", [6.0, 3.0])
def test_cider_gaussian_length_penalty(sigma: float) -> None:
    # Image 1: hyp "black cat sits down now" (5 words) vs ref "black cat sits down" (4 words);
    # image 2: "small dog runs away" both sides. All weights are L (tf 1; df 1, or 0 -> 1), so
    # cos_k = shared / sqrt(hyp k-grams * ref k-grams) with hyp 5-k+1 and ref (all shared)
    # 4-k+1 k-grams: cos_k = sqrt((5 - k) / (6 - k)) = sqrt(4/5), sqrt(3/4), sqrt(2/3), sqrt(1/2).
    # delta = 4 bigrams - 3 bigrams = 1 -> penalty exp(-1 / (2 sigma^2)).
    # Image 1 = 10 * exp(-1 / (2 sigma^2)) * mean(cos_k); image 2 = 10.0.
    cosines = [math.sqrt(4 / 5), math.sqrt(3 / 4), math.sqrt(2 / 3), math.sqrt(1 / 2)]
    image1 = 10 * math.exp(-1 / (2 * sigma**2)) * sum(cosines) / 4
    hyps = [s("black cat sits down now"), s("small dog runs away")]
    refs = [[s("black cat sits down")], [s("small dog runs away")]]
    score, per_image = cider_d(hyps, refs, sigma=sigma)
    assert per_image == pytest.approx([image1, 10.0])
    assert score == pytest.approx((image1 + 10.0) / 2)


def test_cider_clipping_repeated_word_does_not_raise_the_score() -> None:
    # Image 2 ("small bird sings", hyp = ref) only provides N = 2, so every idf is L.
    # Ref of image 1: "black cat".
    # hyp "black dog": unigrams (black: L, dog: L) . (black: L, cat: L) = L^2 -> cos_1 = 1/2;
    #   bigram "black dog" != "black cat" -> 0; delta = 0 -> score 10 * (1/2) / 4 = 1.25.
    # hyp "black black dog": unigrams (black: 2L, dog: L); clipped numerator
    #   min(2L, L) * L = L^2 (unclipped would be 2L * L = 2L^2), norms sqrt(5) L, sqrt(2) L
    #   -> cos_1 = 1/sqrt(10) = 0.316 (unclipped 2/sqrt(10) = 0.632 > 1/2); bigrams 0;
    #   delta = 2 - 1 = 1 -> score 10 * exp(-1/72) * (1/sqrt(10)) / 4 = 0.7797...
    refs = [[s("black cat")], [s("small bird sings")]]
    _, once = cider_d([s("black dog"), s("small bird sings")], refs)
    _, twice = cider_d([s("black black dog"), s("small bird sings")], refs)
    assert once[0] == pytest.approx(1.25)
    assert twice[0] == pytest.approx(10 * math.exp(-1 / 72) / math.sqrt(10) / 4)
    assert twice[0] < once[0]


def test_cider_averages_over_references() -> None:
    # Image 1 has refs R1 = hyp and R2 sharing nothing with hyp; all idfs are L (N = 2).
    # vs R1: 10 * mean(1, 1, 1, 1) = 10; vs R2: 0 -> image 1 = (10 + 0) / 2 = 5.0 (not the max).
    # Image 2: hyp = its only ref -> 10.0. Corpus = 7.5.
    hyps = [s("black cat sits down"), s("small dog runs away")]
    refs = [[s("black cat sits down"), s("white bird flies off")], [s("small dog runs away")]]
    score, per_image = cider_d(hyps, refs)
    assert per_image == pytest.approx([5.0, 10.0])
    assert score == pytest.approx(7.5)


def test_cider_document_frequency_counts_images_not_references() -> None:
    # Image 1 has the same reference twice: its n-grams still get df = 1 (idf L), not 2
    # (which, with N = 2, would make their idf 0 and the score 0).
    # Image 1: hyp = both refs (2 words) -> cos_1 = cos_2 = 1 per ref -> 10 * 2/4 = 5.0.
    hyps = [s("black cat"), s("small dog")]
    refs = [[s("black cat"), s("black cat")], [s("small dog")]]
    _, per_image = cider_d(hyps, refs)
    assert per_image == pytest.approx([5.0, 5.0])


def test_cider_single_image_corpus_scores_zero() -> None:
    # N = 1: every idf is log(1) - log(max(1, df)) = 0, so every vector is 0 -> score 0.
    score, per_image = cider_d([s("a black cat")], [[s("a black cat")]])
    assert per_image == [0.0]
    assert score == 0.0


# ---------------------------------------------------------------------------- API and errors


def test_score_all_reports_bleu_and_cider_d() -> None:
    # Two disjoint 4-word captions, hyp == ref: BLEU 1.0 at every order, CIDEr-D 10.0.
    hyps = [s("black cat sits down"), s("small dog runs away")]
    scores = score_all(hyps, [[h] for h in hyps])
    assert list(scores) == ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr-D"]
    assert scores == pytest.approx(
        {"BLEU-1": 1.0, "BLEU-2": 1.0, "BLEU-3": 1.0, "BLEU-4": 1.0, "CIDEr-D": 10.0}
    )


@pytest.mark.parametrize("metric", [corpus_bleu, cider_d, score_all])
def test_length_mismatch_is_a_value_error(metric: object) -> None:
    assert callable(metric)
    with pytest.raises(ValueError, match="one reference list per hypothesis"):
        metric([s("a cat"), s("a dog")], [[s("a cat")]])


@pytest.mark.parametrize("metric", [corpus_bleu, cider_d, score_all])
def test_empty_reference_list_is_a_value_error(metric: object) -> None:
    assert callable(metric)
    with pytest.raises(ValueError, match="item 1 has an empty reference list"):
        metric([s("a cat"), s("a dog")], [[s("a cat")], []])


@pytest.mark.parametrize("metric", [corpus_bleu, cider_d])
def test_empty_corpus_and_untokenized_input_are_value_errors(metric: object) -> None:
    assert callable(metric)
    with pytest.raises(ValueError, match="empty"):
        metric([], [])
    with pytest.raises(ValueError, match="hypothesis 0 is a str"):
        metric(["a cat"], [[s("a cat")]])
    with pytest.raises(ValueError, match="reference 0 of item 0 is a str"):
        metric([s("a cat")], [["a cat"]])


def test_bad_parameters_are_value_errors() -> None:
    with pytest.raises(ValueError, match="max_n"):
        corpus_bleu([s("a cat")], [[s("a cat")]], max_n=0)
    with pytest.raises(ValueError, match="sigma"):
        cider_d([s("a cat")], [[s("a cat")]], sigma=0.0)
    with pytest.raises(ValueError, match="n must be"):
        cider_d([s("a cat")], [[s("a cat")]], n=0)
