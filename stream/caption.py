"""``scenecast caption VIDEO -o OUT``: recorded video → WebVTT / SRT / JSONL (issue 5)."""

from __future__ import annotations

import argparse


def add_caption_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``caption`` (not built yet: it is the next issue)."""
