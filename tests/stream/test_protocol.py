"""The wire protocol, fed strings: round trips, every refusal, ids, resume, segments."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

from stream.protocol import (
    ERROR_CODES,
    MAX_SOURCES,
    Attention,
    CaptionMessage,
    ErrorMessage,
    Gap,
    Hello,
    Ping,
    Pong,
    ProtocolError,
    SourceStatus,
    Status,
    Subscribe,
    Unsubscribe,
    frame_path,
    id_after,
    id_before,
    iso_utc,
    parse_client_message,
    parse_frame_path,
    parse_server_message,
    parse_stream_id,
)
from stream.server.subscription import Subscription


def _caption(**overrides: Any) -> CaptionMessage:
    fields: dict[str, Any] = {
        "source": "cam0",
        "id": "1700000000000-0",
        "seq": 12,
        "t_start_ms": 6000,
        "t_end_ms": 6500,
        "capture_ts": "2023-11-14T22:13:20.123Z",
        "text": "a dog runs on the grass",
        "tokens": ("a", "dog", "runs", "on", "the", "grass"),
        "score": -0.42,
        "model": "sat-effnet-lite0",
        "latency_ms": 87.5,
        "segment_id": 3,
    }
    fields.update(overrides)
    return CaptionMessage(**fields)


def _frame(obj: object) -> str:
    return json.dumps(obj)


def _subscribe(**fields: object) -> str:
    return json.dumps({"type": "subscribe", **fields})


# -- round trips --------------------------------------------------------------------------

CLIENT_MESSAGES = [
    Subscribe(),
    Subscribe(sources=("cam0", "lobby.cam-2_b")),
    Subscribe(after="1700000000000-0"),
    Subscribe(after="0"),
    Subscribe(after="$"),
    Subscribe(sources=("a", "b"), after={"a": "5-1", "b": "$"}),
    Subscribe(after={"a": "0-0"}),
    Subscribe(attention=False),
    Subscribe(sources=("a",), attention=True),
    Unsubscribe(),
    Unsubscribe(sources=("a",)),
    Ping(),
    Ping(id=7),
    Ping(id="req-1"),
    Ping(id=1.5),
    Ping(id=False),
]


@pytest.mark.parametrize("message", CLIENT_MESSAGES, ids=repr)
def test_client_messages_round_trip(message: Any) -> None:
    assert parse_client_message(message.to_json()) == message


ATTENTION = Attention(grid=(2, 2), weights=((0, 255, 3, 4), (255, 0, 0, 0)))
SERVER_MESSAGES = [
    Hello(server="scenecast/0.1.0"),
    Hello(server="scenecast/0.1.0", time_ms=1764756000123),
    Hello(
        server="scenecast/0.1.0",
        sources=(
            SourceStatus(source="cam0", state="live"),
            SourceStatus(source="clip", state="error", detail="cannot open clip.mp4"),
        ),
    ),
    _caption(),
    _caption(text="un café über alles ☕", tokens=("un", "café"), attention=ATTENTION),
    _caption(is_final=True, score=0, latency_ms=0),
    _caption(
        tokens=("a", "dog"),
        attention=Attention(grid=(1, 2), weights=((255, 0), (3, 255)), fit="crop"),
        frame="1700000000000-7",
    ),
    Status(source="cam0", state="reconnecting", detail="read timeout", ts=iso_utc(10**18)),
    Gap(source="cam0", resume_after="1700000000000-4", dropped=17),
    ErrorMessage(code="bad_field", message="subscribe.sources must be …"),
    Pong(),
    Pong(id="req-1"),
    Pong(id=42),
]


@pytest.mark.parametrize("message", SERVER_MESSAGES, ids=lambda m: m.type)
def test_server_messages_round_trip(message: Any) -> None:
    assert parse_server_message(message.to_json()) == message


def test_to_json_is_compact_utf8_and_in_a_fixed_key_order() -> None:
    caption = _caption(
        text="café", tokens=("café",), attention=Attention.quantize([[1.0]], grid=(1, 1))
    )
    text = caption.to_json()
    assert " " not in text.replace("café", "")
    assert "café" in text  # ensure_ascii=False
    assert list(json.loads(text)) == [
        "type", "v", "source", "id", "seq", "t_start_ms", "t_end_ms", "capture_ts", "text",
        "tokens", "score", "model", "latency_ms", "segment_id", "is_final", "attention",
    ]  # fmt: skip
    assert json.loads(text)["attention"] == {"grid": [1, 1], "fit": "letterbox", "weights": [[255]]}
    assert "attention" not in json.loads(_caption().to_json())
    assert text == caption.to_json()
    assert Subscribe().to_json() == '{"type":"subscribe","v":1}'
    assert Pong().to_json() == '{"type":"pong","v":1,"id":null}'


def test_hellos_time_is_an_integer_or_left_out() -> None:
    assert '"time_ms":5' in Hello(server="s", time_ms=5).to_json()
    assert "time_ms" not in Hello(server="s").to_json()  # as older servers send it
    with pytest.raises(ProtocolError, match=r"hello.time_ms.*an integer \(ms\), or left out"):
        parse_server_message(
            '{"type": "hello", "v": 1, "server": "s", "sources": [], "time_ms": "now"}'
        )


def test_v_is_optional_from_a_client_and_required_from_the_server() -> None:
    assert parse_client_message('{"type": "ping"}') == Ping()
    assert parse_client_message('{"type": "ping", "v": 1, "id": null}') == Ping()
    with pytest.raises(ProtocolError) as err:
        parse_server_message('{"type": "pong", "id": 1}')
    assert err.value.code == "bad_message"
    assert '"v"' in err.value.message


def test_clients_may_read_server_messages_with_fields_they_do_not_know() -> None:
    obj = json.loads(_caption().to_json()) | {"speaker": "narrator"}
    assert parse_server_message(json.dumps(obj)) == _caption()


def test_a_protocol_error_becomes_an_error_message() -> None:
    with pytest.raises(ProtocolError) as err:
        parse_client_message('{"type": "subscribe", "sorces": ["cam0"]}')
    assert isinstance(err.value, ValueError)
    assert err.value.code in ERROR_CODES
    assert str(err.value).startswith("bad_field: ")
    message = ErrorMessage.from_error(err.value)
    assert parse_server_message(message.to_json()) == message
    assert message.code == "bad_field" and "sorces" in message.message


# -- refusals -------------------------------------------------------------------------------

SUBSCRIBE_FIELDS = "accepted fields: type, v, sources, after"
SOURCE_RULE = "A-Z, a-z, 0-9, '_', '.' and '-'"
AFTER_RULE = "'<ms>-<seq>' such as '1700000000000-0', '0' (from the beginning) or '$'"
BAD_FRAMES: list[tuple[str, str | bytes, str, list[str]]] = [
    # name, frame, code, fragments of the message
    ("binary", b'{"type":"ping"}', "bad_message",
     ["binary frames are not accepted; send JSON text"]),
    ("too large", '{"type":"ping","id":"' + "x" * 70_000 + '"}', "too_large", ["65536 bytes"]),
    ("too large in UTF-8", '"' + "é" * 40_000 + '"', "too_large", ["65536 bytes"]),
    ("not JSON", '{"type": "ping"', "bad_json",
     ["not valid JSON", "one JSON object per text frame"]),
    ("empty", "", "bad_json", ["not valid JSON"]),
    ("NaN", '{"type":"ping","id":NaN}', "bad_json", ["NaN is not valid JSON"]),
    ("infinite number", '{"type":"ping","id":1e999}', "bad_json", ["out of range"]),
    ("duplicate key", '{"type":"ping","type":"subscribe"}', "bad_json", ['duplicate key "type"']),
    ("array", "[1, 2]", "bad_message", ['a JSON object with a "type" field', "got an array"]),
    ("string", '"ping"', "bad_message", ['got a string "ping"']),
    ("no type", "{}", "bad_message", ['missing "type"', "subscribe, unsubscribe, ping"]),
    ("type not a string", '{"type": 3}', "bad_field",
     ["type must be a string", "got an integer 3"]),
    ("server type", '{"type": "hello"}', "unknown_type",
     ['"hello"', "subscribe, unsubscribe, ping"]),
    ("unknown type", '{"type": "sub"}', "unknown_type", ['"sub"', "subscribe, unsubscribe, ping"]),
    ("version 2", '{"type":"ping","v":2}', "unsupported_version", ["version 2", "version 1"]),
    ("version string", '{"type":"ping","v":"1"}', "bad_field", ["v must be an integer", '"1"']),
    ("version bool", '{"type":"ping","v":true}', "bad_field", ["v must be an integer"]),
    ("unknown field", _subscribe(source=["a"]), "bad_field",
     ['unknown field "source" in subscribe', SUBSCRIBE_FIELDS]),
    ("unknown fields", _subscribe(x=1, y=2), "bad_field",
     ['unknown fields "x", "y"', SUBSCRIBE_FIELDS]),
    ("sources a string", _subscribe(sources="cam0"), "bad_field",
     ["subscribe.sources must be an array of source names", 'got a string "cam0"']),
    ("sources of numbers", _subscribe(sources=[1]), "bad_field",
     ["subscribe.sources must be an array of source names", "null / left out for all sources"]),
    ("sources empty", _subscribe(sources=[]), "bad_field",
     ["subscribe.sources is empty", "leave it out for all sources"]),
    ("too many sources", _subscribe(sources=[f"s{i}" for i in range(257)]),
     "too_large", ["257 sources", f"at most {MAX_SOURCES}"]),
    ("bad source name", _subscribe(sources=["cam0", "my cam"]), "bad_field",
     ['subscribe.sources[1] "my cam" is not a source name', SOURCE_RULE]),
    ("source name too long", _subscribe(sources=["a" * 65]), "bad_field",
     ["is not a source name", "1 to 64 characters"]),
    ("source name with a newline", _subscribe(sources=["cam0\n"]),
     "bad_field", ["is not a source name"]),
    ("after a word", _subscribe(after="yesterday"), "bad_field",
     ['subscribe.after "yesterday" is not a valid position', AFTER_RULE]),
    ("after non-ASCII digits", _subscribe(after="١٢-٣"), "bad_field",
     ["is not a valid position"]),
    ("after without seq", _subscribe(after="5-"), "bad_field",
     ["is not a valid position"]),
    ("after with three parts", _subscribe(after="1-2-3"), "bad_field",
     ["is not a valid position"]),
    ("after beyond 64 bits", _subscribe(after="18446744073709551616-0"),
     "bad_field", ["is not a valid position"]),
    ("after a number", _subscribe(after=5), "bad_field",
     ["subscribe.after must be a caption id", "or an object mapping source names", "integer 5"]),
    ("after map of numbers", _subscribe(after={"cam0": 5}), "bad_field",  # not "got an object"
     ["subscribe.after['cam0'] must be a caption id", "got an integer 5"]),
    ("after map bad id", _subscribe(after={"cam0": "x"}), "bad_field",
     ["subscribe.after['cam0'] \"x\" is not a valid position", AFTER_RULE]),
    ("attention not a bool", _subscribe(attention="no"), "bad_field",
     ["subscribe.attention must be true or false, or left out", 'got a string "no"']),
    ("after map bad source", _subscribe(after={"my cam": "1-0"}),
     "bad_field", ['subscribe.after key "my cam" is not a source name']),
    ("after map too large", _subscribe(after={f"s{i}": "0" for i in range(300)}),
     "too_large", ["300 sources", f"at most {MAX_SOURCES}"]),
    ("after names other sources", _subscribe(sources=["a"], after={"b": "1-0"}),
     "bad_field", ["not in subscribe.sources: b", "leave sources out"]),
    ("unsubscribe sources a string", _frame({"type": "unsubscribe", "sources": "a"}), "bad_field",
     ["unsubscribe.sources must be an array"]),
    ("unsubscribe after", _frame({"type": "unsubscribe", "after": "0"}), "bad_field",
     ['unknown field "after" in unsubscribe', "accepted fields: type, v, sources"]),
    ("ping id array", _frame({"type": "ping", "id": [1]}), "bad_field",
     ["ping.id must be a short JSON scalar", "got an array of 1 items"]),
    ("ping id object", _frame({"type": "ping", "id": {"a": 1}}), "bad_field",
     ["ping.id must be a short JSON scalar", "got an object"]),
    ("ping id long", _frame({"type": "ping", "id": "x" * 65}), "bad_field",
     ["at most 64 characters"]),
    ("ping id huge int", _frame({"type": "ping", "id": 2**53}), "bad_field", ["2^53 - 1"]),
    ("ping id lone surrogate", '{"type": "ping", "id": "\\ud800"}', "bad_field",
     ["ping.id must be a short JSON scalar"]),
    ("ping extra field", _frame({"type": "ping", "id": 1, "ts": 2}), "bad_field",
     ['unknown field "ts" in ping', "accepted fields: type, v, id"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "code", "fragments"), [b[1:] for b in BAD_FRAMES], ids=[b[0] for b in BAD_FRAMES]
)
def test_every_bad_client_frame_says_what_is_wrong_and_what_is_accepted(
    frame: str | bytes, code: str, fragments: list[str]
) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_client_message(frame)
    assert err.value.code == code
    for fragment in fragments:
        assert fragment in err.value.message


def test_deep_nesting_is_bad_json_not_a_crash() -> None:
    frame = "[" * 200_000 + "]" * 200_000
    with pytest.raises(ProtocolError) as err:
        parse_client_message(frame, max_bytes=len(frame))
    assert err.value.code == "bad_json"
    assert "nested too deeply" in err.value.message


def test_max_bytes_is_the_limit() -> None:
    frame = '{"type":"ping"}'
    assert parse_client_message(frame, max_bytes=len(frame)) == Ping()
    with pytest.raises(ProtocolError, match="too_large"):
        parse_client_message(frame, max_bytes=len(frame) - 1)


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: Status(source="cam0", state="paused", ts=iso_utc(0)), "connecting, live"),
        (lambda: Status(source="cam0", state="live", ts="2023-11-14 22:13:20"), "UTC timestamp"),
        (lambda: Gap(source="cam0", resume_after="1-0", dropped=0), "dropped must be >= 1"),
        (lambda: Gap(source="cam0", resume_after="$", dropped=1), "not a Redis stream id"),
        (lambda: _caption(t_end_ms=10), "t_end_ms (10) is before t_start_ms (6000)"),
        (lambda: _caption(score=float("nan")), "score must be finite"),
        (lambda: _caption(latency_ms=-1.0), "latency_ms must be a finite number >= 0"),
        (lambda: _caption(id="latest"), "caption.id"),
        (lambda: _caption(source="cam 0"), "caption.source"),
        (lambda: _caption(attention=ATTENTION), "2 grids for 6 tokens"),
        (lambda: Attention(grid=(2, 2), weights=((1, 2, 3),)), "has 3 cells"),
        (lambda: Attention(grid=(1, 2), weights=((1, 256),)), "from 0 to 255"),
        (lambda: Attention(grid=(64, 64), weights=()), "h * w <= 1024"),
        (lambda: Attention(grid=(1, 1), weights=(), fit="stretch"), "['letterbox', 'crop']"),
        (lambda: _caption(frame="latest"), "caption.frame"),
        (lambda: SourceStatus(source="cam0", state="gone"), "is not a source state"),
    ],
)
def test_server_messages_refuse_to_be_built_wrong(build: Any, fragment: str) -> None:
    with pytest.raises(ProtocolError) as err:
        build()
    assert err.value.code == "bad_field"
    assert fragment in err.value.message


def test_server_message_fields_are_type_checked_when_read() -> None:
    obj = json.loads(_caption().to_json())
    for name, value, fragment in [
        ("seq", "12", 'caption.seq must be an integer; got a string "12"'),
        ("is_final", 0, "caption.is_final must be true or false"),
        ("score", True, "caption.score must be a number"),
        ("tokens", "a dog", "caption.tokens must be an array of strings"),
        ("attention", [1], "caption.attention must be an object"),
        ("frame", 7, "caption.frame must be a string, or left out"),
    ]:
        with pytest.raises(ProtocolError) as err:
            parse_server_message(json.dumps(obj | {name: value}))
        assert fragment in err.value.message
    del obj["text"]
    with pytest.raises(ProtocolError, match=r"caption\.text is required"):
        parse_server_message(json.dumps(obj))


def test_attention_without_fit_reads_as_letterbox() -> None:
    obj = json.loads(
        _caption(tokens=("a",), attention=Attention(grid=(1, 1), weights=((9,),))).to_json()
    )
    del obj["attention"]["fit"]  # as sent before the field existed
    message = parse_server_message(json.dumps(obj))
    assert isinstance(message, CaptionMessage) and message.attention is not None
    assert message.attention.fit == "letterbox"


def test_frame_paths_round_trip_and_bad_ones_say_what_is_accepted() -> None:
    assert parse_frame_path(frame_path("cam0", "1700000000000-7")) == ("cam0", "1700000000000-7")
    assert parse_frame_path("/metrics") is None
    for bad, fragment in [
        ("/frames/cam0/1-0", "use /frames/<source>/<frame id>.jpg"),
        ("/frames/cam 0/1-0.jpg", "use /frames/<source>/<frame id>.jpg"),
        ("/frames/cam0", "use /frames/<source>/<frame id>.jpg"),
        ("/frames/cam0/now.jpg", "is not a Redis stream id"),
    ]:
        with pytest.raises(ValueError, match=re.escape(fragment)):
            parse_frame_path(bad)


# -- stream ids and timestamps --------------------------------------------------------------


@pytest.mark.parametrize(
    ("later", "earlier"),
    [
        ("10-0", "9-5"),  # as strings, "10-0" < "9-5"
        ("5-10", "5-9"),
        ("100-0", "99-99"),
        ("1700000000001-0", "1700000000000-18446744073709551615"),
        ("0-1", "0-0"),
    ],
)
def test_stream_ids_compare_numerically(later: str, earlier: str) -> None:
    assert id_after(later, earlier)
    assert not id_after(earlier, later)
    assert not id_after(later, later)


@pytest.mark.parametrize(
    "text", ["", "5", "$", "a-b", "1-2-3", " 1-2", "1-2\n", "٣-1", "18446744073709551616-0", "-1"]
)
def test_parse_stream_id_refuses_what_redis_would(text: str) -> None:
    with pytest.raises(ValueError, match="not a Redis stream id"):
        parse_stream_id(text)


def test_id_before_is_the_previous_id() -> None:
    assert parse_stream_id("1700000000000-3") == (1700000000000, 3)
    assert id_before("5-3") == "5-2"
    assert id_before("5-0") == "4-18446744073709551615"
    assert id_before("0-0") == "0-0"
    assert id_after("5-0", id_before("5-0"))


def test_iso_utc_has_milliseconds_and_z() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1_700_000_000_123_999_999) == "2023-11-14T22:13:20.123Z"


# -- subscriptions ---------------------------------------------------------------------------


def _sub(*messages: Subscribe | Unsubscribe) -> Subscription:
    sub = Subscription()
    for message in messages:
        sub.apply(message)
    return sub


def test_a_new_subscription_wants_nothing() -> None:
    sub = Subscription()
    assert not sub.wants("cam0")
    assert sub.start_ids(["cam0"]) == {}
    assert not sub.offer("cam0", "1-0")


def test_subscribe_without_after_is_the_live_tail_of_every_source() -> None:
    sub = _sub(Subscribe())
    assert sub.wants("cam0") and sub.wants("added-later")
    assert sub.start_ids(["cam0", "clip"]) == {"cam0": "$", "clip": "$"}
    assert sub.cursor("cam0") is None


def test_subscribe_after_replays_then_goes_live() -> None:
    sub = _sub(Subscribe(sources=("a", "b"), after="0"))
    assert sub.start_ids(["a", "b", "c"]) == {"a": "0-0", "b": "0-0"}
    assert not sub.wants("c")

    sub = _sub(Subscribe(sources=("a", "b", "c"), after={"a": "7-1", "b": "$"}))
    assert sub.start_ids(["a", "b", "c"]) == {"a": "7-1", "b": "$", "c": "$"}

    sub = _sub(Subscribe(after="7-0"))  # applies to every source, also later ones
    assert sub.start_ids(["a", "appears-later"]) == {"a": "7-0", "appears-later": "7-0"}


def test_resume_after_a_reconnect_never_delivers_an_id_twice() -> None:
    log = [f"1700000000000-{i}" for i in range(12)]
    first = _sub(Subscribe(sources=("cam0",)))
    got = [i for i in log[:5] if first.offer("cam0", i)]
    last = first.cursor("cam0")
    assert got == log[:5] and last == log[4]

    # Reconnect with after=last; the replay (XREAD after `last`) and the live tail
    # overlap by the entries written while the replay ran.
    again = _sub(Subscribe(sources=("cam0",), after=last))
    assert again.start_ids(["cam0"]) == {"cam0": last}
    replay, live = log[5:10], log[8:]
    got_again = [i for i in [*replay, *live] if again.offer("cam0", i)]
    assert got_again == log[5:]
    assert not set(got) & set(got_again)


def test_delivered_ids_always_increase_whatever_is_offered() -> None:
    rng = random.Random(0)
    ids = [f"{ms}-{seq}" for ms in (9, 10, 100) for seq in range(12)]
    sub = _sub(Subscribe())
    delivered = []
    for _ in range(500):
        i = rng.choice(ids)
        if sub.offer("cam0", i):
            delivered.append(parse_stream_id(i))
    assert delivered == sorted(set(delivered))
    assert len(delivered) > 3


def test_the_cursor_compares_numerically_and_never_moves_back() -> None:
    sub = _sub(Subscribe(sources=("cam0",), after="9-5"))
    assert not sub.should_deliver("cam0", "9-5")
    assert sub.offer("cam0", "10-0")
    assert not sub.should_deliver("cam0", "9-6")
    sub.advance("cam0", "9-9")
    assert sub.cursor("cam0") == "10-0"


def test_subscribing_again_keeps_the_position_unless_after_says_otherwise() -> None:
    sub = _sub(Subscribe(sources=("a",)))
    assert sub.offer("a", "5-0")
    sub.apply(Subscribe(sources=("a", "b")))
    assert sub.start_ids(["a", "b"]) == {"a": "5-0", "b": "$"}
    sub.apply(Subscribe(sources=("a",), after="0"))  # ask for the replay again
    assert sub.should_deliver("a", "1-0")
    sub.apply(Subscribe(sources=("a",), after="$"))
    assert sub.start_ids(["a"]) == {"a": "$"}


def test_unsubscribe_forgets_sources_and_their_positions() -> None:
    sub = _sub(Subscribe(after="3-0"), Unsubscribe(sources=("b",)))
    assert sub.wants("a") and not sub.wants("b")
    assert sub.start_ids(["a", "b"]) == {"a": "3-0"}
    sub.apply(Subscribe(sources=("b",)))  # back, without `after`: live tail
    assert sub.start_ids(["a", "b"]) == {"a": "3-0", "b": "$"}

    sub = _sub(Subscribe(sources=("a", "b")), Unsubscribe(sources=("a",)))
    assert not sub.wants("a") and sub.wants("b")
    sub.apply(Unsubscribe())
    assert not sub.wants("b") and sub.start_ids(["a", "b"]) == {}


def _new_gaps(sub: Subscription) -> list[Gap | None]:
    """The gap messages of the pauses not reported yet, as the server sends them."""
    return [sub.gap_message(source, gap) for source, gap in sub.new_gaps()]


def test_a_full_queue_opens_a_gap_and_pauses_the_source() -> None:
    sub = _sub(Subscribe())
    assert sub.offer("a", "1-0")
    assert not sub.offer("a", "1-1", room=False)
    assert not sub.offer("a", "1-2")  # paused: counted, not sent
    assert sub.offer("b", "1-3")  # other sources go on
    assert sub.paused("a") and not sub.paused("b")
    assert _new_gaps(sub) == [Gap(source="a", resume_after="1-0", dropped=2)]
    assert _new_gaps(sub) == []  # once per pause
    assert sub.start_ids(["a", "b"]) == {"b": "1-3"}

    sub.apply(Subscribe(sources=("a",), after="1-0"))  # what the gap message says to do
    assert not sub.paused("a")
    assert sub.start_ids(["a"]) == {"a": "1-0"}
    assert [i for i in ["1-1", "1-2", "1-4"] if sub.offer("a", i)] == ["1-1", "1-2", "1-4"]


def test_a_gap_before_anything_was_sent_resumes_just_before_the_dropped_caption() -> None:
    sub = _sub(Subscribe(sources=("a",)))
    assert not sub.offer("a", "7-0", room=False)
    (gap,) = _new_gaps(sub)
    assert gap.resume_after == "6-18446744073709551615"
    sub.apply(Subscribe(sources=("a",)))  # without `after`: resumes from the gap too
    assert sub.start_ids(["a"]) == {"a": "6-18446744073709551615"}
    assert sub.offer("a", "7-0")


def test_attention_is_quantized_per_token_to_its_peak() -> None:
    attention = Attention.quantize([[0.1, 0.2, 0.0, 0.4], [0.0] * 4], grid=(2, 2))
    assert attention.weights == ((64, 128, 0, 255), (0, 0, 0, 0))
