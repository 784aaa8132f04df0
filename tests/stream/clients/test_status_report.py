"""``scenecast status``: the report (pure), then the command against a real Redis
with a real Capture and Worker running."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import redis

from stream.capture.capture import Capture, CaptureConfig
from stream.cli.main import main
from stream.clients.status import Snapshot, SourceRow, format_report, report_json
from stream.sources.spec import parse_source
from tests.support.factories import caption_fn, tiny_captioner
from tests.support.runs import T, wait_for
from worker.batching import BatchPolicy
from worker.worker import Worker, WorkerConfig

NOW = 1_800_000_000_000.0


def _row(source: str, state: str, **more: object) -> SourceRow:
    fields: dict[str, object] = dict(
        detail="", live=True, capture_seen_ms=NOW - 1500, frames=16, pending=2,
        last_caption_ms=NOW - 900, last_caption="a man at the door",
    )  # fmt: skip
    fields.update(more)
    return SourceRow(source=source, state=state, **fields)  # type: ignore[arg-type]


def test_the_report_names_workers_and_what_each_source_is_doing() -> None:
    snap = Snapshot(
        now_ms=NOW,
        workers={"gpu-1": NOW - 800, "gone": NOW - 600_000, "long-gone": NOW - 4_000_000},
        sources=[
            _row("door", "live"),
            _row("yard", "live", capture_seen_ms=NOW - 60_000, last_caption_ms=NOW - 7_200_000),
            _row("talk", "ended", live=False, capture_seen_ms=None, last_caption="x" * 80),
        ],
    )
    lines = format_report(snap).splitlines()
    # a killed worker shows as gone (it was left out, and listed by --json for ever);
    # after an hour it is forgotten
    assert lines[0] == "workers: 1 alive (gpu-1 0.8 s ago); 1 gone (gone 10 min ago)"
    assert lines[1].split() == [
        "SOURCE",
        "KIND",
        "STATE",
        "CAPTURE",
        "HEARD",
        "FRAMES",
        "PENDING",
        "LAST",
        "CAPTION",
    ]
    assert lines[2].split()[:5] == ["door", "live", "live", "1.5", "s"]
    assert lines[2].endswith("0.9 s ago: a man at the door")
    assert (
        "error (capture silent)" in lines[3] and "1 min ago" in lines[3] and "2.0 h ago" in lines[3]
    )
    assert lines[4].split()[:4] == ["talk", "file", "ended", "-"] and lines[4].endswith(
        "x" * 43 + "…"
    )
    report = json.loads(report_json(snap))
    assert report["workers"] == {"gpu-1": NOW - 800, "gone": NOW - 600_000}
    assert (report["workers_alive"], report["workers_gone"]) == (1, ["gone"])
    # one notion of a source's state: what the table shows (and what the capture said)
    yard = report["sources"][1]
    assert (yard["state"], yard["shown_state"], yard["capture_state"]) == (
        "error (capture silent)",
        "error (capture silent)",
        "live",
    )
    nobody = Snapshot(now_ms=NOW, workers={}, sources=[_row("door", "live")])
    assert format_report(nobody).splitlines()[0] == "workers: 0 alive; nothing captions the sources"
    assert format_report(Snapshot(now_ms=NOW, workers={}, sources=[])) == (
        "workers: 0 alive\nsources: none yet\n"
    )


def test_status_against_a_running_capture_and_worker(
    redis_server,
    video: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    capture = Capture(
        client, parse_source(str(video), name="door", live=True), CaptureConfig(fps=5, loop=True)
    )
    worker = Worker(
        redis.Redis.from_url(redis_server.url),
        caption_fn(tiny_captioner()),
        WorkerConfig(policy=BatchPolicy(max_batch=4, max_wait_ms=10)),
    )
    threads = [
        threading.Thread(target=capture.run, daemon=True),
        threading.Thread(target=worker.run, daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: worker.stats.captioned >= 3, "captions")
        assert main(["status", "--redis-url", redis_server.url]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith(f"workers: 1 alive ({worker.config.consumer} ")
        (row,) = [line for line in out if line.startswith("door")]
        assert row.split()[:3] == ["door", "live", "live"] and " s ago: " in row
        assert main(["status", "--redis-url", redis_server.url, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["workers_alive"] == 1
        (door,) = report["sources"]
        assert (door["source"], door["shown_state"], door["live"]) == ("door", "live", True)
        assert door["frames"] >= 1 and door["last_caption_ms"] is not None
    finally:
        capture.stop()
        worker.stop()
        for thread in threads:
            thread.join(T)
        client.close()
    assert main(["status", "--redis-url", "redis://:s3cret@127.0.0.1:1/0"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach Redis" in err and "s3cret" not in err
