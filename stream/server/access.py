"""Who may use the server: an access token, the websocket's Origin, the Host asked for.

The server hands out what a camera sees — captions, and the frames themselves — so it
answers only requests it can tell are meant for it. Three checks, each pure (a path
and headers in, a refusal or None out), applied by ``stream.server.server`` to every request
but ``/healthz``:

- **Token** (``--token``, ``SCENECAST_TOKEN``; off unless given): every request must
  carry it, as ``Authorization: Bearer TOKEN`` (scripts, ``scenecast listen``,
  Prometheus) or as ``?token=TOKEN`` in the URL (browsers: their WebSocket API cannot
  set headers; the viewer takes it from its own address). Compared in constant time.
- **Origin** of a websocket handshake: browsers let any page open a websocket to any
  address, so without this a page on another site the user visits could read their
  cameras' captions (cross-site websocket hijacking). A handshake without an Origin
  (not a browser) is accepted; one from a page is accepted when the page came from
  this server (the Origin's host is the request's Host, or the ``X-Forwarded-Host`` a
  reverse proxy set) or from an origin given with ``--allow-origin``.
- **Host**, when the server listens on a loopback address only: the request must be
  addressed to a loopback name (``localhost``, ``*.localhost``, ``127.x.x.x``,
  ``[::1]``) or to a name given with ``--allow-host`` (a reverse proxy on the same
  machine that passes its public Host on, as Caddy does). Otherwise a page on another
  site could rename itself to 127.0.0.1 (DNS rebinding) and then read everything as a
  page of this server. (``X-Forwarded-Host`` cannot stand in here: such a page may
  set it.)

A server that listens beyond the machine without a token is open to whoever can reach
its port: ``exposure_warning`` says so at start-up.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from stream.exceptions import AccessSettingError

MIN_TOKEN_CHARS = 16
TOKEN_HINT = 'make one with: python3 -c "import secrets; print(secrets.token_urlsafe(24))"'
OPEN_PATHS = frozenset({"/healthz"})  # load balancers and container health checks
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_DEFAULT_PORTS = {"http": "80", "ws": "80", "https": "443", "wss": "443"}


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: its HTTP status, a reason for the metrics and a line
    for whoever sent it."""

    status: HTTPStatus
    reason: str  # token | origin | host
    message: str


@dataclass(frozen=True)
class Access:
    token: str | None = None
    origins: tuple[str, ...] = ()  # normalised ("https://host:port"), or ("*",)
    loopback_only: bool = False  # the server listens on a loopback address only
    hosts: tuple[str, ...] = ()  # other names a loopback server answers to (lower case)

    def refusal(self, target: str, headers: Mapping[str, str]) -> Refusal | None:
        """None if the request for ``target`` (path and query) with ``headers`` (a
        case-insensitive mapping) may be answered, else why not."""
        path = urlsplit(target).path
        if path in OPEN_PATHS:
            return None
        host = headers.get("Host", "")
        name = _hostname(host)
        if self.loopback_only and not (is_loopback_name(name) or name in self.hosts):
            return Refusal(
                HTTPStatus.FORBIDDEN,
                "host",
                f"requests for host {host!r} are refused: this server listens on a "
                "loopback address, so it answers only requests addressed to localhost or "
                "127.0.0.1 (a defence against DNS rebinding); behind a reverse proxy that "
                "passes that name on, --allow-host NAME; to be reached by other names, "
                "listen on them (--host 0.0.0.0) with a --token",
            )
        if path == "/ws":
            origin = headers.get("Origin")
            if origin is not None and not self.origin_allowed(origin, headers):
                return Refusal(
                    HTTPStatus.FORBIDDEN,
                    "origin",
                    f"websocket from a page of {origin} refused: only pages served by "
                    f"this server ({host}) may connect, or the origins given with "
                    "--allow-origin (e.g. --allow-origin https://dash.example.com)",
                )
        if self.token is None:
            return None
        given = request_token(target, headers)
        if given is None:
            return Refusal(
                HTTPStatus.UNAUTHORIZED,
                "token",
                "this server needs its access token: send 'Authorization: Bearer TOKEN' "
                "or add ?token=TOKEN to the URL (scenecast listen --token / SCENECAST_TOKEN)",
            )
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return Refusal(
                HTTPStatus.UNAUTHORIZED,
                "token",
                "wrong access token: it is not the one this server was started with "
                "(--token / SCENECAST_TOKEN)",
            )
        return None

    def origin_allowed(self, origin: str, headers: Mapping[str, str]) -> bool:
        if "*" in self.origins:
            return True
        normal = normal_origin(origin)
        if normal is None:  # "null" (a file:// or sandboxed page), or garbage
            return False
        if normal in self.origins:
            return True
        netloc = normal.split("://", 1)[1]
        forwarded = headers.get("X-Forwarded-Host", "").split(",", 1)[0]
        return any(
            netloc == _normal_host(h, normal.split("://", 1)[0])
            for h in (headers.get("Host", ""), forwarded)
            if h.strip()
        )


