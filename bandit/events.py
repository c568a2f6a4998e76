"""The serving event log: every decision, feedback, join and snapshot, in SQLite or PostgreSQL.

Two backends behind one interface (`BaseEventLog`, opened with `open_event_log`): `EventLog`, one
SQLite file (WAL) for one machine and the default, and `bandit.events_pg.PostgresEventLog` for
choosers on several machines. Everything that defines the log's behaviour below (what a feedback
post does, how a window closes, the learn-event query) is written once in `BaseEventLog`; a backend
supplies the connection, how learn_seq numbers are allocated, and the row locks SQLite does not need
because it has a single writer.

Why SQLite and not the Parquet decision log: the server must have a decision on disk *before* it
answers, join feedback to it later, close reward windows after a restart and know which events a
policy snapshot already includes. All of that is transactional row updates, which Parquet is not.
Reads return `bandit.decisions.DecisionRecord`, the one decision type from here to the policy and
the Parquet log, with the JSON columns decoded; `records()`, for offline evaluation, resolves their
candidate features and leaves out the log's bookkeeping, as a Parquet log holds them.

Durability: WAL with synchronous=NORMAL. A commit is in the WAL file (the OS page cache) when
`commit` returns, so a process killed with SIGKILL loses nothing it acknowledged; only a power
cut can lose the last transactions, which `durable=True` (synchronous=FULL) also covers.

Size: a 40-title page writes one `requests` row (the user context, once) and 40 small `decisions`
rows; candidate features are stored once per distinct feature set (`featuresets`, keyed by a
hash), not once per decision, because they only change when the catalog does.

Learn events: every change the policy must learn gets the next `learn_seq`, one gap-free sequence
shared by two tables. A decision gets one when it is finalized (feedback joined within its window,
or the window closed at reward 0); a positive reward arriving after the window closed is a late
click, stored as a `corrections` row (old reward -> new reward) with its own learn_seq, and the
decision's `reward` becomes the new value (its `late_seq` points at the correction). Replaying
`finalized_after` in learn_seq order therefore feeds a policy exactly what the live server fed it.

Feedback is an upgrade ladder (`join_feedback`): an event's outcome is the set of flags seen so far
(click, play) or one numeric reward. A later post that adds a flag raises the reward to the highest
weight seen; once the decision is finalized that raise is a correction too (kind 'upgrade',
`decisions.upgrade_seq` points at the latest), learned like a late click. Two different positive
rewards that the ladder cannot order are a conflict: nothing changes.

Deferred activation: a decision logged with `active=False` (`decisions.inactive = 1`) has no window
running (deadline +inf, so no close ever picks it) and no impression counted until `activate` (or
feedback, which activates it first) starts its window.

Concurrent writers (PostgreSQL): a transaction that may write learn events takes the learn_seq
allocation first and keeps it to its commit, then locks decision rows, then artwork_stats rows, then
meta; multi-row writes go in key order. One order for every lock means no deadlock, and learn events
commit one transaction at a time in learn_seq order (see bandit/events_pg.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from artwork.sqlite import WalDatabase, connect_wal
from artwork.store import stored_schema_version
from bandit.decisions import DecisionRecord

__all__ = ["BaseEventLog", "EventLog", "EventLogError", "EventLogUnavailable", "FinalizeResult", "SCHEMA",
           "SCHEMA_VERSION", "is_event_log_url", "mask_url", "open_event_log"]

# 2: the `corrections` table and `decisions.late_seq` (late clicks). Logs written by version 1
# are migrated when opened (see `EventLog._migrate`).
# 3: `corrections.kind` ('late' | 'upgrade'), `decisions.upgrade_seq` (feedback ladder) and
# `decisions.inactive` (deferred activation); older logs are migrated the same way.
SCHEMA_VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    request_id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, user_id TEXT NOT NULL,
    context TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS featuresets (fs_key TEXT PRIMARY KEY, features TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    request_id INTEGER NOT NULL REFERENCES requests(request_id),
    time REAL NOT NULL, user_id TEXT NOT NULL, title_id TEXT NOT NULL,
    candidates TEXT NOT NULL, fs_key TEXT NOT NULL REFERENCES featuresets(fs_key),
    chosen TEXT NOT NULL, probability REAL NOT NULL, distribution TEXT NOT NULL,
    policy TEXT NOT NULL, version INTEGER NOT NULL,
    deadline REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'joined', 'closed')),
    reward REAL, final_time REAL, learn_seq INTEGER UNIQUE,
    late_seq INTEGER, upgrade_seq INTEGER, inactive INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS decisions_open ON decisions(deadline) WHERE status = 'open';
CREATE TABLE IF NOT EXISTS feedback (
    event_id TEXT PRIMARY KEY REFERENCES decisions(event_id), time REAL NOT NULL,
    reward REAL NOT NULL, click INTEGER, play INTEGER);
CREATE TABLE IF NOT EXISTS sessions (
    user_id TEXT NOT NULL, title_id TEXT NOT NULL, event_id TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (user_id, title_id));
CREATE TABLE IF NOT EXISTS artwork_stats (
    artwork_id TEXT PRIMARY KEY, impressions INTEGER NOT NULL DEFAULT 0,
    closed INTEGER NOT NULL DEFAULT 0, clicks INTEGER NOT NULL DEFAULT 0,
    reward_sum REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS corrections (
    learn_seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL REFERENCES decisions(event_id),
    time REAL NOT NULL, old_reward REAL NOT NULL, new_reward REAL NOT NULL,
    kind TEXT NOT NULL DEFAULT 'late');
CREATE INDEX IF NOT EXISTS corrections_event ON corrections(event_id);
CREATE TABLE IF NOT EXISTS quarantine (
    learn_seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL, time REAL NOT NULL, error TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, path TEXT NOT NULL,
    learned_seq INTEGER NOT NULL, version INTEGER NOT NULL);
"""

