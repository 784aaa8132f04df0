"""Start-up: how long a user waits for the first caption.

`python -m bench.startup` times, from the command's start (median of --runs):
- `scenecast run --live --loop` on the demo video: its banner (the viewer's link), and
  the first caption a `scenecast listen` started right after the banner receives;
- `scenecast caption` of a 2-second clip (most of it is start-up);
- `scenecast --help`.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stream.demo_video import demo_video_path

SCENECAST = [sys.executable, "-m", "stream.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def time_run() -> tuple[float, float]:
    """Seconds to the banner and to the first caption of ``run --live --loop``."""
    port = _free_port()
    start = time.monotonic()
    run = subprocess.Popen(
        [*SCENECAST, "run", "--live", "--loop", str(demo_video_path()), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert run.stdout is not None
    try:
        for line in run.stdout:
            if "captions at" in line:
                break
        banner = time.monotonic() - start
        listen = subprocess.Popen(
            [*SCENECAST, "listen", "--url", f"ws://127.0.0.1:{port}/ws", "--limit", "1"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listen.stdout is not None
        for line in listen.stdout:
            if line.startswith("[") and "#" in line:  # a caption, not a status
                break
        first = time.monotonic() - start
        listen.kill()
        listen.wait()
    finally:
        run.terminate()
        run.wait(30)
    return banner, first


def time_command(argv: list[str]) -> float:
    start = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from tests.support.videos import make_video

    with tempfile.TemporaryDirectory() as tmp:
        clip = make_video(
            Path(tmp) / "clip.mp4",
            scenes=[((200, 40, 40), 1.0), ((40, 200, 40), 1.0)],
            size=(640, 360),
        )
        caption = [*SCENECAST, "caption", str(clip), "-o", str(Path(tmp) / "clip.vtt")]
        runs = [time_run() for _ in range(args.runs)]
        captions = [time_command(caption) for _ in range(args.runs)]
        helps = [time_command([*SCENECAST, "--help"]) for _ in range(args.runs)]
    median = statistics.median
    each = ", ".join(f"{banner:.2f}/{first:.2f}" for banner, first in runs)
    print(
        f"run: banner {median(r[0] for r in runs):.2f} s, first caption "
        f"{median(r[1] for r in runs):.2f} s (runs: {each})"
    )
    print(
        f"caption, 2-s clip: {median(captions):.2f} s ({', '.join(f'{c:.2f}' for c in captions)})"
    )
    print(f"--help: {median(helps):.2f} s")


if __name__ == "__main__":
    main()
