"""The default model bundled in the package captions real photos sensibly.

These checks fail for an untrained (or wrongly loaded) model: the words must
name what is in the photo.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from captioner import Captioner
from captioner.encoder import CPU_ENCODER_CHUNK
from captioner.sample_photos import load_rgb, sample_paths


@pytest.fixture(scope="module")
def cap() -> Captioner:
    return Captioner.load(device="cpu")  # no path: the bundled default


def _photo(name: str):  # type: ignore[no-untyped-def]
    return load_rgb(next(p for p in sample_paths() if p.stem == name))


def test_bundled_model_names_the_cat(cap: Captioner) -> None:
    (caption,) = cap.caption([_photo("chelsea")], beam=3)
    assert {"cat", "kitten", "cats"} & set(caption.tokens), caption.text
    assert 3 <= len(caption.tokens) <= 20


def test_bundled_model_names_the_coffee(cap: Captioner) -> None:
    (coffee,) = cap.caption([_photo("coffee")], beam=3)
    assert {"coffee", "cup", "espresso", "mug"} & set(coffee.tokens), coffee.text


def test_bundled_model_batched_equals_one_by_one(cap: Captioner) -> None:
    images = [load_rgb(p) for p in sample_paths()]
    batched = cap.caption(images, beam=3)
    single = [cap.caption([im], beam=3)[0] for im in images]
    assert [c.tokens for c in batched] == [c.tokens for c in single]
    assert len({c.text for c in batched}) == len(images)


def test_cpu_encoder_chunks_give_the_features_of_one_batch(cap: Captioner) -> None:
    # 12 images: chunks of CPU_ENCODER_CHUNK (8) and 4 on the CPU.
    images = [load_rgb(p) for p in sample_paths()] * 3
    assert len(images) > CPU_ENCODER_CHUNK
    chunked = cap.encode(images)
    single = torch.cat([cap.encode([im]) for im in images])
    assert chunked.shape == (len(images), 49, 1280)
    torch.testing.assert_close(chunked, single, rtol=1e-4, atol=1e-4)


def test_bundled_model_reranks_with_its_neighbour_index(cap: Captioner) -> None:
    assert cap.neighbours is not None
    assert len(cap.neighbours) == 13_195 and cap.neighbours.encoder == "efficientnet_lite0-224"
    assert cap.search_config.consensus_k == 60
    # the kept caption is, of the beam's finished ones, the one the neighbours agree with
    from captioner.search.reranked import pooled
    from captioner.search.search import beam_search_nbest

    config = dataclasses.replace(cap.search_config, beam=5)
    features = cap.encode([_photo("coffee")])
    (finished,) = beam_search_nbest(cap.decoder, features, cap.vocab, config, n=5)
    neighbours = cap.neighbours.nearest(pooled(features), 60)[0]
    words = [cap.vocab.decode(h.ids) for h in finished]
    agreement = cap.neighbours.consensus(words, neighbours)
    combined = agreement + 0.02 * np.array([h.normalized for h in finished])
    (caption,) = cap.caption([_photo("coffee")], beam=5)
    assert caption.tokens == words[int(np.argmax(combined))]
    assert len(finished) == 5


def _demo_frames() -> list[np.ndarray]:
    """The demo video at one frame a second, as the service samples it: 4 photos x 4 s."""
    import cv2

    from stream.demo_video import demo_video_path

    video = cv2.VideoCapture(str(demo_video_path()))
    fps = video.get(cv2.CAP_PROP_FPS)
    frames = []
    ok, frame = video.read()
    while ok:
        if int(video.get(cv2.CAP_PROP_POS_FRAMES) - 1) % int(fps) == 0:
            frames.append(np.ascontiguousarray(frame[:, :, ::-1]))
        ok, frame = video.read()
    video.release()
    return frames


def test_frames_of_a_stream_hold_their_caption_until_the_picture_changes(cap: Captioner) -> None:
    from stream.demo_video import SECONDS_EACH

    frames = _demo_frames()
    photos = len(frames) // SECONDS_EACH
    assert photos == len(sample_paths())

    def changes(captions: list) -> int:  # type: ignore[type-arg]
        return sum(a.text != b.text for a, b in itertools.pairwise(captions))

    alone = cap.caption(frames, beam=5)  # no sources: each frame on its own
    held = cap.caption(frames, beam=5, sources=["demo"] * len(frames))
    assert changes(held) < changes(alone), ([c.text for c in alone], [c.text for c in held])
    # each photo's first frame is a cut: captioned afresh, as alone
    for first in range(0, len(frames), SECONDS_EACH):
        assert held[first].text == alone[first].text
    assert changes(held) >= photos - 1  # the photos still get their own captions


def test_a_worker_publishes_held_captions_as_fewer_segments(cap: Captioner, redis_client) -> None:  # type: ignore[no-untyped-def]
    """The whole path: frames in Redis, a worker with the default model, the hold, the
    publish script's segments."""
    from captioner.search.hold import ShownCaptions
    from stream.capture.capture import encode_jpeg
    from tests.support.frames import add_frame, register
    from worker.batching import BatchPolicy
    from worker.bus.entries import decode_caption
    from worker.bus.keys import captions_key
    from worker.worker import Worker, WorkerConfig

    jpegs = [encode_jpeg(f, max_side=256, quality=90)[0] for f in _demo_frames()]
    segments = {}
    for source, margin in (("held", 0.04), ("alone", None)):
        search = dataclasses.replace(cap.search_config, beam=5, hold_margin=margin)

        def caption(images, sources, shown: ShownCaptions, search=search):  # type: ignore[no-untyped-def]
            return cap.caption(list(images), config=search, sources=sources, shown=shown)

        register(redis_client, source, live=False)
        for seq, data in enumerate(jpegs):
            add_frame(redis_client, source, seq, data=data)
        config = WorkerConfig(policy=BatchPolicy(max_batch=5, max_wait_ms=0), model="default")
        worker = Worker(redis_client, caption, config)
        while worker.stats.captioned < len(jpegs):
            worker.step()
        entries = [decode_caption(f) for _, f in redis_client.xrange(captions_key(source))]
        assert [e.seq for e in entries] == list(range(len(jpegs)))
        segments[source] = entries[-1].segment_id + 1
    # batches of 5 cut across the photos' 4 frames: what a batch's frames showed is
    # carried to the next through the worker (and Redis)
    assert segments["held"] < segments["alone"], segments
    assert segments["held"] >= len(sample_paths())