def request_token(target: str, headers: Mapping[str, str]) -> str | None:
    """The token a request carries: its ``Authorization: Bearer`` header, else its
    ``token`` query parameter; None when it has neither."""
    scheme, _, credentials = headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    values = parse_qs(urlsplit(target).query).get("token")
    return values[0] if values else None


def access_token(text: str) -> str:
    """The ``--token`` argument type. Its errors never repeat the value: a secret."""
    if len(text) < MIN_TOKEN_CHARS:
        raise AccessSettingError(
            f"an access token needs at least {MIN_TOKEN_CHARS} characters, the one given "
            f"has {len(text)} ({TOKEN_HINT})"
        )
    if not text.isascii() or not text.isprintable() or " " in text:
        raise AccessSettingError(
            "an access token is printable ASCII without spaces (it travels in a URL and "
            f"an HTTP header); {TOKEN_HINT}"
        )
    return text


access_token.secret = True  # type: ignore[attr-defined]  # settings hide its value


def allowed_origins(text: str) -> tuple[str, ...]:
    """The ``--allow-origin`` argument type: ``*``, or origins separated by commas."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if items == ["*"]:
        return ("*",)
    out = []
    for item in items:
        normal = normal_origin(item)
        if normal is None or "*" in item:
            raise AccessSettingError(
                f"{item!r} is not an origin; accepted: scheme://host[:port] with scheme "
                "http or https (e.g. https://dash.example.com,http://localhost:3000), "
                "separated by commas, or * for any page"
            )
        out.append(normal)
    if not out:
        raise AccessSettingError("expected one or more origins, or *")
    return tuple(out)


def allowed_hosts(text: str) -> tuple[str, ...]:
    """The ``--allow-host`` argument type: host names (no port), separated by commas."""
    names = tuple(item.strip().lower().rstrip(".") for item in text.split(",") if item.strip())
    for name in names:
        if not _HOST_NAME.fullmatch(name):
            raise AccessSettingError(
                f"{name!r} is not a host name; accepted: names such as cams.example.com "
                "(no scheme, no port), separated by commas"
            )
    if not names:
        raise AccessSettingError("expected one or more host names")
    return names


def normal_origin(origin: str) -> str | None:
    """``HTTPS://Dash.Example.com:443`` → ``https://dash.example.com``; None if it is
    not an http(s) origin (a path, a query, userinfo or ``null`` make it none)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if (
        scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        return None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    keep_port = port is not None and str(port) != _DEFAULT_PORTS[scheme]
    return f"{scheme}://{host}:{port}" if keep_port else f"{scheme}://{host}"


def _normal_host(host: str, scheme: str) -> str:
    """A Host header as an origin's netloc: lower case, the scheme's default port off."""
    host = host.strip().lower()
    default = ":" + _DEFAULT_PORTS.get(scheme, "")
    return host[: -len(default)] if host.endswith(default) else host


def _hostname(host: str) -> str:
    """``[::1]:8765`` → ``::1``; ``localhost:8765`` → ``localhost``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback_name(name: str) -> bool:
    """``localhost``, a ``.localhost`` name (RFC 6761: browsers resolve them to the
    machine itself), or a loopback IP address."""
    name = name.strip().lower().rstrip(".").strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposure_warning(listen_host: str, token: str | None) -> str | None:
    """A start-up warning when the server is reachable beyond this machine and open."""
    if token is not None or is_loopback_name(listen_host):
        return None
    return (
        f"scenecast: warning: listening on {listen_host} without a --token: anyone who "
        "can reach this port can read the captions and see the frames; set "
        f"SCENECAST_TOKEN ({TOKEN_HINT})"
    )
