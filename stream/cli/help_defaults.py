"""Every option's default in ``--help``.

Options whose help said nothing of their default (``describe --beam``, ``train``'s and
``bench``'s numbers) left a user to read the code. :func:`add_default_help` walks a
parser and its subcommands and appends ``(default: X)`` to each option that has a
default worth telling and whose help does not already tell it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator


def add_default_help(parser: argparse.ArgumentParser) -> None:
    for action in _options(parser):
        text = _shown(action.default, " " if action.nargs not in (None, "?") else ",")
        if text is None or getattr(action.type, "secret", False):
            continue
        help_text = action.help or ""
        if help_text == argparse.SUPPRESS or "default" in help_text.lower():
            continue
        said = f"(default: {text})".replace("%", "%%")  # help strings are %-formatted
        action.help = f"{help_text} {said}" if help_text else said


def _options(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases: once
                yield from _options(sub)
        elif action.option_strings and not isinstance(
            action, (argparse._HelpAction, argparse._VersionAction)
        ):
            yield action


def _shown(default: object, sep: str) -> str | None:
    """The default as a user types it (``sep``: between the values of a list, as the
    option takes them); None: nothing worth telling (unset, a switch)."""
    if default is None or isinstance(default, bool) or default == argparse.SUPPRESS:
        return None
    if isinstance(default, (list, tuple)):
        return sep.join(map(str, default)) if default else None
    if isinstance(default, os.PathLike):
        return str(os.fspath(default))
    if isinstance(default, float):
        return f"{default:g}"
    return str(default) if str(default) else None
