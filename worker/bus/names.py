"""The source-name rule, written once: what a source may be called.

A source's name is in every key of its own (``frames:{cam0}``), in the wire protocol's
messages and in the transcript URLs, so it is short and URL-safe. Capture derives one
from what the user pointed it at (``stream/sources``), and every side checks it with
the rule here.
"""

from __future__ import annotations

import re
from typing import Final

from worker.bus.exceptions import EntryError

NAME_CHARS: Final = "A-Za-z0-9_.-"  # a regular expression's character class, without []
MAX_NAME_CHARS: Final = 64
SOURCE_NAME_RULE: Final = "1 to 64 characters from A-Z, a-z, 0-9, '_', '.' and '-'"
SOURCE_NAME: Final = re.compile(rf"[{NAME_CHARS}]{{1,{MAX_NAME_CHARS}}}")


def is_source_name(name: str) -> bool:
    """A short, URL-safe source id: :data:`SOURCE_NAME_RULE`."""
    return SOURCE_NAME.fullmatch(name) is not None


def check_source(source: str) -> str:
    """``source`` when it is a source name, else :class:`EntryError`."""
    if not is_source_name(source):
        raise EntryError(
            f"bad source name {source!r}: use 1-64 characters of letters, digits, '_', '.', '-'"
        )
    return source
