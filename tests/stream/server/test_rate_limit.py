"""A client's messages: a burst at once, then at the sustained rate (pure)."""

from __future__ import annotations

import pytest

from stream.server.rate_limit import TokenBucket


def test_a_burst_goes_at_once_and_the_rest_at_the_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=3.0)
    waits = [bucket.wait_s(now=100.0) for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.1, 0.2])  # the 4th after 0.1 s, the 5th after 0.2 s


def test_a_quiet_spell_refills_the_bucket_up_to_the_burst_only() -> None:
    bucket = TokenBucket(rate=10.0, burst=3.0)
    for _ in range(3):
        bucket.wait_s(now=0.0)
    assert bucket.wait_s(now=0.05) == pytest.approx(0.05)  # half a token back: wait half
    assert bucket.wait_s(now=60.0) == 0.0  # a minute later: full again, but not above 3
    assert [bucket.wait_s(now=60.0) for _ in range(3)] == pytest.approx([0.0, 0.0, 0.1])


def test_a_client_at_the_rate_never_waits() -> None:
    bucket = TokenBucket(rate=2.0, burst=1.0)
    assert all(bucket.wait_s(now=t * 0.5) == 0.0 for t in range(100))
