"""Impressions whose outcome has not been learned yet: what a policy's counts lack while windows are open.

A click is learned as soon as it is posted; the miss of a decision nobody clicked only when its
feedback window closes (README "Feedback windows": 30 minutes by default). Until then an
artwork's learned outcomes are its clicks alone, so its click rate reads high, and the title's
rate with it. At a launch, or for an artwork just added, that is every outcome there is: on the
demo's audience it cost the default policy 0.018-0.045 of click rate over the first quarter of
the run against per-title Thompson sampling. Counting the decisions still open as impressions
(misses until told otherwise) gives the counts what they would be if every window closed at
once; a click that arrives moves one of them from "open" to "learned" and nothing is counted
twice.

`Pending` is transient serving state, not learned state: it never enters `learn_one`, a
snapshot or a restart replay (those see only finalized outcomes, in learn_seq order). The
engine keeps one per serving process: +1 when a decision is logged active or activated, -1 when
its outcome is learned, and it is reset from the event log's open decisions after a restore (and
on each snapshot reload of a chooser replica, which does not see the learner's outcomes).
`bandit.worlds.run_world` keeps one the same way for the simulated worlds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

__all__ = ["Pending"]


class Pending:
    """Open decisions per (title, artwork); thread-safe, never negative."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_title: dict[str, dict[str, int]] = {}
        self.total = 0

    def add(self, title_id: str, artwork_id: str, n: int = 1) -> None:
        with self._lock:
            arts = self._by_title.setdefault(title_id, {})
            arts[artwork_id] = arts.get(artwork_id, 0) + n
            self.total += n

    def resolve(self, title_id: str, artwork_id: str) -> None:
        """One decision's outcome was learned. A decision this process never counted (learned
        during a restart replay, or activated by its own feedback) leaves the counts at 0."""
        with self._lock:
            arts = self._by_title.get(title_id)
            if arts and arts.get(artwork_id, 0) > 0:
                arts[artwork_id] -= 1
                self.total -= 1
                if arts[artwork_id] == 0:
                    del arts[artwork_id]
                    if not arts:
                        del self._by_title[title_id]

    def reset(self, counts: Iterable[tuple[str, str, int]]) -> None:
        """Replace every count with (title, artwork, open decisions) rows, e.g. `open_counts()` of a log."""
        by_title: dict[str, dict[str, int]] = {}
        total = 0
        for title_id, artwork_id, n in counts:
            if n > 0:
                by_title.setdefault(str(title_id), {})[str(artwork_id)] = int(n)
                total += int(n)
        with self._lock:
            self._by_title, self.total = by_title, total

    def of(self, title_id: str) -> Mapping[str, int]:
        """The title's open decisions per artwork (a copy: safe to read while others count)."""
        with self._lock:
            return dict(self._by_title.get(title_id, {}))
