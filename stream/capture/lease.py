"""One capture per source: a lease in ``owner:{src}``.

Two captures of one source name — the same camera started twice by mistake, on two
machines, or a replacement started before the old one stopped — would publish into
the one ``frames:{src}``: frames of two pictures interleaved (captions flipping
between them), and sequence numbers given twice, whose captions the publish script
then drops as duplicates. So a capture holds a lease on its source: a key set only if
absent (``SET NX PX``), with its id, renewed with each heartbeat (every 2 s) and
expiring after ``LEASE_MS`` if it is not (a capture that died). A second capture of
the name waits, saying whose the source is, and takes over when the lease is free; a
capture whose lease was taken (it was cut off from Redis longer than the lease) stops
with an error instead of publishing beside the new one.
"""

from __future__ import annotations

import os
import socket
import uuid

from worker.bus.scripts import lua

LEASE_MS = 10_000  # five missed heartbeats

# Takes or renews the lease: 1 when it is ours (worker/bus/lua/lease_renew.lua).
RENEW_LUA = lua("lease_renew")
# Deletes the lease only if it is ours (worker/bus/lua/lease_release.lua).
RELEASE_LUA = lua("lease_release")


def capture_id() -> str:
    """Who holds a lease, as shown to a capture that waits for it: host, pid, a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def waiting_message(source: str, owner: str) -> str:
    return (
        f"{source}: another capture publishes this source ({owner}); waiting until it "
        "stops (its lease lapses 10 s after it dies). To capture both, give this one "
        "another --name"
    )


def taken_message(source: str, owner: str) -> str:
    return (
        f"{source}: another capture took this source over ({owner}) while this one was "
        "cut off from Redis; stopping rather than publishing beside it"
    )
