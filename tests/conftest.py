"""Shared fixtures: small decoders and vocabularies that run in milliseconds, a private
redis-server, and the ``integration`` marker kept honest.

``integration`` marks the tests that start something: a server (redis-server, a
network camera), a browser, a subprocess (a ``scenecast`` command, ffmpeg, openssl) or a
child process. ``pytest -m
"not integration"`` runs the rest, pure and fast; ``make test`` runs everything. A test
that uses the ``redis_server`` fixture is marked by its use; any other unmarked test
that starts a process fails, saying to mark it.
"""

from __future__ import annotations

import multiprocessing.process
import os
import subprocess
from collections.abc import Iterator

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


# fixtures that start a server: the tests that use them are integration tests
SERVER_FIXTURES = frozenset({"redis_server", "redis_client", "browser", "page"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """An unmarked test that starts a process fails, saying so: the marker stays true."""
    if request.node.get_closest_marker("integration") is None:

        def refuse(*args: object, **kwargs: object) -> None:
            raise RuntimeError(
                f"{request.node.nodeid} starts a process: mark it @pytest.mark.integration "
                "(tests/conftest.py)"
            )

        monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
        monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse)
    yield
