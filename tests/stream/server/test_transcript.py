"""A source's caption log as a transcript: the pure rules (stream/transcript.py), then
``GET /captions/<source>.vtt|.srt|.jsonl`` over a real socket against a real Redis."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import urllib.error
import urllib.request

import pytest
import redis
import srt
import webvtt

from stream.server.server import CaptionServer, ServerConfig
from stream.server.transcript import GAP_MS, parse_transcript_path, range_start, transcript_cues
from stream.subtitles.cues import Cue
from tests.support.frames import publish_caption, register
from tests.support.servers import T, run_server
from worker.bus.entries import CaptionEntry


def _entry(pts: float, text: str, segment: int, *, interval: float = 1000.0) -> CaptionEntry:
    return CaptionEntry(
        source="cam", seq=0, pts_ms=pts, end_ms=pts + interval, capture_ns=0, text=text,
        tokens=text.split(), score=-1.0, model="m", latency_ms=1.0, segment_id=segment,
    )  # fmt: skip


def test_one_cue_per_segment_each_caption_lasting_until_the_next() -> None:
    entries = [
        _entry(0, "a dog", 0),
        _entry(1000, "a dog", 0),
        _entry(2010, "a dog", 0),  # capture jitter: still one cue
        _entry(3000, "a cat", 1),
        _entry(4000, "", 2),  # no words: no cue, the screen stays blank
        _entry(5000, "a car", 3),
    ]
    assert transcript_cues(entries) == [
        Cue(0, 3000, "a dog"),
        Cue(3000, 4000, "a cat"),
        Cue(5000, 6000, "a car"),  # the last: its own sampling interval
    ]
    # scene-change sampling: captions seconds apart still cover the time between them
    sparse = [_entry(0, "a hall", 0, interval=200), _entry(8000, "a door", 1, interval=200)]
    assert transcript_cues(sparse) == [Cue(0, 8000, "a hall"), Cue(8000, 8200, "a door")]


def test_an_outage_ends_a_cue_and_a_restarted_capture_goes_on_in_order() -> None:
    later = 2000 + GAP_MS + 1
    entries = [_entry(0, "a dog", 0), _entry(1000, "a dog", 0), _entry(later, "a dog", 0)]
    assert transcript_cues(entries) == [
        Cue(0, 2000, "a dog"),
        Cue(round(later), round(later) + 1000, "a dog"),
    ]
    # media time back to 0: a new capture of the source; its times go on from 2000
    restarted = [
        _entry(0, "a dog", 0),
        _entry(1000, "a dog", 0),
        _entry(0, "a cat", 1),
        _entry(1000, "a cow", 2),
    ]
    assert transcript_cues(restarted) == [
        Cue(0, 2000, "a dog"),
        Cue(2000, 3000, "a cat"),
        Cue(3000, 4000, "a cow"),
    ]
    assert transcript_cues([]) == []


def test_transcript_paths_and_queries() -> None:
    assert parse_transcript_path("/captions/door.vtt") == ("door", "vtt")
    assert parse_transcript_path("/captions/cam.v2.jsonl") == ("cam.v2", "jsonl")
    assert parse_transcript_path("/frames/door/1-0.jpg") is None
    for bad in (
        "/captions/door",
        "/captions/door.txt",
        "/captions/no%20such.vtt",
        "/captions/.srt",
    ):
        with pytest.raises(ValueError, match=r"/captions/<source>\.vtt"):
            parse_transcript_path(bad)
    now = 1_800_000_000_000.0
    assert range_start({}, now_ms=now) == "-"
    assert range_start({"since": ["60"]}, now_ms=now) == f"{int(now) - 60_000}-0"
    assert range_start({"after": ["12-3"]}, now_ms=now) == "(12-3"
    for query, message in [
        ({"since": ["soon"]}, "positive number of seconds"),
        ({"since": ["-1"]}, "positive number of seconds"),
        ({"since": ["nan"]}, "positive number of seconds"),
        ({"after": ["yesterday"]}, "not a caption id"),
        ({"since": ["1"], "after": ["1-0"]}, "not both"),
        ({"sinse": ["60"]}, "unknown query parameter 'sinse'; accepted: since=SECONDS"),
        ({"since": [""]}, "since= has no value"),
        ({"after": ["1-0", "2-0"]}, "after= is given 2 times"),
        ({"after": [f"{int(now) + 60_000}-0"]}, "later than the server's time"),
        ({"after": ["18446744073709551615-18446744073709551615"]}, "later than the server"),
    ]:
        with pytest.raises(ValueError, match=message):
            range_start(query, now_ms=now)


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=T) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_a_sources_log_is_served_as_webvtt_srt_and_json_lines(
    redis_server, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "door", live=True)
    ids = []
    for seq, text in enumerate(["a dog runs", "a dog runs", "a <grey> box", "a cat"]):
        ids.append(publish_caption(redis_client, "door", seq, text, grid=(2, 2)))

    async def body(server: CaptionServer) -> None:
        base = f"http://127.0.0.1:{server.port}/captions"
        code, kind, text = await asyncio.to_thread(_get, f"{base}/door.vtt")
        assert (code, kind) == (200, "text/vtt; charset=utf-8")
        cues = [(c.start, c.end, c.text) for c in webvtt.from_buffer(io.StringIO(text))]
        assert cues == [
            ("00:00:00.000", "00:00:02.000", "a dog runs"),
            ("00:00:02.000", "00:00:03.000", "a &lt;grey&gt; box"),  # escaped, as subtitles are
            ("00:00:03.000", "00:00:04.000", "a cat"),
        ]
        code, kind, text = await asyncio.to_thread(_get, f"{base}/door.srt")
        ms = dt.timedelta(milliseconds=1)
        assert [(s.start / ms, s.end / ms, s.content) for s in srt.parse(text)] == [
            (0, 2000, "a dog runs"),
            (2000, 3000, "a <grey> box"),
            (3000, 4000, "a cat"),
        ]
        code, kind, text = await asyncio.to_thread(_get, f"{base}/door.jsonl")
        lines = [json.loads(line) for line in text.splitlines()]
        assert kind == "application/jsonl; charset=utf-8"
        assert [m["id"] for m in lines] == ids and {m["type"] for m in lines} == {"caption"}
        assert [m["segment_id"] for m in lines] == [0, 0, 1, 2]
        assert [m["is_final"] for m in lines] == [False, True, True, False]  # the last: open
        assert all("attention" not in m or m["attention"] is None for m in lines)
        assert all(m["capture_ts"].endswith("Z") for m in lines)
        # only part of the log: after a caption id, or the last N seconds
        code, _, text = await asyncio.to_thread(_get, f"{base}/door.jsonl?after={ids[1]}")
        assert [json.loads(line)["id"] for line in text.splitlines()] == ids[2:]
        code, _, text = await asyncio.to_thread(_get, f"{base}/door.vtt?since=3600")
        assert text.count("-->") == 3
        code, _, text = await asyncio.to_thread(_get, f"{base}/door.vtt?after={ids[-1]}")
        assert (code, text) == (200, "WEBVTT\n")  # nothing after the last
        # bad requests say what is accepted
        for path, status, message in [
            ("/nobody.vtt", 404, "no source named 'nobody'; known: door"),
            ("/door.txt", 400, "/captions/<source>.vtt"),
            ("/door.vtt?since=forever", 400, "positive number of seconds"),
            ("/door.vtt?after=0-0&since=5", 400, "not both"),
        ]:
            code, _, text = await asyncio.to_thread(_get, base + path)
            assert (code, message in text) == (status, True), (path, text)
        code, _, metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.port}/metrics")
        assert "scenecast_server_transcripts_served_total 6" in metrics

    run_server(redis_server.url, body)


def test_a_transcript_needs_the_token_like_everything_else(redis_server, redis_client) -> None:  # type: ignore[no-untyped-def]
    register(redis_client, "door", live=True)
    publish_caption(redis_client, "door", 0, "a dog runs")
    token = "transcript-token-012345"

    async def body(server: CaptionServer) -> None:
        url = f"http://127.0.0.1:{server.port}/captions/door.vtt"
        assert (await asyncio.to_thread(_get, url))[0] == 401
        code, _, text = await asyncio.to_thread(_get, f"{url}?token={token}&since=60")
        assert code == 200 and "a dog runs" in text
        code, _, text = await asyncio.to_thread(_get, f"{url}?token={token}&since=")
        assert code == 400 and "since= has no value" in text  # not the whole log

    run_server(redis_server.url, body, ServerConfig(port=0, block_ms=100, token=token))
