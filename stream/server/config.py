"""The server's settings (``ServerConfig``) and how it announces itself (``banner``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from stream.server.access import exposure_warning

SERVER_NAME = "scenecast/0.1.0"
COMPRESSION = ("deflate", "none")  # of the websocket messages
MAX_MESSAGE_BYTES = 64 * 1024


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    queue_size: int = 256  # captions waiting for one client before it gets a gap
    block_ms: int = 1000  # one XREAD; short enough to notice new sources
    replay_chunk: int = 200
    attention: bool = True  # forward attention grids to clients
    compression: str = "none"  # one of COMPRESSION: see compression_extensions
    token: str | None = None  # every request but /healthz must carry it (stream/access.py)
    allow_origins: tuple[str, ...] = ()  # pages of other sites that may open /ws
    allow_hosts: tuple[str, ...] = ()  # names a loopback server answers to, besides its own
    tls_cert: str | None = None  # PEM chain: wss:// and https:// (stream/tls.py)
    tls_key: str | None = None  # its key, if not in the chain's file
    # a client's messages read at most this fast (stream/rate_limit.py), after a burst
    client_rate: float = 20.0
    client_burst: float = 100.0

    @property
    def secure(self) -> bool:
        return self.tls_cert is not None


def banner(config: ServerConfig, port: int, *, on_terminal: bool) -> list[str]:
    """What ``run`` and ``serve`` print when the server is up: its addresses, and a
    warning when it is open beyond this machine. With a token, the viewer's address
    carries it on a terminal (a link to click) and a placeholder in a log."""
    s = "s" if config.secure else ""
    everywhere = config.host in ("", "0.0.0.0", "::")
    host = "127.0.0.1" if everywhere else config.host  # browsers refuse 0.0.0.0
    host = f"[{host}]" if ":" in host else host
    query = ""
    if config.token is not None:
        query = f"?token={config.token}" if on_terminal else "?token=$SCENECAST_TOKEN"
    lines = [
        f"scenecast: captions at ws{s}://{host}:{port}/ws  (viewer http{s}://{host}:{port}/{query})"
        + ("; listening on every interface" if everywhere else "")
    ]
    warning = exposure_warning(config.host, config.token)
    return [*lines, warning] if warning else lines


def announce(config: ServerConfig, port: int) -> None:
    """Print the banner: the addresses to stdout, a warning to stderr."""
    first, *warnings = banner(config, port, on_terminal=sys.stdout.isatty())
    print(first, flush=True)
    for warning in warnings:
        print(warning, file=sys.stderr, flush=True)
