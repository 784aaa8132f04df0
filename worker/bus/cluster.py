"""One Redis or a Redis Cluster: the client for a URL, and the few calls that differ.

A URL names one node; whether it is a cluster node is asked (``INFO cluster``), so
``--redis-url redis://any-node:6379`` works for both and nothing else changes for a
user. On a cluster, a command may only touch keys of one hash slot, and every key of
one source shares its slot (the ``{src}`` hash tag, worker/queue.py), so most calls
are the same. What is not:

- **Reading many streams.** A worker reads all sources' frames, and the server all
  captions, in one blocking ``XREADGROUP`` / ``XREAD``; a cluster refuses that across
  slots, and one thread cannot block on several nodes. So on a cluster each read is a
  pipeline of one non-blocking read per stream (one round trip per node), repeated
  every ``POLL_MS`` until something arrives or the block time is up: up to
  ``POLL_MS`` more latency, and an idle reader asks each node ~100 times a second.
- **Scripts in a pipeline.** redis-py's cluster pipeline refuses ``EVALSHA``, so
  :func:`run_scripts` calls them one by one there (one round trip each, off the
  model's path: the worker's publisher thread).
- **The clock.** ``TIME`` would go to any node; all parts ask the node that holds
  ``scenecast:sources``, so they share one timebase (worker/redis_clock.py).

Transactions (``MULTI``) stay within one source's slot everywhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from worker.bus.outage import script_refusals

POLL_MS = 10  # how often a cluster read asks again while nothing has arrived
CLOCK_KEY = "scenecast:sources"  # the node holding this key's slot answers TIME


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster | AsyncRedisCluster)


def connect(url: str, **kwargs: Any) -> Any:
    """A ``redis.Redis`` for ``url``, or a ``RedisCluster`` when it names a cluster node
    (``kwargs``: connection options, for either)."""
    single = redis.Redis.from_url(url, **kwargs)
    try:
        enabled = _cluster_enabled(single.info("cluster"))
    except redis.ResponseError as exc:
        if "SELECT" in str(exc):  # the URL names a database, which a cluster has not
            single.close()
            db = single.get_connection_kwargs().get("db")
            raise RedisClusterException(
                f"a Redis Cluster has only database 0, and the URL names database {db}: "
                "end the URL with /0 or with the port"
            ) from None
        enabled = False  # INFO renamed away: take it as one node
    except BaseException:
        single.close()
        raise
    if not enabled:
        return single
    single.close()
    return RedisCluster.from_url(url, **kwargs)


async def connect_async(url: str, **kwargs: Any) -> Any:
    """:func:`connect` for asyncio: ``redis.asyncio.Redis`` or its ``RedisCluster``."""
    single = aioredis.Redis.from_url(url, **kwargs)
    try:
        enabled = _cluster_enabled(await single.info("cluster"))
    except redis.ResponseError:
        enabled = False
    except BaseException:
        await single.aclose()
        raise
    if not enabled:
        return single
    await single.aclose()
    return AsyncRedisCluster.from_url(url, **kwargs)


def _cluster_enabled(info: Mapping[str, Any]) -> bool:
    return str(info.get("cluster_enabled", "0")) == "1"


def xreadgroup(
    client: Any,
    group: str,
    consumer: str,
    streams: Mapping[Any, Any],
    *,
    count: int,
    block_ms: int,
) -> list[Any]:
    """``XREADGROUP`` of ``streams`` ({key: id}) as ``[(key, entries), ...]``, blocking up
    to ``block_ms`` while none has anything; on a cluster, one read per stream."""
    if not is_cluster(client):
        return list(
            client.xreadgroup(group, consumer, dict(streams), count=count, block=block_ms) or []
        )
    deadline = time.monotonic() + block_ms / 1000
    while True:
        pipe = client.pipeline(transaction=False)
        for key, at in streams.items():
            pipe.xreadgroup(group, consumer, {key: at}, count=count)
        got = _merged(pipe.execute())
        left = deadline - time.monotonic()
        if got or left <= 0:
            return got
        time.sleep(min(POLL_MS / 1000, left))


async def xread_async(
    client: Any, streams: Mapping[Any, Any], *, count: int, block_ms: int
) -> list[Any]:
    """``XREAD`` of ``streams`` ({key: id}) with an asyncio client, as :func:`xreadgroup`."""
    if not is_cluster(client):
        return list(await client.xread(dict(streams), count=count, block=block_ms) or [])
    deadline = time.monotonic() + block_ms / 1000
    while True:
        pipe = client.pipeline(transaction=False)
        for key, at in streams.items():
            pipe.xread({key: at}, count=count)
        got = _merged(await pipe.execute())
        left = deadline - time.monotonic()
        if got or left <= 0:
            return got
        await asyncio.sleep(min(POLL_MS / 1000, left))


def _merged(replies: Sequence[Any]) -> list[Any]:
    """The per-stream replies (each ``[(key, entries)]`` or empty) as one reply."""
    return [(key, entries) for reply in replies for key, entries in reply or [] if entries]


def run_scripts(client: Any, calls: Sequence[tuple[Any, list[Any], list[Any]]]) -> list[Any]:
    """Run registered scripts ``(script, keys, args)`` in order, in one pipeline (one
    round trip) on one Redis, one by one on a cluster; their results in order."""
    with script_refusals():  # Redis out of memory: as Redis going away
        if is_cluster(client):
            return [script(keys=keys, args=args) for script, keys, args in calls]
        pipe = client.pipeline(transaction=False)
        for script, keys, args in calls:
            script(keys=keys, args=args, client=pipe)
        return list(pipe.execute())


def redis_time(client: Any) -> Any:
    """``TIME`` from the node every part asks (see the module's docstring)."""
    if is_cluster(client):
        return client.time(target_nodes=client.get_node_from_key(CLOCK_KEY))
    return client.time()


async def redis_time_async(client: Any) -> Any:
    if is_cluster(client):
        return await client.time(target_nodes=client.get_node_from_key(CLOCK_KEY))
    return await client.time()
