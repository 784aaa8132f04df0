"""Shared fixtures: small decoders and vocabularies that run in milliseconds."""

from __future__ import annotations

import os

import pytest

from captioner.vocab import SPECIALS, Vocabulary

# Scale every timeout in the tests by one variable (slow CI machines).
TIMEOUT_FACTOR = float(os.environ.get("SCENECAST_TESTS_TIMEOUT_FACTOR", "1"))


@pytest.fixture
def vocab() -> Vocabulary:
    return Vocabulary([*SPECIALS, *(f"w{i}" for i in range(30))])
