"""Argument types for the command line: a bad value is an argparse error (exit 2) that
says what was given and what is accepted, never a traceback later on."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


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


def non_negative_int(text: str) -> int:
    return int(_number(text, int, "an integer >= 0", lambda v: v >= 0))


def port(text: str) -> int:
    return int(
        _number(
            text, int, "a TCP port 0..65535 (0: any free port)", lambda v: v <= 65535 and v >= 0
        )
    )


def finite_float(text: str) -> float:
    return _number(text, float, "a finite number", lambda v: True)


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
