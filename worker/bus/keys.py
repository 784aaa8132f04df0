"""Every Redis key scenecast uses, and the names inside them. Pure.

A source's keys carry its name in a hash tag, so on a Redis Cluster one source's keys
share a slot (a script may touch several) and sources spread over shards:

    frames:{src}       frames to caption (consumer group ``captioners``)
    preview:{src}      live frames at a viewer's size, under their frames:{src} ids
    captions:{src}     captions, also the replay log clients resume from
    status:{src}       status events of the source (connecting, live, …)
    capture:{src}      hash: what the source's capture counted
    owner:{src}        the capture that holds the source's lease
    seq:{src}          the source's next frame sequence number
    deadletter:{src}   frames that failed too many deliveries
    done:{src}         (source, seq) pairs already published, for de-duplication
    parked:{src}       a file job's captions waiting for an older frame's
    shown:{src}        what the source shows (the caption hold), shared by workers

and three keys of the deployment:

    scenecast:sources  hash: source → JSON of its latest status (discovery)
    scenecast:metrics  hash of worker counters, summed over all workers
    scenecast:workers  hash: worker (consumer name) → last heartbeat, ms

docs/redis.md has each key's fields and lifetime.
"""

from __future__ import annotations

from worker.bus.exceptions import EntryError
from worker.bus.names import check_source

GROUP = "captioners"
SOURCES_KEY = "scenecast:sources"
METRICS_KEY = "scenecast:metrics"  # hash of worker counters, summed over all workers
WORKERS_KEY = "scenecast:workers"  # hash: worker (consumer name) → last heartbeat, ms
# a worker (heartbeat every 2 s) not heard from for longer is gone: not counted alive,
# and its pending frames are taken over (worker/takeover.py)
WORKER_SEEN_MS = 10_000
# a worker not heard from for this long is forgotten: workers drop its heartbeat (one
# killed leaves it behind), and status no longer lists it as gone
WORKER_FORGOTTEN_MS = 3_600_000
STAGE_PREFIX = "seconds:"  # METRICS_KEY fields "seconds:{stage}": time spent per stage
# METRICS_KEY field: CPU time of the thread that ran the model (with --model-process,
# the child's), during the caption stage: against its seconds, what the model waited
CAPTION_CPU = "cpu_seconds:caption"


def frames_key(source: str) -> str:
    return f"frames:{{{check_source(source)}}}"


def preview_key(source: str) -> str:
    """Live frames at a viewer's size, under their ``frames:{src}`` entry ids (fields
    ``data``, ``width``, ``height``): workers never read them."""
    return f"preview:{{{check_source(source)}}}"


def captions_key(source: str) -> str:
    return f"captions:{{{check_source(source)}}}"


def status_key(source: str) -> str:
    return f"status:{{{check_source(source)}}}"


def capture_key(source: str) -> str:
    """A hash of what the source's capture counted (stream/capture/counts.py FIELDS)."""
    return f"capture:{{{check_source(source)}}}"


def owner_key(source: str) -> str:
    """Which capture publishes the source's frames: one at a time (stream/capture/lease.py)."""
    return f"owner:{{{check_source(source)}}}"


def seq_key(source: str) -> str:
    """The source's next frame sequence number (capture continues it across restarts)."""
    return f"seq:{{{check_source(source)}}}"


def deadletter_key(source: str) -> str:
    return f"deadletter:{{{check_source(source)}}}"


def done_key(source: str) -> str:
    """(source, seq) pairs already published: a sorted set the publish script trims."""
    return f"done:{{{check_source(source)}}}"


def parked_key(source: str) -> str:
    """A file job's captions waiting for an older frame's (worker/bus/publish.py)."""
    return f"parked:{{{check_source(source)}}}"


def shown_key(source: str) -> str:
    """What the source shows, for the caption hold (worker/shown.py)."""
    return f"shown:{{{check_source(source)}}}"


def source_keys(source: str) -> list[str]:
    """The keys that carry the source in their hash tag (one Redis Cluster slot)."""
    return [
        f(source)
        for f in (
            frames_key, preview_key, captions_key, status_key, capture_key, owner_key,
            deadletter_key, done_key, parked_key, shown_key, seq_key,
        )
    ]  # fmt: skip


def as_str(value: object) -> str:
    """A name or id as redis-py returns it (bytes, or str with decode_responses) → str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def source_of_key(key: str | bytes) -> str:
    """``frames:{cam0}`` → ``cam0``."""
    text = as_str(key)
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise EntryError(f"not a scenecast stream key: {text!r}")
    return text[start + 1 : end]
