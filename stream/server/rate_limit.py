"""How fast one websocket client may send: a token bucket, pure (the clock is given).

A client's messages each cost the server work and usually a reply (``pong``,
``error``, a replay), all on the one event loop every client shares: one client
flooding pings stalled every other client's captions by seconds and queued its own
replies without bound. So the server reads a client's messages no faster than
``rate`` a second after a ``burst``; a client that sends faster is read later (its
socket fills and TCP slows it down), never cut off and never answered out of order.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate: float  # messages a second, sustained
    burst: float  # messages at once, after a quiet spell
    tokens: float | None = None  # None: full (set on the first call); < 0: in debt
    at: float = 0.0  # the clock's time of the last update

    def wait_s(self, now: float) -> float:
        """Take one message at time ``now`` (seconds); returns how long to wait before
        handling it (0: at once). Each call is one message, whatever the wait."""
        tokens = self.burst if self.tokens is None else self.tokens
        tokens = min(self.burst, tokens + (now - self.at) * self.rate) - 1.0
        self.tokens, self.at = tokens, now
        return 0.0 if tokens >= 0 else -tokens / self.rate
