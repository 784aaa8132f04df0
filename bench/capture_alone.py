"""Capture alone: how fast one file job's capture fills Redis with no worker.

`python -m bench.capture_alone` runs capture on the `bench pipeline` video into an
embedded redis-server with no backlog limit, and prints frames/s and the capture
process's CPU per frame (all its threads). That is the frame supply a file job can
have on this host: a `bench pipeline` job slower than this waits on the worker.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import redis

from stream.bench.pipeline import make_bench_video
from stream.capture.capture import Capture, CaptureConfig
from stream.embedded_redis import EmbeddedRedis
from stream.sources.spec import parse_source
from worker.bus.keys import frames_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=1600)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis() as server:
        video = make_bench_video(Path(tmp) / "file.mp4", seconds=args.frames / 10 + 0.5, fps=10)
        client = redis.Redis.from_url(server.url)
        for run in range(args.runs):
            spec = parse_source(str(video), name=f"alone{run}")
            capture = Capture(client, spec, CaptureConfig(fps=10.0, max_backlog=10**9))
            wall, cpu = time.perf_counter(), time.process_time()
            capture.run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            frames = int(client.xlen(frames_key(spec.name)))
            print(
                f"run {run + 1}: {frames} frames in {wall:.2f} s = {frames / wall:.0f} frames/s, "
                f"{1000 * cpu / frames:.2f} ms of CPU per frame"
            )
            client.delete(frames_key(spec.name))
        client.close()


if __name__ == "__main__":
    main()
