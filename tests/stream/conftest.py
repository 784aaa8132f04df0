"""A video of three scenes (red, green, blue: 2 s each at 10 fps) for the modules that
run it through capture; a module's own ``video`` fixture takes its place."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.runs import SCENES
from tests.support.videos import make_video


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "scenes.mp4", scenes=SCENES, fps=10)
