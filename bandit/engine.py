"""The serving core: catalog + policy + event log, with no HTTP in sight.

`Engine` chooses an artwork per title for a page, joins feedback, closes reward windows, learns
online and snapshots the policy. The FastAPI app (`bandit.server`) is a thin layer over it, and
the demo and benchmarks call it directly, so in-process and over-HTTP behaviour are one code path.

Learning order is the invariant everything hangs on: every learn event (joined feedback, a window
closed at reward 0, or a late click correcting such a close) gets a `learn_seq` in the same event-log
transaction that records it, and the policy learns events strictly in learn_seq order (one lock
around "commit + learn"), through one function (`_learn`) fed by the rows the transaction wrote
or, at restart, by `EventLog.finalized_after`. A snapshot records the last learn_seq it includes,
so a restart = load snapshot + replay learn_seq > that, which rebuilds exactly the policy that was
running (VW learning is deterministic). An explicit deployment (a file trained offline, another
policy kind, an A/B split) catches up the same way, from learn_seq 0 through the same `_learn`,
skipping the rows its file's training recorded (`bandit.lineage.TrainedRows`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import random
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from artwork.records import Artwork
from artwork.paths import StorePaths
from artwork.store import Catalog, StoreError
from bandit.baselines import UniformPolicy
from bandit.decisions import DecisionRecord
from bandit.events import BaseEventLog, open_event_log
from bandit.features import (MAX_EXCLUDE, MAX_ID_CHARS, MAX_TASTE_KEYS, Candidate, ContextError, EmbeddingProjection,
                             InputWarning, UserContext, candidates_from_artworks, taste_from_history,
                             taste_vocabulary, text_problem, unknown_inputs)
from bandit.policy import BasePolicy, NoCandidatesError, PolicyError, TitleRequest
from bandit.lineage import (SnapshotInfo, TrainedRows, file_sha256, keep_names, prune, snapshot_infos,
                            snapshot_name, write_sidecar)
from bandit.sessions import Session, SessionTable
from bandit.registry import DEFAULT_POLICY, POLICIES, load_policy, make_policy
from bandit.split import SplitPolicy

__all__ = [
    "EngineConfig",
    "Engine",
    "EngineError",
    "RequestError",
    "NotFoundError",
    "TitleChoice",
    "FeedbackOutcome",
    "POLICY_KINDS",
    "prometheus_text",
]

log = logging.getLogger("artwork.engine")

POLICY_KINDS = tuple(p for p in POLICIES if p != "fixed")  # fixed needs per-title defaults: not served
ROLES = ("all", "chooser", "learner")  # EngineConfig.role


class EngineError(Exception):
    """Base of the errors the engine reports to callers (the server maps them to HTTP codes)."""


class RequestError(EngineError, ValueError):
    """A request field is invalid; `field` names it (dotted path), the message says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFoundError(EngineError, LookupError):
    """An unknown title, artwork, user session or event."""


