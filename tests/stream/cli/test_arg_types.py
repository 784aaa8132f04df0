import argparse
import re

import pytest

from stream.cli.arg_types import (
    beam_size,
    fraction,
    interval_s,
    length_penalty,
    non_negative_float,
    non_negative_int,
    port,
    positive_float,
    positive_int,
    sample_rate,
    word_list,
)


@pytest.mark.parametrize(
    ("kind", "good", "bad", "accepted"),
    [
        (positive_int, {"1": 1, "32": 32}, ["0", "-3", "2.5", "x"], "a positive integer"),
        (non_negative_int, {"0": 0, "3": 3}, ["-1", "nan", ""], "an integer >= 0"),
        (port, {"0": 0, "8765": 8765, "65535": 65535}, ["65536", "-1", "http"], "TCP port"),
        (positive_float, {"0.5": 0.5, "33": 33.0}, ["0", "-1", "nan", "inf"], "a positive number"),
        (non_negative_float, {"0": 0.0, "50": 50.0}, ["-5", "nan", "inf"], "a number >= 0"),
        (fraction, {"0": 0.0, "0.5": 0.5}, ["1", "1.5", "-0.1", "nan"], "a number in [0, 1)"),
        # bounded where a huge or tiny value would pass and break later (inf, overflow)
        (beam_size, {"1": 1, "100": 100}, ["0", "101", "1" + "0" * 20], "from 1 to 100"),
        (
            sample_rate,
            {"1": 1.0, "1000": 1000.0, "0.0001": 1e-4},
            ["1e-320", "1001", "0"],
            "a number from 0.0001 to 1000",
        ),
        (interval_s, {"10": 10.0, "86400": 86400.0}, ["0", "1e306", "-1"], "at most 86400"),
        (length_penalty, {"0.5": 0.5, "-10": -10.0}, ["300", "-11", "nan"], "from -10 to 10"),
    ],
)
def test_argument_types_accept_good_values_and_explain_bad_ones(
    kind: object, good: dict[str, float], bad: list[str], accepted: str
) -> None:
    assert callable(kind)
    for text, value in good.items():
        assert kind(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(accepted)) as caught:
            kind(text)
        assert repr(text) in str(caught.value) or text in str(caught.value)


def test_word_list() -> None:
    assert word_list("stock, royalty") == ("stock", "royalty")
    assert word_list("") == ()
    assert word_list("stock,white  background") == ("stock", "white background")  # a phrase
    for bad in ("Stock", "White background", "a-b", "white back-ground"):
        with pytest.raises(argparse.ArgumentTypeError, match="lower-case words"):
            word_list(bad)
