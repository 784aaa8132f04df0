"""A live camera and a file job on one worker: the camera's captions while the job runs.

`python -m bench.live_beside_job [--seconds 45] [--no-cap]` runs, against an embedded
redis-server, the demo video as a 1-fps camera and a 60-s generated video as a file
job sampled at 10 fps (600 frames), with one in-process worker (the bundled model,
beam 5, batch 32, max age 3 s). It prints the camera's frames sampled, captioned and
skipped as stale, their latency while the job ran, and when the job finished.
``--no-cap`` switches off the live batch cap (worker/batching.py ``live_batch_cap``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

from captioner.api import Captioner
from stream.capture.capture import Capture, CaptureConfig
from stream.demo_video import demo_video_path
from stream.embedded_redis import EmbeddedRedis
from stream.sources.spec import parse_source
from tests.support.videos import make_video
from worker.batching import BatchPolicy
from worker.bus.entries import decode_caption
from worker.bus.keys import captions_key
from worker.worker import Worker, WorkerConfig

JOB_FRAMES = 600


def _redis_ms(client: Any) -> float:
    seconds, micros = client.time()
    return float(seconds * 1000 + micros / 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--no-cap", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis() as server:
        scenes = [((int(c), 255 - int(c), 90), 2.0) for c in np.linspace(0, 255, 30)]
        video = make_video(Path(tmp) / "job.mp4", scenes=scenes, fps=10, size=(640, 360))
        client = redis.Redis.from_url(server.url)
        cap = Captioner.load()

        def caption(images: Any, sources: Any, shown: Any) -> Any:
            return cap.caption(list(images), beam=5, sources=sources, shown=shown)

        policy = BatchPolicy(max_batch=32, max_wait_ms=50, max_age_ms=3000)
        worker = Worker(client, caption, WorkerConfig(policy=policy))
        if args.no_cap:
            worker._batch_limit = lambda: None  # type: ignore[method-assign]
        camera = parse_source(str(demo_video_path()), name="cam", live=True)
        live = Capture(client, camera, CaptureConfig(fps=1, loop=True))
        job = Capture(
            client, parse_source(str(video), name="job", live=False), CaptureConfig(fps=10)
        )
        threads = [threading.Thread(target=c.run, daemon=True) for c in (live, job)]
        for t in threads:
            t.start()
        start = time.monotonic()
        finished: list[float] = []  # (seconds, Redis ms) when the job's last caption was out

        def until() -> bool:
            if not finished and client.xlen(captions_key("job")) >= JOB_FRAMES:
                finished.extend([time.monotonic() - start, _redis_ms(client)])
            return time.monotonic() - start > args.seconds

        worker.run(until=until)
        live.stop()
        job.stop()
        for t in threads:
            t.join(30)
        entries = list(client.xrange(captions_key("cam")))
        end_ms = finished[1] if finished else float("inf")
        during = [
            decode_caption(f).latency_ms for i, f in entries if int(i.split(b"-")[0]) < end_ms
        ]
        print(
            f"camera: {live.sampled} sampled, {len(entries)} captioned, {worker.stats.stale} "
            f"stale; while the job ran: {len(during)} captions, latency p50 "
            f"{statistics.median(during):.0f} ms, max {max(during):.0f} ms; job: {JOB_FRAMES} "
            f"frames in {finished[0] if finished else float('nan'):.1f} s"
            + (" (no live cap)" if args.no_cap else "")
        )


if __name__ == "__main__":
    main()
