"""SQLite plumbing shared by the catalog and the event log: WAL connections and write transactions."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


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
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
