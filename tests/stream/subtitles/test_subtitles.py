"""Subtitle timing, cue merging and the three formats: pure functions, fed values.

The WebVTT and SRT outputs are read back with independent parsers (webvtt-py, srt).
"""

from __future__ import annotations

import datetime as dt
import html
import itertools
import json
import random

import pytest
import srt
import webvtt

from stream.exceptions import StreamError
from stream.protocol import Attention
from stream.subtitles.cues import (
    Cue,
    SampleCaption,
    TimedSample,
    format_timestamp,
    merge_cues,
    output_format,
    render,
    time_samples,
    to_jsonl,
    to_srt,
    to_webvtt,
)


def sample(seq: int, pts_ms: float, text: str, score: float = -1.0) -> SampleCaption:
    return SampleCaption(seq=seq, pts_ms=pts_ms, text=text, tokens=tuple(text.split()), score=score)


def spans(timed: list[TimedSample]) -> list[tuple[int, int, int, bool]]:
    return [(t.start_ms, t.end_ms, t.segment_id, t.is_final) for t in timed]


# -- output format ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fmt"),
    [("a.vtt", "vtt"), ("dir/b.SRT", "srt"), ("c.d.jsonl", "jsonl"), ("-", "jsonl")],
)
def test_output_format_follows_the_extension(path: str, fmt: str) -> None:
    assert output_format(path) == fmt


@pytest.mark.parametrize("path", ["out.txt", "out", "out.vtt.bak", "out.json"])
def test_unknown_extension_lists_the_accepted_ones(path: str) -> None:
    with pytest.raises(StreamError) as err:
        output_format(path)
    for accepted in (".vtt", ".srt", ".jsonl", "-"):
        assert accepted in str(err.value)
    assert path in str(err.value)


# -- timestamps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "vtt", "srt_time"),
    [
        (0, "00:00:00.000", "00:00:00,000"),
        (3_723_004, "01:02:03.004", "01:02:03,004"),
        (59_999, "00:00:59.999", "00:00:59,999"),
        (100 * 3_600_000 + 1, "100:00:00.001", "100:00:00,001"),
    ],
)
def test_format_timestamp(ms: int, vtt: str, srt_time: str) -> None:
    assert format_timestamp(ms) == vtt
    assert format_timestamp(ms, separator=",") == srt_time


def test_negative_time_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_timestamp(-1)


# -- timing -------------------------------------------------------------------------------------


def test_each_sample_runs_to_the_next_and_the_last_to_the_end_of_the_video() -> None:
    samples = [sample(0, 0, "a"), sample(1, 1000, "a"), sample(2, 2000, "b")]
    timed = time_samples(samples, tail_ms=1000, media_end_ms=2500)
    assert spans(timed) == [(0, 1000, 0, False), (1000, 2000, 0, True), (2000, 2500, 1, True)]


def test_the_last_sample_lasts_at_most_one_tail() -> None:
    samples = [sample(0, 0, "a"), sample(1, 1000, "b")]
    assert time_samples(samples, tail_ms=1000, media_end_ms=9000)[-1].end_ms == 2000
    assert time_samples(samples, tail_ms=1000, media_end_ms=None)[-1].end_ms == 2000
    # an end at or before the last sample's time is not believed: the tail decides
    assert time_samples(samples, tail_ms=1000, media_end_ms=1000)[-1].end_ms == 2000


def test_times_are_rounded_to_whole_milliseconds_halves_up() -> None:
    samples = [sample(0, 0.4, "a"), sample(1, 1000.5, "a"), sample(2, 2001.5, "b")]
    timed = time_samples(samples, tail_ms=1000.0, media_end_ms=2500.6)
    assert spans(timed) == [(0, 1001, 0, False), (1001, 2002, 0, True), (2002, 2501, 1, True)]


def test_same_text_up_to_case_and_spaces_shares_a_segment() -> None:
    texts = ["A dog  runs", "a dog runs", " a DOG runs ", "a cat", "a dog runs", "a dog runs"]
    timed = time_samples(
        [sample(i, i * 500, t) for i, t in enumerate(texts)], tail_ms=500, media_end_ms=None
    )
    assert [t.segment_id for t in timed] == [0, 0, 0, 1, 2, 2]
    assert [t.is_final for t in timed] == [False, False, True, True, False, True]


