"""The server's ``/metrics`` page (Prometheus text format).

Two halves: :func:`read_shared` reads what the other processes left in Redis (the
workers' summed counters and heartbeats, each capture's counts, each caption log's
length), and :func:`exposition` — pure — writes the page from that and the server's
own figures. Redis away: the server's own figures still go out, ``scenecast_up 0``.

What is there (docs/operations.md, metrics): the server's clients, counters and
refusals; per source, capture → caption latency (``stream.server.latency_histogram``), its
state, its caption log's length, and what its capture saw; the workers' counters,
time per stage and the model thread's CPU time; and the workers alive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream.server.metrics_help import with_help
from worker.bus.keys import (
    CAPTION_CPU,
    METRICS_KEY,
    STAGE_PREFIX,
    WORKER_SEEN_MS,
    WORKERS_KEY,
    captions_key,
    capture_key,
)

CAPTURE_FRAME_KINDS = ("read", "sampled", "published", "overwritten")
CAPTURE_COUNTERS = ("bad_reads", "reconnects")
# Each series is on the page from the start, at 0 until counted: Prometheus' rate()
# and increase() miss the first increment of a series that appears from nothing.
WORKER_COUNTERS = (  # worker.worker.WorkerStats's (but reconnects: the worker's log)
    "batches", "captioned", "stale", "duplicates", "parked", "late", "failed",
    "deadlettered", "claimed",
)  # fmt: skip
WORKER_STAGES = ("read", "decode", "caption", "publish")  # --model-process adds its own


@dataclass(frozen=True)
class ServerFigures:
    """What the server itself counted."""

    clients: int
    redis_ok: bool
    counters: Mapping[str, int]  # scenecast_server_<name>_total
    refused: Mapping[str, int]  # by reason: token, origin, host
    dropped: int  # captions dropped for slow clients, now connected
    latency: Sequence[str]  # the latency histograms' lines, ready


@dataclass(frozen=True)
class SharedFigures:
    """What the other processes left in Redis, as read."""

    worker: Mapping[str, str] = field(default_factory=dict)  # METRICS_KEY
    heartbeats_ms: Sequence[float] = ()  # WORKERS_KEY's values
    states: Mapping[str, str] = field(default_factory=dict)  # source → state
    captions: Mapping[str, int] = field(default_factory=dict)  # source → XLEN
    captures: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # capture:{src}


def heard_recently(beat_ms: float, now_ms: float) -> bool:
    """Whether a worker whose last heartbeat was at ``beat_ms`` counts as alive."""
    return now_ms - beat_ms <= WORKER_SEEN_MS


async def read_shared(redis: Any, sources: Mapping[str, Mapping[str, Any]]) -> SharedFigures:
    """One round trip (a pipeline) for everything; ``sources``: the hub's source →
    its last status. Raises redis' connection errors."""
    names = sorted(sources)
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(METRICS_KEY)
    pipe.hgetall(WORKERS_KEY)
    for source in names:
        pipe.xlen(captions_key(source))
        pipe.hgetall(capture_key(source))
    worker, beats, *per_source = await pipe.execute()
    return SharedFigures(
        worker={k.decode(): v.decode() for k, v in worker.items()},
        heartbeats_ms=[float(v) for v in beats.values()],
        states={s: str(sources[s].get("state", "")) for s in names},
        captions={s: int(n) for s, n in zip(names, per_source[0::2], strict=True)},
        captures={
            s: {k.decode(): int(v) for k, v in raw.items()}
            for s, raw in zip(names, per_source[1::2], strict=True)
        },
    )


def exposition(own: ServerFigures, shared: SharedFigures | None, *, now_ms: float) -> str:
    """The page: the server's figures, then (None: Redis away) the shared ones."""
    lines = [
        "# TYPE scenecast_clients gauge",
        f"scenecast_clients {own.clients}",
        "# TYPE scenecast_up gauge",
        f"scenecast_up {int(own.redis_ok)}",
    ]
    for name, value in sorted(own.counters.items()):
        lines += [
            f"# TYPE scenecast_server_{name}_total counter",
            f"scenecast_server_{name}_total {value}",
        ]
    lines.append("# TYPE scenecast_server_refused_requests_total counter")
    lines += [
        f'scenecast_server_refused_requests_total{{reason="{reason}"}} {n}'
        for reason, n in sorted(own.refused.items())
    ]
    lines += own.latency
    lines += [
        "# TYPE scenecast_client_dropped_captions gauge",
        f"scenecast_client_dropped_captions {own.dropped}",
    ]
    if shared is not None:
        lines += _worker_lines(shared.worker)
        lines.append("# TYPE scenecast_source_state gauge")
        lines += [
            f'scenecast_source_state{{source="{s}",state="{state}"}} 1'
            for s, state in sorted(shared.states.items())
        ]
        lines.append("# TYPE scenecast_captions gauge")
        lines += [
            f'scenecast_captions{{source="{s}"}} {n}' for s, n in sorted(shared.captions.items())
        ]
        lines += _capture_lines(shared.captures)
        alive = sum(1 for ms in shared.heartbeats_ms if heard_recently(ms, now_ms))
        lines += ["# TYPE scenecast_workers gauge", f"scenecast_workers {alive}"]
    return "\n".join(with_help(lines)) + "\n"


def _worker_lines(worker: Mapping[str, str]) -> list[str]:
    """The workers' counters (summed over all of them), their time per stage — read
    (waiting included), decode, caption, publish; with --model-process also
    model_decode and transfer (the pipes) — and the model thread's CPU seconds (against
    the caption stage's: the model's waits)."""
    lines: list[str] = []
    stages = []
    worker = {
        **dict.fromkeys(WORKER_COUNTERS, "0"),
        **{f"{STAGE_PREFIX}{stage}": "0" for stage in WORKER_STAGES},
        CAPTION_CPU: "0",
        **worker,
    }
    for name, value in sorted(worker.items()):
        if name.startswith(STAGE_PREFIX):
            stage = name.removeprefix(STAGE_PREFIX)
            stages.append(
                f'scenecast_worker_stage_seconds_total{{stage="{stage}"}} {float(value):.3f}'
            )
        elif name == CAPTION_CPU:
            lines += [
                "# TYPE scenecast_worker_caption_cpu_seconds_total counter",
                f"scenecast_worker_caption_cpu_seconds_total {float(value):.3f}",
            ]
        else:
            lines += [
                f"# TYPE scenecast_worker_{name}_total counter",
                f"scenecast_worker_{name}_total {int(value)}",
            ]
    if stages:
        lines += ["# TYPE scenecast_worker_stage_seconds_total counter", *stages]
    return lines


def _capture_lines(captures: Mapping[str, Mapping[str, int]]) -> list[str]:
    """What each source's capture counted (stream/capture_counts.py): frames read from
    the source, sampled, published, overwritten by the newest-frame policy; failed
    reads (corrupt frames, lost streams); reconnect attempts."""
    rows: dict[str, list[str]] = {"frames": [], **{name: [] for name in CAPTURE_COUNTERS}}
    for source, counts in sorted(captures.items()):
        label = f'source="{source}"'
        for kind in CAPTURE_FRAME_KINDS:  # 0 until counted (WORKER_COUNTERS)
            rows["frames"].append(f'{{{label},kind="{kind}"}} {counts.get(kind, 0)}')
        for name in CAPTURE_COUNTERS:
            rows[name].append(f"{{{label}}} {counts.get(name, 0)}")
    lines = []
    for name, values in rows.items():
        if values:
            metric = f"scenecast_capture_{name}_total"
            lines += [f"# TYPE {metric} counter", *(metric + v for v in values)]
    return lines
