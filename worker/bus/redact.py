"""URLs as they may be shown: without what may be a secret (a password, a query)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_URL_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def redact_url(url: str) -> str:
    """``url`` without its password and query (both may carry secrets); others unchanged."""
    if _URL_RE.match(url) is None:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # e.g. a port that is not a number
        return f"{url.split('://', 1)[0]}://…"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if parts.username is not None:
        secret = ":***" if parts.password is not None else ""
        netloc = f"{parts.username}{secret}@{netloc}"
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"
