"""The captioner in a process of its own (``scenecast worker --model-process``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from captioner.api import Captioner
from captioner.exceptions import CaptionerError
from captioner.search.hold import ShownCaptions
from tests.support.factories import save_tiny_checkpoint
from tests.support.frames import add_frame, jpeg, register
from worker.batching import BatchPolicy
from worker.bus.entries import decode_caption
from worker.bus.keys import GROUP, captions_key, deadletter_key, frames_key
from worker.decode import decode_jpegs
from worker.model_process import ModelProcess, ModelProcessError
from worker.worker import Worker, WorkerConfig

COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
CORRUPT = b"\xff\xd8 not a jpeg"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")
    return path


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> Iterator[ModelProcess]:
    with contextlib.closing(ModelProcess(str(checkpoint), device="cpu", beam=1, max_batch=4)) as p:
        yield p


def captions(model: ModelProcess, frames: list[bytes], source: str) -> list[Any]:
    """The model's captions of frames of one source."""
    return model(frames, [source] * len(frames), ShownCaptions())


def test_captions_match_the_model_in_process_and_a_bad_jpeg_is_none(
    model: ModelProcess, checkpoint: Path
) -> None:
    blobs = [jpeg(COLORS[0]), CORRUPT, jpeg(COLORS[1]), jpeg(COLORS[2])]
    got = captions(model, blobs, "match")
    assert len(got) == 4 and got[1] is None
    direct = Captioner.load(checkpoint, device="cpu").caption(
        [decode_jpegs([b])[0] for b in (blobs[0], blobs[2], blobs[3])], beam=1
    )
    kept = [got[0], got[2], got[3]]
    assert [c.text for c in kept] == [d.text for d in direct]
    assert [c.score for c in kept] == [d.score for d in direct]
    for c, d in zip(kept, direct, strict=True):
        np.testing.assert_array_equal(c.attention, d.attention)
    assert model.device == "cpu" and model.model_id
    assert model([], [], ShownCaptions()) == []


def test_the_worker_publishes_through_the_model_process(
    model: ModelProcess, redis_client: redis.Redis
) -> None:
    register(redis_client, "mp", live=False)
    add_frame(redis_client, "mp", 0, data=jpeg(COLORS[0]))
    add_frame(redis_client, "mp", 1, data=CORRUPT)
    add_frame(redis_client, "mp", 2, data=jpeg(COLORS[2]))
    config = WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=100), model_decodes=True)
    worker = Worker(redis_client, model, config)
    while worker.stats.captioned + worker.stats.failed < 3:
        worker.step()
    captions = [decode_caption(f) for _, f in redis_client.xrange(captions_key("mp"))]
    assert [c.seq for c in captions] == [0, 2]
    assert worker.stats.failed == worker.stats.deadlettered == 1  # at once: nothing held back
    # the call's time divides into the child's decoding, its captioning and the pipes
    inside = model.last_stages
    assert set(inside) == {"model_decode", "caption"} and all(s > 0 for s in inside.values())
    assert {"model_decode", "caption", "transfer"} <= set(worker.stats.seconds)
    # the undecodable frame is in the dead letters, acked
    pending = redis_client.xpending_range(frames_key("mp"), GROUP, min="-", max="+", count=10)
    assert pending == []
    (letter,) = redis_client.xrange(deadletter_key("mp"))
    assert (
        letter[1][b"seq"] == b"1"
        and letter[1][b"dead_reason"] == b"not a decodable JPEG of at least 2x2 pixels"
    )


@pytest.mark.integration
def test_a_model_that_does_not_load_raises_its_error_in_the_worker(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pt"
    with pytest.raises(CaptionerError, match=r"missing\.pt"):
        ModelProcess(str(missing), device="cpu", beam=1, max_batch=4)


@pytest.mark.integration
def test_a_dead_model_process_is_a_clear_error_and_close_reaps_it(checkpoint: Path) -> None:
    process = ModelProcess(str(checkpoint), device="cpu", beam=1, max_batch=4)
    child = process._proc
    child.kill()
    with pytest.raises(ModelProcessError, match="exited"):
        captions(process, [jpeg(COLORS[0])], "dead")
    process.close()
    assert not child.is_alive()


@pytest.mark.integration
def test_closing_the_pipe_ends_the_model_process(checkpoint: Path) -> None:
    process = ModelProcess(str(checkpoint), device="cpu", beam=1, max_batch=4)
    child = process._proc
    assert captions(process, [jpeg(COLORS[0])], "eof")[0] is not None
    process.close()
    assert not child.is_alive() and child.exitcode == 0  # exited on EOF, not killed


@pytest.mark.integration
def test_the_default_model_in_its_process_holds_and_returns_what_sources_show() -> None:
    from captioner.sample_photos import sample_paths

    cat = next(p for p in sample_paths() if p.stem == "chelsea").read_bytes()
    with contextlib.closing(ModelProcess(None, device="cpu", beam=3, max_batch=4)) as model:
        shown = ShownCaptions()
        first = model([cat, cat], ["cam", "cam"], shown)
        state = shown.get("cam")
        assert state is not None and state.tokens == tuple(first[1].tokens)
        assert first[0].text == first[1].text  # the same picture holds its caption
        assert state.pooled.shape == (1280,) and state.pooled.device.type == "cpu"
        # the child sends back only the states it set: another source's batch leaves
        # this one's alone (not re-sent, which would tag it with the wrong frame)
        model([cat], ["door"], shown)
        assert shown.get("cam") is state and shown.get("door") is not None
