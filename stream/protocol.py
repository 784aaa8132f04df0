"""The websocket wire protocol, sans I/O: messages and their parsing.

Nothing here touches a socket or Redis (like the ``websockets`` library's
``protocol.py``). The server hands this module the text of each client frame and the
captions it reads from ``captions:{src}``; it gets back typed messages, JSON text, and
decisions such as "send this caption to this client". The tests do the same.

Messages
--------
One JSON object per websocket *text* frame, always with ``"type"`` and ``"v"`` (the
protocol version, :data:`PROTOCOL_VERSION`)::

    client → server   subscribe {sources?, after?}   unsubscribe {sources?}   ping {id?}
    server → client   hello  caption  status  gap  error  pong

Each message is a frozen dataclass below with ``to_json()`` (compact, UTF-8 text,
keys in a fixed order: ``type``, ``v``, then the fields as declared). The server reads
client frames with :func:`parse_client_message`; clients and tests read server frames
with :func:`parse_server_message`. Both raise :class:`ProtocolError` (``code`` and a
``message`` naming what was wrong and what is accepted); the server answers it with
``ErrorMessage.from_error(err)`` and keeps the connection open.

Decisions
---------
*Strict in, lenient out.* A client message with a field the server does not know is
rejected (``bad_field``, listing the accepted fields): a typo such as ``"source"`` for
``"sources"`` would otherwise silently subscribe to every source. Clients may omit
``v``; any other value than 1 is ``unsupported_version``. The other way round, clients
must ignore fields they do not know: the server may add optional fields within
version 1, and :func:`parse_server_message` ignores them.

*Where a subscription starts* (``after``; see :class:`stream.server.subscription.Subscription`):

* no ``after``: the live tail only, for sources the client newly subscribes to; a
  source it already follows keeps its position (sending ``subscribe`` again is
  harmless, and after a ``gap`` it resumes exactly where the client's queue overflowed);
* ``after: "<ms>-<seq>"``: replay the captions with a larger id, then the live tail;
  ``"0"`` or ``"0-0"``: the whole replay log; ``"$"``: the live tail, forgetting any
  position. An explicit ``after`` always replaces the position (a client may ask for
  a replay again);
* a string ``after`` with ``sources`` omitted applies to every source, also those that
  appear later; an object ``{source: id}`` applies per source, and the sources it does
  not name get the rule for "no ``after``".

Ids are Redis stream ids, compared numerically (``"10-0"`` is after ``"9-5"``). A
client is never sent a caption whose id is not after the last one it was sent for that
source, so the overlap between a replay and the live tail is harmless.

*Segments and* ``is_final``: every sampled frame yields exactly one caption message,
sent as soon as it exists. Consecutive captions of a source whose normalised text
(lower case, single spaces) is the same share a ``segment_id``; a different text
starts segment ``previous + 1`` (the rule of :mod:`worker.bus.segments`; the worker
assigns the ids atomically as it publishes). Whether a caption is the last of its
segment is only known when the *next* one arrives, so captions go out with
``is_final: false`` and a client applies one rule: **a caption with a new
``segment_id`` finalises the previous segment of that source, and a ``status`` of
``ended`` or ``error`` finalises the last one**. ``is_final: true`` is sent only when
it is known at send time: on a caption the server can already see a successor of (a
replay), or in offline output that has seen the whole stream (``scenecast caption``'s
JSONL and subtitle files). Holding each caption back until the next one would make
every ``is_final`` exact, at the price of one sampling interval of latency on every
live caption: captions describe *now*, so we do not.

*Gaps*: each client has a bounded queue. When a caption does not fit, the server drops
it, pauses that source for the client and sends ``gap {source, resume_after,
dropped}``; the client subscribes again (``after: resume_after``, or simply without
``after``) to get the missing captions from the replay log and then the live tail.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, TypeAlias, get_args

from stream.exceptions import ProtocolError, ProtocolErrorCode
from worker.bus.names import SOURCE_NAME_RULE, is_source_name

__all__ = [
    "BEGINNING",
    "CLIENT_TYPES",
    "ERROR_CODES",
    "LIVE",
    "MAX_MESSAGE_BYTES",
    "MAX_SOURCES",
    "PROTOCOL_VERSION",
    "SERVER_TYPES",
    "SOURCE_NAME_RULE",
    "SOURCE_STATES",
    "Attention",
    "CaptionMessage",
    "ClientMessage",
    "ErrorMessage",
    "Gap",
    "Hello",
    "Ping",
    "Pong",
    "ProtocolError",
    "ProtocolErrorCode",
    "ServerMessage",
    "SourceStatus",
    "Status",
    "StreamId",
    "Subscribe",
    "Unsubscribe",
    "check_after_not_ahead",
    "format_stream_id",
    "frame_path",
    "id_after",
    "id_before",
    "is_source_name",
    "iso_utc",
    "parse_after",
    "parse_client_message",
    "parse_frame_path",
    "parse_server_message",
    "parse_stream_id",
]

PROTOCOL_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 65_536  # a client frame, UTF-8 encoded
MAX_SERVER_MESSAGE_BYTES: Final = 1 << 20  # what parse_server_message accepts by default
MAX_SOURCES: Final = 256  # names in one subscribe / unsubscribe, entries in one `after` map
MAX_PING_ID_CHARS: Final = 64
MAX_ATTENTION_CELLS: Final = 1024  # h * w of an attention grid (32 x 32)
LIVE: Final = "$"  # `after` / start id: only captions added from now on
BEGINNING: Final = "0-0"  # `after` / start id: the whole replay log

CLIENT_TYPES: Final = ("subscribe", "unsubscribe", "ping")
SERVER_TYPES: Final = ("hello", "caption", "status", "gap", "error", "pong")
SOURCE_STATES: Final = ("connecting", "live", "reconnecting", "ended", "error")
FITS: Final = ("letterbox", "crop")  # how the model fitted a frame to its square input
ERROR_CODES: Final[tuple[ProtocolErrorCode, ...]] = get_args(ProtocolErrorCode)

AFTER_RULE: Final = (
    "a caption id '<ms>-<seq>' such as '1700000000000-0', "
    "'0' (from the beginning) or '$' (only new captions)"
)

_STREAM_ID_RE: Final = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_TIMESTAMP_RE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"
)
_U64_MAX: Final = 2**64 - 1
_JS_SAFE_INT: Final = 2**53 - 1

StreamId: TypeAlias = tuple[int, int]  # (ms, seq) of a Redis stream id
PingId: TypeAlias = str | int | float | bool | None


# -- names, stream ids, timestamps ----------------------------------------------------------


def parse_stream_id(text: str) -> StreamId:
    """``"1700000000000-3"`` → ``(1700000000000, 3)``; ValueError for anything else."""
    match = _STREAM_ID_RE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a Redis stream id: expected '<ms>-<seq>' such as '1700000000000-0'"
        )
    ms, seq = int(match[1]), int(match[2])
    if ms > _U64_MAX or seq > _U64_MAX:
        raise ValueError(f"{text!r} is not a Redis stream id: both parts must fit in 64 bits")
    return ms, seq


def format_stream_id(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"


FRAME_PATH_RULE: Final = "/frames/<source>/<frame id>.jpg, with a caption's source and frame"


def frame_path(source: str, frame: str) -> str:
    """The HTTP path of a captioned frame's JPEG (a caption's ``source`` and ``frame``)."""
    return f"/frames/{source}/{frame}.jpg"


def parse_frame_path(path: str) -> tuple[str, str] | None:
    """``/frames/<source>/<id>.jpg`` → (source, id); None for other paths;
    ValueError, saying what is accepted, for a malformed one."""
    if not path.startswith("/frames/"):
        return None
    source, _, name = path.removeprefix("/frames/").partition("/")
    frame = name.removesuffix(".jpg")
    if not is_source_name(source) or frame == name:
        raise ValueError(f"bad frame path {_preview(path)}: use {FRAME_PATH_RULE}")
    parse_stream_id(frame)  # ValueError naming the bad id
    return source, frame


def id_after(a: str, b: str) -> bool:
    """Whether stream id ``a`` comes after ``b``: milliseconds first, then the sequence."""
    return parse_stream_id(a) > parse_stream_id(b)


def id_before(text: str) -> str:
    """The greatest stream id smaller than ``text`` (``"0-0"`` stays ``"0-0"``).

    "Resume after ``id_before(x)``" replays from ``x`` inclusive.
    """
    ms, seq = parse_stream_id(text)
    if seq > 0:
        return format_stream_id((ms, seq - 1))
    if ms > 0:
        return format_stream_id((ms - 1, _U64_MAX))
    return BEGINNING


def iso_utc(ns: int) -> str:
    """UTC wall clock in nanoseconds → ``"2023-11-14T22:13:20.123Z"`` (milliseconds, 'Z')."""
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest // 1_000_000:03d}Z"


def parse_after(text: str) -> StreamId | None:
    """An ``after`` value → the cursor it stands for (None: the live tail)."""
    if text == LIVE:
        return None
    if text == "0":
        return (0, 0)
    return parse_stream_id(text)


AHEAD_SLACK_MS: Final = 5_000  # clock sync error allowed between server and Redis


def check_after_not_ahead(after: str | Mapping[str, str] | None, *, now_ms: float) -> None:
    """ProtocolError when an ``after`` id is later than ``now_ms`` (Redis's clock, which
    caption ids count in): no caption has such an id yet, and a replay after it would
    be silent until then — an id from elsewhere, or made up."""
    values = [after] if isinstance(after, str) else list((after or {}).values())
    for value in values:
        cursor = parse_after(value)
        if cursor is not None and cursor[0] > now_ms + AHEAD_SLACK_MS:
            raise ProtocolError(
                "bad_field",
                f"subscribe.after {_preview(value)} is later than the server's time "
                f"({int(now_ms)} ms on its Redis's clock): no caption has that id yet; "
                'accepted: the id of a caption this server sent, "0" (the whole log) or '
                '"$" (the live tail)',
            )


# -- validation helpers (shared by the dataclasses and the parsers) --------------------------


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object"


def _preview(value: object, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(value: object) -> str:
    """How an error message shows a bad value: its JSON type, and the value if short."""
    kind = _json_type(value)
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return f"an array of {len(value)} items"
    if isinstance(value, dict):
        return "an object"
    article = "an" if kind == "integer" else "a"
    return f"{article} {kind} {_preview(value)}"


def _bad_field(where: str, expected: str, value: object) -> ProtocolError:
    return ProtocolError("bad_field", f"{where} must be {expected}; got {_describe(value)}")


def _check_source(name: str, where: str) -> None:
    if not is_source_name(name):
        raise ProtocolError(
            "bad_field", f"{where} {_preview(name)} is not a source name: use {SOURCE_NAME_RULE}"
        )


def _check_sources(sources: tuple[str, ...] | None, where: str) -> None:
    if sources is None:
        return
    if not sources:
        raise ProtocolError(
            "bad_field",
            f"{where} is empty: list at least one source name, or leave it out for all sources",
        )
    if len(sources) > MAX_SOURCES:
        raise ProtocolError(
            "too_large", f"{where} names {len(sources)} sources; at most {MAX_SOURCES} are accepted"
        )
    for i, name in enumerate(sources):
        _check_source(name, f"{where}[{i}]")


def _check_after_id(value: str, where: str) -> None:
    try:
        parse_after(value)
    except ValueError:
        raise ProtocolError(
            "bad_field", f"{where} {_preview(value)} is not a valid position: use {AFTER_RULE}"
        ) from None


def _check_stream_id(value: str, where: str) -> None:
    try:
        parse_stream_id(value)
    except ValueError as e:
        raise ProtocolError("bad_field", f"{where}: {e}") from None


def _check_state(state: str, where: str) -> None:
    if state not in SOURCE_STATES:
        raise ProtocolError(
            "bad_field",
            f"{where} {_preview(state)} is not a source state; "
            f"accepted: {', '.join(SOURCE_STATES)}",
        )


def _check_timestamp(value: str, where: str) -> None:
    if _TIMESTAMP_RE.fullmatch(value) is None:
        raise ProtocolError(
            "bad_field",
            f"{where} {_preview(value)} is not a UTC timestamp like '2023-11-14T22:13:20.123Z'",
        )


def _check_non_negative(value: float, where: str) -> None:
    if not math.isfinite(value) or value < 0:
        raise ProtocolError("bad_field", f"{where} must be a finite number >= 0; got {value!r}")


def _dumps(value: dict[str, Any]) -> str:
    # allow_nan=False: NaN and Infinity are not JSON, and browsers' JSON.parse rejects them.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# -- messages ---------------------------------------------------------------------------------


class _Message:
    """What every message has: a ``type``, the version, and its JSON text."""

    __slots__ = ()
    type: ClassVar[str]

    def _body(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: ``type``, ``v``, then the fields in declaration order."""
        return {"type": self.type, "v": PROTOCOL_VERSION, **self._body()}

    def to_json(self) -> str:
        """Compact JSON text for one websocket text frame (ValueError on NaN/Infinity)."""
        return _dumps(self.to_dict())