def _cols(reward: str = "d.reward", learn_seq: str = "d.learn_seq") -> str:
    return (
        "d.seq, d.event_id, d.time, d.user_id, d.title_id, d.candidates, d.fs_key, d.chosen, d.probability, "
        f"d.distribution, d.policy, d.version, d.deadline, d.status, {reward} AS reward, {learn_seq} AS learn_seq, "
        "r.context, d.late_seq, d.upgrade_seq, d.inactive"
    )


_DECISION_COLS = _cols()

# The learn events after a given learn_seq, decisions and corrections merged in learn_seq order:
# the one query behind live learning (rows a transaction just wrote) and restart replay.
# A decision's own learn event carries the reward it was finalized with: for a corrected decision
# (a late click or a ladder upgrade) that is the first correction's old reward, not `d.reward`.
_FINAL_REWARD = (
    "CASE WHEN d.late_seq IS NULL AND d.upgrade_seq IS NULL THEN d.reward ELSE (SELECT c0.old_reward FROM corrections c0 "
    "WHERE c0.event_id = d.event_id ORDER BY c0.learn_seq LIMIT 1) END"
)
_LEARN_EVENTS = (
    f"SELECT {_cols(_FINAL_REWARD)}, NULL AS old_reward FROM decisions d JOIN requests r USING (request_id) "
    "WHERE d.learn_seq > ? "
    f"UNION ALL SELECT {_cols('c.new_reward', 'c.learn_seq')}, c.old_reward FROM corrections c "
    "JOIN decisions d ON d.event_id = c.event_id JOIN requests r ON r.request_id = d.request_id "
    "WHERE c.learn_seq > ? "
    "ORDER BY learn_seq LIMIT ?"
)
_MAX_LEARN_SEQ = (
    "SELECT MAX(COALESCE((SELECT MAX(learn_seq) FROM decisions), 0), "
    "COALESCE((SELECT MAX(learn_seq) FROM corrections), 0))"
)


def _loads(text: str) -> Any:
    # A column that does not decode (the log was edited by hand) reads as None, so the learn loop
    # quarantines that one event instead of every replay stopping at it.
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _record(r: Sequence[Any], old_reward: float | None = None, session_expires: float | None = None,
            bookkeeping: bool = True) -> DecisionRecord:
    """A row selected with `_cols()` as a DecisionRecord, its JSON columns decoded (here, once).

    Candidate features stay behind their `fs_key`: one feature set serves many rows, so the reader
    that needs them (the engine's learn path, `records`) resolves and caches it. `bookkeeping=False`
    leaves the log's own fields at their defaults: the record as the Parquet log holds it.
    """
    (seq, event_id, time, user_id, title_id, candidates, fs_key, chosen, probability, distribution, policy, version,
     deadline, status, reward, learn_seq, context, late_seq, upgrade_seq, inactive) = r[:20]
    decision = (event_id, time, user_id, title_id, _loads(context), _loads(candidates), [], chosen, probability,
                policy, version, reward, _loads(distribution))
    if not bookkeeping:
        return DecisionRecord(*decision)
    return DecisionRecord(*decision, fs_key, not inactive, seq, deadline, status, learn_seq, late_seq, upgrade_seq,
                          old_reward, session_expires)


@dataclass
class FinalizeResult:
    """Outcome of posting feedback for one event."""

    status: str  # "joined" | "late" | "upgraded" | "duplicate" | "conflict" | "not_found" | "expired"
    row: DecisionRecord | None = None  # the decision, when it exists
    reward: float | None = None  # the reward now on record (for duplicates: the original one)
    finalized: bool = False  # True when this call joined or closed the decision (its window was open)
    # The learn events this call wrote, in learn_seq order (a window closed here at reward 0, then a
    # late click's correction): what the caller must learn, as `finalized_after` would replay them.
    learn: list[DecisionRecord] = field(default_factory=list)
    posted: float | None = None  # for a conflict: the refused reward (`reward` is the recorded one)
    activated: bool = False  # this post activated an inactive decision first


def _implied(flags: set[str]) -> set[str]:
    """The ladder's closure: a play is a click that went further, so it implies the click."""
    return flags | {"click"} if "play" in flags else flags


# The deadline of an inactive decision: never reached, so `close_expired` never closes it at reward 0
# (it was not rendered). `activate` replaces it with activation time + window.
_NO_DEADLINE = float("inf")


def _dumps(obj: Any) -> str:
    # allow_nan=False: a NaN in the log would poison every later replay.
    return json.dumps(obj, allow_nan=False, separators=(",", ":"))


# -- errors and URLs ------------------------------------------------------------------------------------


