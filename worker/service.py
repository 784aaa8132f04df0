"""Run a worker as a process: connect, caption until SIGTERM/SIGINT, drain, exit.

Staged shutdown: the first signal stops taking work — the batch in hand is still
captioned, published and acked — the second one exits at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

from worker.bus import cluster
from worker.worker import CaptionFn, Worker, WorkerConfig, WorkerStats

log = logging.getLogger("scenecast.worker")


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
