"""``scenecast caption`` run in-process, and the cues of what it wrote."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
import webvtt

from stream.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """``scenecast caption ARGS``: exit code, stdout, stderr."""
    try:
        code = main(["caption", *map(str, args)])
    except SystemExit as exit:  # argparse rejected a flag
        code = int(exit.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def vtt_cues(path: Path) -> list[tuple[float, float, str]]:
    """(start ms, end ms, text) of each cue of a WebVTT file, read by webvtt-py."""
    return [
        (c.start_in_seconds * 1000, c.end_in_seconds * 1000, html.unescape(c.text))
        for c in webvtt.read(str(path))
    ]