@dataclass
class EngineConfig:
    """Everything the engine needs besides the catalog; times are seconds."""

    # The event log: a SQLite file (default: "<store>.events.db" next to the catalog) or a
    # postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE URL (bandit.events.open_event_log).
    events: str | None = None
    snapshot_dir: str | None = None  # default: "<store>.snapshots/"
    policy: str = DEFAULT_POLICY  # a name in bandit.registry.POLICIES: what starts when there is nothing to restore
    # An explicit deployment (`serve --policy`): a registered name or a saved policy file. A file, or a
    # name other than the newest snapshot's kind, starts from that policy and learns the whole log
    # (less the rows its training recorded); the same name as the snapshot's restores the snapshot.
    deploy: str | None = None
    # An online A/B test (`serve --ab`): arm B's policy (a name or a saved file) on `ab_share` of the
    # users, arm A being what would be served otherwise (bandit.split).
    ab: str | None = None
    ab_share: float = 0.5
    exploration: str = "squarecb"  # VW exploration (see bandit.policy.EXPLORATIONS)
    seed: int = 0
    max_titles: int = 200  # titles per choose request
    max_batch: int = 1000  # events per batch feedback request
    session_ttl_s: float = 24 * 3600.0  # a user keeps seeing the same artwork of a title this long
    feedback_window_s: float = 30 * 60.0  # no positive feedback within this -> reward 0
    close_interval_s: float = 1.0  # how often the timer closes expired windows
    snapshot_interval_s: float = 60.0  # periodic policy snapshot (also on shutdown)
    keep_snapshots: int = 2
    reward_min: float = 0.0
    reward_max: float = 1.0
    # Share of pages served uniformly at random (logged as policy "uniform", propensity 1/K) and
    # learned from like any other: the randomised slice that replay evaluation needs to judge
    # policies unlike the deployed one.
    explore_share: float = 0.0
    click_reward: float = 1.0  # reward of {"click": true}
    play_reward: float = 1.0  # reward of {"play": true}
    projection_dims: int = 16
    image_url_prefix: str = ""  # prepended to "/v1/artworks/{id}/image" (e.g. a CDN origin)
    durable: bool = False  # synchronous=FULL: survive power loss, not just a killed process
    # What this process does with the shared event log (README "Scaling out"):
    # "all": choose, join feedback, learn, close windows, snapshot (one process per log);
    # "chooser": choose and join feedback only, serving a read-only copy of the newest snapshot,
    # reloaded every `reload_interval_s`; any number of them share one log;
    # "learner": the one process that learns every learn event of the log (its own and the
    # choosers'), closes windows and snapshots; it takes the store lock.
    role: str = "all"
    reload_interval_s: float = 1.0  # a chooser's snapshot check

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")
        if not self.reload_interval_s > 0:
            raise ValueError("reload_interval_s must be > 0")
        if self.policy not in POLICY_KINDS:
            raise ValueError(f"policy must be one of {POLICY_KINDS}, got {self.policy!r}")
        if not self.reward_min < self.reward_max:
            raise ValueError("reward_min must be < reward_max")
        for name in ("session_ttl_s", "feedback_window_s", "close_interval_s", "snapshot_interval_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if not 0.0 <= self.explore_share <= 1.0:
            raise ValueError("explore_share must be in [0, 1]")
        if not 0.0 < self.ab_share < 1.0:
            raise ValueError(f"ab_share (the share of users on arm B) must be in (0, 1), got {self.ab_share!r}")
        if self.max_titles < 1 or self.max_batch < 1:
            raise ValueError("max_titles and max_batch must be >= 1")
        for name in ("click_reward", "play_reward"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and self.reward_min <= v <= self.reward_max):
                raise ValueError(f"{name} must be within the reward range [{self.reward_min}, {self.reward_max}], got {v!r}")


@dataclass
class TitleChoice:
    """The engine's answer for one title of a page: a choice, or an error for that title only."""

    title_id: str
    artwork_id: str | None = None
    image_url: str | None = None
    event_id: str | None = None
    probability: float | None = None
    policy: str | None = None
    policy_version: int | None = None
    repeat: bool = False  # the user's earlier choice for this title, no new event logged
    active: bool = True  # False: logged with activate=false, no feedback window until activated
    error: str | None = None  # "unknown_title" | "no_candidates" | "policy_error"
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (error fields only when set)."""
        d = dict(vars(self))  # all fields are scalars; asdict's recursive copy cost 1/3 of a page
        if self.active:  # only inactive decisions say so: active is the default
            d.pop("active")
        if self.error is None:
            d.pop("error")
            d.pop("message")
        return d


@dataclass
class FeedbackOutcome:
    """What happened to one feedback post."""

    event_id: str
    status: str  # "joined" | "late" | "upgraded" | "duplicate" | "conflict" | "not_found" | "expired"
    changed: bool
    reward: float | None = None  # the reward on record for the event
    message: str = ""
    recorded: float | None = None  # conflict only: the reward on record ...
    posted: float | None = None  # ... and the refused one

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (recorded/posted only for a conflict)."""
        d = asdict(self)
        if self.status != "conflict":
            d.pop("recorded")
            d.pop("posted")
        return d


@dataclass
class _TitleView:
    candidates: list[Candidate]  # all, disabled included (the policy drops disabled ones)
    artworks: list[Artwork]
    disabled: frozenset[str]
    pinned: str | None
    fs_key: str
    fs_json: str


@dataclass
class _CatalogView:
    titles: dict[str, _TitleView]
    artworks: dict[str, Artwork]  # artwork_id -> artwork
    by_title: dict[str, list[Artwork]]
    vocab: frozenset[str] = frozenset()  # taste keys that can meet a candidate feature (features.taste_vocabulary)


def _content_type(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def _new_policy(cfg: EngineConfig, kind: str | None = None, seed: int | None = None) -> BasePolicy:
    kind = kind or cfg.policy
    options = {"exploration": cfg.exploration} if kind == "vw" else {}
    return make_policy(kind, seed=cfg.seed if seed is None else seed, **options)


@dataclass
class _Deployment:
    """A policy an operator named (serve --policy / --ab): a registered name, or a saved file that
    is read (and checked) when the engine is built, so a bad file fails before anything opens."""

    spec: str
    kind: str
    policy: BasePolicy | None = None  # the loaded file; None for a name (built when used)
    file: str | None = None
    sha256: str | None = None
    trained: TrainedRows | None = None

    @classmethod
    def prepare(cls, spec: str, what: str) -> _Deployment:
        if spec in POLICY_KINDS:
            return cls(spec, spec)
        path = Path(spec)
        if not path.is_file():
            raise PolicyError(f"{what} {spec!r}: neither a policy name ({', '.join(POLICY_KINDS)}) nor an existing "
                              "saved policy file")
        try:
            pol = load_policy(path)
        except (PolicyError, OSError) as e:
            raise PolicyError(f"{what} {spec}: not a saved policy file (.vwz, .bayes, .json, .split): {e}") from None
        return cls(spec, pol.kind, pol, str(path.resolve()), file_sha256(path), TrainedRows.from_file(path))

    def build(self, cfg: EngineConfig, seed: int) -> BasePolicy:
        return self.policy if self.policy is not None else _new_policy(cfg, self.kind, seed)

    @property
    def source(self) -> str:
        return (f"deployed from {self.file} sha256={self.sha256}" if self.file
                else f"deployed: a new {self.kind} policy")

    def identity(self) -> dict[str, Any]:
        """What a snapshot's lineage keeps to recognise this deployment at the next start."""
        return {"id": None, "source": self.source, "kind": self.kind, "file": self.file, "sha256": self.sha256,
                "trained_rows": self.trained.rows if self.trained else None}

    def matches(self, policy: BasePolicy, deployment: Mapping[str, Any] | None) -> bool:
        """Is `policy` (restored, with the deployment its lineage records) what this names? A file
        by its sha256; a name by the policy's kind."""
        if self.file is not None:
            return (deployment or {}).get("sha256") == self.sha256
        return policy.kind == self.kind


def _replay_progress(rows: Iterable[DecisionRecord], total: int, what: str, every_s: float = 5.0) -> Iterator[DecisionRecord]:
    """`rows` unchanged, with a progress line in the log every `every_s` seconds: a deployment
    replays the whole log, which can take minutes before the server answers."""
    start = last = time.monotonic()
    done = 0
    for row in rows:
        yield row
        done += 1
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            log.warning("%s: %d of %d learn events replayed (%.0f%%, %.0f s)", what, done, total,
                        100.0 * done / max(total, 1), now - start)
    if last != start:
        log.warning("%s: done, %d learn events in %.0f s", what, done, time.monotonic() - start)


class Engine:
    """Serve, log, join, learn, snapshot. Thread-safe; call `start()` before use and `close()` after.

    `clock` is injectable so tests can move time past session TTLs and reward windows.
    """

    def __init__(
        self,
        catalog: Catalog | str | Path,
        config: EngineConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        start_timer: bool = True,
    ) -> None:
        self.config = config or EngineConfig()
        self.clock = clock
        # Named policy files are read first: a bad one is an error before any store is opened.
        self._deploy = _Deployment.prepare(self.config.deploy, "policy") if self.config.deploy else None
        self._ab = _Deployment.prepare(self.config.ab, "A/B arm B") if self.config.ab else None
        if self._ab is not None and self._ab.kind == SplitPolicy.kind:
            raise PolicyError(f"A/B arm B {self.config.ab}: holds an A/B split itself; give one policy")
        if self._ab is not None and self._deploy is not None and self._deploy.kind == SplitPolicy.kind:
            raise PolicyError(f"policy {self.config.deploy}: holds an A/B split; arm A of a new A/B test must be "
                              "one policy")
        self._own_catalog = not isinstance(catalog, Catalog)
        self.catalog = Catalog(catalog) if not isinstance(catalog, Catalog) else catalog
        store = self.catalog.path
        self.paths = StorePaths.of(store, self.config.events, self.config.snapshot_dir)
        self.snapshot_dir = self.paths.snapshots
        # With the timer running, WAL checkpoints happen on it, never inside a request's commit.
        try:
            self.events: BaseEventLog = open_event_log(self.paths.events,
                                                       durable=self.config.durable, auto_checkpoint=not start_timer)
        except BaseException:
            if self._own_catalog:  # an unreachable or refused log must not leave the catalog open
                self.catalog.close()
            raise
        # What messages and /health name: the SQLite file (a Path), or the URL with its password masked.
        self.events_path: Path | str = self.events.location
        # A second connection only for PRAGMA data_version: it changes whenever another
        # connection (an upload, a designer flag) commits to the catalog, at microseconds a check.
        self._watch = sqlite3.connect(store, check_same_thread=False, isolation_level=None)
        self._watch_lock = threading.Lock()
        self._data_version: int | None = None
        self._view_lock = threading.Lock()
        self._view: _CatalogView | None = None
        self.projection: EmbeddingProjection | None = None
        self._choose_lock = threading.Lock()  # sampling order + sticky sessions
        self._learn_lock = threading.RLock()  # "commit reward + learn" and snapshots
        # Sticky sessions; a chooser replica shares the log's with the other replicas.
        self.sessions = SessionTable(self.events, shared=self.config.role == "chooser")
        self._fs_cache: dict[str, dict[str, dict[str, float]]] = {}
        self._cand_cache: dict[tuple[str | None, tuple[str, ...]], list[Candidate]] = {}
        self.policy: BasePolicy = _new_policy(self.config)
        self._explorer = UniformPolicy(seed=self.config.seed + 1)
        self._explore_rng = random.Random(self.config.seed + 2)
        self.learned_seq = 0
        self._snap_seq: int | None = None
        self._snap_name: str | None = None  # the snapshot served from (restored or last written)
        # The deployment the running policy belongs to and the lineage of its newest snapshot
        # (bandit.lineage); set by `_restore_policy`, advanced by `snapshot`.
        self._deployment: dict[str, Any] = {"id": None, "source": "not started"}
        self.lineage: dict[str, Any] = {}
        self._trained: TrainedRows | None = None  # rows to skip while a deployed file catches up
        self._last_snapshot = 0.0
        self.role = self.config.role
        self._snap_created: float | None = None  # wall time the served snapshot was written (chooser)
        self._lock_fd: int | None = None  # the store lock a learner holds
        # Per engine, never prometheus_client's global REGISTRY: tests and the demo run several
        # engines (and servers) in one process, and a global registry refuses a second copy.
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_EngineCollector(self))
        self.counters: dict[str, int] = {
            "choose_requests": 0, "decisions": 0, "repeats": 0, "title_errors": 0, "feedback_joined": 0,
            "feedback_late": 0, "feedback_duplicate": 0, "feedback_not_found": 0, "feedback_expired": 0,
            "windows_closed": 0, "learned": 0, "corrections_learned": 0, "snapshots": 0, "replayed": 0,
            "quarantined": 0, "feedback_upgraded": 0, "feedback_conflict": 0, "activated": 0,
            "trained_skipped": 0,
        }
        if self.role != "all":  # a replica's own counters (role "all" keeps exactly its old metrics)
            self.counters.update({"reloads": 0, "tail_learned": 0})
        # learn_seq -> event_id of learn events that could not be learned (see `_learn`).
        self._quarantined: dict[int, str] = self.events.quarantined()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._start_timer = start_timer
        self.started = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Engine:
        """Restore the policy (snapshot + replay), reload sessions, close expired windows, start the timer."""
        if self.started:
            return self
        if self.role == "learner":  # one learner per log, as one `artwork serve` per store
            from bandit.storelock import lock_store

            self._lock_fd = lock_store(self.paths.events)
        try:
            self._load_projection()
            self._refresh(force=True)
            if self.role == "chooser":
                self._start_chooser()
            else:
                self._restore_policy()
                now = self.clock()
                # A learner serves no pages: its sessions are the choosers' (in the log).
                if self.role == "all":  # a learner serves no pages: its sessions are the choosers' (in the log)
                    self.sessions.load(now)
                self.close_expired()
                if self.role == "learner":  # what it restored and replayed, for the choosers at once
                    self.snapshot()
        except BaseException:
            self._unlock()
            raise
        self._last_snapshot = time.monotonic()
        if self._start_timer:
            self._timer = threading.Thread(target=self._run_timer, name="engine-timer", daemon=True)
            self._timer.start()
        self.started = True
        return self

    def close(self) -> None:
        """Stop the timer, snapshot the policy and close the stores."""
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=10)
        if self.started and self.role != "chooser":
            try:
                self.snapshot()
            except Exception:  # noqa: BLE001 - shutdown must still close the files
                log.exception("final snapshot failed")
        self.events.close()
        self._watch.close()
        if self._own_catalog:
            self.catalog.close()
        self._unlock()
        self.started = False

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            from bandit.storelock import unlock_store

            unlock_store(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _run_timer(self) -> None:
        every = self.config.reload_interval_s if self.role == "chooser" else self.config.close_interval_s
        while not self._stop.wait(every):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a failed tick must not kill the timer
                log.exception("engine timer tick failed")

    def tick(self) -> None:
        """One timer tick, what the timer runs every interval (tests call it directly).

        all / learner: close expired windows, (learner) learn what other processes finalized,
        checkpoint, snapshot every `snapshot_interval_s`. chooser: reload a newer snapshot.
        """
        if self.role == "chooser":
            self.reload()
            if time.monotonic() - self._last_snapshot >= self.config.snapshot_interval_s:
                self._last_snapshot = time.monotonic()
                self._purge_sessions()
            return
        self.close_expired()
        if self.role == "learner":
            self.learn_tail()
        self.events.checkpoint()
        if time.monotonic() - self._last_snapshot >= self.config.snapshot_interval_s:
            self.snapshot()
            self._purge_sessions()

    # -- catalog features ----------------------------------------------------------------------------
    def _load_projection(self) -> None:
        enc = self.catalog.encoder_id
        stored = self.events.get_meta("projection")
        embs = [a.embedding for a in self.catalog.all_artworks() if a.embedding is not None]
        if stored:
            proj = EmbeddingProjection.from_dict(json.loads(stored))
            # Kept once learning has begun: refitting as artworks arrive would silently change
            # every candidate's "emb:" features under a policy that learned the old ones. Before
            # any reward is learned, a projection fitted on too few artworks is refitted.
            undersized = proj.n_components < min(self.config.projection_dims, len(embs) - 1)
            if proj.encoder_id == enc and not (undersized and self.events.max_learn_seq() == 0):
                self.projection = proj
                return
        dims = {e.shape for e in embs}
        if len(embs) >= 2 and len(dims) == 1:
            self.projection = EmbeddingProjection.fit(embs, n_components=self.config.projection_dims, encoder_id=enc)
            self.events.set_meta("projection", json.dumps(self.projection.to_dict()))
        else:
            self.projection = None

    def _refresh(self, force: bool = False) -> _CatalogView:
        with self._watch_lock:
            version = self._watch.execute("PRAGMA data_version").fetchone()[0]
        with self._view_lock:
            if not force and self._view is not None and version == self._data_version:
                return self._view
            if (self.projection is None or self.projection.encoder_id != self.catalog.encoder_id
                    or (self.projection.n_components < self.config.projection_dims and self.learned_seq == 0)):
                self._load_projection()
            arts = self.catalog.all_artworks()
            by_title: dict[str, list[Artwork]] = {t.title_id: [] for t in self.catalog.titles()}
            for a in arts:
                by_title.setdefault(a.title_id, []).append(a)
            titles = {}
            for tid, tarts in by_title.items():
                cands = candidates_from_artworks(tarts, self.projection, include_disabled=True)
                fs_json = json.dumps({c.artwork_id: c.features for c in cands}, separators=(",", ":"))
                titles[tid] = _TitleView(
                    candidates=cands,
                    artworks=tarts,
                    disabled=frozenset(a.artwork_id for a in tarts if a.disabled),
                    pinned=next((a.artwork_id for a in tarts if a.pinned), None),
                    fs_key=hashlib.sha256(fs_json.encode()).hexdigest()[:24],
                    fs_json=fs_json,
                )
            self._view = _CatalogView(titles, {a.artwork_id: a for a in arts}, by_title, taste_vocabulary(arts))
            self._data_version = version
            return self._view

    # -- policy restore / learning --------------------------------------------------------------------
    def _restore_policy(self) -> None:
        """What the server starts from (README "Deploying a policy"):

        - the newest usable snapshot, caught up with the log, unless an explicit deployment names
          something else: `deploy` a file (matched by sha256) or a name (matched by kind), or `ab`
          an arm B / share the snapshot's split does not hold;
        - an explicit deployment starts from its policy at learn_seq 0 and learns every finalized
          event of the log, less the rows its file's training recorded, then is snapshotted at once;
        - a new A/B split: arm A is the deployment, else what the snapshot holds (a split's arm A);
          arm B is built and learns the log up to where A is; from then on each learns its own users.

        Every replay goes through `_learn`, the one learn path.
        """
        snap, info = self._newest_snapshot()
        dep, ab, cfg = self._deploy, self._ab, self.config
        held = dict((info.lineage.get("deployment") or {}) if info else {})
        split = snap if isinstance(snap, SplitPolicy) else None
        if snap is None:
            whole = False
        elif ab is not None:
            whole = (split is not None and abs(split.share_b - cfg.ab_share) < 1e-12
                     and ab.matches(split.b, held.get("b")) and (dep is None or dep.matches(split.a, held.get("a"))))
        else:  # a split goes on without --ab (stored state, like a deployed file); --policy ends it
            whole = dep is None or (split is None and dep.matches(snap, held))
        if whole:
            assert snap is not None and info is not None
            trained = TrainedRows.from_file(info.path)  # a promoted file carries its training record
            self._snap_seq, self._snap_name = info.learned_seq, info.name
            self._deployment, self.lineage = held, dict(info.lineage)
            n = self._catch_up(snap, info.learned_seq, trained, f"restoring {info.name}")
            self.counters["replayed"] = n
            log.info("policy %s restored from %s at learn_seq %d (%d replayed)", snap.name, info.name,
                     self.learned_seq, n)
            if trained is not None:  # learned the whole log: snapshot it, so a restart need not again
                self.snapshot(force=True)
            return
        base = split.a if split is not None else snap
        base_held = held.get("a") if split is not None else held
        if dep is not None and (base is None or ab is None or not dep.matches(base, base_held)):
            pol, seq, trained = dep.build(cfg, cfg.seed), 0, dep.trained
            deployment, source = dep.identity(), dep.source
        elif base is not None:
            assert info is not None
            pol, seq = base, info.learned_seq
            trained = TrainedRows.from_file(info.path) if split is None else None
            deployment, source = dict(base_held or {}), None
        else:
            pol, seq, trained = _new_policy(cfg), 0, None
            deployment = {"id": None, "source": f"a new {cfg.policy} policy (nothing to restore)", "kind": cfg.policy}
            source = None
        n = self._catch_up(pol, seq, trained, source or "restoring")
        if ab is not None:
            head = self.learned_seq
            arm_b = ab.build(cfg, cfg.seed + 1)
            n += self._catch_up(arm_b, 0, ab.trained, f"A/B arm B ({ab.spec})", upto=head)
            self.policy, self.learned_seq = SplitPolicy(pol, arm_b, cfg.ab_share), head
            b_identity = ab.identity()
            source = (f"A/B split: A = {pol.name} ({deployment.get('source', '?')}), "
                      f"B = {arm_b.name} ({b_identity['source']}), share_b={cfg.ab_share:g}")
            deployment = {"id": None, "source": source, "kind": SplitPolicy.kind, "share_b": cfg.ab_share,
                          "a": deployment, "b": b_identity}
        self.counters["replayed"] = n
        self._deployment = deployment
        self.lineage = self._lineage(source or deployment["source"], info.name if info else None)
        if source is not None:  # an explicit deployment: restarts restore it from here on
            self._snap_name = info.name if info else None
            self.snapshot(source=source, force=True)
        log.info("policy %s started at learn_seq %d (%d replayed): %s", self.policy.name, self.learned_seq, n,
                 source or deployment["source"])

    def _lineage(self, source: str, parent: str | None, snapshot: str | None = None,
                 created: float | None = None) -> dict[str, Any]:
        """The running policy's lineage (bandit.lineage): a snapshot's sidecar, or what /health shows
        before the first snapshot of a deployment is written."""
        return {"snapshot": snapshot, "kind": self.policy.kind, "policy": self.policy.name,
                "version": self.policy.version, "learned_seq": self.learned_seq, "created": created,
                "source": source, "trained_rows": self._deployment.get("trained_rows"), "parent": parent,
                "deployment": self._deployment}

    def _newest_snapshot(self, wanted: Callable[[SnapshotInfo], bool] | None = None
                         ) -> tuple[BasePolicy | None, SnapshotInfo | None]:
        """The newest recorded snapshot that loads, with its info: set-aside ones (a rollback) are
        skipped, an unreadable one gives way to an older one. With `wanted`, the search stops (None,
        None) at the first candidate it refuses: a chooser asks only for snapshots newer than its own."""
        for i in snapshot_infos(self.events, self.snapshot_dir):
            if i.state == "set aside":
                log.info("snapshot %s was set aside by a rollback; skipped", i.name)
                continue
            if wanted is not None and not wanted(i):
                break
            try:
                return load_policy(i.path), i
            except (OSError, PolicyError, ValueError) as e:
                log.warning("snapshot %s unusable (%s); trying an older one", i.path, e)
        return None, None

    # -- replicas: a chooser's read-only policy, a learner's tail of the log ----------------------------
    def _start_chooser(self) -> None:
        """A chooser serves the newest snapshot; until the learner writes one, a new policy."""
        if not self.reload():
            self._deployment = {"id": None, "source": f"a new {self.config.policy} policy (no snapshot yet: "
                                "the learner has not written one)", "kind": self.config.policy}
            self.lineage = self._lineage(self._deployment["source"], None)

    def reload(self) -> bool:
        """A chooser's policy update: serve the newest usable snapshot if it is not the one served and
        holds at least as many learn events (a newer learned_seq, or a new deployment at the same
        one). Returns whether it changed. Never learns: the learner's snapshots are the only source."""
        if self.role != "chooser":
            return False
        snap, info = self._newest_snapshot(
            lambda i: i.name != self._snap_name and i.learned_seq >= self.learned_seq)
        if snap is None or info is None:
            return False
        with self._choose_lock:  # a page is chosen wholly by one policy copy
            self.policy, self.learned_seq = snap, info.learned_seq
            self._snap_seq, self._snap_name = info.learned_seq, info.name
            self._deployment = dict(info.lineage.get("deployment") or {})
            self.lineage = dict(info.lineage)
            created = info.lineage.get("created")
            try:
                self._snap_created = float(created) if created is not None else info.path.stat().st_mtime
            except OSError:
                self._snap_created = None
        self.counters["reloads"] += 1
        log.info("chooser now serves %s (learned_seq %d)", info.name, info.learned_seq)
        return True

    def learn_tail(self) -> int:
        """A learner's catch-up: learn every learn event the log holds after `learned_seq` (feedback
        posted to a chooser, a window a chooser's post closed), through the one learn path."""
        if self.role != "learner":
            return 0
        with self._learn_lock:
            n = self._learn(self.events.finalized_after(self.learned_seq))
        self.counters["tail_learned"] += n
        return n

    def _learn_written(self, rows: Iterable[DecisionRecord]) -> int:
        """Learn the learn events a transaction of ours just wrote (call with `_learn_lock` held).

        Alone on its log (role "all") those are the next ones. A learner shares the log with
        choosers, whose rows may sit between its last learned one and these: it reads the log's
        tail instead (these rows and everything before them, in learn_seq order), so that no row
        is skipped. A chooser learns nothing: its rows reach the learner through the log.
        """
        if self.role == "chooser":
            return 0
        if self.role == "learner":
            return self.learn_tail()
        return self._learn(rows)

    def replica_status(self) -> dict[str, Any]:
        """A replica's view of the shared log: the snapshot it serves (chooser) or last wrote
        (learner), how old it is, and how many learn events the log holds beyond its policy."""
        head = self.events.max_learn_seq()
        created = self._snap_created if self.role == "chooser" else self.lineage.get("created")
        return {"role": self.role, "pid": os.getpid(), "snapshot": self._snap_name,
                "snapshot_learned_seq": self._snap_seq,
                "snapshot_age_s": None if created is None else max(0.0, time.time() - float(created)),
                "log_learn_seq": head, "lag_learn_events": max(0, head - self.learned_seq)}

    def _catch_up(self, policy: BasePolicy, seq: int, trained: TrainedRows | None, what: str,
                  upto: int | None = None) -> int:
        """Make `policy` (which holds every learn event up to `seq`) the served one and learn the
        log's events after it (up to `upto`), skipping the rows `trained` says it learned offline."""
        with self._learn_lock:
            self.policy, self.learned_seq, self._trained = policy, seq, trained
            last = self.events.max_learn_seq() if upto is None else upto
            rows: Iterable[DecisionRecord] = self.events.finalized_after(seq)
            if upto is not None:
                rows = itertools.takewhile(lambda r: int(r.learn_seq) <= upto, rows)  # type: ignore[arg-type]
            try:
                return self._learn(_replay_progress(rows, max(last - seq, 0), what))
            finally:
                self._trained = None
                if trained is not None:
                    self.counters["trained_skipped"] += trained.skipped

    def _featureset(self, fs_key: str) -> dict[str, dict[str, float]]:
        fs = self._fs_cache.get(fs_key)
        if fs is None:
            fs = json.loads(self.events.featureset(fs_key) or "{}")
            if len(self._fs_cache) > 10_000:
                self._fs_cache.clear()
            self._fs_cache[fs_key] = fs
        return fs

    def _candidates(self, row: DecisionRecord) -> list[Candidate]:
        """A learn event's candidates, shared by every event with the same feature set and offer:
        building (and validating) them anew cost a quarter of the learner's time per event."""
        key = (row.fs_key, tuple(row.candidates))
        hit = self._cand_cache.get(key)
        if hit is None:
            if len(self._cand_cache) >= 10_000:
                self._cand_cache.clear()
            hit = self._cand_cache[key] = row.candidate_objects(self._featureset(row.fs_key))
        return list(hit)  # the Candidates are shared, the list is the caller's

    def _learn(self, rows: Iterable[DecisionRecord]) -> int:
        """The one learn path: apply learn events (decisions and corrections) in learn_seq order.

        Live learning passes the rows a transaction just wrote (`FinalizeResult.learn`,
        `EventLog.close_expired`); restart replay passes `EventLog.finalized_after`. Both come
        from the same query, so the policy sees byte-identical examples either way. Call with
        `_learn_lock` held. Returns how many events were learned.
        """
        n = 0
        for row in rows:
            assert row.learn_seq is not None and row.reward is not None
            seq = int(row.learn_seq)
            if seq <= self.learned_seq:  # already in the policy: every event is learned exactly once
                continue
            if seq != self.learned_seq + 1:
                log.warning("learn_seq jumps from %d to %d: events in between were not learned", self.learned_seq, seq)
            if seq in self._quarantined:  # failed before (live, or an earlier replay): skipped the same way
                self.learned_seq = seq
                n += 1
                continue
            if self._trained is not None:  # a deployed file catching up: what its training learned is in it
                trained_row = self._trained.adjust(row)
                if trained_row is None:
                    self.learned_seq = seq
                    n += 1
                    continue
                row = trained_row
            try:
                cands = self._candidates(row)
                user = UserContext.from_dict(row.context)
                if row.old_reward is not None:  # a late click correcting a reward-0 close
                    self.policy.relearn(user, row.title_id, cands, row.chosen, row.probability,
                                        row.old_reward, row.reward)
                    self.counters["corrections_learned"] += 1
                else:
                    self.policy.learn_one(user, row.title_id, cands, row.chosen, row.probability, row.reward)
                self.counters["learned"] += 1
            except Exception as e:  # noqa: BLE001 - one row must never wedge learning or a restart
                self._quarantine(row, seq, e)
            self.learned_seq = seq
            n += 1
        return n

    def _quarantine(self, row: DecisionRecord, seq: int, exc: BaseException) -> None:
        """Record a learn event the policy could not learn: logged, counted, skipped from now on."""
        why = f"{type(exc).__name__}: {exc}"
        log.error("event %r (learn_seq %d) cannot be learned, quarantined: %s", row.event_id, seq, why)
        self._quarantined[seq] = row.event_id
        self.counters["quarantined"] += 1
        try:
            self.events.quarantine(seq, row.event_id, self.clock(), why)
        except Exception:  # noqa: BLE001 - the in-memory record still keeps the loop going
            log.exception("could not record quarantined learn_seq %d in the event log", seq)

    def close_expired(self) -> int:
        """Close every open decision past its window at reward 0 and learn from it; returns how many."""
        if self.role == "chooser":  # the learner closes windows
            return 0
        total = 0
        with self._learn_lock:
            while True:
                rows = self.events.close_expired(self.clock())
                self._learn_written(rows)
                total += len(rows)
                if len(rows) < 5000:
                    break
        self.counters["windows_closed"] += total
        return total

    def snapshot(self, source: str | None = None, force: bool = False) -> Path | None:
        """Write the policy atomically with its lineage sidecar and record which learn_seq it
        includes; None if nothing changed (unless `force`: a deployment is snapshotted as it starts)."""
        if self.role == "chooser":  # its policy is the learner's snapshot
            return None
        with self._learn_lock:
            self._last_snapshot = time.monotonic()
            if self._snap_seq == self.learned_seq and not force:
                return None
            seq = self.learned_seq
            name = snapshot_name(self.snapshot_dir, (n for n, _, _ in self.events.snapshots()), seq,
                                 self.policy.file_suffix)
            path = self.snapshot_dir / name
            self.policy.save(path)
            if self._deployment.get("id") is None:  # a deployment is named after its first snapshot
                self._deployment = {**self._deployment, "id": name}
            lineage = self._lineage(source or "learned online", self._snap_name, snapshot=name, created=time.time())
            write_sidecar(path, lineage)
            # Recorded after the file and its sidecar are complete: a crash in between leaves an
            # unrecorded file that restore ignores, never a record pointing at a partial model.
            self.events.record_snapshot(lineage["created"], name, seq, self.policy.version)
            self._snap_seq, self._snap_name, self.lineage = seq, name, lineage
            self.counters["snapshots"] += 1
        infos = snapshot_infos(self.events, self.snapshot_dir)
        prune(self.snapshot_dir, keep_names(infos, self.config.keep_snapshots, self._snap_name))
        return path

    # -- choose ------------------------------------------------------------------------------------------
    def _check_page(self, title_ids: Sequence[str], exclude: Collection[str]) -> None:
        if not isinstance(title_ids, Sequence) or isinstance(title_ids, str):
            raise RequestError("titles", "must be a list of title ids")
        if not title_ids:
            raise RequestError("titles", "must name at least one title")
        if len(title_ids) > self.config.max_titles:
            raise RequestError("titles", f"{len(title_ids)} titles; at most {self.config.max_titles} per request")
        seen = set()
        for i, t in enumerate(title_ids):
            why = text_problem(t, MAX_ID_CHARS)
            if why is not None:
                raise RequestError(f"titles.{i}", why)
            if t in seen:
                raise RequestError(f"titles.{i}", f"duplicate title id {t!r}")
            seen.add(t)
        if isinstance(exclude, str):
            raise RequestError("exclude", "must be a list of artwork ids")
        if len(exclude) > MAX_EXCLUDE:
            raise RequestError("exclude", f"{len(exclude)} artwork ids; at most {MAX_EXCLUDE}")
        for i, a in enumerate(exclude):
            why = text_problem(a, MAX_ID_CHARS)
            if why is not None:
                raise RequestError(f"exclude.{i}", why)

    def _with_taste(self, user: UserContext, view: _CatalogView) -> UserContext:
        # Taste keys outside the vocabulary are kept (and reported by `input_warnings`): the personal
        # term learns from any user feature, so a client's own segments ("segment:night-owl") carry
        # signal even though no artwork is tagged with them. `serve --strict` refuses them instead.
        if user.taste or not user.history:
            return user
        taste = taste_from_history(user.history, view.by_title)
        if not taste:
            return user
        if len(taste) > MAX_TASTE_KEYS:  # a long history can yield more keys than a client may send
            keep = sorted(taste.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_TASTE_KEYS]
            taste = dict(sorted(keep))
        return UserContext(user.user_id, taste, user.history, user.device, user.hour, user.country, user.row)

    def input_warnings(self, user: UserContext) -> list[InputWarning]:
        """The user's taste keys outside the catalog's taste vocabulary and history titles the
        catalog lacks, in request order (served as sent: a warning, not a change)."""
        view = self._refresh()
        return unknown_inputs(user.taste, user.history, view.vocab, view.titles)

    def taste_vocabulary(self) -> frozenset[str]:
        """Every taste key that can meet a candidate feature of the current catalog."""
        return self._refresh().vocab

    def _image_url(self, artwork_id: str) -> str:
        return f"{self.config.image_url_prefix}/v1/artworks/{artwork_id}/image"

    def _mark_active(self, row: DecisionRecord) -> None:
        with self._choose_lock:
            self.sessions.mark_active(row)

    def _purge_sessions(self) -> None:
        now = self.clock()
        with self._choose_lock:
            self.sessions.purge(now)
        if self.role != "chooser":  # the log's sessions are shared: the learner purges them
            self.events.purge_sessions(now)

    def choose(self, user: UserContext, title_ids: Sequence[str], exclude: Collection[str] = (),
               activate: bool = True) -> list[TitleChoice]:
        """One artwork per title for this user, logged before returning.

        Unknown titles and titles with nothing left to show get a per-title error. A title the
        user saw within the session TTL gets the same artwork again (`repeat=True`, same event
        id, nothing logged) as long as it is still allowed: a designer disable/pin or a request
        exclusion takes precedence over stickiness.

        `activate=False` (deferred activation): the fresh decisions are logged inactive, with no
        feedback window running, until `activate(event_id)` or their first feedback; one never
        activated is never closed at reward 0 nor learned (it was not rendered). A repeat keeps its
        decision's state, except that a page chosen with `activate=True` activates it (it is shown now).
        """
        if not isinstance(activate, bool):
            raise RequestError("activate", f"must be true or false, got {activate!r}")
        self._check_page(title_ids, exclude)
        view = self._refresh()
        user = self._with_taste(user, view)
        excl = frozenset(exclude)
        out: list[TitleChoice | None] = []  # None: a slot filled once the policy has chosen
        fresh: list[DecisionRecord] = []
        fsets: dict[str, str] = {}
        with self._choose_lock:
            now = self.clock()
            sessions = self.sessions.for_user(user.user_id, [t for t in title_ids if t in view.titles], now)
            explore = self.config.explore_share > 0 and self._explore_rng.random() < self.config.explore_share
            chooser = self._explorer if explore else self.policy
            wake: list[str] = []  # inactive repeats shown on an activate=True page
            pending: list[tuple[int, str, _TitleView]] = []  # (slot in out, title) still to choose
            for tid in title_ids:
                tv = view.titles.get(tid)
                if tv is None:
                    out.append(TitleChoice(tid, error="unknown_title", message=f"unknown title id {tid!r}"))
                    continue
                allowed = {c.artwork_id for c in tv.candidates} - tv.disabled - excl
                if not allowed:
                    msg = (f"title {tid!r} has no artworks" if not tv.candidates else
                           f"all {len(tv.candidates)} artworks of title {tid!r} are disabled or excluded")
                    out.append(TitleChoice(tid, error="no_candidates", message=msg))
                    continue
                raw = sessions.get(tid)
                s = Session._make(raw) if raw is not None else None
                if (s is not None and s.expires > now and s.chosen in allowed
                        and (tv.pinned is None or tv.pinned not in allowed or tv.pinned == s.chosen)):
                    if not s.active and activate:
                        wake.append(tid)
                    out.append(TitleChoice(tid, s.chosen, self._image_url(s.chosen), s.event_id, s.probability,
                                           s.policy, s.version, repeat=True, active=s.active or activate))
                    continue
                pending.append((len(out), tid, tv))
                out.append(None)
            # One policy call for the page: per-user work is shared across its titles.
            made = chooser.choose_many(user, [TitleRequest(tid, tv.candidates, tv.pinned, tv.disabled)
                                              for _, tid, tv in pending], excl)
            ctx = user.to_dict()
            for (slot, tid, tv), d in zip(pending, made):
                if isinstance(d, PolicyError):
                    code = "no_candidates" if isinstance(d, NoCandidatesError) else "policy_error"
                    out[slot] = TitleChoice(tid, error=code, message=str(d))
                    continue
                # Features by key (`fs_key`), not per decision: the log stores each feature set once.
                nd = DecisionRecord(uuid.uuid4().hex, now, user.user_id, tid, ctx, list(d.distribution), [], d.chosen,
                                    float(d.probability), d.policy, int(d.version), None, dict(d.distribution),
                                    tv.fs_key, activate)
                fresh.append(nd)
                fsets[tv.fs_key] = tv.fs_json
                out[slot] = TitleChoice(tid, d.chosen, self._image_url(d.chosen), nd.event_id, nd.probability,
                                        nd.policy, nd.version, active=activate)
            # Logged (committed) before anyone sees the answer: a choice we cannot log is not served.
            self.events.log_page(now, user.user_id, ctx, fresh, fsets,
                                 now + self.config.feedback_window_s, now + self.config.session_ttl_s)
            for nd in fresh:
                self.sessions.remember(user.user_id, nd.title_id, nd, now + self.config.session_ttl_s, nd.active)
            for tid in wake:
                s = Session._make(sessions[tid])
                if self.events.activate(s.event_id, now + self.config.feedback_window_s)[0] == "activated":
                    self.counters["activated"] += 1
                sessions[tid] = tuple(s._replace(active=True))
            self.counters["choose_requests"] += 1
            self.counters["decisions"] += len(fresh)
            self.counters["repeats"] += sum(c.repeat for c in out)
            self.counters["title_errors"] += sum(c.error is not None for c in out)
        return out

    def distribution(
        self, user: UserContext, title_ids: Sequence[str], exclude: Collection[str] = ()
    ) -> dict[str, dict[str, Any]]:
        """The policy's current distribution per title (debug; nothing logged, no sampling, no sessions)."""
        self._check_page(title_ids, exclude)
        view = self._refresh()
        user = self._with_taste(user, view)
        out: dict[str, dict[str, Any]] = {}
        known = [tid for tid in title_ids if tid in view.titles]
        dists = self.policy.distributions(user, [TitleRequest(tid, view.titles[tid].candidates, view.titles[tid].pinned,
                                                              view.titles[tid].disabled) for tid in known], exclude)
        made = dict(zip(known, dists))
        # Under an A/B split the user's arm answers, and says so as its decisions do.
        serving = self.policy.arm_for(user) if isinstance(self.policy, SplitPolicy) else self.policy
        for tid in title_ids:
            dist = made.get(tid)
            if dist is None:
                out[tid] = {"error": "unknown_title", "message": f"unknown title id {tid!r}"}
            elif isinstance(dist, PolicyError):
                out[tid] = {"error": "no_candidates" if isinstance(dist, NoCandidatesError) else "policy_error",
                            "message": str(dist)}
            else:
                out[tid] = {"distribution": dist, "policy": serving.name, "policy_version": serving.version}
        return out

    # -- feedback --------------------------------------------------------------------------------------
    def reward_of(self, reward: Any = None, click: Any = None, play: Any = None, field: str = "") -> float:
        """Validate one feedback's reward: a float in the configured range, or click/play flags."""
        pre = f"{field}." if field else ""
        has_flags = click is not None or play is not None
        if reward is not None and has_flags:
            raise RequestError(f"{pre}reward", "give either reward or click/play flags, not both")
        if reward is None and not has_flags:
            raise RequestError(f"{pre}reward", "give a reward or click/play flags")
        if reward is not None:
            if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(float(reward)):
                raise RequestError(f"{pre}reward", f"must be a finite number, got {reward!r}")
            lo, hi = self.config.reward_min, self.config.reward_max
            if not lo <= float(reward) <= hi:
                raise RequestError(f"{pre}reward", f"must be within [{lo}, {hi}], got {reward}")
            return float(reward)
        for name, v in (("click", click), ("play", play)):
            if v is not None and not isinstance(v, bool):
                raise RequestError(f"{pre}{name}", f"must be true or false, got {v!r}")
        # A play implies the click (the ladder click -> play): its reward is at least the click's.
        return max(self.config.click_reward if click or play else 0.0, self.config.play_reward if play else 0.0)

    def _feedback_one(self, event_id: str, reward: float, click: bool | None, play: bool | None) -> FeedbackOutcome:
        cfg = self.config
        with self._learn_lock:
            res = self.events.join_feedback(event_id, reward, self.clock(), click, play,
                                            weights={"click": cfg.click_reward, "play": cfg.play_reward},
                                            activate_window=cfg.feedback_window_s)
            self._learn_written(res.learn)
        self.counters[f"feedback_{res.status}"] += 1
        if res.activated and res.row is not None:  # the post proved the decision was rendered
            self.counters["activated"] += 1
            self._mark_active(res.row)
        if res.finalized and res.status != "joined":  # this post found the window passed and closed it
            self.counters["windows_closed"] += 1
        msg = {
            "joined": "feedback joined to its decision",
            "late": (f"the feedback window of event {event_id!r} had closed at reward 0; this reward was "
                     "recorded and learned as a correction of that close"),
            "upgraded": (f"a stronger outcome for event {event_id!r}: recorded, reward now {res.reward}"
                         + (" (learned as a correction)" if res.learn else " (unchanged: nothing to relearn)")),
            "duplicate": "feedback for this event was already recorded; nothing changed",
            "conflict": (f"event {event_id!r} already has reward {res.reward}; the posted reward {res.posted} "
                         "contradicts it and was not recorded"),
            "not_found": f"unknown event id {event_id!r}",
            "expired": (f"the feedback window of event {event_id!r} has closed (recorded as reward 0); "
                        "feedback without a positive reward changes nothing"),
        }[res.status]
        if res.status == "conflict":
            return FeedbackOutcome(event_id, "conflict", False, res.reward, msg, recorded=res.reward, posted=res.posted)
        return FeedbackOutcome(event_id, res.status, res.status in ("joined", "late", "upgraded"), res.reward, msg)

    def activate(self, event_id: str) -> dict[str, Any]:
        """Deferred activation: the decision was rendered, its feedback window starts now.

        Idempotent: an already active decision (whatever its status) answers "already_active" and
        keeps its window. NotFoundError for an unknown event id.
        """
        why = text_problem(event_id, MAX_ID_CHARS)
        if why is not None:
            raise RequestError("event_id", why)
        status, row = self.events.activate(event_id, self.clock() + self.config.feedback_window_s)
        if row is None:
            raise NotFoundError(f"unknown event id {event_id!r}")
        if status == "activated":
            self.counters["activated"] += 1
            self._mark_active(row)
        return {"event_id": event_id, "status": status, "changed": status == "activated",
                "decision_status": row.status, "deadline": row.deadline}

    def feedback(self, event_id: str, *, reward: Any = None, click: Any = None, play: Any = None) -> FeedbackOutcome:
        """Join one outcome to its decision and learn from it; idempotent per event.

        Within the window: "joined". After it (the decision closed at reward 0): a positive reward
        is "late", recorded and learned as a correction of the close; reward 0 is "expired" and
        changes nothing. For an event that already has its feedback: a stronger outcome (click ->
        play, click:false -> click:true, reward 0 -> positive) is "upgraded" (learned as a
        correction when the reward rises), the same or a weaker one "duplicate", a contradicting
        positive reward "conflict" (nothing changes). An inactive decision is activated first.
        """
        why = text_problem(event_id, MAX_ID_CHARS)
        if why is not None:
            raise RequestError("event_id", why)
        r = self.reward_of(reward, click, play)
        return self._feedback_one(event_id, r, click, play)

    def feedback_many(self, items: Sequence[Mapping[str, Any]]) -> list[FeedbackOutcome]:
        """Batch feedback: every item is validated before any is stored (all or nothing on bad input)."""
        if not items:
            raise RequestError("events", "must hold at least one event")
        if len(items) > self.config.max_batch:
            raise RequestError("events", f"{len(items)} events; at most {self.config.max_batch} per batch")
        checked = []
        for i, it in enumerate(items):
            eid = it.get("event_id")
            why = text_problem(eid, MAX_ID_CHARS)
            if why is not None:
                raise RequestError(f"events.{i}.event_id", why)
            r = self.reward_of(it.get("reward"), it.get("click"), it.get("play"), field=f"events.{i}")
            checked.append((eid, r, it.get("click"), it.get("play")))
        return [self._feedback_one(*c) for c in checked]

    # -- catalog views and designer controls ----------------------------------------------------------
    def titles(self) -> list[dict[str, Any]]:
        """Every title of the catalog with its artwork counts and pin, ordered by title id."""
        view = self._refresh()
        names = {t.title_id: t.name for t in self.catalog.titles()}
        out = []
        for tid in sorted(view.titles):
            tv = view.titles[tid]
            out.append({"title_id": tid, "name": names.get(tid, tid), "artworks": len(tv.artworks),
                        "disabled": len(tv.disabled), "pinned": tv.pinned})
        return out

    def title_artworks(self, title_id: str) -> list[dict[str, Any]]:
        """A title's candidates with tags, faces (count, recognised cast, lead), flags and running stats
        (impressions, clicks, take rate)."""
        view = self._refresh()
        tv = view.titles.get(title_id)
        if tv is None:
            raise NotFoundError(f"unknown title id {title_id!r}")
        stats = self.events.artwork_stats(a.artwork_id for a in tv.artworks)

        def faces(a: Artwork) -> dict[str, Any] | None:
            t, f = a.tags, a.tags.faces
            if f is None:  # not scanned yet (a catalog from before faces): unknown, not "no face"
                return None
            actors = [{"name": n, "confidence": t.actors.get(n, 1.0), "distance": t.actor_distances.get(n),
                       "lead": n == f.lead} for n in t.actors_present]
            actors.sort(key=lambda x: (-x["confidence"], x["name"]))
            return {"count": f.n_faces, "largest_share": f.largest_share, "largest_x": f.largest_x,
                    "lead": f.lead, "lead_visible": f.lead_visible, "actors": actors}

        out = []
        for a in tv.artworks:
            imp, closed, clicks, rsum = stats.get(a.artwork_id, (0, 0, 0, 0.0))
            out.append({
                "artwork_id": a.artwork_id,
                "image_url": self._image_url(a.artwork_id),
                "sha256": a.sha256,
                "width": a.width,
                "height": a.height,
                "source": a.source,
                "disabled": a.disabled,
                "pinned": a.pinned,
                "tags": {"moods": a.tags.moods, "genres": a.tags.genres, "actors": a.tags.actors,
                         "actors_present": a.tags.actors_present},
                "faces": faces(a),
                "stats": {
                    "impressions": imp,
                    "outcomes": closed,  # impressions whose reward is known (joined or window closed)
                    "clicks": clicks,
                    "reward_sum": rsum,
                    # Same definition as the HTML report: clicks per impression with a known outcome.
                    "take_rate": clicks / closed if closed else None,
                    # Beta(1, 1) posterior mean, so a new artwork reads 0.5 rather than nothing.
                    "take_rate_smoothed": (clicks + 1) / (closed + 2),
                },
            })
        return out

    def image(self, artwork_id: str) -> tuple[bytes, str, str]:
        """(bytes, sha256, content type) of an artwork's image."""
        view = self._refresh()
        a = view.artworks.get(artwork_id)
        data = self.catalog.image_bytes(artwork_id) if a is not None else None
        if a is None or data is None:
            raise NotFoundError(f"unknown artwork id {artwork_id!r}")
        return data, a.sha256, _content_type(data)

    def image_etag(self, artwork_id: str) -> str:
        """The sha256 of an artwork's image without reading its bytes."""
        a = self._refresh().artworks.get(artwork_id)
        if a is None:
            raise NotFoundError(f"unknown artwork id {artwork_id!r}")
        return a.sha256

    def set_flags(self, artwork_id: str, *, pinned: bool | None = None, disabled: bool | None = None) -> dict[str, Any]:
        """Designer controls; effective from the next request (the cached catalog view is dropped)."""
        try:
            self.catalog.set_flags(artwork_id, pinned=pinned, disabled=disabled)
        except StoreError as e:
            raise NotFoundError(str(e)) from e
        a = self._refresh(force=True).artworks[artwork_id]
        return {"artwork_id": a.artwork_id, "title_id": a.title_id, "pinned": a.pinned, "disabled": a.disabled}

    def pin(self, title_id: str, artwork_id: str) -> dict[str, Any]:
        """Pin `artwork_id` for its title (replacing any earlier pin)."""
        a = self._refresh().artworks.get(artwork_id)
        if a is None:
            raise NotFoundError(f"unknown artwork id {artwork_id!r}")
        if a.title_id != title_id:
            raise RequestError("artwork_id", f"artwork {artwork_id!r} belongs to title {a.title_id!r}, not {title_id!r}")
        return self.set_flags(artwork_id, pinned=True)

    def unpin(self, title_id: str) -> dict[str, Any]:
        """Remove a title's pin (no-op when none)."""
        tv = self._refresh().titles.get(title_id)
        if tv is None:
            raise NotFoundError(f"unknown title id {title_id!r}")
        if tv.pinned is not None:
            self.set_flags(tv.pinned, pinned=False)
        return {"title_id": title_id, "pinned": None}

    def user_session(self, user_id: str) -> dict[str, Any]:
        """The user's live sticky choices; NotFoundError when the user has none."""
        now = self.clock()
        with self._choose_lock:
            live = self.sessions.live(user_id, now)
        if not live:
            raise NotFoundError(f"unknown user {user_id!r}: no decisions within the session TTL")
        return {"user_id": user_id, "titles": {t: {"artwork_id": s.chosen, "event_id": s.event_id,
                                                   "expires": s.expires} for t, s in sorted(live.items())}}

    # -- status -------------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Liveness plus the few facts an operator checks first."""
        view = self._refresh()
        return {
            "status": "ok" if self.started else "starting",
            "policy": self.policy.name,
            "policy_version": self.policy.version,
            "learned_seq": self.learned_seq,
            "encoder": self.catalog.encoder_id,
            "titles": len(view.titles),
            "artworks": len(view.artworks),
            "event_log": self.events.backend,  # sqlite | postgresql
            "event_log_location": str(self.events.location),  # a URL's password is masked
            "lineage": self.lineage_summary(),
            "ab": self.ab_summary(),
        } | ({"role": self.role, "replica": self.replica_status()} if self.role != "all" else {})

    def lineage_summary(self) -> dict[str, Any]:
        """Where the served policy came from: its newest snapshot's lineage (bandit.lineage) and the
        deployment that snapshot belongs to."""
        lin, dep = self.lineage, self._deployment
        return {
            "snapshot": lin.get("snapshot"), "kind": self.policy.kind, "policy": self.policy.name,
            "version": int(lin.get("version", self.policy.version)),
            "learned_seq": int(lin.get("learned_seq", self.learned_seq)), "created": lin.get("created"),
            "source": str(lin.get("source") or dep.get("source") or ""), "trained_rows": lin.get("trained_rows"),
            "parent": lin.get("parent"),
            "deployment": {"id": dep.get("id"), "source": str(dep.get("source") or ""), "file": dep.get("file"),
                           "sha256": dep.get("sha256"), "trained_rows": dep.get("trained_rows")},
        }

    def ab_summary(self) -> dict[str, Any] | None:
        """The arms of an online A/B split being served (None when not splitting)."""
        pol = self.policy
        if not isinstance(pol, SplitPolicy):
            return None
        return {"share_b": pol.share_b, "a": {"policy": pol.a.name, "version": pol.a.version},
                "b": {"policy": pol.b.name, "version": pol.b.version}}

    def metrics(self) -> dict[str, float]:
        """Counters and gauges (names without the Prometheus prefix)."""
        counts = self.events.counts()
        view = self._refresh()
        done = counts["joined"] + counts["closed"]
        m: dict[str, float] = {f"{k}_total": float(v) for k, v in self.counters.items()}
        m.update({
            "log_decisions": counts["decisions"],
            "log_feedback": counts["feedback"],
            "log_corrections": counts["corrections"],
            "log_expired_feedback": counts["expired_feedback"],
            "log_quarantined": counts["quarantined"],
            "open_windows": counts["open"],
            "decisions_inactive": counts["inactive"],
            "log_upgrades": counts["upgrades"],
            "join_rate": counts["joined"] / done if done else 0.0,
            "policy_version": self.policy.version,
            "learned_seq": self.learned_seq,
            "store_bytes": self.catalog.stats()["file_bytes"],
            "event_log_bytes": self.events.file_bytes(),
            "catalog_titles": len(view.titles),
            "catalog_artworks": len(view.artworks),
        })
        if self.role != "all":
            rs = self.replica_status()
            m.update({"snapshot_learned_seq": float(rs["snapshot_learned_seq"] if rs["snapshot_learned_seq"] is not None
                                                    else -1),
                      "snapshot_age_seconds": float(rs["snapshot_age_s"] if rs["snapshot_age_s"] is not None else -1),
                      "learn_lag_events": float(rs["lag_learn_events"])})
        return m

    def metrics_text(self) -> str:
        """Prometheus text exposition format (0.0.4) of the engine's counters and gauges."""
        return prometheus_text(self.registry)


_METRIC_HELP = {
    "decisions_total": "decisions logged (fresh choices; sticky repeats are not counted)",
    "repeats_total": "sticky repeats served (same artwork and event id within the session TTL)",
    "feedback_joined_total": "feedback joined to its decision within the window",
    "join_rate": "share of finalized decisions whose feedback arrived within the window",
    "feedback_late_total": "late clicks (window closed at reward 0) learned as corrections",
    "feedback_expired_total": "feedback refused with 410: window closed and no positive reward",
    "feedback_not_found_total": "feedback for an unknown event id",
    "log_corrections": "reward corrections in the event log (late clicks and ladder upgrades)",
    "log_upgrades": "ladder upgrades (a stronger outcome for a finalized decision) in the event log",
    "feedback_upgraded_total": "feedback that raised an event's outcome (click -> play, false -> true)",
    "feedback_conflict_total": "feedback refused with 409: a positive reward contradicting the one on record",
    "decisions_inactive": "decisions logged with activate=false and not activated (no window running)",
    "activated_total": "inactive decisions activated (endpoint, feedback or an activate=true repeat)",
    "log_expired_feedback": "feedback refused as expired, all time (event log)",
    "quarantined_total": "learn events that could not be learned (this process), skipped and recorded",
    "log_quarantined": "learn events quarantined in the event log, all time (never learned)",
    "open_windows": "decisions still waiting for feedback",
    "policy_version": "number of updates the policy has learned",
    "trained_skipped_total": "learn events a deployed policy file already held from its offline training, not relearned",
    "store_bytes": "catalog size on disk (with its WAL)",
    "event_log_bytes": "event log size on disk",
    "catalog_titles": "titles in the catalog",
    "catalog_artworks": "artworks in the catalog, disabled ones included",
    "snapshot_learned_seq": "replica: learn_seq of the snapshot served (chooser) or last written (learner); -1 none",
    "snapshot_age_seconds": "replica: seconds since that snapshot was written (a chooser's staleness); -1 none",
    "learn_lag_events": "replica: learn events in the log that the served policy does not hold yet",
    "reloads_total": "chooser: newer snapshots loaded",
    "tail_learned_total": "learner: learn events learned from the log's tail (finalized by any process)",
}


class _EngineCollector:
    """Reads the engine's counters and gauges at scrape time (prometheus_client's custom-collector
    protocol): the engine keeps owning its numbers, and `Engine.metrics()` stays the one source."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        eng = self.engine
        for k, v in eng.metrics().items():
            name, doc = f"artwork_{k}", _METRIC_HELP.get(k, k.replace("_", " "))
            yield (CounterMetricFamily if k.endswith("_total") else GaugeMetricFamily)(name, doc, value=v)
        yield InfoMetricFamily("artwork_encoder", "encoder of the catalog's embeddings",
                               value={"encoder": eng.catalog.encoder_id or "none"})
        yield InfoMetricFamily("artwork_policy", "policy being served", value={"policy": eng.policy.name})


# A sample line whose value is a whole number, e.g. `artwork_decisions_total 12.0`.
_WHOLE_VALUE = re.compile(rb"^([^#\n][^\n]*) (-?[0-9]+)\.0$", re.MULTILINE)


def prometheus_text(*registries: CollectorRegistry) -> str:
    """The registries in Prometheus text format 0.0.4, whole numbers written without ".0".

    prometheus_client writes every value as a float (`12.0`); Prometheus parses both forms, but
    operators' greps and existing checks look for `artwork_feedback_late_total 1`, as this service
    wrote its metrics before prometheus_client. Only the trailing value is rewritten: label values
    such as `le="1.0"` are left as they are.
    """
    text = b"".join(generate_latest(r) for r in registries)
    return _WHOLE_VALUE.sub(rb"\1 \2", text).decode("utf-8")


def context_from_request(data: Mapping[str, Any]) -> UserContext:
    """UserContext from a request's user fields; ContextError becomes a RequestError naming the field."""
    try:
        return UserContext.from_dict({k: v for k, v in data.items() if v is not None or k == "user_id"})
    except ContextError as e:
        msg = str(e)
        fld = msg.split(" ", 1)[0].split("[", 1)[0]
        raise RequestError(fld if fld.isidentifier() else "context", msg) from e


__all__ += ["context_from_request"]
