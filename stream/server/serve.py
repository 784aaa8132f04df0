"""Run the websocket server as a process until SIGTERM or Ctrl+C.

SIGTERM (docker stop, systemd, Kubernetes) is taken as Ctrl+C: the server closes each
connection as going away (1001), not with an internal error (1011) from a SystemExit
raised inside the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from stream.embedded_redis import check_redis
from stream.server.config import ServerConfig, announce
from stream.server.server import CaptionServer


def serve_until_stopped(redis_url: str, config: ServerConfig) -> int:
    """Check Redis (a clear error), serve, announce the URLs, stop on a signal: 0."""
    check_redis(redis_url).close()

    async def main() -> None:
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # main thread
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        async with CaptionServer(redis_url, config) as s:
            announce(config, s.port)
            await stop.wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0
