"""A private Redis Cluster for the tests: three primaries on free loopback ports.

Started from the same ``redis-server`` binary as the tests' single Redis (never a
shared instance): each node with cluster mode on, the 16,384 slots split in three
ranges with ``CLUSTER ADDSLOTS``, the nodes introduced with ``CLUSTER MEET``, ready
when every node reports ``cluster_state:ok`` and knows the other two.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import redis

from stream.embedded_redis import EmbeddedRedis, free_port

SLOTS = 16384


@contextlib.contextmanager
def redis_cluster(nodes: int = 3, *, timeout: float = 20.0) -> Iterator[list[EmbeddedRedis]]:
    servers: list[EmbeddedRedis] = []
    try:
        for _ in range(nodes):
            server = EmbeddedRedis(port=_bus_port_free(), extra_args=["--cluster-enabled", "yes"])
            # the node's own state file, in the server's private directory
            server.extra_args += ["--cluster-config-file", f"nodes-{server.port}.conf"]
            servers.append(server.start())
        clients = [redis.Redis(host="127.0.0.1", port=s.port) for s in servers]
        for i, client in enumerate(clients):
            first, last = i * SLOTS // nodes, (i + 1) * SLOTS // nodes
            client.execute_command("CLUSTER ADDSLOTS", *range(first, last))
        for client in clients[1:]:
            client.execute_command("CLUSTER MEET", "127.0.0.1", servers[0].port)
        deadline = time.monotonic() + timeout
        while not all(_ready(c, nodes) for c in clients):
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        for client in clients:
            client.close()
        yield servers
    finally:
        for server in servers:
            server.stop()


def _bus_port_free() -> int:
    """A free port whose cluster bus port (+10000) exists and is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 < 65536 and _free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _ready(client: redis.Redis, nodes: int) -> bool:
    fields: dict[str, str] = client.execute_command("CLUSTER INFO")
    return fields.get("cluster_state") == "ok" and int(fields["cluster_known_nodes"]) == nodes
