"""``scenecast listen``: a small client that prints captions as they arrive."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, TextIO

from websockets.asyncio.client import connect


def format_line(message: dict[str, Any]) -> str | None:
    """One human line per message (None: not worth a line)."""
    kind = message.get("type")
    if kind == "caption":
        t = message["t_start_ms"] / 1000
        return (
            f"[{message['source']} {t:8.2f}s #{message['seq']}] {message['text']}"
            f"  (seg {message['segment_id']}, {message['latency_ms']:.0f} ms)"
        )
    if kind == "status":
        return (
            f"[{message['source']}] status: {message['state']} {message.get('detail', '')}".rstrip()
        )
    if kind == "gap":
        return (
            f"[{message['source']}] gap: {message['dropped']} dropped; "
            f"resume after {message['resume_after']}"
        )
    if kind == "error":
        return f"error {message['code']}: {message['message']}"
    if kind == "hello":
        names = ", ".join(f"{s['source']} ({s['state']})" for s in message.get("sources", []))
        return f"connected to {message.get('server')}; sources: {names or 'none yet'}"
    return None


async def listen(
    url: str,
    *,
    sources: list[str] | None,
    after: str | None,
    as_json: bool,
    limit: int | None = None,
    out: TextIO = sys.stdout,
) -> int:
    subscribe: dict[str, Any] = {"type": "subscribe", "v": 1}
    if sources:
        subscribe["sources"] = sources
    if after:
        subscribe["after"] = after
    captions = 0
    async with connect(url, max_size=2**22) as ws:
        await ws.send(json.dumps(subscribe))
        async for raw in ws:
            message = json.loads(raw)
            if as_json:
                message.pop("attention", None)  # large; the viewer uses it, scripts rarely
                print(json.dumps(message, ensure_ascii=False), file=out, flush=True)
            else:
                line = format_line(message)
                if line:
                    print(line, file=out, flush=True)
            if message.get("type") == "caption":
                captions += 1
                if limit is not None and captions >= limit:
                    break
    return 0


def run_listen(url: str, **kwargs: Any) -> int:
    try:
        return asyncio.run(listen(url, **kwargs))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"scenecast: error: cannot connect to {url}: {exc}", file=sys.stderr)
        return 2