def test_samples_must_be_in_media_order() -> None:
    with pytest.raises(ValueError, match="media order"):
        time_samples([sample(1, 0, "a"), sample(0, 1000, "a")], tail_ms=1000, media_end_ms=None)
    with pytest.raises(ValueError, match="media order"):
        time_samples([sample(0, 1000, "a"), sample(1, 0, "a")], tail_ms=1000, media_end_ms=None)
    with pytest.raises(ValueError, match="tail_ms"):
        time_samples([sample(0, 0, "a")], tail_ms=0, media_end_ms=None)
    assert time_samples([], tail_ms=1000, media_end_ms=None) == []


# -- cues ---------------------------------------------------------------------------------------


def test_consecutive_samples_that_say_the_same_merge_into_one_cue() -> None:
    samples = [
        sample(0, 0, "A dog  runs"),
        sample(1, 1000, "a dog runs"),
        sample(2, 2000, "a cat"),
        sample(3, 3000, "a dog runs"),
    ]
    cues = merge_cues(time_samples(samples, tail_ms=1000, media_end_ms=3600))
    assert cues == [
        Cue(0, 2000, "A dog runs"),  # the first sample's words, spaces collapsed
        Cue(2000, 3000, "a cat"),
        Cue(3000, 3600, "a dog runs"),
    ]


def test_empty_captions_leave_a_gap_and_empty_spans_are_dropped() -> None:
    samples = [sample(0, 0, "a"), sample(1, 1000, "  "), sample(2, 2000, "b"), sample(3, 2000, "c")]
    cues = merge_cues(time_samples(samples, tail_ms=1000, media_end_ms=None))
    assert cues == [Cue(0, 1000, "a"), Cue(2000, 3000, "c")]  # "b" would last 0 ms


# -- formats ------------------------------------------------------------------------------------

CUES = [Cue(0, 2000, "a dog"), Cue(2000, 4500, "two cats"), Cue(4500, 3_725_004, "a bird")]


def test_webvtt_text() -> None:
    assert to_webvtt(CUES) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:02.000\na dog\n\n"
        "00:00:02.000 --> 00:00:04.500\ntwo cats\n\n"
        "00:00:04.500 --> 01:02:05.004\na bird\n"
    )


def test_srt_text() -> None:
    assert to_srt(CUES) == (
        "1\n00:00:00,000 --> 00:00:02,000\na dog\n\n"
        "2\n00:00:02,000 --> 00:00:04,500\ntwo cats\n\n"
        "3\n00:00:04,500 --> 01:02:05,004\na bird\n"
    )


def _vtt_cues(text: str) -> list[tuple[str, str, str]]:
    return [(c.start, c.end, html.unescape(c.text)) for c in webvtt.from_string(text)]


def _srt_cues(text: str) -> list[tuple[int, dt.timedelta, dt.timedelta, str]]:
    return [(s.index, s.start, s.end, s.content) for s in srt.parse(text)]


def test_webvtt_and_srt_read_back_with_independent_parsers() -> None:
    assert _vtt_cues(to_webvtt(CUES)) == [
        ("00:00:00.000", "00:00:02.000", "a dog"),
        ("00:00:02.000", "00:00:04.500", "two cats"),
        ("00:00:04.500", "01:02:05.004", "a bird"),
    ]
    ms = dt.timedelta(milliseconds=1)
    assert _srt_cues(to_srt(CUES)) == [
        (1, 0 * ms, 2000 * ms, "a dog"),
        (2, 2000 * ms, 4500 * ms, "two cats"),
        (3, 4500 * ms, 3_725_004 * ms, "a bird"),
    ]


