"""Progress of a captioning job: counts, one formatted line, a bar redrawn on a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class Progress:
    """Where a captioning job is; handed to ``caption_video``'s ``progress`` callback."""

    frames_read: int  # frames of the file read so far (sampled or not)
    frame_count: int | None  # frames the container says it has (an estimate; None: unknown)
    sampled: int  # frames sampled so far
    captioned: int  # of which captioned
    elapsed_s: float
    done: bool = False

    @property
    def fraction(self) -> float | None:
        """Share of the job done, in [0, 1]; None while it cannot be estimated."""
        if self.done:
            return 1.0
        if not self.frame_count or not self.frames_read or not self.sampled:
            return None
        read = min(1.0, self.frames_read / self.frame_count)
        expected = self.sampled / read  # samples the whole file will give, at this density
        return min(1.0, read, self.captioned / expected)

    @property
    def eta_s(self) -> float | None:
        f = self.fraction
        if f is None or f <= 0 or self.elapsed_s <= 0:
            return None
        return self.elapsed_s * (1.0 - f) / f


ProgressFn = Callable[[Progress], None]


def format_progress(p: Progress, *, width: int = 20) -> str:
    """``[#####-----]  50% | 12 sampled | 11 captioned | 3.2 captions/s | ETA 0:07``."""
    parts = []
    f = p.fraction
    if f is not None:
        filled = round(f * width)
        parts.append(f"[{'#' * filled}{'-' * (width - filled)}] {f * 100:3.0f}%")
    rate = p.captioned / p.elapsed_s if p.elapsed_s > 0 else 0.0
    parts += [f"{p.sampled} sampled", f"{p.captioned} captioned", f"{rate:.1f} captions/s"]
    eta = p.eta_s
    if eta is not None and not p.done:
        parts.append(f"ETA {_clock(eta)}")
    elif p.done:
        parts.append(f"took {_clock(p.elapsed_s)}")
    return " | ".join(parts)


def _clock(seconds: float) -> str:
    s = round(seconds)
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """One line redrawn in place with ``\\r`` (at most ``every_s`` apart) on a terminal."""

    def __init__(self, stream: TextIO, *, every_s: float = 0.1) -> None:
        self.stream = stream
        self.every_s = every_s
        self._drawn_at: float | None = None
        self._width = 0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if not p.done and self._drawn_at is not None and now - self._drawn_at < self.every_s:
            return
        line = format_progress(p)
        self.stream.write("\r" + line + " " * max(0, self._width - len(line)))
        self.stream.flush()
        self._width = len(line)
        self._drawn_at = now

    def close(self) -> None:
        """End the line (call once, on success or failure)."""
        if self._drawn_at is not None:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn_at = None