@dataclass(frozen=True, kw_only=True, slots=True)
class Subscribe(_Message):
    """Ask for captions: ``sources`` None = all, present and future; ``after``: see module.

    ``attention``: False = captions without their attention grids from now on, on this
    connection (a sixth of the bytes, for clients that only read the text); True = with
    them again; None (left out) = as before (with them, on a new connection).
    """

    type: ClassVar[str] = "subscribe"
    sources: tuple[str, ...] | None = None
    after: str | Mapping[str, str] | None = None
    attention: bool | None = None

    def __post_init__(self) -> None:
        _check_sources(self.sources, "subscribe.sources")
        if isinstance(self.after, str):
            _check_after_id(self.after, "subscribe.after")
        elif self.after is not None:
            if len(self.after) > MAX_SOURCES:
                raise ProtocolError(
                    "too_large",
                    f"subscribe.after names {len(self.after)} sources; "
                    f"at most {MAX_SOURCES} are accepted",
                )
            for name, value in self.after.items():
                _check_source(name, "subscribe.after key")
                _check_after_id(value, f"subscribe.after[{name!r}]")
            if self.sources is not None:
                extra = sorted(set(self.after) - set(self.sources))
                if extra:
                    raise ProtocolError(
                        "bad_field",
                        f"subscribe.after names sources that are not in subscribe.sources: "
                        f"{', '.join(extra)}; add them to sources or leave sources out",
                    )

    def _body(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.sources is not None:
            out["sources"] = list(self.sources)
        if self.after is not None:
            out["after"] = self.after if isinstance(self.after, str) else dict(self.after)
        if self.attention is not None:
            out["attention"] = self.attention
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class Unsubscribe(_Message):
    """Stop captions of ``sources`` (None: of every source) and forget their positions."""

    type: ClassVar[str] = "unsubscribe"
    sources: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _check_sources(self.sources, "unsubscribe.sources")

    def _body(self) -> dict[str, Any]:
        return {} if self.sources is None else {"sources": list(self.sources)}


@dataclass(frozen=True, kw_only=True, slots=True)
class Ping(_Message):
    """Keep-alive / round-trip probe; the ``pong`` echoes ``id``."""

    type: ClassVar[str] = "ping"
    id: PingId = None

    def __post_init__(self) -> None:
        _check_ping_id(self.id, "ping.id")

    def _body(self) -> dict[str, Any]:
        return {} if self.id is None else {"id": self.id}


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceStatus:
    """One entry of ``hello.sources``."""

    source: str
    state: str
    detail: str = ""

    def __post_init__(self) -> None:
        _check_source(self.source, "hello.sources[].source")
        _check_state(self.state, "hello.sources[].state")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "state": self.state, "detail": self.detail}