def test_text_that_would_break_a_cue_is_escaped() -> None:
    nasty = "a --> b & <i>c</i>\n\nd"
    vtt = to_webvtt([Cue(0, 1000, nasty), Cue(1000, 2000, "next")])
    assert "-->" not in vtt.splitlines()[3]
    assert "a --&gt; b &amp; &lt;i&gt;c&lt;/i&gt; d" in vtt
    assert [t for _, _, t in _vtt_cues(vtt)] == ["a --> b & <i>c</i> d", "next"]
    srt_text = to_srt([Cue(0, 1000, nasty), Cue(1000, 2000, "next")])
    assert [s[3] for s in _srt_cues(srt_text)] == ["a -> b & <i>c</i> d", "next"]


def test_no_cues_still_make_valid_files() -> None:
    assert to_webvtt([]) == "WEBVTT\n"
    assert _vtt_cues(to_webvtt([])) == []
    assert to_srt([]) == ""
    assert _srt_cues(to_srt([])) == []


def test_random_timelines_read_back_exactly() -> None:
    rng = random.Random(5)
    words = ["a dog", "A  dog", "a cat", "", "the <sea> & sky", "x --> y"]
    for _ in range(50):
        t, samples = 0.0, []
        for seq in range(rng.randint(0, 12)):
            t += rng.choice([0.0, 1.0, 33.367, 500.0, 1000.0, 86_400_000.0])
            samples.append(sample(seq, t, rng.choice(words)))
        timed = time_samples(samples, tail_ms=1000, media_end_ms=t + rng.random() * 2000)
        cues = merge_cues(timed)
        vtt_back = _vtt_cues(render("vtt", timed))
        assert [(c[0], c[1]) for c in vtt_back] == [
            (format_timestamp(c.start_ms), format_timestamp(c.end_ms)) for c in cues
        ]
        assert [c[2] for c in vtt_back] == [c.text for c in cues]
        srt_back = _srt_cues(render("srt", timed))
        ms = dt.timedelta(milliseconds=1)
        assert [(s[1], s[2]) for s in srt_back] == [(c.start_ms * ms, c.end_ms * ms) for c in cues]
        assert [s[0] for s in srt_back] == list(range(1, len(cues) + 1))
        assert all(c.end_ms > c.start_ms for c in cues)
        assert all(b.start_ms >= a.end_ms for a, b in itertools.pairwise(cues))


def test_jsonl_has_one_line_per_sample_with_fixed_fields() -> None:
    grid = Attention(grid=(2, 2), weights=((255, 0, 0, 10), (0, 255, 3, 4)))
    samples = [
        SampleCaption(0, 0.0, "a dog", ("a", "dog"), -1.234567, grid),
        SampleCaption(1, 1000.0, "a dog", ("a", "dog"), -2.0, grid),
        SampleCaption(2, 2000.0, "", (), -0.5, None),
    ]
    timed = time_samples(samples, tail_ms=1000, media_end_ms=2400)
    lines = to_jsonl(timed).splitlines()
    assert lines[0] == (
        '{"seq":0,"t_start_ms":0,"t_end_ms":1000,"text":"a dog","tokens":["a","dog"],'
        '"score":-1.2346,"segment_id":0,"is_final":false}'
    )
    records = [json.loads(line) for line in lines]
    assert [(r["t_start_ms"], r["t_end_ms"]) for r in records] == [
        (0, 1000),
        (1000, 2000),
        (2000, 2400),
    ]
    assert [r["is_final"] for r in records] == [False, True, True]
    with_attention = [json.loads(line) for line in to_jsonl(timed, attention=True).splitlines()]
    assert with_attention[0]["attention"] == {
        "grid": [2, 2],
        "fit": "letterbox",
        "weights": [[255, 0, 0, 10], [0, 255, 3, 4]],
    }
    assert with_attention[2]["attention"] is None  # no words, no maps
    assert render("jsonl", timed, attention=True) == to_jsonl(timed, attention=True)
    assert render("jsonl", timed) == to_jsonl(timed)


def test_jsonl_is_utf8_text_not_escaped() -> None:
    timed = time_samples([sample(0, 0, "un café ☕")], tail_ms=1000, media_end_ms=None)
    assert '"text":"un café ☕"' in to_jsonl(timed)