class EventLogError(ValueError):
    """An event log cannot be opened as asked (a bad or unsupported URL, a newer schema); the message
    names the log (a URL with its password masked) and what was expected."""


class EventLogUnavailable(sqlite3.OperationalError):
    """A PostgreSQL event log cannot be reached or failed a statement.

    A subclass of sqlite3.OperationalError on purpose: the server answers sqlite3.Error with a 503
    `store_unavailable` (Retry-After, /health degraded until a write succeeds) and `artwork serve`
    turns a sqlite3.DatabaseError at startup into one line; a PostgreSQL outage takes those same
    paths instead of becoming a 500 or a traceback.
    """


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
PG_SCHEMES = ("postgresql", "postgres")
PG_URL_FORM = "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?PARAM=VALUE...]"


def is_event_log_url(spec: str | os.PathLike[str]) -> bool:
    """True for a URL (`scheme://...`), False for a file path."""
    return isinstance(spec, str) and _URL.match(spec) is not None


def mask_url(url: str) -> str:
    """`url` with its password (in the user part or a `password=` parameter) replaced by ***."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            auth, host = netloc.rsplit("@", 1)
            if ":" in auth:
                netloc = f"{auth.split(':', 1)[0]}:***@{host}"
        query = parts.query
        if "password" in query.lower():
            query = urlencode([(k, "***" if k.lower() == "password" else v)
                               for k, v in parse_qsl(query, keep_blank_values=True)], safe="/*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # unparseable: say nothing of it rather than risk echoing a password
        return f"{url.split(':', 1)[0]}://***"


def scrub(text: str, url: str) -> str:
    """`text` (a driver's error message) with the URL's password removed wherever it appears."""
    secrets = []
    try:
        parts = urlsplit(url)
        if parts.password:
            secrets.append(parts.password)
        secrets += [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
    except ValueError:
        pass
    for secret in secrets:
        for form in {secret, quote(secret, safe="")}:
            text = text.replace(form, "***")
    return text.replace(url, mask_url(url))


def open_event_log(spec: str | os.PathLike[str], **kw: Any) -> BaseEventLog:
    """The event log at `spec`: a file path -> SQLite (`EventLog`), a postgresql:// URL -> PostgreSQL.

    `kw` (durable, timeout, auto_checkpoint) goes to the backend; PostgreSQL needs none of it.
    Raises EventLogError for a URL of another kind, EventLogUnavailable when PostgreSQL cannot be reached.
    """
    if not is_event_log_url(spec):
        return EventLog(spec, **kw)
    check_scheme(str(spec))
    from bandit.events_pg import PostgresEventLog  # psycopg only for those who use it

    return PostgresEventLog(str(spec), **kw)


def check_scheme(url: str) -> None:
    """EventLogError unless `url` is a PostgreSQL URL (the one kind of URL an event log can be)."""
    if url.split(":", 1)[0].lower() not in PG_SCHEMES:
        raise EventLogError(f"unsupported event log URL {mask_url(url)}: expected a file path (SQLite) "
                            f"or {PG_URL_FORM}")


# -- the log's semantics, written once ---------------------------------------------------------------


class BaseEventLog:
    """The event log's interface and behaviour; `EventLog` (SQLite) and `PostgresEventLog` store it.

    A backend provides `transaction()` (a handle with sqlite3's `execute`/`executemany`, `?`
    placeholders), `_query`, `close`, `checkpoint`, `file_bytes`, `location`, and the statements
    below that differ between the two. One connection per log object, shared by the threads of a
    process under `_lock`.
    """

    backend = ""  # "sqlite" | "postgresql"
    _lock: threading.RLock
    # The next learn_seq this transaction would get, with allocation held until it ends (SQLite:
    # its single writer holds everything already; PostgreSQL locks the counter row).
    _PEEK_SEQ = f"SELECT ({_MAX_LEARN_SEQ}) + 1"
    _ALLOC_SEQ = f"SELECT ({_MAX_LEARN_SEQ}) + 1"  # allocate the next learn_seq
    _MAX_SEQ = _MAX_LEARN_SEQ
    _FOR_UPDATE = ""  # appended to the SELECT of the decision a transaction is about to change
    _SKIP_LOCKED = ""  # appended to close_expired's SELECT of due windows
    _PURGE_SESSIONS = "DELETE FROM sessions WHERE expires <= ?"
    _NO_LIMIT: Any = -1  # LIMIT value meaning "all rows"

    # -- what a backend provides ----------------------------------------------------------------------
    def transaction(self) -> ContextManager[Any]:
        """A write transaction: committed when the block ends, rolled back on any exception."""
        raise NotImplementedError

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError

    def checkpoint(self) -> None:
        """Housekeeping the owner's timer runs off the request path (SQLite: a WAL checkpoint)."""
        raise NotImplementedError

    def file_bytes(self) -> int:
        """Bytes the log takes on disk."""
        raise NotImplementedError

    @property
    def location(self) -> Path | str:
        """Where the log is, safe to show: the file, or the URL with its password masked."""
        raise NotImplementedError

    # -- meta ---------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """A stored setting, or None."""
        rows = self._query("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting."""
        with self.transaction() as db:
            db.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                       (key, value))

    # -- decisions ------------------------------------------------------------------------------
    def log_page(
        self,
        now: float,
        user_id: str,
        context: dict[str, Any],
        decisions: Sequence[DecisionRecord],
        featuresets: dict[str, str],
        deadline: float,
        session_expires: float,
    ) -> None:
        """Write one page's fresh decisions, their sessions and impression counts in one transaction.

        `featuresets` maps fs_key -> JSON for the feature sets the decisions reference; existing
        keys are left alone (same key, same content). A decision with `active=False` is stored
        inactive: deadline +inf (no close picks it) and no impression until `activate`. The page is
        one request: `now`, `user_id` and `context` are stored once for all its decisions.
        """
        if not decisions:
            return
        with self.transaction() as db:
            request_id = db.execute(
                "INSERT INTO requests (time, user_id, context) VALUES (?, ?, ?) RETURNING request_id",
                (now, user_id, _dumps(context)),
            ).fetchone()[0]
            # Feature sets, sessions and stats in key order: two pages written at once (PostgreSQL)
            # then lock shared rows in the same order and cannot deadlock. Same rows either way.
            db.executemany(
                "INSERT INTO featuresets (fs_key, features) VALUES (?, ?) ON CONFLICT (fs_key) DO NOTHING",
                sorted(featuresets.items()),
            )
            db.executemany(
                "INSERT INTO decisions (event_id, request_id, time, user_id, title_id, candidates, fs_key, "
                "chosen, probability, distribution, policy, version, deadline, inactive) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        d.event_id, request_id, now, user_id, d.title_id, _dumps(d.candidates), d.fs_key,
                        d.chosen, float(d.probability), _dumps(d.distribution), d.policy, int(d.version),
                        deadline if d.active else _NO_DEADLINE, 0 if d.active else 1,
                    )
                    for d in decisions
                ],
            )
            db.executemany(
                "INSERT INTO sessions (user_id, title_id, event_id, expires) VALUES (?, ?, ?, ?) ON CONFLICT "
                "(user_id, title_id) DO UPDATE SET event_id = excluded.event_id, expires = excluded.expires",
                sorted(((user_id, d.title_id, d.event_id, session_expires) for d in decisions), key=lambda r: r[1]),
            )
            shown = Counter(d.chosen for d in decisions if d.active)
            db.executemany(_ADD_IMPRESSIONS, sorted(shown.items()))

    def activate(self, event_id: str, deadline: float) -> tuple[str, DecisionRecord | None]:
        """Start an inactive decision's window (it was rendered): ("activated", row) with `deadline`
        set and its impression counted; ("already_active", row) for an active one, whatever its
        status (idempotent); ("not_found", None)."""
        with self.transaction() as db:
            row = self._select_decision(db, event_id, lock=True)
            if row is None:
                return "not_found", None
            if row.active or not self._activate(db, row, deadline):
                return "already_active", row
            return "activated", self._reread(db, row)

    @staticmethod
    def _activate(db: Any, row: DecisionRecord, deadline: float) -> bool:
        """Activate `row`; False when it was active already (the impression is counted once)."""
        if db.execute("UPDATE decisions SET inactive=0, deadline=? WHERE event_id=? AND inactive=1",
                      (deadline, row.event_id)).rowcount != 1:
            return False
        db.execute(_ADD_IMPRESSIONS, (row.chosen, 1))
        return True

    def decision(self, event_id: str) -> DecisionRecord | None:
        """One decision by event id."""
        rows = self._query(
            f"SELECT {_DECISION_COLS} FROM decisions d JOIN requests r USING (request_id) WHERE d.event_id=?",
            (event_id,),
        )
        return _record(rows[0]) if rows else None

    def featureset(self, fs_key: str) -> str | None:
        """The JSON feature set {artwork_id: features} stored under `fs_key`."""
        rows = self._query("SELECT features FROM featuresets WHERE fs_key=?", (fs_key,))
        return rows[0][0] if rows else None

    # -- joins and reward windows --------------------------------------------------------------
    # learn_seq orders learning: live learning and restart replay apply learn events in this order,
    # which is what makes a restored policy identical to the one that was killed. One sequence
    # across decisions and corrections, allocated inside the writing transaction.
    def _peek_learn_seq(self, db: Any) -> int:
        return int(db.execute(self._PEEK_SEQ).fetchone()[0])

    def _next_learn_seq(self, db: Any) -> int:
        return int(db.execute(self._ALLOC_SEQ).fetchone()[0])

    def _learn_events(self, db: Any, after: int, limit: int | None = None) -> list[DecisionRecord]:
        lim = self._NO_LIMIT if limit is None else limit
        return [_record(r, r[20]) for r in db.execute(_LEARN_EVENTS, (after, after, lim)).fetchall()]

    def _finalize(self, db: Any, event_id: str, reward: float, status: str, now: float) -> int:
        learn_seq = self._next_learn_seq(db)
        # `status='open'`: a window is finalized once. Were it not open, the transaction is rolled
        # back with its learn_seq, so the sequence keeps no hole either.
        if db.execute(
            "UPDATE decisions SET status=?, reward=?, final_time=?, learn_seq=? WHERE event_id=? AND status='open'",
            (status, reward, now, learn_seq, event_id),
        ).rowcount != 1:
            raise RuntimeError(f"decision {event_id!r} is not open: its window was finalized already")
        return int(learn_seq)

    def _select_decision(self, db: Any, event_id: str, lock: bool = False) -> DecisionRecord | None:
        row = db.execute(
            f"SELECT {_DECISION_COLS} FROM decisions d JOIN requests r USING (request_id) WHERE d.event_id=?"
            + (self._FOR_UPDATE if lock else ""),
            (event_id,),
        ).fetchone()
        return _record(row) if row else None

    @staticmethod
    def _reread(db: Any, row: DecisionRecord) -> DecisionRecord:
        """`row` as this transaction left it. Only the log's state columns change after a decision is
        logged, so they alone are read again; its decoded context, candidates and distribution are
        kept (decoding them is most of a feedback post's reading)."""
        status, deadline, reward, learn_seq, late_seq, upgrade_seq, inactive = db.execute(
            "SELECT status, deadline, reward, learn_seq, late_seq, upgrade_seq, inactive FROM decisions WHERE event_id=?",
            (row.event_id,),
        ).fetchone()
        return dataclasses.replace(row, status=status, deadline=deadline, reward=reward, learn_seq=learn_seq,
                                   late_seq=late_seq, upgrade_seq=upgrade_seq, active=not inactive)

    @staticmethod
    def _count_outcome(db: Any, artwork_id: str, reward: float) -> None:
        db.execute(
            "UPDATE artwork_stats SET closed = closed + 1, clicks = clicks + ?, reward_sum = reward_sum + ? "
            "WHERE artwork_id=?",
            (1 if reward > 0 else 0, reward, artwork_id),
        )

    def join_feedback(
        self, event_id: str, reward: float, now: float, click: bool | None = None, play: bool | None = None,
        *, weights: Mapping[str, float] | None = None, activate_window: float = 1800.0,
    ) -> FinalizeResult:
        """Join feedback to its decision; returns what happened and the learn events it wrote.

        `reward` is the post's value: the numeric reward, or for flags (`click`/`play` not both
        None) the highest `weights` of the flags that are true. An inactive decision is activated
        first (window = now + `activate_window`): feedback proves it was rendered.

        The first post of an event:
        - open decision, within its window: 'joined' with this reward and a learn_seq;
        - window passed (closed by the timer, or closed here first, reward 0 with its own learn_seq,
          so the outcome never depends on timer jitter):
          - positive reward: 'late'. The feedback is recorded, the decision's reward becomes this
            one (`late_seq` set) and a correction (0 -> reward, kind 'late') gets the next learn_seq;
          - reward 0: 'expired', nothing else changes (counted in meta `feedback_expired`).
        A later post climbs the ladder (`_ladder`): 'upgraded', 'duplicate' or 'conflict'.
        """
        w = {"click": 1.0, "play": 1.0, **(weights or {})}
        with self.transaction() as db:
            # The learn_seq allocation first, then the decision's row (the lock order, see above).
            first = self._peek_learn_seq(db)
            row = self._select_decision(db, event_id, lock=True)
            if row is None:
                return FinalizeResult("not_found")
            activated = not row.active and self._activate(db, row, now + activate_window)
            if activated:
                row = self._reread(db, row)
            fb = db.execute("SELECT reward, click, play FROM feedback WHERE event_id=?", (event_id,)).fetchone()
            if fb is None and (row.status == "joined" or row.late):  # a feedback row lost by an old build
                fb = (row.reward, None, None)
            if fb is not None:
                return self._ladder(db, row, fb, reward, click, play, w, now, activated)
            if row.status == "open" and now < row.deadline:
                self._insert_feedback(db, event_id, now, reward, click, play)
                self._finalize(db, event_id, reward, "joined", now)
                self._count_outcome(db, row.chosen, reward)
                return FinalizeResult("joined", self._reread(db, row), reward, finalized=True,
                                      learn=self._learn_events(db, first - 1), activated=activated)
            closed_here = row.status == "open"
            if closed_here:
                self._finalize(db, event_id, 0.0, "closed", now)
                self._count_outcome(db, row.chosen, 0.0)
                row = self._reread(db, row)
            if reward <= 0:
                db.execute(
                    "INSERT INTO meta(key, value) VALUES ('feedback_expired', '1') "
                    "ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)"
                )
                return FinalizeResult("expired", row, row.reward, finalized=closed_here,
                                      learn=self._learn_events(db, first - 1), activated=activated)
            old = float(row.reward or 0.0)
            self._insert_feedback(db, event_id, now, reward, click, play)
            self._correct(db, row, now, old, reward, "late")
            return FinalizeResult("late", self._reread(db, row), reward, finalized=closed_here,
                                  learn=self._learn_events(db, first - 1), activated=activated)

    def _correct(self, db: Any, row: DecisionRecord, now: float, old: float, new: float, kind: str) -> int:
        """Log a reward change of a finalized decision as a correction with the next learn_seq."""
        seq = self._next_learn_seq(db)
        db.execute(
            "INSERT INTO corrections (learn_seq, event_id, time, old_reward, new_reward, kind) VALUES (?, ?, ?, ?, ?, ?)",
            (seq, row.event_id, now, old, new, kind),
        )
        col = "late_seq" if kind == "late" else "upgrade_seq"
        db.execute(f"UPDATE decisions SET reward=?, {col}=? WHERE event_id=?", (new, seq, row.event_id))
        # The outcome was already counted (closed/joined + 1): only the click and reward move.
        db.execute(
            "UPDATE artwork_stats SET clicks = clicks + ?, reward_sum = reward_sum + ? WHERE artwork_id=?",
            (int(new > 0) - int(old > 0), new - old, row.chosen),
        )
        return seq

    def _ladder(self, db: Any, row: DecisionRecord, fb: Sequence[Any], reward: float,
                click: bool | None, play: bool | None, w: Mapping[str, float], now: float,
                activated: bool) -> FinalizeResult:
        """A post for an event that already has its feedback (joined, or late): the upgrade ladder.

        The outcome on record is either flags (the set seen so far) or one numeric reward. Zero
        (reward 0, click:false) is the floor: it means no positive outcome yet and never lowers one.
        - flags post: the set grows (click -> play, click:false -> click:true): 'upgraded', the
          reward becomes max(recorded, weights of the flags seen); no new flag: 'duplicate' (a play
          implies the click, so a click after a play is a duplicate too). On a
          positive numeric reward a click agrees with it ('duplicate': any positive reward means the
          user engaged); a play worth a different value is a 'conflict';
        - numeric post: equal to the record, or 0: 'duplicate'; on a record of 0: 'upgraded';
          a different positive value on a positive record: 'conflict' (nothing changes).
        A raise is a correction (kind 'upgrade', learn_seq, `upgrade_seq`); a new flag that leaves
        the reward where it was (equal weights) is recorded with no learn event.
        """
        recorded = float(row.reward or 0.0)
        _, f_click, f_play = fb
        numeric_rec = f_click is None and f_play is None
        dup = FinalizeResult("duplicate", row, recorded, activated=activated)
        if click is None and play is None:  # a numeric reward
            if reward == recorded or reward <= 0:
                return dup
            if recorded > 0:
                return FinalizeResult("conflict", row, recorded, posted=float(reward), activated=activated)
            new, new_click, new_play = float(reward), None, None
        else:
            posted = {k for k, v in (("click", click), ("play", play)) if v}
            if numeric_rec and recorded > 0:
                value = max((w[k] for k in _implied(posted)), default=0.0)
                if not posted - {"click"} or value == recorded:
                    return dup
                return FinalizeResult("conflict", row, recorded, posted=value, activated=activated)
            base = _implied(set() if numeric_rec else {k for k, v in (("click", f_click), ("play", f_play)) if v})
            flags = _implied(base | posted)
            if flags == base:
                return dup
            new = max(recorded, max(w[k] for k in flags))
            new_click = 1 if "click" in flags else (0 if click is False or f_click == 0 else None)
            new_play = 1 if "play" in flags else (0 if play is False or f_play == 0 else None)
        db.execute(
            "INSERT INTO feedback (event_id, time, reward, click, play) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(event_id) DO UPDATE SET reward=excluded.reward, click=excluded.click, play=excluded.play",
            (row.event_id, now, new, new_click, new_play),
        )
        if new == recorded:  # a new flag worth no more than the reward on record: nothing to learn
            return FinalizeResult("upgraded", row, recorded, activated=activated)
        seq = self._correct(db, row, now, recorded, new, "upgrade")
        return FinalizeResult("upgraded", self._reread(db, row), new,
                              learn=self._learn_events(db, seq - 1), activated=activated)

    @staticmethod
    def _insert_feedback(db: Any, event_id: str, now: float, reward: float,
                         click: bool | None, play: bool | None) -> None:
        db.execute(
            "INSERT INTO feedback (event_id, time, reward, click, play) VALUES (?, ?, ?, ?, ?)",
            (event_id, now, reward, None if click is None else int(click), None if play is None else int(play)),
        )

    def close_expired(self, now: float, limit: int = 5000) -> list[DecisionRecord]:
        """Close up to `limit` open decisions whose window has passed (reward 0), oldest deadline first.

        Returns the closed rows in learn_seq order, for the caller to learn from. With several
        writers (PostgreSQL) each due window is closed by exactly one of them.
        """
        with self.transaction() as db:
            first = self._peek_learn_seq(db)
            due = db.execute(
                "SELECT event_id, chosen FROM decisions WHERE status='open' AND deadline <= ? "
                "ORDER BY deadline, seq LIMIT ?" + self._SKIP_LOCKED,
                (now, limit),
            ).fetchall()
            if not due:
                return []
            for eid, _ in due:
                self._finalize(db, eid, 0.0, "closed", now)
            closed = Counter(chosen for _, chosen in due)
            db.executemany("UPDATE artwork_stats SET closed = closed + ? WHERE artwork_id = ?",
                           [(n, a) for a, n in sorted(closed.items())])
            return self._learn_events(db, first - 1)

    def finalized_after(self, learn_seq: int, batch: int = 2000) -> Iterator[DecisionRecord]:
        """Every learn event with learn_seq > `learn_seq`, in learn_seq order (restart replay).

        Decisions (as finalized: reward 0 for a window closed before a late click) and corrections
        (`old_reward` set; `reward` and `learn_seq` are the correction's) in one merged sequence.
        """
        last = learn_seq
        while True:
            rows = [_record(r, r[20]) for r in self._query(_LEARN_EVENTS, (last, last, batch))]
            if not rows:
                return
            for row in rows:
                last = int(row.learn_seq)  # type: ignore[arg-type]
                yield row

    def max_learn_seq(self) -> int:
        """The highest learn_seq handed out so far, decisions and corrections (0 when none)."""
        return int(self._query(self._MAX_SEQ)[0][0])

    # -- sessions ---------------------------------------------------------------------------------
    def active_sessions(self, now: float) -> list[DecisionRecord]:
        """The decision behind every (user, title) session that has not expired."""
        return self._sessions_where("s.expires > ?", (now,))

    def user_sessions(self, user_id: str, now: float) -> list[DecisionRecord]:
        """`active_sessions` of one user (the sessions primary key's prefix): what a chooser replica
        reads for a user it has not served, since another replica may have."""
        return self._sessions_where("s.user_id = ? AND s.expires > ?", (user_id, now))

    def _sessions_where(self, cond: str, args: tuple) -> list[DecisionRecord]:
        rows = self._query(
            f"SELECT {_DECISION_COLS}, s.expires FROM sessions s JOIN decisions d ON d.event_id = s.event_id "
            f"JOIN requests r ON r.request_id = d.request_id WHERE {cond}",
            args,
        )
        return [_record(r, session_expires=float(r[20])) for r in rows]

    def purge_sessions(self, now: float) -> int:
        """Delete expired sessions; returns how many."""
        with self.transaction() as db:
            return db.execute(self._PURGE_SESSIONS, (now,)).rowcount

    # -- quarantine -------------------------------------------------------------------------------
    # A learn event the policy could not learn (a context that no longer validates, a policy that
    # raised) is recorded here instead of stopping the learn loop: it is skipped, live and at every
    # restart replay, and counted (`counts()["quarantined"]`). The table is additive: logs without
    # it get it when opened, and builds that do not know it ignore it.
    def quarantine(self, learn_seq: int, event_id: str, now: float, error: str) -> bool:
        """Record that learn event `learn_seq` was not learned and why; False if it already was."""
        with self.transaction() as db:
            return db.execute(
                "INSERT INTO quarantine (learn_seq, event_id, time, error) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (learn_seq) DO NOTHING",
                (int(learn_seq), _storable(event_id), now, _storable(error)[:2000]),
            ).rowcount > 0

    def quarantined(self) -> dict[int, str]:
        """learn_seq -> event_id of every quarantined learn event."""
        return {int(s): e for s, e in self._query("SELECT learn_seq, event_id FROM quarantine")}

    # -- stats and snapshots ----------------------------------------------------------------------
    def artwork_stats(self, artwork_ids: Iterable[str]) -> dict[str, tuple[int, int, int, float]]:
        """artwork_id -> (impressions, closed, clicks, reward_sum) for the ids that have any."""
        ids = list(artwork_ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._query(
            f"SELECT artwork_id, impressions, closed, clicks, reward_sum FROM artwork_stats WHERE artwork_id IN ({marks})",
            tuple(ids),
        )
        return {r[0]: (int(r[1]), int(r[2]), int(r[3]), float(r[4])) for r in rows}

    def open_counts(self) -> list[tuple[str, str, int]]:
        """(title, artwork, decisions) of the active decisions still waiting for their outcome:
        what a serving process counts as open (bandit.pending) when it starts or reloads."""
        return [(str(t), str(a), int(n)) for t, a, n in self._query(
            "SELECT title_id, chosen, COUNT(*) FROM decisions WHERE status='open' AND inactive=0 "
            "GROUP BY title_id, chosen")]

    def counts(self) -> dict[str, int]:
        """Decisions by status, feedback rows and requests (for metrics and tests).

        `closed` counts every window closed at reward 0, `late` those of them a late click then
        corrected; `corrections` is the corrections table (late clicks and ladder upgrades),
        `upgrades` its upgrade rows, `expired_feedback` the posts refused because the window had
        closed and they carried no positive reward. `open` counts active decisions waiting for
        feedback; `inactive` those logged with activate=false and not activated (in `decisions`).
        """
        out = {"open": 0, "joined": 0, "closed": 0, "inactive": 0}
        for status, inactive, n in self._query(
                "SELECT status, inactive, COUNT(*) FROM decisions GROUP BY status, inactive"):
            out["inactive" if inactive else status] += int(n)
        out["decisions"] = out["open"] + out["joined"] + out["closed"] + out["inactive"]
        # From the small corrections table, not a scan of decisions: one late click per corrected decision.
        out["late"] = int(self._query("SELECT COUNT(DISTINCT event_id) FROM corrections WHERE kind='late'")[0][0])
        out["upgrades"] = int(self._query("SELECT COUNT(*) FROM corrections WHERE kind='upgrade'")[0][0])
        out["corrections"] = int(self._query("SELECT COUNT(*) FROM corrections")[0][0])
        out["expired_feedback"] = int(self.get_meta("feedback_expired") or 0)
        out["feedback"] = int(self._query("SELECT COUNT(*) FROM feedback")[0][0])
        out["requests"] = int(self._query("SELECT COUNT(*) FROM requests")[0][0])
        out["quarantined"] = int(self._query("SELECT COUNT(*) FROM quarantine")[0][0])
        return out

    def record_snapshot(self, now: float, path: str, learned_seq: int, version: int) -> None:
        """Note that the policy file at `path` includes every event with learn_seq <= `learned_seq`."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO snapshots (time, path, learned_seq, version) VALUES (?, ?, ?, ?)",
                (now, path, learned_seq, version),
            )

    def snapshots(self) -> list[tuple[str, int, int]]:
        """(path, learned_seq, version) of every recorded snapshot, newest first."""
        return [(p, int(s), int(v)) for p, s, v in self._query(
            "SELECT path, learned_seq, version FROM snapshots ORDER BY id DESC")]

    # -- export -----------------------------------------------------------------------------------
    def records(self) -> list[DecisionRecord]:
        """Every decision as a `DecisionRecord` for offline evaluation.

        The reward is the final one: None while the window is open, a late click's reward once it
        corrected a reward-0 close.
        """
        fs_cache: dict[str, dict[str, dict[str, float]]] = {}
        out = []
        for r in self._query(
            f"SELECT {_DECISION_COLS} FROM decisions d JOIN requests r USING (request_id) ORDER BY d.seq"
        ):
            # What an export and offline evaluation compare with a Parquet log: the decision, not
            # where it sits in this log.
            rec, fs_key = _record(r, bookkeeping=False), r[6]
            if fs_key not in fs_cache:
                fs_cache[fs_key] = json.loads(self.featureset(fs_key) or "{}")
            feats = fs_cache[fs_key]
            rec.candidate_features = [dict(feats.get(a, {})) for a in rec.candidates]
            out.append(rec)
        return out


_ADD_IMPRESSIONS = (
    "INSERT INTO artwork_stats (artwork_id, impressions) VALUES (?, ?) "
    "ON CONFLICT (artwork_id) DO UPDATE SET impressions = artwork_stats.impressions + excluded.impressions"
)


def _storable(text: str) -> str:
    # Lone surrogates (from a client's odd bytes) cannot be encoded and PostgreSQL text cannot hold
    # NUL: both are written as escapes.
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


# -- SQLite ----------------------------------------------------------------------------------------


class EventLog(WalDatabase, BaseEventLog):
    """The SQLite event log: one file, one connection shared by the threads of one server process."""

    backend = "sqlite"

    def __init__(self, path: str | Path, *, durable: bool = False, timeout: float = 30.0,
                 auto_checkpoint: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Owner-only like the snapshots: the log holds every user's context and history. SQLite gives
        # the -wal and -shm files the main file's mode, so creating it 0600 covers all three.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        self._lock = threading.RLock()
        self._db = connect_wal(self.path, timeout)
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.execute("PRAGMA foreign_keys=ON")
        if not auto_checkpoint:
            # The checkpoint (copying the WAL into the file, with an fsync) would otherwise run inside
            # whichever request's COMMIT crosses 1000 pages: a latency spike every second under load.
            # The owner calls `checkpoint()` from a background thread instead.
            self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._ckpt: sqlite3.Connection | None = None
        with self.transaction() as db:
            # First, inside the transaction: a log from a newer build is refused before anything in it
            # changes, and an older one is migrated (columns, tables, version) all or nothing.
            stored = stored_schema_version(db)
            if stored > SCHEMA_VERSION:
                raise EventLogError(f"the event log {self.path} has schema version {stored}, newer than this "
                                    f"build's {SCHEMA_VERSION}: upgrade artwork-engine (pip install -U "
                                    "artwork-engine) before serving from it; its contents were not changed")
            self._migrate(db)
            for stmt in SCHEMA.strip().split(";"):
                if stmt.strip():
                    db.execute(stmt)
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            # The header's user_version, for tools (`sqlite3 FILE 'PRAGMA user_version'`); the meta
            # row stays for builds that only know it.
            db.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")

    @property
    def location(self) -> Path:
        """The log's file."""
        return self.path

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Bring a log written by an older version up to this schema, inside the opening transaction.

        Version 1 had no `decisions.late_seq` (NULL: never corrected, which every old row is) and
        no `corrections` table (SCHEMA creates it). ADD COLUMN rewrites no rows, so this is instant.
        """
        cols = {r[1] for r in db.execute("PRAGMA table_info(decisions)").fetchall()}
        if cols and "late_seq" not in cols:
            db.execute("ALTER TABLE decisions ADD COLUMN late_seq INTEGER")
        # Version 2 -> 3: every old decision was active and never upgraded; every old correction
        # was a late click (the DEFAULT fills them in without rewriting rows).
        if cols and "upgrade_seq" not in cols:
            db.execute("ALTER TABLE decisions ADD COLUMN upgrade_seq INTEGER")
        if cols and "inactive" not in cols:
            db.execute("ALTER TABLE decisions ADD COLUMN inactive INTEGER NOT NULL DEFAULT 0")
        ccols = {r[1] for r in db.execute("PRAGMA table_info(corrections)").fetchall()}
        if ccols and "kind" not in ccols:
            db.execute("ALTER TABLE corrections ADD COLUMN kind TEXT NOT NULL DEFAULT 'late'")

    def close(self) -> None:
        """Close the connection (checkpointing the WAL)."""
        with self._lock:
            if self._ckpt is not None:
                self._ckpt.close()
            self._db.close()

    def checkpoint(self) -> None:
        """Copy the WAL into the database file without blocking writers (its own connection, PASSIVE)."""
        if self._ckpt is None:
            self._ckpt = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._ckpt.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def file_bytes(self) -> int:
        """Size of the log on disk, WAL included."""
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
