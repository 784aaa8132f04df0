"""A CaptionServer for a test's body, and reading its messages (real sockets)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection

from stream.server.server import CaptionServer, ServerConfig
from tests.conftest import TIMEOUT_FACTOR

T = 5.0 * TIMEOUT_FACTOR


def run_server(
    redis_url: str,
    body: Callable[[CaptionServer], Awaitable[None]],
    config: ServerConfig | None = None,
) -> None:
    """Start a server on a free port, await ``body(server)`` (within 4 T), stop it."""

    async def main() -> None:
        async with CaptionServer(redis_url, config or ServerConfig(port=0, block_ms=100)) as server:
            await asyncio.wait_for(body(server), T * 4)

    asyncio.run(main())


async def recv(ws: ClientConnection, type_: str | None = None) -> dict[str, Any]:
    """The next message (of ``type_``, the others skipped), within T."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), T))
        if type_ is None or message["type"] == type_:
            return message


def ws_url(server: CaptionServer) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"
