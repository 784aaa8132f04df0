"""``scenecast bench server``: how many websocket clients one server process feeds.

A ``scenecast serve`` process (as deployed) reads captions that a publisher here
writes to Redis at a fixed rate, the way workers do (the same Lua script, captions
of 10 words with their 7×7 attention grids, as the viewer receives them), and fans
them out to N clients, all subscribed to every source. For each N it reports the
messages delivered against those due, the publish → client latency (p50 / p95 /
p99), the gaps (a client's queue overflowed), and the CPU time of the server and of
this process (the clients): on a small machine the clients' side can be the limit,
and the two figures say which side it was.

Latency is measured on a sample of clients (``SAMPLED``) that parse every message;
the others count them. The clock is the same: everything runs on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import psutil
import redis
from websockets.asyncio.client import ClientConnection, connect

from stream.embedded_redis import EmbeddedRedis, free_port
from worker.bus.entries import CaptionEntry, StatusEntry, quantize_attention
from worker.bus.keys import SOURCES_KEY
from worker.bus.publish import PUBLISH_LUA, Publication, publish_args

SAMPLED = 16  # clients that parse every message for its latency
WORDS = ["a", "man", "in", "a", "black", "shirt", "standing", "in", "front", "of", "a", "building"]


@dataclass
class Row:
    clients: int
    due: int  # messages the clients should have received in the window
    delivered: int
    gaps: int
    latencies_ms: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0
    clients_cpu_s: float = 0.0
    seconds: float = 0.0

    def format(self) -> str:
        q = (
            statistics.quantiles(self.latencies_ms, n=100)
            if len(self.latencies_ms) > 1
            else [float("nan")] * 99
        )
        return (
            f"| {self.clients} | {self.due / self.seconds:,.0f} | "
            f"{self.delivered / self.seconds:,.0f} | {self.delivered / max(1, self.due):.1%} | "
            f"{q[49]:.1f} | {q[94]:.1f} | {q[98]:.1f} | {self.gaps} | "
            f"{self.server_cpu_s / self.seconds:.0%} | {self.clients_cpu_s / self.seconds:.0%} |"
        )


HEADER = (
    "| clients | due msg/s | delivered msg/s | delivered | p50 ms | p95 ms | p99 ms | gaps "
    "| server CPU | clients CPU |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def caption_entry(source: str, seq: int, rng: np.random.Generator) -> CaptionEntry:
    """A caption as a worker stores it, stamped with the time it is published."""
    words = WORDS[: 6 + seq % 5]
    maps = rng.random((len(words), 7, 7)).astype(np.float32)
    return CaptionEntry(
        source=source,
        seq=seq,
        pts_ms=seq * 1000.0,
        end_ms=(seq + 1) * 1000.0,
        capture_ns=time.time_ns(),
        text=" ".join(words),
        tokens=words,
        score=-5.0,
        model="bench",
        latency_ms=100.0,
        attention=quantize_attention(maps),
        grid=(7, 7),
        fit="letterbox",
    )


class Publisher(threading.Thread):
    """Publishes ``rate`` captions a second, round robin over ``sources``."""

    def __init__(self, client: redis.Redis, sources: Sequence[str], rate: float) -> None:
        super().__init__(name="publisher", daemon=True)
        self.client, self.sources, self.rate = client, list(sources), rate
        self.published = 0
        self.halt = threading.Event()
        self._script = client.register_script(PUBLISH_LUA)

    def run(self) -> None:
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        while not self.halt.is_set():
            due = int((time.perf_counter() - start) * self.rate)
            pipe = self.client.pipeline(transaction=False)
            for n in range(self.published, due):
                source = self.sources[n % len(self.sources)]
                seq = n // len(self.sources)
                frame_id = f"{seq + 1}-0"
                keys, argv = publish_args(
                    Publication(caption_entry(source, seq, rng), frame_id, maxlen=10_000)
                )
                self._script(keys=keys, args=argv, client=pipe)
            if due > self.published:
                pipe.execute()
                self.published = due
            time.sleep(0.002)


@dataclass
class _Counts:
    received: int = 0
    gaps: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    measuring: bool = False


async def _client(ws: ClientConnection, counts: _Counts, sampled: bool) -> None:
    async for raw in ws:
        if not counts.measuring:
            continue
        if not sampled:  # messages start {"type":"...": see stream.protocol's to_json
            head = str(raw)[:20]
            if head.startswith('{"type":"caption"'):
                counts.received += 1
            elif head.startswith('{"type":"gap"'):
                counts.gaps += 1
            continue
        now_ns = time.time_ns()
        message = json.loads(raw)
        if message["type"] == "caption":
            counts.received += 1
            sent = datetime.fromisoformat(message["capture_ts"]).timestamp()
            counts.latencies_ms.append((now_ns / 1e9 - sent) * 1000.0)
        elif message["type"] == "gap":
            counts.gaps += 1


@contextlib.contextmanager
def _server(redis_url: str, compression: str) -> Iterator[tuple[int, psutil.Process]]:
    port = free_port()
    argv = ["serve", "--redis-url", redis_url, "--port", str(port), "--compression", compression]
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", *argv], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.1)
        yield port, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # too busy to drain: the figures are taken
            proc.kill()
            proc.wait()


async def _measure(port: int, server: psutil.Process, clients: int, seconds: float) -> Row:
    counts = [_Counts() for _ in range(clients)]
    sockets: list[ClientConnection] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for _ in range(clients):
            ws = await connect(
                f"ws://127.0.0.1:{port}/ws", max_queue=None, open_timeout=60, close_timeout=1
            )
            sockets.append(ws)
            await ws.send(json.dumps({"type": "subscribe"}))
        tasks = [
            asyncio.create_task(_client(ws, c, i < SAMPLED))
            for i, (ws, c) in enumerate(zip(sockets, counts, strict=True))
        ]
        await asyncio.sleep(1.0)  # every subscription in place, the queues settled
        me = psutil.Process()
        cpu0, mine0 = server.cpu_times(), me.cpu_times()
        for c in counts:
            c.measuring = True
        await asyncio.sleep(seconds)
        for c in counts:
            c.measuring = False
        cpu1, mine1 = server.cpu_times(), me.cpu_times()
    finally:
        # all at once: a saturated server answers each closing handshake late
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return Row(
        clients=clients,
        due=0,  # filled in by the caller: the captions published in the window, each
        delivered=sum(c.received for c in counts),
        gaps=sum(c.gaps for c in counts),
        latencies_ms=[x for c in counts for x in c.latencies_ms],
        server_cpu_s=(cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        clients_cpu_s=(mine1.user + mine1.system) - (mine0.user + mine0.system),
        seconds=seconds,
    )


def run_bench(
    *, clients: Sequence[int], rate: float, sources: int, seconds: float, compression: str
) -> str:
    rows = measure(
        clients=clients, rate=rate, sources=sources, seconds=seconds, compression=compression
    )
    return "\n".join(
        [
            f"{rate:g} captions/s over {sources} sources (10-word captions with 7x7 "
            f"attention), {seconds:g} s per row; latency from {SAMPLED} clients; server "
            f"--compression {compression}",
            "",
            HEADER,
            *(row.format() for row in rows),
        ]
    )


def measure(
    *, clients: Sequence[int], rate: float, sources: int, seconds: float, compression: str
) -> list[Row]:
    """One row per client count, against one server process and one Redis."""
    names = [f"cam{i}" for i in range(sources)]
    rows = []
    with EmbeddedRedis() as embedded:
        client = redis.Redis.from_url(embedded.url)
        for name in names:
            status = StatusEntry(name, "live", "bench", time.time_ns())
            client.hset(SOURCES_KEY, name, status.to_json())
        with _server(embedded.url, compression) as (port, server):
            publisher = Publisher(client, names, rate)
            publisher.start()
            try:
                for n in clients:
                    row = asyncio.run(_measure(port, server, n, seconds))
                    row.due = round(rate * seconds) * n  # to each client, in the window
                    rows.append(row)
            finally:
                publisher.halt.set()
                publisher.join(5)
        client.close()
    return rows


def report_server(
    *, clients: Sequence[int], rate: float, sources: int, seconds: float, compression: str
) -> None:
    """``scenecast bench server``: the machine, then the table."""
    import platform

    from stream.bench.context import host_line

    print(f"scenecast bench server — {host_line()}, Python {platform.python_version()}")
    print(
        run_bench(
            clients=clients, rate=rate, sources=sources, seconds=seconds, compression=compression
        )
    )
