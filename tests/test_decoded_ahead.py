"""DecodedAhead: frames decoded ahead, taken once by key, oldest forgotten first."""

from __future__ import annotations

import pytest

from worker.decoded_ahead import MISSING, DecodedAhead


def test_take_gives_the_image_once_and_missing_after() -> None:
    ahead = DecodedAhead(4)
    ahead.put("a/1", "image 1")
    assert ahead.take("a/1") == "image 1"
    assert ahead.take("a/1") is MISSING
    assert ahead.take("never") is MISSING


def test_a_frame_that_did_not_decode_is_none_not_missing() -> None:
    ahead = DecodedAhead(4)
    ahead.put("a/2", None)
    assert ahead.take("a/2") is None


def test_the_oldest_frames_are_forgotten_beyond_capacity() -> None:
    ahead = DecodedAhead(3)
    for i in range(5):
        ahead.put(f"a/{i}", i)
    assert len(ahead) == 3
    assert [ahead.take(f"a/{i}") for i in range(5)] == [MISSING, MISSING, 2, 3, 4]


def test_putting_a_key_again_makes_it_the_newest() -> None:
    ahead = DecodedAhead(2)
    ahead.put("a/0", 0)
    ahead.put("a/1", 1)
    ahead.put("a/0", "again")
    ahead.put("a/2", 2)  # forgets a/1, the oldest now
    assert ahead.take("a/1") is MISSING
    assert ahead.take("a/0") == "again"


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        DecodedAhead(0)
