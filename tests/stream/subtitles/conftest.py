"""The tiny captioner in place of the model that ``scenecast caption`` loads in-process
(the load is what takes seconds); modules ask for it with ``usefixtures("tiny_model")``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.factories import tiny_captioner


@pytest.fixture(scope="module")
def captioner() -> Any:
    return tiny_captioner()


@pytest.fixture
def tiny_model(monkeypatch: pytest.MonkeyPatch, captioner: Any) -> None:
    """``--checkpoint`` is not needed in-process: the tiny captioner is loaded instead."""
    monkeypatch.setattr(
        "stream.subtitles.batch._load_captioner", lambda checkpoint, device, k: captioner
    )
    monkeypatch.delenv("SCENECAST_REDIS_URL", raising=False)
