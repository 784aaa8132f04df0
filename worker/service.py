"""Run a worker as a process: connect, caption until SIGTERM/SIGINT, drain, exit.

Staged shutdown: the first signal stops taking work — the batch in hand is still
captioned, published and acked — the second one exits at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

from worker.batching import BatchPolicy
from worker.bus import cluster
from worker.bus.connect import check_redis
from worker.worker import CaptionFn, Worker, WorkerConfig, WorkerStats

if TYPE_CHECKING:
    from captioner.search.hold import ShownCaptions

log = logging.getLogger("scenecast.worker")


@dataclass(frozen=True)
class WorkerSettings:
    """What ``scenecast worker`` runs with."""

    redis_url: str
    checkpoint: str | None = None  # None: the bundled model
    device: str | None = None  # None: cuda when there is one
    beam: int = 5
    search: Mapping[str, Any] = field(default_factory=dict)  # Captioner.override()
    max_batch: int = 32
    max_wait_ms: float = 50.0
    max_age_ms: float = 3000.0
    model_process: bool = False  # the model in a process of its own (worker.model_process)
    decode: str = "device"  # where JPEGs are decoded: worker.decode.DECODE_ON
    exit_with_parent: int | None = None  # stop when this process is gone


def run_worker(settings: WorkerSettings) -> int:
    """Check the device and Redis (clear errors, before the model loads), load the model,
    caption until SIGTERM/SIGINT; 0 when it drained."""
    from captioner.api import Captioner, resolve_device
    from worker.decode import decode_device
    from worker.model_process import ModelProcess

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    device = resolve_device(settings.device)
    check_redis(settings.redis_url).close()  # before the model loads: a clear error, exit 2
    policy = BatchPolicy(
        max_batch=settings.max_batch,
        max_wait_ms=settings.max_wait_ms,
        max_age_ms=settings.max_age_ms,
    )
    if settings.model_process:
        with contextlib.closing(
            ModelProcess(
                settings.checkpoint,
                device=str(device),
                beam=settings.beam,
                search=settings.search,
                max_batch=settings.max_batch,
                decode_on=settings.decode,
            )
        ) as model:
            config = WorkerConfig(
                policy=policy,
                model=model.model_id,
                fit=model.fit,
                device=model.device,
                model_decodes=True,
            )
            serve_worker(settings.redis_url, model, config, parent_pid=settings.exit_with_parent)
        return 0
    cap = Captioner.load(settings.checkpoint, device=device)
    cap.override(settings.search)
    if cap.device.type == "cuda":
        cap.warm_up(settings.max_batch)
    beam = settings.beam

    def caption(images: Sequence[Any], sources: Sequence[str], shown: ShownCaptions) -> Any:
        return cap.caption(list(images), beam=beam, sources=sources, shown=shown)

    config = WorkerConfig(
        policy=policy,
        model=cap.model_id,
        fit=cap.fit,
        device=decode_device(settings.decode, str(cap.device)),
    )
    serve_worker(settings.redis_url, caption, config, parent_pid=settings.exit_with_parent)
    return 0


def connect(url: str) -> Any:
    """A client for blocking reads: no socket timeout (reads block ≤ block_ms anyway);
    a ``RedisCluster`` when ``url`` names a cluster node (worker/cluster.py)."""
    return cluster.connect(
        url, socket_timeout=None, socket_connect_timeout=5, health_check_interval=30
    )


def install_signal_handlers(worker: Worker) -> None:
    """SIGTERM / SIGINT: drain; a second one: exit now. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if worker.stopping:
            log.warning("second signal: exiting without draining")
            os._exit(130)
        log.info("signal %s: finishing the batch in hand, then exiting", signum)
        worker.stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def serve_worker(
    url: str,
    caption: CaptionFn,
    config: WorkerConfig,
    *,
    parent_pid: int | None = None,
    **kwargs: Any,
) -> WorkerStats:
    client = connect(url)
    worker = Worker(client, caption, config)
    install_signal_handlers(worker)
    if parent_pid is not None:
        watch_parent(parent_pid, worker)
    try:
        return worker.run(**kwargs)
    finally:
        client.close()


def watch_parent(parent_pid: int, worker: Worker, *, every_s: float = 1.0) -> threading.Thread:
    """Stop ``worker`` when the process that started it is gone (no orphans)."""

    def watch() -> None:
        while not worker.stopping:
            if os.getppid() != parent_pid:
                log.warning("parent process %d is gone: stopping", parent_pid)
                worker.stop()
                return
            time.sleep(every_s)

    thread = threading.Thread(target=watch, name="watch-parent", daemon=True)
    thread.start()
    return thread
