"""Reconnect delays: exponential with jitter, capped. Pure.

Shared by capture (a lost camera or stream, a lost Redis) and the worker (a lost Redis).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator


def backoff_delays(
    base: float = 0.5,
    cap: float = 30.0,
    factor: float = 2.0,
    jitter: float = 0.2,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Endless reconnect delays (s): base, base·factor, … up to ``cap``, each ± ``jitter``.

    The un-jittered delay ``d = min(cap, base·factorⁿ)`` never decreases; the delay
    given is ``d·(1 + u)`` with ``u`` uniform in [−jitter, +jitter], so sources that
    failed together do not reconnect together, and never more than ``cap`` (at the
    cap the jitter only shortens). Start a new generator after a success.
    """
    if not (base > 0 and math.isfinite(base)):
        raise ValueError(f"base must be a positive number of seconds, got {base}")
    if not (cap >= base and math.isfinite(cap)):
        raise ValueError(f"cap must be at least base ({base}), got {cap}")
    if not (factor >= 1 and math.isfinite(factor)):
        raise ValueError(f"factor must be at least 1, got {factor}")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be a fraction in [0, 1), got {jitter}")
    rng = rng or random.Random()
    delay = base
    while True:
        yield min(cap, delay * (1.0 + rng.uniform(-jitter, jitter)))
        delay = min(cap, delay * factor)
