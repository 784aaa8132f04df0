"""One client's subscription: what it wants and what it has been sent. Pure state, no
I/O: the server keeps one per connection (see the protocol's rules on ``after`` and
gaps in :mod:`stream.protocol`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stream.protocol import (
    LIVE,
    Gap,
    StreamId,
    Subscribe,
    Unsubscribe,
    format_stream_id,
    id_before,
    parse_after,
    parse_stream_id,
)


@dataclass(eq=False)
class PendingGap:
    """A source paused for a client: where it resumes, what was dropped since."""

    resume_after: str
    dropped: int = 0
    reported: bool = False


class Subscription:
    """What one client wants and what it has been sent: pure state, no I/O.

    The server keeps one per connection, applies each ``subscribe`` / ``unsubscribe``
    to it, asks :meth:`start_ids` where to read each source's ``captions:{src}`` from
    (``"$"`` = the live tail, else replay the entries *after* that id, as ``XREAD``
    does), and passes every caption through :meth:`offer` (or :meth:`should_deliver`
    and :meth:`advance`) before queueing it. Feed a source's captions in id order,
    finishing a replay before its live tail: anything not after the client's cursor
    is refused, so the overlap between the two is never sent twice.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._all = False  # every source, present and future, except _excluded
        self._sources: set[str] = set()  # named sources (when not _all)
        self._excluded: set[str] = set()  # unsubscribed while _all
        # Per-source cursor: the last id sent, or the `after` asked for; None = live tail.
        self._cursors: dict[str, StreamId | None] = {}
        self._default: StreamId | None = None  # cursor of sources not in _cursors (when _all)
        self._gaps: dict[str, PendingGap] = {}  # paused sources
        self.dropped = 0  # captions dropped while their source was paused, ever

    # -- what the client asked for

    def apply(self, message: Subscribe | Unsubscribe) -> None:
        if isinstance(message, Subscribe):
            self._subscribe(message)
        else:
            self._unsubscribe(message)

    def _subscribe(self, message: Subscribe) -> None:
        newly: Iterable[str]
        if message.sources is None:
            newly = self._excluded if self._all else ()
            self._all, self._excluded = True, set()
        else:
            newly = [s for s in message.sources if not self.wants(s)]
            if self._all:
                self._excluded.difference_update(message.sources)
            else:
                self._sources.update(message.sources)
        for source in newly:  # no `after` for a newly wanted source: the live tail
            self._cursors[source] = None
        after = message.after
        if isinstance(after, str):
            cursor = parse_after(after)
            if message.sources is None:
                self._cursors.clear()
                self._default = cursor
            else:
                self._cursors.update(dict.fromkeys(message.sources, cursor))
        elif after is not None:
            self._cursors.update({s: parse_after(a) for s, a in after.items()})
        if message.sources is None:  # a new subscribe resumes paused sources
            self._gaps.clear()
        else:
            for source in message.sources:
                self._gaps.pop(source, None)

    def _unsubscribe(self, message: Unsubscribe) -> None:
        if message.sources is None:
            self._reset()
            return
        for source in message.sources:
            self._sources.discard(source)
            if self._all:
                self._excluded.add(source)
            self._cursors.pop(source, None)
            self._gaps.pop(source, None)

    def wants(self, source: str) -> bool:
        """Whether the client subscribed to ``source`` (paused or not)."""
        if self._all:
            return source not in self._excluded
        return source in self._sources

    def cursor(self, source: str) -> str | None:
        """The last id sent for ``source`` (or the ``after`` asked for); None: live tail."""
        sid = self._cursor_of(source)
        return None if sid is None else format_stream_id(sid)

    def _cursor_of(self, source: str) -> StreamId | None:
        return self._cursors.get(source, self._default)

    def start_ids(self, known_sources: Iterable[str]) -> dict[str, str]:
        """Where to start reading each wanted, unpaused source: its cursor, or ``"$"``.

        Read the entries *after* the id (``XREAD`` semantics; with ``XRANGE`` use an
        exclusive start, ``"(" + id``). ``"$"``: the live tail only; resolve it to a
        concrete id before reading (e.g. the stream's last id now) so a slow first
        read loses nothing.
        """
        return {
            source: self.cursor(source) or LIVE
            for source in known_sources
            if self.wants(source) and source not in self._gaps
        }

    # -- what the client was sent

    def should_deliver(self, source: str, id: str) -> bool:
        """Wanted, not paused by a gap, and after the cursor (never the same id twice)."""
        if not self.wants(source) or source in self._gaps:
            return False
        return self._is_new(source, id)

    def _is_new(self, source: str, id: str) -> bool:
        cursor = self._cursor_of(source)
        return cursor is None or parse_stream_id(id) > cursor

    def advance(self, source: str, id: str) -> None:
        """Record that caption ``id`` of ``source`` was queued for the client (never moves back)."""
        sid = parse_stream_id(id)
        current = self._cursor_of(source)
        if current is None or sid > current:
            self._cursors[source] = sid

    def offer(self, source: str, id: str, *, room: bool = True) -> bool:
        """Decide about one caption: True = queue it now (the cursor has moved on).

        False when the client does not want it, already had it, or it is dropped:
        ``room=False`` (the client's queue is full) pauses the source and opens a gap,
        and captions of a paused source are counted as dropped until the client
        subscribes again. Send the gap of each :meth:`new_gaps` (:meth:`gap_message`).
        """
        if not self.wants(source) or not self._is_new(source, id):
            return False
        gap = self._gaps.get(source)
        if gap is None and room:
            self.advance(source, id)
            return True
        if gap is None:  # keep the position, so that any later subscribe resumes from it
            cursor = self._cursor_of(source)
            if cursor is None:
                cursor = self._cursors[source] = parse_stream_id(id_before(id))
            gap = self._gaps[source] = PendingGap(resume_after=format_stream_id(cursor))
        gap.dropped += 1
        self.dropped += 1
        return False

    def pause(self, source: str) -> None:
        """Pause ``source`` with a gap at its cursor (its replay could not be read):
        the client resumes from the last caption it was sent, as after an overflow."""
        if not self.wants(source) or source in self._gaps:
            return
        cursor = self._cursor_of(source)
        self._cursors[source] = cursor = cursor if cursor is not None else (0, 0)
        self._gaps[source] = PendingGap(resume_after=format_stream_id(cursor))

    def paused(self, source: str) -> bool:
        return source in self._gaps

    def new_gaps(self) -> list[tuple[str, PendingGap]]:
        """The pauses not reported yet (each once): send :meth:`gap_message` of each
        after the captions queued before it, so that its ``resume_after`` is the last
        caption the client got before it."""
        out = []
        for source, gap in self._gaps.items():
            if not gap.reported:
                gap.reported = True
                out.append((source, gap))
        return out

    def gap_message(self, source: str, gap: PendingGap) -> Gap | None:
        """The ``gap`` message of that pause, with the drops counted so far; None when
        the client has subscribed again since (it resumes: nothing to say)."""
        if self._gaps.get(source) is not gap:
            return None
        return Gap(source=source, resume_after=gap.resume_after, dropped=max(1, gap.dropped))
