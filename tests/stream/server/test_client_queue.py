"""A client's caption queue and its gaps, without a socket: what the server counts is
what it sent."""

from __future__ import annotations

import json
from collections.abc import Callable

from stream.protocol import Subscribe
from stream.server.hub import Client


def _sent(client: Client) -> list[dict[str, object]]:
    """What the writer would send, in order (a gap's message made as its turn comes)."""
    out = []
    while client.captions:
        item = client.captions.popleft()
        text = item if isinstance(item, str) else item()
        if text is not None:
            out.append(json.loads(text))
    return out


def _caption(source: str, seq: int) -> Callable[[], str]:
    return lambda: json.dumps({"type": "caption", "source": source, "seq": seq})


def test_the_gap_counters_are_the_gap_messages_sent_and_the_drops_they_report() -> None:
    """gaps_total counted 20 for 10 gap messages and dropped_captions 66,129 against
    55,231 in the messages: pauses were counted when queued (also those whose message
    was never sent: the client subscribed again first) and drops after the message."""
    counters: dict[str, int] = {}
    client = Client(ws=None, queue_size=2, counters=counters)  # type: ignore[arg-type]
    client.sub.apply(Subscribe())
    for seq in range(10):  # 2 fit, 8 dropped: one gap
        client.offer(f"{1000 + seq}-0", "cam", _caption("cam", seq))
    sent = _sent(client)
    gaps = [m for m in sent if m["type"] == "gap"]
    assert [m["type"] for m in sent] == ["caption", "caption", "gap"]
    assert counters == {"gaps": 1, "dropped_captions": gaps[0]["dropped"]} == {
        "gaps": 1, "dropped_captions": 8
    }  # fmt: skip
    for seq in range(10, 15):  # paused, its gap sent: not sent, and not counted again
        client.offer(f"{1000 + seq}-0", "cam", _caption("cam", seq))
    assert _sent(client) == [] and counters == {"gaps": 1, "dropped_captions": 8}

    # a second pause whose gap is not sent: the client subscribed again meanwhile
    client.sub.apply(Subscribe(after="1014-0"))
    for seq in range(15, 20):
        client.offer(f"{1000 + seq}-0", "cam", _caption("cam", seq))
    client.sub.apply(Subscribe(after="1019-0"))
    assert [m["type"] for m in _sent(client)] == ["caption", "caption"]
    assert counters == {"gaps": 1, "dropped_captions": 8}
