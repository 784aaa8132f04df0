"""Every Redis key of one source, for forgetting it: ``scenecast forget`` deletes
them (a camera taken down would otherwise stay listed, "ended", for good), a finished
``caption --redis-url`` job lets them expire."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from stream.exceptions import StreamError
from worker.bus.keys import (
    GROUP,
    SOURCES_KEY,
    frames_key,
    owner_key,
    source_keys,
)
from worker.bus.names import is_source_name


def forget_sources(client: Any, sources: Sequence[str]) -> list[tuple[str, int]]:
    """Forget each of ``sources`` (each source and the keys deleted), after checking
    them all: a StreamError, and nothing forgotten, if one is unknown or a capture holds
    it. A running server drops a forgotten source from its list within a second."""
    known = {key.decode() for key in client.hkeys(SOURCES_KEY)}
    for source in sources:
        if not is_source_name(source):
            raise StreamError(f"{source!r} is not a source name (see scenecast status)")
        holder: Any = client.get(owner_key(source))
        if holder is not None:
            raise StreamError(
                f"{source} is being captured ({holder.decode()}): stop that capture first "
                "(one that died lets go within 10 s)"
            )
        held = _frames_in_hand(client, source)
        if held:  # their captions would make the source's caption log anew, unlisted
            raise StreamError(
                f"{source}: workers still hold {held} of its frames (a file job being "
                "captioned): wait until they are done, or stop the workers first"
            )
        if source not in known and not client.exists(*source_keys(source)):
            raise StreamError(
                f"no source named {source!r}; known: {', '.join(sorted(known)) or 'none'}"
            )
    return [(source, forget_source(client, source)) for source in sources]


def _frames_in_hand(client: Any, source: str) -> int:
    """Frames of ``source`` a worker has read and not yet captioned (0: none, or no
    stream or group)."""
    try:
        summary = client.xpending(frames_key(source), GROUP)
    except redis.ResponseError:  # NOGROUP: no stream, or nobody ever read it
        return 0
    return int(summary.get("pending") or 0)


def forget_source(client: Any, source: str) -> int:
    """Delete a source's keys and its entry in the registry (``SOURCES_KEY``), so no
    server lists it any more. The caller checks that no capture holds it. Returns the
    number of keys deleted."""
    client.hdel(SOURCES_KEY, source)
    # one DEL of keys of one slot, not in a pipeline: redis-py's cluster pipeline
    # refuses a DEL of several keys
    return int(client.delete(*source_keys(source)))


def forget_and_say(redis_url: str, sources: Sequence[str]) -> int:
    """``scenecast forget``: forget each source, a line each; 0."""
    from stream.embedded_redis import check_redis

    client = check_redis(redis_url)
    try:
        for source, n in forget_sources(client, sources):
            print(f"scenecast: forgot {source} ({n} keys)")
    finally:
        client.close()
    return 0
