"""``scenecast run``: everything for one machine in one command.

Starts, in order: Redis (an embedded ``redis-server`` on a free port unless a URL is
given), a worker process (its own process: captioning holds the GIL, the server must
not wait on it), one capture thread per source, and the websocket server. Prints the
URLs. Ctrl+C (or SIGTERM) stops in stages — captures stop, the worker finishes its
batch and exits, the server closes, Redis stops — and a second one exits at once. The
worker exits by itself if this process dies, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from stream.capture.capture import Capture, CaptureConfig
from stream.embedded_redis import EmbeddedRedis, check_redis
from stream.exceptions import StreamError
from stream.server.config import announce
from stream.server.server import CaptionServer, ServerConfig
from stream.sources.spec import SourceSpec

log = logging.getLogger("scenecast.run")


@dataclass
class RunConfig:
    sources: Sequence[SourceSpec]
    capture: CaptureConfig
    server: ServerConfig
    redis_url: str | None = None
    worker_args: list[str] = field(default_factory=list)  # passed to `scenecast worker`
    worker_timeout_s: float = 30.0


def start_worker(url: str, args: Sequence[str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "stream.cli", "worker", "--redis-url", url,
               "--exit-with-parent", str(os.getpid()), *args]  # fmt: skip
    # Its own session: a terminal's Ctrl+C reaches only us, and we drain it with SIGTERM
    # (otherwise it would get SIGINT and then our SIGTERM: a "second signal", no drain).
    return subprocess.Popen(command, start_new_session=True)


def stop_worker(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM (drain) → wait → SIGKILL."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("worker did not stop in %.0fs: killing it", timeout)
        proc.kill()
        proc.wait()


class Runner:
    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.captures: list[Capture] = []
        self.threads: list[threading.Thread] = []
        self.stop_event: asyncio.Event | None = None
        self.port: int | None = None

    def _start_captures(self, url: str) -> None:
        for spec in self.config.sources:
            capture = Capture(check_redis(url), spec, self.config.capture)
            thread = threading.Thread(target=self._capture, args=(capture,),
                                      name=f"capture-{spec.name}", daemon=True)  # fmt: skip
            self.captures.append(capture)
            self.threads.append(thread)
            thread.start()

    @staticmethod
    def _capture(capture: Capture) -> None:
        try:
            capture.run()
        except Exception as exc:  # reported as an error status; the others go on
            log.error("capture of %s failed: %s", capture.spec.name, exc)

    async def serve(self, url: str, redis_server: EmbeddedRedis | None = None) -> None:
        """The service until a signal; ``redis_server``: the embedded Redis, watched
        like the worker (nothing would ever bring it back)."""
        loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                os._exit(130)  # the worker and an embedded Redis follow us (parent watch)
            assert self.stop_event is not None
            self.stop_event.set()
            with contextlib.suppress(OSError):  # stderr may be a closed pipe (`| head`)
                print("scenecast: stopping (Ctrl+C again to exit at once)", file=sys.stderr)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        worker = start_worker(url, self.config.worker_args)
        try:
            async with CaptionServer(url, self.config.server) as server:
                self.port = server.port
                announce(self.config.server, server.port)
                self._start_captures(url)
                try:
                    while not self.stop_event.is_set():
                        self._check_parts(worker, redis_server)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self.stop_event.wait(), 0.5)
                finally:  # also when a part died: each source says it ended
                    for capture in self.captures:
                        capture.stop()
                    for thread in self.threads:
                        await asyncio.to_thread(thread.join, 10.0)
        finally:
            await asyncio.to_thread(stop_worker, worker, self.config.worker_timeout_s)

    @staticmethod
    def _check_parts(worker: subprocess.Popen[bytes], redis_server: EmbeddedRedis | None) -> None:
        if worker.poll() is not None:
            raise StreamError(f"the worker exited with code {worker.returncode}")
        code = None if redis_server is None else redis_server.exit_code()
        if code is not None:
            raise StreamError(
                f"the embedded redis-server exited (code {code}); the frames and captions "
                "it held are gone: start scenecast run again (or give it --redis-url)"
            )

    def run(self) -> int:
        if self.config.redis_url:
            check_redis(self.config.redis_url).close()
            asyncio.run(self.serve(self.config.redis_url))
            return 0
        with EmbeddedRedis() as server:
            print(f"scenecast: embedded Redis at {server.url} (no persistence)", flush=True)
            asyncio.run(self.serve(server.url, server))
        return 0


def check_model(checkpoint: str | None, device: str | None) -> None:
    """Fail now, with a clear message, rather than in the worker process: a device this
    machine has not, or a checkpoint that does not load. The bundled model is not loaded
    here only to be loaded again by the worker (2-3 s on a CPU)."""
    from captioner.default_model import default_weights_path

    if device is not None:
        from captioner.api import resolve_device

        resolve_device(device)
    if checkpoint is not None or not default_weights_path().is_file():
        from captioner.api import Captioner

        Captioner.load(checkpoint, device="cpu")


def run(config: RunConfig, *, checkpoint: str | None, device: str | None) -> int:
    """Everything for one machine, until a signal or a part's end: see :class:`Runner`."""
    check_model(checkpoint, device)
    return Runner(config).run()
