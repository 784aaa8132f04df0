"""Shared fixtures: small decoders and vocabularies that run in milliseconds."""

from __future__ import annotations

import os

import pytest

from captioner.vocab import SPECIALS, Vocabulary

# Scale every timeout in the tests by one variable (slow CI machines).
TIMEOUT_FACTOR = float(os.environ.get("SCENECAST_TESTS_TIMEOUT_FACTOR", "1"))
# The commands read their settings from SCENECAST_* (stream.cli.settings): the tests, and the
# processes they start, run on the built-in defaults whatever the shell has set.
for _name in [n for n in os.environ if n.startswith("SCENECAST_")]:
    if _name not in ("SCENECAST_TESTS_TIMEOUT_FACTOR", "SCENECAST_CHROMIUM"):
        del os.environ[_name]


@pytest.fixture
def vocab() -> Vocabulary:
    return Vocabulary([*SPECIALS, *(f"w{i}" for i in range(30))])


@pytest.fixture(scope="session")
def redis_server():  # type: ignore[no-untyped-def]
    """A private redis-server on a free port for this test session (never a shared one)."""
    from stream.embedded_redis import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis_client(redis_server):  # type: ignore[no-untyped-def]
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()  # our own private server: each test starts empty
    yield client
    client.close()