@dataclass(frozen=True, kw_only=True, slots=True)
class Hello(_Message):
    """First message on a connection: who the server is and the sources it knows."""

    type: ClassVar[str] = "hello"
    server: str  # "name/version", e.g. "scenecast/0.1.0"
    sources: tuple[SourceStatus, ...] = ()
    # the server's time on Redis's clock, ms since the epoch: stream ids are times on it,
    # so a client whose own clock is off can still ask for "the last minute"
    time_ms: int | None = None

    def _body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "server": self.server,
            "sources": [s.to_dict() for s in self.sources],
        }
        if self.time_ms is not None:
            body["time_ms"] = self.time_ms
        return body


@dataclass(frozen=True, kw_only=True, slots=True)
class Attention:
    """Per-token attention grids for the viewer, quantized to uint8 (255 = the peak).

    ``weights[i]`` is token ``i``'s grid of ``h * w`` cells, row-major. The grid covers
    the model's square input, made from the frame as ``fit`` says: ``letterbox`` — the
    frame's longer side spans the square, centred, the rest is padding; ``crop`` — its
    shorter side does, and the rest of the frame was cut off.
    """

    grid: tuple[int, int]  # (h, w)
    weights: tuple[tuple[int, ...], ...]
    fit: str = "letterbox"  # one of FITS

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ProtocolError(
                "bad_field", f"caption.attention.fit must be one of {list(FITS)}; got {self.fit!r}"
            )
        h, w = self.grid
        if h < 1 or w < 1 or h * w > MAX_ATTENTION_CELLS:
            raise ProtocolError(
                "bad_field",
                f"caption.attention.grid {[h, w]} must be [h, w] with h, w >= 1 "
                f"and h * w <= {MAX_ATTENTION_CELLS}",
            )
        for i, row in enumerate(self.weights):
            if len(row) != h * w:
                raise ProtocolError(
                    "bad_field",
                    f"caption.attention.weights[{i}] has {len(row)} cells; the grid {h}x{w} "
                    f"needs {h * w}",
                )
            if any(type(x) is not int or not 0 <= x <= 255 for x in row):
                raise ProtocolError(
                    "bad_field",
                    f"caption.attention.weights[{i}] must hold integers from 0 to 255",
                )

    @classmethod
    def quantize(
        cls, maps: Sequence[Sequence[float]], *, grid: tuple[int, int], fit: str = "letterbox"
    ) -> Attention:
        """Float maps (one flat ``h * w`` row per token) → uint8, each row scaled to its max."""
        rows = []
        for row in maps:
            peak = max(row, default=0.0)
            scale = 255.0 / peak if peak > 0 else 0.0
            rows.append(tuple(min(255, max(0, round(x * scale))) for x in row))
        return cls(grid=grid, weights=tuple(rows), fit=fit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "grid": list(self.grid),
            "fit": self.fit,
            "weights": [list(row) for row in self.weights],
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class CaptionMessage(_Message):
    """One frame's caption. (Not ``Caption``: that is the captioner's model output.)"""

    type: ClassVar[str] = "caption"
    source: str
    id: str  # the Redis stream id in captions:{source}: the client's resume cursor
    seq: int  # the frame's sequence number in its source
    t_start_ms: int  # media time the caption covers, [t_start_ms, t_end_ms)
    t_end_ms: int
    capture_ts: str  # UTC wall clock of the capture, iso_utc()
    text: str
    tokens: tuple[str, ...]
    score: float  # summed log-probability of the words and <end> (see captioner.Caption)
    model: str
    latency_ms: float  # capture → caption published
    segment_id: int
    is_final: bool = False  # see the module docstring: mostly learnt from the next caption
    attention: Attention | None = None
    # the frame's id in frames:{source}: GET /frames/{source}/{frame}.jpg serves the
    # picture while Redis keeps it (live sources keep only their newest frames)
    frame: str | None = None

    def __post_init__(self) -> None:
        _check_source(self.source, "caption.source")
        _check_stream_id(self.id, "caption.id")
        if self.frame is not None:
            _check_stream_id(self.frame, "caption.frame")
        for name in ("seq", "t_start_ms", "segment_id"):
            if getattr(self, name) < 0:
                raise ProtocolError("bad_field", f"caption.{name} must be >= 0")
        if self.t_end_ms < self.t_start_ms:
            raise ProtocolError(
                "bad_field",
                f"caption.t_end_ms ({self.t_end_ms}) is before t_start_ms ({self.t_start_ms})",
            )
        _check_timestamp(self.capture_ts, "caption.capture_ts")
        if not math.isfinite(self.score):
            raise ProtocolError("bad_field", f"caption.score must be finite; got {self.score!r}")
        _check_non_negative(self.latency_ms, "caption.latency_ms")
        if self.attention is not None and len(self.attention.weights) != len(self.tokens):
            raise ProtocolError(
                "bad_field",
                f"caption.attention has {len(self.attention.weights)} grids for "
                f"{len(self.tokens)} tokens; send one grid per token",
            )

    def _body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "id": self.id,
            "seq": self.seq,
            "t_start_ms": self.t_start_ms,
            "t_end_ms": self.t_end_ms,
            "capture_ts": self.capture_ts,
            "text": self.text,
            "tokens": list(self.tokens),
            "score": self.score,
            "model": self.model,
            "latency_ms": self.latency_ms,
            "segment_id": self.segment_id,
            "is_final": self.is_final,
        }
        if self.attention is not None:
            out["attention"] = self.attention.to_dict()
        if self.frame is not None:
            out["frame"] = self.frame
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class Status(_Message):
    """A source changed state (``ended`` / ``error`` also finalise its last segment)."""

    type: ClassVar[str] = "status"
    source: str
    state: str  # one of SOURCE_STATES
    detail: str = ""
    ts: str  # iso_utc()

    def __post_init__(self) -> None:
        _check_source(self.source, "status.source")
        _check_state(self.state, "status.state")
        _check_timestamp(self.ts, "status.ts")

    def _body(self) -> dict[str, Any]:
        return {"source": self.source, "state": self.state, "detail": self.detail, "ts": self.ts}


