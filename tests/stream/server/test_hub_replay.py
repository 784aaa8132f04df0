"""The hub's replays against a real redis-server, without sockets: what a client's
queue receives when it subscribes with ``after`` while captions go on arriving."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio as aioredis

from stream.protocol import Subscribe
from stream.server.config import ServerConfig
from stream.server.hub import Client, Hub
from tests.support.frames import publish_caption, register
from worker.bus.keys import captions_key


def _publish(client: redis.Redis, source: str, seqs: range, text: str = "a cat") -> list[str]:
    ids = []
    for seq in seqs:
        entry_id = publish_caption(client, source, seq, text)
        assert entry_id is not None
        ids.append(entry_id)
    return ids


@contextlib.asynccontextmanager
async def _hub_and_client(url: str, **config: Any) -> AsyncIterator[tuple[Hub, Client]]:
    """A hub on its own Redis client and one client of it, without a socket."""
    redis_async = aioredis.Redis.from_url(url)
    hub = Hub(redis_async, ServerConfig(port=0, block_ms=100, **config))
    client = Client(
        ws=None,  # type: ignore[arg-type]
        queue_size=config.get("queue_size", 256),
        counters=hub.metrics,
    )
    hub.clients.add(client)
    try:
        yield hub, client
    finally:
        await redis_async.aclose()


async def _replayed(client: Client) -> list[dict[str, Any]]:
    while client.tasks:
        await asyncio.gather(*client.tasks)
    return [json.loads(text) for text in client.captions]


def test_a_live_caption_fanned_out_before_the_replay_starts_loses_nothing(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    """The replay task has not run yet when the next live caption is fanned out: it is
    buffered for after the replay, not sent at once (that moved the cursor past the
    whole replay, and every caption in it was refused as already sent)."""
    register(redis_client, "cam", live=True)
    ids = _publish(redis_client, "cam", range(6))

    async def main() -> list[dict[str, Any]]:
        async with _hub_and_client(redis_server.url) as (hub, client):
            client.sub.apply(Subscribe(sources=("cam",), after=ids[0]))
            hub.start_replay(client, "cam", ids[0])
            live = redis_client.xrange(captions_key("cam"), min=ids[5], max=ids[5])
            hub._fan_out_captions(live)  # before the replay's task first runs
            return await _replayed(client)

    got = asyncio.run(main())
    assert [m["seq"] for m in got] == [1, 2, 3, 4, 5]
    assert [m["id"] for m in got] == ids[1:]


async def _drain(client: Client, *, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """What the server's writer would send, taken as fast as the replay queues it."""

    async def take() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        while client.tasks or client.captions:
            while client.captions:
                item = client.captions.popleft()
                text = item if isinstance(item, str) else item()
                if text is not None:
                    sent.append(json.loads(text))
                client.room.set()
            await asyncio.sleep(0)
        return sent

    return await asyncio.wait_for(take(), timeout_s)


