"""Where one deployment's files live: the catalog, and beside it the event log and the policy snapshots.

One object answers "where is the event log of this store?" for every command and the server, so the
`STORE.events.db` / `STORE.snapshots/` convention is written once. It lives in `artwork` because it
is the store's layout on disk (names only): what the files hold is `bandit`'s business.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["StorePaths"]


@dataclass(frozen=True)
class StorePaths:
    """A catalog's path and its serving neighbours: `events` (a SQLite file, or a postgresql:// URL)
    and `snapshots` (the policy snapshot folder)."""

    store: Path
    events: str
    snapshots: Path

    @classmethod
    def of(cls, store: str | os.PathLike[str], events: str | os.PathLike[str] | None = None,
           snapshots: str | os.PathLike[str] | None = None) -> StorePaths:
        """The defaults beside `store` for whatever is not given."""
        return cls(Path(store), str(events) if events else f"{os.fspath(store)}.events.db",
                   Path(snapshots) if snapshots else Path(f"{os.fspath(store)}.snapshots"))

    @property
    def events_is_url(self) -> bool:
        """Whether the event log is on a database server (postgresql://...) rather than a file."""
        return "://" in self.events

    @property
    def events_file(self) -> Path | None:
        """The event log's SQLite file, or None when it is a URL."""
        return None if self.events_is_url else Path(self.events)
