"""Connecting to the service's Redis: a client that answered, or one clear line that says
what was wrong (a URL that is none, a password missing, a database the server has not,
a server not there) — never Redis's own wording or a traceback."""

from __future__ import annotations

from typing import Any

import redis
from redis.exceptions import RedisClusterException

from worker.bus.cluster import connect
from worker.bus.exceptions import RedisUnavailable
from worker.bus.redact import redact_url


def check_redis(url: str) -> Any:
    """A client for ``url`` that answered PING (a ``RedisCluster`` for a cluster node,
    worker/bus/cluster.py), or a clear error."""
    try:
        redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise RedisUnavailable(f"not a Redis URL: {url!r} ({exc})") from None
    try:
        client = connect(url, socket_connect_timeout=3, socket_timeout=None)
        client.ping()
    except redis.AuthenticationError as exc:
        if "HELLO must be called" in str(exc) or "NOAUTH" in str(exc):  # none given
            raise RedisUnavailable(
                f"Redis at {redact_url(url)} requires a password, and the URL gives none "
                "(accepted: redis://:PASSWORD@HOST:PORT/DB, or redis://USER:PASSWORD@... "
                "with an ACL user)"
            ) from None
        raise RedisUnavailable(f"cannot reach Redis at {redact_url(url)}: {exc}") from exc
    except redis.ResponseError as exc:  # e.g. a database the server does not have
        if "DB index is out of range" in str(exc):
            db = redis.connection.parse_url(url).get("db", 0)  # type: ignore[no-untyped-call]
            raise RedisUnavailable(
                f"Redis at {redact_url(url)} has no database {db} (accepted: 0 to the "
                "server's `databases` setting - 1, 16 by default: 0-15)"
            ) from None
        raise RedisUnavailable(f"Redis at {redact_url(url)} refused us: {exc}") from exc
    except (redis.ConnectionError, redis.TimeoutError, ValueError) as exc:
        raise RedisUnavailable(f"cannot reach Redis at {redact_url(url)}: {exc}") from exc
    except RedisClusterException as exc:
        raise RedisUnavailable(f"Redis Cluster at {redact_url(url)} is not usable: {exc}") from exc
    return client
