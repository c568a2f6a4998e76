"""SQLite plumbing shared by the catalog and the event log: WAL connections and write transactions."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import ContextManager, Iterator


def connect_wal(path: str | Path, timeout: float = 30.0) -> sqlite3.Connection:
    """A connection in WAL mode (readers never block the writer), shareable between threads.

    Autocommit mode (isolation_level=None): transactions are explicit, see `write_transaction`.
    """
    db = sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    return db


@contextmanager
def write_transaction(db: sqlite3.Connection, lock: threading.RLock) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT under the connection's lock; rolled back on any exception."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            # SQLite has already rolled back by itself after "database or disk is full" or an
            # I/O error; a second ROLLBACK would raise and hide the real error.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


class WalDatabase:
    """Base of the project's SQLite files: one WAL connection behind one lock, and a `meta` table.

    Subclasses open `self._db` (with `connect_wal`) and create `self._lock` in their __init__.
    """

    _db: sqlite3.Connection
    _lock: threading.RLock

    def transaction(self) -> ContextManager[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT under the connection lock; rolled back on any exception."""
        return write_transaction(self._db, self._lock)

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def get_meta(self, key: str) -> str | None:
        """A stored setting (catalog encoder, embedding projection...), or None."""
        rows = self._query("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else None
