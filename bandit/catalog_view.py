"""The catalog as the policy sees it: each title's candidates with their features, rebuilt only when
the catalog changes.

Why a seam here: everything the engine reads from the catalog store goes through one cached
`CatalogState`, so choosing a page never touches the catalog database, and an upload or a designer
flag (committed by another connection) is picked up by one cheap `PRAGMA data_version` check per
request. The embedding projection lives here too because it is part of every candidate's features:
it is fitted once, stored in the event log, and kept once learning has begun.

The same features come back for learning: a decision records its title's feature set by key
(`fs_key`), and `candidates` turns a learn event back into the `Candidate`s the policy was offered.
Both directions share this module so that the features a policy chose with and the features it
learns from are built by one piece of code.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass

from artwork.records import Artwork
from artwork.store import Catalog
from bandit.decisions import DecisionRecord
from bandit.events import BaseEventLog
from bandit.features import Candidate, EmbeddingProjection, candidates_from_artworks, taste_vocabulary

__all__ = ["TitleView", "CatalogState", "CatalogView"]


@dataclass
class TitleView:
    """One title as a page offers it."""

    candidates: list[Candidate]  # all, disabled included (the policy drops disabled ones)
    artworks: list[Artwork]
    disabled: frozenset[str]
    pinned: str | None
    fs_key: str
    fs_json: str


@dataclass
class CatalogState:
    """The whole catalog at one data_version: never changed once built, replaced on a change."""

    titles: dict[str, TitleView]
    artworks: dict[str, Artwork]  # artwork_id -> artwork
    by_title: dict[str, list[Artwork]]
    vocab: frozenset[str] = frozenset()  # taste keys that can meet a candidate feature (features.taste_vocabulary)


class CatalogView:
    """The catalog store turned into candidates, refreshed when the catalog changes. Thread-safe.

    `learned_seq` tells whether learning has begun: until it has, a projection fitted on too few
    artworks is refitted as artworks arrive; after, the features stay what the policy learned on.
    """

    def __init__(self, catalog: Catalog, events: BaseEventLog, projection_dims: int,
                 learned_seq: Callable[[], int]) -> None:
        self.catalog = catalog
        self.events = events
        self.projection_dims = projection_dims
        self._learned_seq = learned_seq
        # A second connection only for PRAGMA data_version: it changes whenever another
        # connection (an upload, a designer flag) commits to the catalog, at microseconds a check.
        self._watch = sqlite3.connect(catalog.path, check_same_thread=False, isolation_level=None)
        self._watch_lock = threading.Lock()
        self._data_version: int | None = None
        self._view_lock = threading.Lock()
        self._state: CatalogState | None = None
        self.projection: EmbeddingProjection | None = None
        self._fs_cache: dict[str, dict[str, dict[str, float]]] = {}
        self._cand_cache: dict[tuple[str | None, tuple[str, ...]], list[Candidate]] = {}

    def close(self) -> None:
        self._watch.close()

    def load_projection(self) -> None:
        enc = self.catalog.encoder_id
        stored = self.events.get_meta("projection")
        embs = [a.embedding for a in self.catalog.all_artworks() if a.embedding is not None]
        if stored:
            proj = EmbeddingProjection.from_dict(json.loads(stored))
            # Kept once learning has begun: refitting as artworks arrive would silently change
            # every candidate's "emb:" features under a policy that learned the old ones. Before
            # any reward is learned, a projection fitted on too few artworks is refitted.
            undersized = proj.n_components < min(self.projection_dims, len(embs) - 1)
            if proj.encoder_id == enc and not (undersized and self.events.max_learn_seq() == 0):
                self.projection = proj
                return
        dims = {e.shape for e in embs}
        if len(embs) >= 2 and len(dims) == 1:
            self.projection = EmbeddingProjection.fit(embs, n_components=self.projection_dims, encoder_id=enc)
            self.events.set_meta("projection", json.dumps(self.projection.to_dict()))
        else:
            self.projection = None

    def current(self, force: bool = False) -> CatalogState:
        """The catalog as of now: the cached state unless the catalog changed (or `force`)."""
        with self._watch_lock:
            version = self._watch.execute("PRAGMA data_version").fetchone()[0]
        with self._view_lock:
            if not force and self._state is not None and version == self._data_version:
                return self._state
            if (self.projection is None or self.projection.encoder_id != self.catalog.encoder_id
                    or (self.projection.n_components < self.projection_dims and self._learned_seq() == 0)):
                self.load_projection()
            arts = self.catalog.all_artworks()
            by_title: dict[str, list[Artwork]] = {t.title_id: [] for t in self.catalog.titles()}
            for a in arts:
                by_title.setdefault(a.title_id, []).append(a)
            titles = {}
            for tid, tarts in by_title.items():
                cands = candidates_from_artworks(tarts, self.projection, include_disabled=True)
                fs_json = json.dumps({c.artwork_id: c.features for c in cands}, separators=(",", ":"))
                titles[tid] = TitleView(
                    candidates=cands,
                    artworks=tarts,
                    disabled=frozenset(a.artwork_id for a in tarts if a.disabled),
                    pinned=next((a.artwork_id for a in tarts if a.pinned), None),
                    fs_key=hashlib.sha256(fs_json.encode()).hexdigest()[:24],
                    fs_json=fs_json,
                )
            self._state = CatalogState(titles, {a.artwork_id: a for a in arts}, by_title, taste_vocabulary(arts))
            self._data_version = version
            return self._state

    def featureset(self, fs_key: str) -> dict[str, dict[str, float]]:
        """A logged feature set by its key (as `current` built it when the decision was made)."""
        fs = self._fs_cache.get(fs_key)
        if fs is None:
            fs = json.loads(self.events.featureset(fs_key) or "{}")
            if len(self._fs_cache) > 10_000:
                self._fs_cache.clear()
            self._fs_cache[fs_key] = fs
        return fs

    def candidates(self, row: DecisionRecord) -> list[Candidate]:
        """A learn event's candidates, shared by every event with the same feature set and offer:
        building (and validating) them anew cost a quarter of the learner's time per event."""
        key = (row.fs_key, tuple(row.candidates))
        hit = self._cand_cache.get(key)
        if hit is None:
            if len(self._cand_cache) >= 10_000:
                self._cand_cache.clear()
            hit = self._cand_cache[key] = row.candidate_objects(self.featureset(row.fs_key))
        return list(hit)  # the Candidates are shared, the list is the caller's
