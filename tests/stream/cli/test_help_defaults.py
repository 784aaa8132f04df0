"""stream/help_defaults.py: every option's default in --help."""

from __future__ import annotations

import argparse
from pathlib import Path

from stream.cli.help_defaults import add_default_help


def _help(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_help().split())  # wrapping aside


def test_defaults_are_added_where_the_help_does_not_say_them() -> None:
    parser = argparse.ArgumentParser(prog="x")
    sub = parser.add_subparsers()
    cmd = sub.add_parser("cmd")
    cmd.add_argument("--beam", type=int, default=5, help="beam size")
    cmd.add_argument("--rate", type=float, default=0.0004)
    cmd.add_argument("--out", type=Path, default=Path("runs/train"))
    cmd.add_argument("--batches", default=[1, 8, 32])
    cmd.add_argument("--dims", nargs=3, type=int, default=[512, 512, 512])
    cmd.add_argument("--port", type=int, default=8765, help="port (default %(default)s)")
    cmd.add_argument("--share", default="50%", help="a share")
    cmd.add_argument("--quiet", action="store_true", help="say less")
    cmd.add_argument("--name", default=None, help="a name")
    add_default_help(parser)
    text = _help(cmd)
    assert "beam size (default: 5)" in text
    assert "--rate RATE (default: 0.0004)" in text
    assert "(default: runs/train)" in text
    assert "(default: 1,8,32)" in text and "(default: 512 512 512)" in text
    assert "port (default 8765)" in text and "(default: 8765)" not in text  # said once
    assert "a share (default: 50%)" in text  # a % is not a format
    assert "say less" in text and "(default: False)" not in text
    assert "a name" in text and "(default: None)" not in text


def test_the_real_commands_say_their_defaults() -> None:
    from stream.cli.main import build_parser

    parser = build_parser()
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    describe = _help(choices.choices["describe"])
    assert "beam size; 1 = greedy (default: 5)" in describe  # it said no default
    train = _help(choices.choices["train"])
    assert "--epochs EPOCHS (default: 30)" in train
