"""Argument types for the command line: a bad value is an argparse error (exit 2) that
says what was given and what is accepted, never a traceback later on."""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def flag_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` (raising ValueError with a message) as an argparse type: the message
    becomes the flag's error (argparse would say only "invalid value"). Attributes
    such as ``secret`` (settings hide the value) carry over."""

    @functools.wraps(parse)
    def parsed(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parsed


def _number(
    text: str, convert: Callable[[str], float], accepted: str, ok: Callable[[float], bool]
) -> float:
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {accepted}, got {text!r}") from None
    if not (math.isfinite(value) and ok(value)):
        raise argparse.ArgumentTypeError(f"expected {accepted}, got {text}")
    return value


def positive_int(text: str) -> int:
    return int(_number(text, int, "a positive integer", lambda v: v >= 1))


MAX_BEAM = 100  # wider beams only cost: the neighbours' vote has plenty at 8


def beam_size(text: str) -> int:
    return int(_number(text, int, f"an integer from 1 to {MAX_BEAM}", lambda v: 1 <= v <= MAX_BEAM))


def sample_rate(text: str) -> float:
    """Samples per second: from one every ~3 hours to 1000 (more than any video's frames)."""
    return _number(text, float, "a number from 0.0001 to 1000", lambda v: 1e-4 <= v <= 1000)


def interval_s(text: str) -> float:
    """A positive number of seconds, a day at most."""
    return _number(
        text, float, "a number of seconds above 0, at most 86400", lambda v: 0 < v <= 86400
    )


def length_penalty(text: str) -> float:
    return _number(text, float, "a number from -10 to 10", lambda v: -10 <= v <= 10)


def non_negative_int(text: str) -> int:
    return int(_number(text, int, "an integer >= 0", lambda v: v >= 0))


def port(text: str) -> int:
    return int(
        _number(
            text, int, "a TCP port 0..65535 (0: any free port)", lambda v: v <= 65535 and v >= 0
        )
    )


def positive_float(text: str) -> float:
    return _number(text, float, "a positive number", lambda v: v > 0)


def non_negative_float(text: str) -> float:
    return _number(text, float, "a number >= 0", lambda v: v >= 0)


def fraction(text: str) -> float:
    return _number(text, float, "a number in [0, 1)", lambda v: 0 <= v < 1)


OFF = "off"


def margin_or_off(text: str) -> float | str:
    """A number >= 0, or "off"."""
    if text.strip().lower() == OFF:
        return OFF
    return _number(text, float, 'a number >= 0 or "off"', lambda v: v >= 0)


def word_list(text: str) -> tuple[str, ...]:
    """Comma-separated lower-case words or phrases (words joined by single spaces), as
    captions are tokenized; "" is none."""
    entries = tuple(" ".join(w.split()) for w in text.split(",") if w.strip())
    for entry in entries:
        if not all(w.isalnum() for w in entry.split()) or entry != entry.lower():
            raise argparse.ArgumentTypeError(
                "expected lower-case words or phrases separated by commas (e.g. "
                f"stock,white background), got {entry!r}"
            )
    return entries
