"""The pipeline benchmark's machinery, run small (figures belong in BENCHMARKS.md)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stream.bench.server import measure
from stream.bench.stand_in import StandInModel, bench_stand_in


def test_stand_in_model_takes_its_time_per_batch_not_per_image() -> None:
    model = StandInModel(ms=30)
    started = time.perf_counter()
    captions = model([object()] * 16, ["s"] * 16, None)
    assert time.perf_counter() - started >= 0.03
    assert len(captions) == 16 and captions[0].attention.shape == (3, 7, 7)


@pytest.mark.integration
def test_stand_in_file_job_goes_through_redis_and_a_worker_process(tmp_path: Path) -> None:
    result = bench_stand_in(ms=20, batch=4, frames=12, rounds=2, workdir=tmp_path)
    assert result.frames == 12 and len(result.rounds) == 2
    for r in result.rounds:
        assert r.captioner_images_per_s == 4 / 0.020
        # a worker that waits 20 ms per batch of ≤ 4 cannot beat 200 captions/s
        assert 0 < r.captions_per_s <= r.captioner_images_per_s
        assert 1 <= r.mean_batch <= 4
        assert set(r.stage_ms) == {"read", "decode", "caption", "publish"}
        assert r.stage_ms["caption"] >= 20
        # capture published every frame, no faster than it took the job (it finishes
        # first), and waited a share of that time for room
        assert r.capture_fps >= r.captions_per_s
        assert 0 <= r.capture_wait_s < result.frames / r.captions_per_s


@pytest.mark.integration
def test_server_bench_delivers_every_caption_to_every_client() -> None:
    (row,) = measure(clients=[3], rate=20, sources=2, seconds=2.0, compression="deflate")
    assert row.clients == 3 and row.due == 3 * 40
    # all of them, but for the few in flight at the window's two edges
    assert abs(row.delivered - row.due) <= 3 * 2
    assert row.gaps == 0
    assert len(row.latencies_ms) >= 3 * 38  # every client here parses its messages
    assert all(x >= 0 for x in row.latencies_ms)
    assert row.server_cpu_s > 0 and row.clients_cpu_s > 0