def test_a_gap_comes_after_the_captions_queued_before_it_and_counts_every_drop(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    """Its resume_after is the last caption the client got before it, so resuming
    from there (or from the last caption it got, the same id) repeats nothing."""
    register(redis_client, "cam", live=True)
    ids = _publish(redis_client, "cam", range(6))

    async def main() -> tuple[list[Any], Hub, Client]:
        async with _hub_and_client(redis_server.url, queue_size=3) as (hub, client):
            client.sub.apply(Subscribe(sources=("cam",)))
            hub._fan_out_captions(redis_client.xrange(captions_key("cam")))
            return await _drain(client), hub, client

    sent, hub, client = asyncio.run(main())
    assert [m["type"] for m in sent] == ["caption"] * 3 + ["gap"]
    assert sent[3]["resume_after"] == sent[2]["id"] == ids[2]
    assert sent[3]["dropped"] == 3  # every caption dropped before it went out
    assert hub.metrics["gaps"] == 1 and hub.metrics["dropped_captions"] == 3
    assert client.dropped == 3


def test_a_gap_the_client_resumed_from_before_it_was_sent_is_not_sent(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "cam", live=True)
    ids = _publish(redis_client, "cam", range(3))

    async def main() -> list[Any]:
        async with _hub_and_client(redis_server.url, queue_size=1) as (hub, client):
            client.sub.apply(Subscribe(sources=("cam",)))
            hub._fan_out_captions(redis_client.xrange(captions_key("cam")))
            # the client subscribes again (for its own reasons) before the gap is sent
            client.sub.apply(Subscribe(sources=("cam",), after=ids[0]))
            hub.start_replay(client, "cam", ids[0])
            return await _drain(client)

    sent = asyncio.run(main())
    assert [(m["type"], m.get("seq")) for m in sent] == [
        ("caption", 0),
        ("caption", 1),
        ("caption", 2),
    ]


def test_live_captions_that_outrun_a_slow_replay_are_read_from_the_log(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    """The live captions buffered for after a replay are bounded by the client's
    queue; the ones the buffer had no room for come from the log: none lost, none
    twice, no gap."""
    register(redis_client, "cam", live=True)
    ids = _publish(redis_client, "cam", range(10))

    async def main() -> tuple[list[Any], int]:
        async with _hub_and_client(redis_server.url, queue_size=2) as (hub, client):
            client.sub.apply(Subscribe(sources=("cam",), after=ids[0]))
            hub.start_replay(client, "cam", ids[0])
            await asyncio.sleep(0.2)  # the replay has filled the queue and waits
            new = _publish(redis_client, "cam", range(10, 16))
            hub._fan_out_captions(redis_client.xrange(captions_key("cam"), min=new[0]))
            buffered = len(client.replaying["cam"])
            return await _drain(client), buffered

    sent, buffered = asyncio.run(main())
    assert buffered == 2  # the queue's size, not the 6 that arrived
    assert [m["type"] for m in sent] == ["caption"] * 15
    assert [m["seq"] for m in sent] == list(range(1, 16))


def test_a_replay_knows_is_final_across_its_chunks(redis_server, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "cam", live=False)
    texts = ["a dog", "a dog", "a dog", "a cat", "a cat", "a car", "a car"]
    for seq, text in enumerate(texts):
        publish_caption(redis_client, "cam", seq, text)

    async def main() -> list[Any]:
        async with _hub_and_client(redis_server.url, replay_chunk=3) as (hub, client):
            client.sub.apply(Subscribe(sources=("cam",), after="0"))
            hub.start_replay(client, "cam", "0")
            return await _drain(client)

    sent = asyncio.run(main())
    assert [m["segment_id"] for m in sent] == [0, 0, 0, 1, 1, 2, 2]
    # seq 2 ends a chunk of 3 and its segment; the last caption's segment is open
    assert [m["is_final"] for m in sent] == [False, False, True, False, True, False, False]


def test_a_replay_that_redis_cuts_short_ends_in_a_gap_at_the_last_caption_sent(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    """Not in silence with the live tail going on as if the rest had been sent: the
    gap says where to resume once Redis is back."""
    register(redis_client, "cam", live=True)
    ids = _publish(redis_client, "cam", range(8))

    async def main() -> list[Any]:
        async with _hub_and_client(redis_server.url, replay_chunk=3) as (hub, client):
            xrange = hub.redis.xrange
            calls = 0

            async def failing(*args: Any, **kwargs: Any) -> Any:
                nonlocal calls
                calls += 1
                if calls > 1:
                    raise aioredis.ConnectionError("Connection reset by peer")
                return await xrange(*args, **kwargs)

            hub.redis.xrange = failing
            client.sub.apply(Subscribe(sources=("cam",), after=ids[0]))
            hub.start_replay(client, "cam", ids[0])
            sent = await _drain(client)
            assert not client.replaying
            return sent

    sent = asyncio.run(main())
    assert [(m["type"], m.get("seq")) for m in sent] == [
        ("caption", 1),
        ("caption", 2),
        ("caption", 3),
        ("gap", None),
    ]
    assert sent[3]["resume_after"] == ids[3]


def test_an_unsubscribed_sources_queued_captions_and_gap_are_not_sent(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    for source in ("a", "b"):
        register(redis_client, source, live=True)
        _publish(redis_client, source, range(3))

    async def main() -> tuple[list[str], list[str]]:
        async with _hub_and_client(redis_server.url, queue_size=4) as (hub, client):
            client.sub.apply(Subscribe())
            for source in ("a", "b"):
                hub._fan_out_captions(redis_client.xrange(captions_key(source)))
            assert len(client.captions) == 5  # 4 captions and b's gap
            client.drop_queued(["b"])
            kept = [json.loads(t)["source"] for t in client.captions if isinstance(t, str)]
            remaining = len(client.captions)
            client.drop_queued(None)
            return kept, [str(remaining), str(len(client.captions))]

    kept, counts = asyncio.run(main())
    assert kept == ["a", "a", "a"] and counts == ["3", "0"]


def test_a_replay_with_nothing_to_send_ends_and_hands_on_the_live_captions(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    """Nothing after the id asked for (a reconnect), or an empty log (a viewer opened
    before the first caption): the replay ends cleanly and the live tail follows."""
    register(redis_client, "cam", live=True)
    register(redis_client, "empty", live=True)
    ids = _publish(redis_client, "cam", range(2))

    async def main() -> list[tuple[str, int]]:
        async with _hub_and_client(redis_server.url) as (hub, client):
            client.sub.apply(Subscribe(sources=("cam",), after=ids[1]))
            client.sub.apply(Subscribe(sources=("empty",), after="0"))
            hub.start_replay(client, "cam", ids[1])
            hub.start_replay(client, "empty", "0")
            for source, seq in (("cam", 2), ("empty", 0)):
                (new,) = _publish(redis_client, source, range(seq, seq + 1))
                live = redis_client.xrange(captions_key(source), min=new)
                # read by the hub, then gone from the log before the replay reads it:
                # the replay finds nothing, and the caption is in its buffer only
                redis_client.xdel(captions_key(source), new)
                hub._fan_out_captions(live)
            sent = await _drain(client)
            assert not client.tasks and not client.replaying
            return sorted((m["source"], m["seq"]) for m in sent)

    assert asyncio.run(main()) == [("cam", 2), ("empty", 0)]
