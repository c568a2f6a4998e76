"""Sticky sessions: which artwork a user was shown for a title, so a repeat view within the session
TTL shows the same one (same event id, nothing logged again).

The event log's `sessions` table is the durable copy (written with each page in `log_page`); this
is the serving process's in-memory view of it. One process alone on a log loads it once at start.
A chooser replica shares the log with others, so for a user it has no live entry for, it reads
that user's sessions from the log first: whichever replica answers, the user sees the same artwork.

Not thread-safe: the engine calls it under its choose lock.
"""

from __future__ import annotations

from typing import NamedTuple

from bandit.decisions import DecisionRecord
from bandit.events import BaseEventLog

__all__ = ["Session", "SessionTable"]


class Session(NamedTuple):
    """A sticky choice. Stored as a plain tuple (see `SessionTable.remember`), read back with `_make`."""

    event_id: str
    chosen: str
    probability: float
    policy: str
    version: int
    expires: float
    active: bool = True  # False: logged with activate=false and not activated yet


class SessionTable:
    """user_id -> title_id -> Session fields, backed by the event log's sessions."""

    def __init__(self, events: BaseEventLog, shared: bool = False) -> None:
        self.events = events
        self.shared = shared  # other processes write sessions to the same log (a chooser replica)
        self._table: dict[str, dict[str, tuple]] = {}

    def remember(self, user_id: str, title_id: str, row: DecisionRecord, expires: float, active: bool = True) -> None:
        # An exact tuple of scalars, which CPython's cyclic GC stops tracking (it never untracks
        # tuple subclasses): the session table, one entry per user and title for 24 h, would
        # otherwise make every full collection longer, and those pauses were most of our p99.
        self._table.setdefault(user_id, {})[title_id] = tuple(Session(
            row.event_id, row.chosen, float(row.probability), row.policy, int(row.version), float(expires),
            bool(active),
        ))

    def load(self, now: float) -> None:
        """Every live session of the log (a process alone on its log, at start)."""
        for row in self.events.active_sessions(now):
            self.remember(row.user_id, row.title_id, row, row.session_expires, active=row.active)

    def _read_user(self, user_id: str, now: float) -> None:
        # The log's rows win over this replica's memory: another replica may have served the user since.
        for row in self.events.user_sessions(user_id, now):
            self.remember(user_id, row.title_id, row, row.session_expires, active=row.active)

    def for_user(self, user_id: str, title_ids: list[str] | tuple[str, ...] | None, now: float) -> dict[str, tuple]:
        """The user's sessions (title -> Session fields; the dict is the table's own, to update in
        place). Shared: read from the log first when one of `title_ids` (None: any) has no live entry."""
        sessions = self._table.get(user_id, {})
        if self.shared and (title_ids is None or any(t not in sessions or sessions[t][5] <= now for t in title_ids)):
            self._read_user(user_id, now)
            sessions = self._table.get(user_id, {})
        return sessions

    def live(self, user_id: str, now: float) -> dict[str, Session]:
        """The user's sessions that have not expired, by title."""
        live = {t: Session._make(s) for t, s in self.for_user(user_id, None, now).items()}
        return {t: s for t, s in live.items() if s.expires > now}

    def mark_active(self, row: DecisionRecord) -> None:
        """An inactive decision was activated: its session (if it is still the live one) says so."""
        raw = self._table.get(row.user_id, {}).get(row.title_id)
        if raw is not None and raw[0] == row.event_id:
            self._table[row.user_id][row.title_id] = tuple(Session._make(raw)._replace(active=True))

    def purge(self, now: float) -> None:
        """Forget expired sessions in memory (the log's are purged by the process that learns)."""
        for uid in list(self._table):
            live = {t: s for t, s in self._table[uid].items() if Session._make(s).expires > now}
            if live:
                self._table[uid] = live
            else:
                del self._table[uid]