@dataclass(frozen=True, kw_only=True, slots=True)
class Gap(_Message):
    """The client's queue overflowed: ``dropped`` captions of ``source`` were not sent.

    The source is paused for this client until it subscribes to it again: with
    ``after=resume_after`` (the last id it got) or without ``after``, the hole is
    filled from the replay log and the live tail follows; ``after="$"`` skips it.
    """

    type: ClassVar[str] = "gap"
    source: str
    resume_after: str
    dropped: int

    def __post_init__(self) -> None:
        _check_source(self.source, "gap.source")
        _check_stream_id(self.resume_after, "gap.resume_after")
        if self.dropped < 1:
            raise ProtocolError("bad_field", f"gap.dropped must be >= 1; got {self.dropped}")

    def _body(self) -> dict[str, Any]:
        return {"source": self.source, "resume_after": self.resume_after, "dropped": self.dropped}


@dataclass(frozen=True, kw_only=True, slots=True)
class ErrorMessage(_Message):
    """The server could not use a client message; the connection stays open."""

    type: ClassVar[str] = "error"
    code: str  # one of ERROR_CODES (clients must accept codes they do not know)
    message: str

    @classmethod
    def from_error(cls, error: ProtocolError) -> ErrorMessage:
        return cls(code=error.code, message=error.message)

    def _body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, kw_only=True, slots=True)
