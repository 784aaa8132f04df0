"""One capture per source (stream/capture_lease.py): real Captures of one source name
against a real Redis."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from stream.capture.capture import Capture, CaptureConfig, describe_sources
from stream.exceptions import StreamError
from stream.sources.spec import parse_source
from tests.support.runs import T, wait_for
from worker.bus.keys import owner_key


def _capture(client: redis.Redis, path: Path) -> tuple[Capture, threading.Thread, list[Any]]:
    spec = parse_source(str(path), name="door", live=True)
    capture = Capture(client, spec, CaptureConfig(fps=10, loop=True))
    errors: list[Any] = []

    def run() -> None:
        try:
            capture.run()
        except StreamError as exc:
            errors.append(exc)

    return capture, threading.Thread(target=run, daemon=True), errors


@pytest.fixture
def client(redis_server):  # type: ignore[no-untyped-def]
    c = redis.Redis.from_url(redis_server.url)
    c.flushdb()
    yield c
    c.close()


def test_a_second_capture_of_a_source_waits_then_takes_over(
    client: redis.Redis,
    video: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, first_thread, _ = _capture(client, video)
    second, second_thread, _ = _capture(client, video)
    try:
        first_thread.start()
        wait_for(lambda: first.published >= 3, "the first capture's frames")
        with caplog.at_level(logging.WARNING, logger="scenecast.capture"):
            second_thread.start()
            time.sleep(2.0)
        assert second.published == 0 and second_thread.is_alive()  # waiting, not publishing
        assert "another capture publishes this source" in caplog.text
        assert first.lease_id in caplog.text  # it says whose the source is
        first.stop()
        first_thread.join(T)
        wait_for(lambda: second.published >= 3, "the second capture's frames")
        assert client.get(owner_key("door")) == second.lease_id.encode()
        assert describe_sources(client)["door"]["state"] == "live"
    finally:
        first.stop()
        second.stop()
        first_thread.join(T)
        second_thread.join(T)
    assert client.get(owner_key("door")) is None  # released at the end


def test_a_dead_captures_lease_lapses(client: redis.Redis, video: Path) -> None:
    client.set(owner_key("door"), "killed-host:1:abc", px=1500)  # it died holding it
    capture, thread, _ = _capture(client, video)
    try:
        started = time.monotonic()
        thread.start()
        wait_for(lambda: capture.published >= 1, "frames once the lease lapsed")
        assert time.monotonic() - started >= 1.0
    finally:
        capture.stop()
        thread.join(T)


def test_a_capture_whose_source_was_taken_over_stops_without_a_word(
    client: redis.Redis,
    video: Path,
) -> None:
    capture, thread, errors = _capture(client, video)
    thread.start()
    try:
        wait_for(lambda: capture.published >= 3, "frames")
        # as if it had been cut off from Redis for longer than its lease, and replaced
        client.set(owner_key("door"), "new-host:2:def")
        thread.join(T)
        assert not thread.is_alive()
    finally:
        capture.stop()
        thread.join(T)
    (error,) = errors
    assert "another capture took this source over (new-host:2:def)" in str(error)
    assert describe_sources(client)["door"]["state"] == "live"  # no 'ended' over the new one's
    assert client.get(owner_key("door")) == b"new-host:2:def"  # not released: not its own


def test_a_capture_taken_over_says_nothing_over_the_new_owner_before_its_heartbeat(
    client: redis.Redis,
    video: Path,
) -> None:
    """Paused past its lease (SIGSTOP, a frozen VM), a capture's stall check said
    "reconnecting" before its heartbeat noticed the takeover, over the new owner's
    "live", for good. A state is sent only while the lease is still its own."""
    capture, thread, errors = _capture(client, video)
    thread.start()
    try:
        wait_for(lambda: capture.published >= 3, "frames")
        client.set(owner_key("door"), "new-host:2:def")
        capture.status("reconnecting", "no frame for 5 s (stalled)")  # before a heartbeat
        assert capture.lease_taken_by == "new-host:2:def"
        assert describe_sources(client)["door"]["state"] == "live"
        thread.join(T)
    finally:
        capture.stop()
        thread.join(T)
    assert "another capture took this source over" in str(errors[0])
