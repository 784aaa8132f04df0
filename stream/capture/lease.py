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

LEASE_MS = 10_000  # five missed heartbeats

# KEYS[1] owner key; ARGV[1] our id, ARGV[2] lease ms. 1: ours (taken or renewed), 0: not.
RENEW_LUA = """
local owner = redis.call('GET', KEYS[1])
if owner == false or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# KEYS[1] owner key; ARGV[1] our id. Deletes the lease only if it is ours.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


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