class Pong(_Message):
    """Answer to ``ping``; ``id`` is the ping's (null when it had none)."""

    type: ClassVar[str] = "pong"
    id: PingId = None

    def __post_init__(self) -> None:
        _check_ping_id(self.id, "pong.id")

    def _body(self) -> dict[str, Any]:
        return {"id": self.id}


ClientMessage: TypeAlias = Subscribe | Unsubscribe | Ping
ServerMessage: TypeAlias = Hello | CaptionMessage | Status | Gap | ErrorMessage | Pong

PING_ID_RULE: Final = (
    f"a short JSON scalar: a string of at most {MAX_PING_ID_CHARS} characters, "
    f"an integer of at most 2^53 - 1 in size, a finite number, a boolean or null"
)


def _check_ping_id(value: PingId, where: str) -> None:
    ok = (
        value is None
        or isinstance(value, bool)
        or (isinstance(value, int) and abs(value) <= _JS_SAFE_INT)
        or (isinstance(value, float) and math.isfinite(value))
        or (isinstance(value, str) and len(value) <= MAX_PING_ID_CHARS and _encodable(value))
    )
    if not ok:
        raise _bad_field(where, PING_ID_RULE, value)


def _encodable(text: str) -> bool:
    """False for strings with lone surrogates (JSON allows "\\ud800"; UTF-8 does not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- parsing ------------------------------------------------------------------------------


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {_preview(key)}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _decode(text: str | bytes, *, max_bytes: int) -> dict[str, Any]:
    """One websocket frame → the JSON object it holds, or ProtocolError."""
    if not isinstance(text, str):
        raise ProtocolError("bad_message", "binary frames are not accepted; send JSON text")
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ProtocolError(
            "too_large", f"the message is larger than the limit of {max_bytes} bytes (UTF-8)"
        )
    try:
        value = json.loads(
            text,
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise ProtocolError(
            "bad_json",
            f"the message is not valid JSON ({reason}); "
            'send one JSON object per text frame, such as {"type": "ping"}',
        ) from None
    if not isinstance(value, dict):
        raise ProtocolError(
            "bad_message",
            f'a message must be a JSON object with a "type" field; got {_describe(value)}',
        )
    return value


def _check_version(obj: Mapping[str, Any], *, required: bool) -> None:
    if "v" not in obj:
        if required:
            raise ProtocolError(
                "bad_message", f'missing "v" (the protocol version, {PROTOCOL_VERSION})'
            )
        return
    v = obj["v"]
    if type(v) is not int:
        raise _bad_field("v", f"an integer (the protocol version, {PROTOCOL_VERSION})", v)
    if v != PROTOCOL_VERSION:
        raise ProtocolError(
            "unsupported_version",
            f"protocol version {v} is not supported; this side speaks version {PROTOCOL_VERSION}",
        )


def _message_type(obj: Mapping[str, Any], accepted: tuple[str, ...]) -> str:
    names = ", ".join(accepted)
    if "type" not in obj:
        raise ProtocolError("bad_message", f'missing "type"; accepted types: {names}')
    kind = obj["type"]
    if not isinstance(kind, str):
        raise _bad_field("type", f"a string, one of: {names}", kind)
    if kind not in accepted:
        raise ProtocolError(
            "unknown_type", f"unknown message type {_preview(kind)}; accepted types: {names}"
        )
    return kind


class _Fields:
    """Typed reads from one decoded message, with errors that name the field."""

    def __init__(self, obj: Mapping[str, Any], kind: str) -> None:
        self.obj = obj
        self.kind = kind

    def only(self, *accepted: str) -> None:
        """Reject fields not in ``accepted`` (client messages: see the module docstring)."""
        allowed = ("type", "v", *accepted)
        unknown = [key for key in self.obj if key not in allowed]
        if unknown:
            raise ProtocolError(
                "bad_field",
                f"unknown field{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(_preview(k) for k in unknown)} in {self.kind}; "
                f"accepted fields: {', '.join(allowed)}",
            )

    def _where(self, name: str) -> str:
        return f"{self.kind}.{name}"

    def required(self, name: str, expected: str) -> Any:
        if name not in self.obj:
            raise ProtocolError("bad_field", f"{self._where(name)} is required: {expected}")
        return self.obj[name]

    def string(self, name: str) -> str:
        value = self.required(name, "a string")
        if not isinstance(value, str):
            raise _bad_field(self._where(name), "a string", value)
        return value

    def optional_string(self, name: str) -> str | None:
        value = self.obj.get(name)
        if value is not None and not isinstance(value, str):
            raise _bad_field(self._where(name), "a string, or left out", value)
        return value

    def integer(self, name: str) -> int:
        value = self.required(name, "an integer")
        if type(value) is not int:
            raise _bad_field(self._where(name), "an integer", value)
        return value

    def number(self, name: str) -> float:
        value = self.required(name, "a number")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad_field(self._where(name), "a number", value)
        return float(value)

    def boolean(self, name: str) -> bool:
        value = self.required(name, "true or false")
        if not isinstance(value, bool):
            raise _bad_field(self._where(name), "true or false", value)
        return value

    def str_list(self, name: str, expected: str) -> tuple[str, ...]:
        value = self.required(name, expected)
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise _bad_field(self._where(name), expected, value)
        return tuple(value)

    def sources(self) -> tuple[str, ...] | None:
        """``sources``: absent or null = all sources."""
        if self.obj.get("sources") is None:
            return None
        expected = "an array of source names, or null / left out for all sources"
        value = self.obj["sources"]
        if isinstance(value, list) and len(value) > MAX_SOURCES:
            raise ProtocolError(
                "too_large",
                f"{self._where('sources')} names {len(value)} sources; "
                f"at most {MAX_SOURCES} are accepted",
            )
        return self.str_list("sources", expected)


def _parse_subscribe(fields: _Fields) -> Subscribe:
    fields.only("sources", "after", "attention")
    attention = fields.obj.get("attention")
    if attention is not None and not isinstance(attention, bool):
        raise _bad_field("subscribe.attention", "true or false, or left out", attention)
    after = fields.obj.get("after")
    if isinstance(after, dict):  # name the entry that is wrong, not the whole object
        for name, value in after.items():
            if not isinstance(value, str):
                raise _bad_field(f"subscribe.after[{name!r}]", AFTER_RULE, value)
    elif not (after is None or isinstance(after, str)):
        raise _bad_field(
            "subscribe.after", f"{AFTER_RULE}, or an object mapping source names to such", after
        )
    return Subscribe(sources=fields.sources(), after=after, attention=attention)


def _parse_unsubscribe(fields: _Fields) -> Unsubscribe:
    fields.only("sources")
    return Unsubscribe(sources=fields.sources())


def _parse_ping(fields: _Fields) -> Ping:
    fields.only("id")
    value = fields.obj.get("id")
    if isinstance(value, list | dict):
        raise _bad_field("ping.id", PING_ID_RULE, value)
    return Ping(id=value)


_CLIENT_PARSERS: Final[dict[str, Callable[[_Fields], ClientMessage]]] = {
    "subscribe": _parse_subscribe,
    "unsubscribe": _parse_unsubscribe,
    "ping": _parse_ping,
}


def parse_client_message(text: str | bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> ClientMessage:
    """One client frame → its message; :class:`ProtocolError` for anything else.

    ``bytes`` (a binary frame) are refused; ``v`` may be left out; unknown fields are
    refused (see the module docstring).
    """
    obj = _decode(text, max_bytes=max_bytes)
    _check_version(obj, required=False)
    kind = _message_type(obj, CLIENT_TYPES)
    return _CLIENT_PARSERS[kind](_Fields(obj, kind))


def _parse_hello(fields: _Fields) -> Hello:
    raw = fields.required("sources", "an array of {source, state, detail}")
    if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
        raise _bad_field("hello.sources", "an array of {source, state, detail} objects", raw)
    sources = []
    for i, item in enumerate(raw):
        entry = _Fields(item, f"hello.sources[{i}]")
        sources.append(
            SourceStatus(
                source=entry.string("source"),
                state=entry.string("state"),
                detail=entry.string("detail"),
            )
        )
    time_ms = fields.obj.get("time_ms")  # from v1 servers of 2026-12-03 on
    if time_ms is not None and type(time_ms) is not int:
        raise _bad_field("hello.time_ms", "an integer (ms), or left out", time_ms)
    return Hello(server=fields.string("server"), sources=tuple(sources), time_ms=time_ms)


def _parse_attention(value: object) -> Attention:
    expected = "an object {grid: [h, w], fit?, weights: [[0..255, ...], ...]}"
    if not isinstance(value, dict):
        raise _bad_field("caption.attention", expected, value)
    fields = _Fields(value, "caption.attention")
    grid = fields.required("grid", "[h, w]")
    if not (isinstance(grid, list) and len(grid) == 2 and all(type(x) is int for x in grid)):
        raise _bad_field("caption.attention.grid", "[h, w], two integers", grid)
    weights = fields.required("weights", "an array with one array of integers per token")
    if not (isinstance(weights, list) and all(isinstance(row, list) for row in weights)):
        raise _bad_field(
            "caption.attention.weights", "an array with one array of integers per token", weights
        )
    fit = fields.obj.get("fit", "letterbox")
    if not isinstance(fit, str):
        raise _bad_field("caption.attention.fit", f"one of {list(FITS)}", fit)
    return Attention(grid=(grid[0], grid[1]), weights=tuple(tuple(row) for row in weights), fit=fit)


def _parse_caption(fields: _Fields) -> CaptionMessage:
    attention = fields.obj.get("attention")
    return CaptionMessage(
        source=fields.string("source"),
        id=fields.string("id"),
        seq=fields.integer("seq"),
        t_start_ms=fields.integer("t_start_ms"),
        t_end_ms=fields.integer("t_end_ms"),
        capture_ts=fields.string("capture_ts"),
        text=fields.string("text"),
        tokens=fields.str_list("tokens", "an array of strings"),
        score=fields.number("score"),
        model=fields.string("model"),
        latency_ms=fields.number("latency_ms"),
        segment_id=fields.integer("segment_id"),
        is_final=fields.boolean("is_final"),
        attention=None if attention is None else _parse_attention(attention),
        frame=fields.optional_string("frame"),
    )


def _parse_status(fields: _Fields) -> Status:
    return Status(
        source=fields.string("source"),
        state=fields.string("state"),
        detail=fields.string("detail"),
        ts=fields.string("ts"),
    )


def _parse_gap(fields: _Fields) -> Gap:
    return Gap(
        source=fields.string("source"),
        resume_after=fields.string("resume_after"),
        dropped=fields.integer("dropped"),
    )


def _parse_error(fields: _Fields) -> ErrorMessage:
    return ErrorMessage(code=fields.string("code"), message=fields.string("message"))


def _parse_pong(fields: _Fields) -> Pong:
    value = fields.obj.get("id")
    if isinstance(value, list | dict):
        raise _bad_field("pong.id", PING_ID_RULE, value)
    return Pong(id=value)


_SERVER_PARSERS: Final[dict[str, Callable[[_Fields], ServerMessage]]] = {
    "hello": _parse_hello,
    "caption": _parse_caption,
    "status": _parse_status,
    "gap": _parse_gap,
    "error": _parse_error,
    "pong": _parse_pong,
}


def parse_server_message(
    text: str | bytes, *, max_bytes: int = MAX_SERVER_MESSAGE_BYTES
) -> ServerMessage:
    """One server frame → its message (for clients and tests); unknown fields are ignored."""
    obj = _decode(text, max_bytes=max_bytes)
    _check_version(obj, required=True)
    kind = _message_type(obj, SERVER_TYPES)
    return _SERVER_PARSERS[kind](_Fields(obj, kind))
