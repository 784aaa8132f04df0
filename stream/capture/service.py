"""Run a capture as a process: Ctrl+C or SIGTERM stops it so the source's last state is
"ended" (interrupted, a capture said "live" to the end and was then shown as gone
silent); a second signal stops it at once."""

from __future__ import annotations

import signal

from stream.capture.capture import Capture, CaptureConfig
from stream.embedded_redis import check_redis
from stream.sources.spec import SourceSpec


def run_capture(redis_url: str, spec: SourceSpec, config: CaptureConfig) -> int:
    """0 when the capture ended; 1 when a file job lost frames to a Redis that came back
    empty (said in the log); 130 on a second Ctrl+C."""
    capture = Capture(check_redis(redis_url), spec, config)
    signals = 0

    def on_signal(signum: int, frame: object) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            raise KeyboardInterrupt
        capture.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        capture.run()
    except KeyboardInterrupt:
        capture.stop()
        return 130
    return 1 if capture.redis_data_lost and not spec.live else 0
