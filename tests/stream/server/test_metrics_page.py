"""The /metrics page, written from figures (pure); tests/test_server.py and others read
it from a real server."""

from __future__ import annotations

from stream.server.metrics_page import WORKER_SEEN_MS, ServerFigures, SharedFigures, exposition

OWN = ServerFigures(
    clients=2,
    redis_ok=True,
    counters={"messages_sent": 7, "gaps": 0},
    refused={"token": 1, "origin": 0, "host": 0},
    dropped=3,
    latency=["# TYPE scenecast_caption_latency_seconds histogram"],
)


def _values(page: str) -> dict[str, str]:
    return dict(line.rsplit(" ", 1) for line in page.splitlines() if not line.startswith("#"))


def test_with_redis_away_the_servers_own_figures_still_go_out() -> None:
    page = exposition(ServerFigures(**{**OWN.__dict__, "redis_ok": False}), None, now_ms=0)
    values = _values(page)
    assert values["scenecast_up"] == "0" and values["scenecast_clients"] == "2"
    assert values["scenecast_server_messages_sent_total"] == "7"
    assert values['scenecast_server_refused_requests_total{reason="token"}'] == "1"
    assert values["scenecast_client_dropped_captions"] == "3"
    assert "# TYPE scenecast_caption_latency_seconds histogram" in page
    assert not any(k.startswith(("scenecast_worker", "scenecast_capture")) for k in values)
    assert page.endswith("\n")


def test_the_shared_figures_per_worker_stage_source_and_capture() -> None:
    now = 1_000_000.0
    shared = SharedFigures(
        worker={"captioned": "5", "seconds:caption": "1.25", "cpu_seconds:caption": "1.125"},
        heartbeats_ms=[now - 100, now - WORKER_SEEN_MS + 1, now - WORKER_SEEN_MS - 1],
        states={"door": "live", "yard": "reconnecting"},
        captions={"door": 12, "yard": 0},
        captures={"door": {"read": 40, "sampled": 4, "reconnects": 1}, "yard": {}},
    )
    values = _values(exposition(OWN, shared, now_ms=now))
    assert values["scenecast_worker_captioned_total"] == "5"
    assert values['scenecast_worker_stage_seconds_total{stage="caption"}'] == "1.250"
    assert values["scenecast_worker_caption_cpu_seconds_total"] == "1.125"
    assert values['scenecast_source_state{source="yard",state="reconnecting"}'] == "1"
    assert values['scenecast_captions{source="door"}'] == "12"
    assert values['scenecast_capture_frames_total{source="door",kind="read"}'] == "40"
    assert values['scenecast_capture_frames_total{source="door",kind="sampled"}'] == "4"
    assert values['scenecast_capture_reconnects_total{source="door"}'] == "1"
    # a series is there from the start, at 0 (rate() misses the first increment of one
    # that appears from nothing)
    assert values['scenecast_capture_bad_reads_total{source="door"}'] == "0"
    assert values['scenecast_capture_frames_total{source="yard",kind="overwritten"}'] == "0"
    assert values["scenecast_worker_late_total"] == "0"
    assert values['scenecast_worker_stage_seconds_total{stage="decode"}'] == "0.000"
    assert values["scenecast_workers"] == "2"  # the third was last heard too long ago


def test_every_family_says_what_it_counts() -> None:
    """A # HELP line before each # TYPE line; every family the server and workers write
    has its own text (the plain fallback is for names added without one)."""
    from stream.server.metrics_help import HELP
    from worker.worker import WorkerStats

    worker_counters = {
        name: "1" for name, value in vars(WorkerStats()).items() if isinstance(value, int)
    }
    worker_counters.pop("reconnects")  # counted in the worker's own log only
    shared = SharedFigures(
        worker={**worker_counters, "seconds:caption": "1.0", "cpu_seconds:caption": "1.0"},
        heartbeats_ms=[0.0],
        states={"door": "live"},
        captions={"door": 1},
        captures={"door": {"read": 1, "sampled": 1, "bad_reads": 1, "reconnects": 1}},
    )
    own = ServerFigures(**{
        **OWN.__dict__,
        "counters": dict.fromkeys(
            ["messages_sent", "bad_messages", "gaps", "dropped_captions", "frames_served",
             "frames_missing", "transcripts_served"], 0),
    })  # fmt: skip
    lines = exposition(own, shared, now_ms=0).splitlines()
    types = [i for i, line in enumerate(lines) if line.startswith("# TYPE ")]
    assert len(types) > 25
    for i in types:
        name = lines[i].split()[2]
        assert lines[i - 1] == f"# HELP {name} {HELP[name]}", name


def test_every_worker_counter_is_on_the_page_from_the_start() -> None:
    from stream.server.metrics_page import WORKER_COUNTERS
    from worker.worker import WorkerStats

    counted = {name for name, value in vars(WorkerStats()).items() if isinstance(value, int)}
    assert set(WORKER_COUNTERS) == counted - {"reconnects"}  # the worker's log says those
