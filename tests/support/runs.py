"""`scenecast run` as a real process: started on a free port, stopped with Ctrl+C,
checked to leave no orphans."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import psutil
from websockets.asyncio.client import connect

from tests.conftest import TIMEOUT_FACTOR

T = 30.0 * TIMEOUT_FACTOR
SCENES = [((0, 0, 200), 2.0), ((0, 200, 0), 2.0), ((200, 0, 0), 2.0)]  # BGR, seconds


def start_run(args: Sequence[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "run", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + T
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "captions at ws://" in line:
            return proc, line.split("captions at ")[1].split()[0]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    output, _ = proc.communicate()
    raise AssertionError(f"run did not start: {output}")


def stop_run(proc: subprocess.Popen[str]) -> None:
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "run should have a worker and a redis-server as children"
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=T)  # drains and closes the pipe
    assert proc.returncode == 0, output
    _gone, alive = psutil.wait_procs(children, timeout=T)
    assert not alive, f"orphans left behind: {alive}"


async def collect_run(url: str, n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every caption from the start (at least ``n``) and the statuses, until ``ended``."""
    captions, statuses = [], []
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "subscribe", "after": "0"}))
        while len(captions) < n or not any(s["state"] == "ended" for s in statuses):
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), T))
            except TimeoutError:
                raise AssertionError(f"timed out with {captions} {statuses}") from None
            if message["type"] == "caption":
                captions.append(message)
            elif message["type"] == "status":
                statuses.append(message)
            elif message["type"] == "hello":
                statuses += [{"state": s["state"]} for s in message["sources"]]
    return captions, statuses


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
