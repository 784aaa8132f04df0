"""The hub's view of the sources: the state each source is announced with comes from
its status stream, which the hub reads in order, never from a hash written later."""

from __future__ import annotations

import asyncio
import json

import redis
import redis.asyncio as aioredis

from stream.server.config import ServerConfig
from stream.server.hub import Hub
from tests.support.frames import register, set_status
from worker.bus.entries import StatusEntry
from worker.bus.keys import SOURCES_KEY, status_key


def _refresh(url: str) -> tuple[list[str], Hub]:
    async def main() -> tuple[list[str], Hub]:
        client = aioredis.Redis.from_url(url)
        hub = Hub(client, ServerConfig(port=0, block_ms=100))
        try:
            return await hub.refresh_sources(), hub
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_new_source_takes_its_state_from_the_status_stream(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "cam", live=True)
    set_status(redis_client, "cam", "ended", "end of file")
    # the hash lags behind the stream (capture writes the stream first)
    redis_client.hset(SOURCES_KEY, "cam", json.dumps({"state": "live", "live": True}))
    last_id = redis_client.xrevrange(status_key("cam"), count=1)[0][0].decode()

    new, hub = _refresh(redis_server.url)

    assert new == ["cam"]
    assert hub.sources["cam"]["state"] == "ended"
    assert hub.positions[status_key("cam")] == last_id  # that entry is not sent twice


def test_source_without_status_entries_uses_the_hash(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "cam", live=False)

    new, hub = _refresh(redis_server.url)

    assert new == ["cam"]
    assert hub.sources["cam"]["state"] == "live"
    assert hub.positions[status_key("cam")] == "0-0"  # the first status is read when it comes


def test_known_source_is_not_regressed_by_a_stale_hash(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "cam", live=True)

    async def main() -> Hub:
        client = aioredis.Redis.from_url(redis_server.url)
        hub = Hub(client, ServerConfig(port=0, block_ms=100))
        try:
            assert await hub.refresh_sources() == ["cam"]
            hub.sources["cam"] = json.loads(StatusEntry("cam", "ended", "", 1).to_json())
            await client.hset(SOURCES_KEY, "cam", json.dumps({"state": "live", "live": True}))
            assert await hub.refresh_sources() == []
            return hub
        finally:
            await client.aclose()

    hub = asyncio.run(main())
    assert hub.sources["cam"]["state"] == "ended"
