"""The Lua scripts that run inside Redis, shipped as ``.lua`` files in ``worker/bus/lua/``.

Each file starts with what its ``KEYS`` and ``ARGV`` are and what it returns. Every
script touches the keys of one source only (one hash tag), so it runs on a Redis
Cluster too. Read once, at import, like dramatiq's Redis broker.
"""

from __future__ import annotations

from importlib import resources


def lua(name: str) -> str:
    """The text of ``worker/bus/lua/NAME.lua``."""
    return resources.files("worker.bus").joinpath(f"lua/{name}.lua").read_text(encoding="utf-8")
