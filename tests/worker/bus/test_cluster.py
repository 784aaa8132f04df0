"""A Redis Cluster: a real three-primary cluster (tests/redis_cluster.py), the calls
that differ there (worker/cluster.py), and the whole service through it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from websockets.asyncio.client import connect as ws_connect

from stream.cli.main import main
from stream.clients.forget import forget_sources
from stream.embedded_redis import EmbeddedRedis, check_redis
from stream.exceptions import StreamError
from tests.conftest import TIMEOUT_FACTOR
from tests.support.factories import save_tiny_checkpoint, tiny_captioner
from tests.support.redis_cluster import redis_cluster
from tests.support.runs import SCENES, start_run, stop_run
from tests.support.videos import make_video
from worker.batching import BatchPolicy
from worker.bus import cluster
from worker.bus.keys import GROUP, SOURCES_KEY, captions_key, done_key, frames_key, parked_key
from worker.bus.publish import PUBLISH_LUA
from worker.worker import Worker, WorkerConfig

pytestmark = pytest.mark.integration  # starts redis-server and scenecast processes

T = 30.0 * TIMEOUT_FACTOR
SOURCES = ("a", "b", "c")  # their hash slots fall on the three primaries: 15495, 3300, 7365


@pytest.fixture(scope="module")
def nodes() -> Iterator[list[EmbeddedRedis]]:
    with redis_cluster() as servers:
        yield servers


@pytest.fixture
def client(nodes: list[EmbeddedRedis]) -> Iterator[Any]:
    c = cluster.connect(nodes[0].url)
    c.flushall()  # every primary: each test starts empty
    yield c
    c.close()


def _node_of(nodes: list[EmbeddedRedis], key: str) -> int:
    """Which of the nodes holds ``key`` (asked of each node itself)."""
    held = [i for i, n in enumerate(nodes) if redis.Redis(port=n.port).keys(key)]  # no MOVED
    assert len(held) == 1, (key, held)
    return held[0]


def test_connect_tells_a_cluster_from_one_redis(
    nodes: list[EmbeddedRedis], redis_server: EmbeddedRedis
) -> None:
    for node in nodes:  # any node of the cluster will do
        c = cluster.connect(node.url)
        assert isinstance(c, RedisCluster) and cluster.is_cluster(c)
        c.close()
    single = cluster.connect(redis_server.url)
    assert isinstance(single, redis.Redis) and not cluster.is_cluster(single)
    single.close()
    checked = check_redis(nodes[2].url)  # what the commands use: PINGed, the right kind
    assert cluster.is_cluster(checked)
    checked.close()


def test_a_database_other_than_0_on_a_cluster_is_a_clear_error(
    nodes: list[EmbeddedRedis],
) -> None:
    url = f"redis://127.0.0.1:{nodes[0].port}/2"
    with pytest.raises(StreamError, match="only database 0, and the URL names database 2"):
        check_redis(url)
    checked = check_redis(f"redis://127.0.0.1:{nodes[0].port}/0")
    assert cluster.is_cluster(checked)
    checked.close()


def test_sources_spread_over_the_nodes(client: Any, nodes: list[EmbeddedRedis]) -> None:
    for s in SOURCES:
        client.xadd(frames_key(s), {"x": 1})
        client.xadd(captions_key(s), {"x": 1})
    held = [_node_of(nodes, frames_key(s)) for s in SOURCES]
    assert sorted(held) == [0, 1, 2]
    assert held == [_node_of(nodes, captions_key(s)) for s in SOURCES]  # a source's keys: one slot


def test_forget_removes_a_sources_keys_on_its_node(client: Any) -> None:
    for s in SOURCES:
        client.hset(SOURCES_KEY, s, json.dumps({"state": "ended", "live": False}))
        client.xadd(frames_key(s), {"x": 1})
        client.xadd(captions_key(s), {"x": 1})
    assert forget_sources(client, ["b"]) == [("b", 2)]
    assert not client.exists(frames_key("b")) and not client.exists(captions_key("b"))
    assert sorted(k.decode() for k in client.hkeys(SOURCES_KEY)) == ["a", "c"]
    assert client.exists(frames_key("a"), captions_key("c")) == 2  # the others untouched


def test_reading_streams_on_several_nodes(client: Any) -> None:
    for s in SOURCES:
        client.xgroup_create(frames_key(s), GROUP, id="0", mkstream=True)
    streams = {frames_key(s): ">" for s in SOURCES}
    started = time.monotonic()
    assert cluster.xreadgroup(client, GROUP, "w1", streams, count=10, block_ms=300) == []
    assert time.monotonic() - started >= 0.29  # nothing there: it waited the block time

    def later() -> None:
        time.sleep(0.15)
        client.xadd(frames_key("b"), {"n": 1})

    threading.Thread(target=later).start()
    started = time.monotonic()
    got = cluster.xreadgroup(client, GROUP, "w1", streams, count=10, block_ms=5000)
    waited = time.monotonic() - started
    assert [(k, [f for _, f in e]) for k, e in got] == [(frames_key("b").encode(), [{b"n": b"1"}])]
    assert waited < 2.0  # it came within a poll of arriving, not at the end of the block
    for s in SOURCES:
        client.xadd(frames_key(s), {"n": s})
    got = cluster.xreadgroup(client, GROUP, "w1", streams, count=10, block_ms=100)
    assert sorted(k.decode() for k, _ in got) == sorted(frames_key(s) for s in SOURCES)
    assert client.xpending(frames_key("a"), GROUP)["pending"] == 1  # read as the group's


def test_async_reads_on_several_nodes(nodes: list[EmbeddedRedis], client: Any) -> None:
    for s in SOURCES:
        client.xadd(captions_key(s), {"n": s})

    async def read() -> list[Any]:
        c = await cluster.connect_async(nodes[1].url)
        try:
            assert cluster.is_cluster(c)
            streams = {captions_key(s): "0-0" for s in SOURCES}
            return await cluster.xread_async(c, streams, count=10, block_ms=100)
        finally:
            await c.aclose()

    got = asyncio.run(read())
    assert sorted((k.decode(), e[0][1][b"n"].decode()) for k, e in got) == [
        (captions_key(s), s) for s in SOURCES
    ]


def test_scripts_run_alike_on_one_redis_and_on_a_cluster(
    client: Any, redis_client: redis.Redis
) -> None:
    """The publish script's results, in order, either way (a cluster pipeline refuses
    EVALSHA, so there they run one by one)."""
    results = []
    for c in (redis_client, client):
        script = c.register_script(PUBLISH_LUA)
        for s in ("a", "b"):
            c.xgroup_create(frames_key(s), GROUP, id="0", mkstream=True)
        calls = []
        for s in ("a", "b", "a"):  # the third is source a's seq 0 again: a duplicate
            frame = c.xadd(frames_key(s), {"x": 1}).decode()
            keys = [captions_key(s), frames_key(s), done_key(s), parked_key(s)]
            calls.append((script, keys, [GROUP, frame, 0, "a dog", 0, 100]))
        results.append([bool(r) for r in cluster.run_scripts(c, calls)])
    assert results == [[True, True, False], [True, True, False]]


def test_every_part_reads_the_clock_of_one_node(client: Any, nodes: list[EmbeddedRedis]) -> None:
    node = client.get_node_from_key(cluster.CLOCK_KEY)
    for _ in range(5):
        assert cluster.redis_time(client)  # from that node (redis-py would pick any)
    assert node.port in [n.port for n in nodes]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "scenes.mp4", scenes=SCENES, fps=10)


async def _collect_all(url: str, per_source: int) -> dict[str, list[dict[str, Any]]]:
    captions: dict[str, list[dict[str, Any]]] = {s: [] for s in SOURCES}
    ended: set[str] = set()
    async with ws_connect(url) as ws:
        await ws.send(json.dumps({"type": "subscribe", "after": "0"}))
        while ended != set(SOURCES) or any(len(c) < per_source for c in captions.values()):
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), T))
            except TimeoutError:
                raise AssertionError(f"timed out with {captions}, ended {ended}") from None
            if message["type"] == "caption":
                captions[message["source"]].append(message)
            elif message["type"] == "status" and message["state"] == "ended":
                ended.add(message["source"])
            elif message["type"] == "hello":
                ended |= {s["source"] for s in message["sources"] if s["state"] == "ended"}
    return captions


def test_three_file_jobs_through_a_cluster(
    nodes: list[EmbeddedRedis], client: Any, video: Path, checkpoint: Path
) -> None:
    """`scenecast run --redis-url` pointed at one node of a cluster: capture, a worker
    process and the server each find the cluster; every source's captions arrive, in
    order, from streams held on three different nodes; `status` reads it all."""
    url = nodes[1].url
    names = [arg for s in SOURCES for arg in ("--name", s)]
    proc, ws_url = start_run(
        [str(video)] * 3
        + names
        + ["--redis-url", url, "--checkpoint", str(checkpoint)]
        + ["--fps", "1", "--beam", "1"]
    )
    try:
        captions = asyncio.run(_collect_all(ws_url, 6))
        metrics_url = ws_url.replace("ws://", "http://").removesuffix("/ws") + "/metrics"
        with urllib.request.urlopen(metrics_url, timeout=T) as response:
            metrics = response.read().decode()
    finally:
        stop_run(proc)
    assert "scenecast_up 1" in metrics.splitlines()
    for s in SOURCES:  # the shared figures, read from all three nodes
        assert f'scenecast_captions{{source="{s}"}} 6' in metrics.splitlines(), metrics
    for s in SOURCES:
        assert [c["seq"] for c in captions[s]] == [0, 1, 2, 3, 4, 5], s
        assert [c["t_start_ms"] for c in captions[s]] == [0, 1000, 2000, 3000, 4000, 5000]
        assert captions[s][0]["text"] == captions[s][1]["text"]  # one scene, one caption
    texts = [[c["text"] for c in captions[s]] for s in SOURCES]
    assert texts[0] == texts[1] == texts[2]  # the same video gives the same captions
    assert sorted(_node_of(nodes, captions_key(s)) for s in SOURCES) == [0, 1, 2]
    status = subprocess.run(
        [sys.executable, "-m", "stream.cli", "status", "--redis-url", url, "--json"],
        capture_output=True,
        text=True,
        timeout=T,
    )
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert {s["source"]: s["state"] for s in report["sources"]} == dict.fromkeys(SOURCES, "ended")


def test_a_caption_job_through_a_cluster_gives_the_in_process_bytes(
    nodes: list[EmbeddedRedis],
    client: Any,
    video: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`scenecast caption --redis-url` with a worker on the cluster: the job's frames,
    captions and status go through the node of its slot, and the subtitles are the
    bytes of the in-process run."""
    captioner = tiny_captioner()
    monkeypatch.setattr(
        "stream.subtitles.batch._load_captioner", lambda checkpoint, device, k: captioner
    )
    monkeypatch.delenv("SCENECAST_REDIS_URL", raising=False)

    def caption(images: Any, sources: Any, shown: Any) -> Any:
        return captioner.caption(list(images), beam=1, sources=sources, shown=shown)

    worker = Worker(
        cluster.connect(nodes[0].url),
        caption,
        WorkerConfig(
            policy=BatchPolicy(max_batch=4, max_wait_ms=20),
            model=captioner.model_id,
            sources_every_s=0.1,
            block_ms=100,
        ),
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    here, there = tmp_path / "here.vtt", tmp_path / "there.vtt"
    try:
        assert main(["caption", str(video), "-o", str(here), "--beam", "1"]) == 0
        assert main(["caption", str(video), "-o", str(there), "--redis-url", nodes[2].url]) == 0
    finally:
        worker.stop()
        thread.join(T)
    assert "--> " in here.read_text()
    assert here.read_bytes() == there.read_bytes()
    assert worker.stats.captioned > 0  # the worker on the cluster did the work
    capsys.readouterr()
