import random

import redis

from tests.support.frames import publish_caption, register
from worker.bus.entries import decode_caption
from worker.bus.keys import captions_key
from worker.bus.segments import is_last_of_segment, normalize_text, segment_ids


def test_consecutive_same_texts_share_a_segment() -> None:
    ids = segment_ids(["a", "a", "b", "b", "b", "a"])
    assert ids == [0, 0, 1, 1, 1, 2]
    assert is_last_of_segment(ids) == [False, True, False, False, True, True]
    assert segment_ids([]) == [] and is_last_of_segment([]) == []


def test_segments_compare_normalised_text() -> None:
    assert normalize_text("  A dog\t runs\n") == "a dog runs"
    assert segment_ids(["A dog  runs", "a dog runs ", "a\tDOG\nruns", "a cat", "A cat"]) == [
        0,
        0,
        0,
        1,
        1,
    ]


def test_the_publish_script_assigns_the_same_segments_as_offline_output(
    redis_client: redis.Redis,
) -> None:
    """Live captions (Lua, in Redis) and `scenecast caption` files follow one rule."""
    rng = random.Random(3)
    texts = [rng.choice(["a dog", "A  dog", "a cat", "the sea ", "The sea"]) for _ in range(60)]
    register(redis_client, "seg", live=False)
    for seq, text in enumerate(texts):
        assert publish_caption(redis_client, "seg", seq, text)
    published = [decode_caption(f) for _, f in redis_client.xrange(captions_key("seg"))]
    assert [c.segment_id for c in published] == segment_ids(texts)
    assert len(set(segment_ids(texts))) > 10  # the texts did change often
