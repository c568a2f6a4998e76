"""The serving core: catalog + policy + event log, with no HTTP in sight.

`Engine` chooses an artwork per title for a page, joins feedback, closes reward windows, learns
online and snapshots the policy. The FastAPI app (`bandit.server`) is a thin layer over it, and
the demo and benchmarks call it directly, so in-process and over-HTTP behaviour are one code path.

The engine is a facade over parts split where the roles of a scaled-out deployment split
(README "Scaling out"), so that each part is what one kind of process needs:

- `bandit.catalog_view.CatalogView`: the catalog as candidates, rebuilt when the catalog changes
  (every role reads it: choosers to offer, the learner to rebuild a learn event's candidates);
- `bandit.sessions.SessionTable`: sticky sessions;
- `bandit.chooser.Chooser`: choosing a page from the served policy, read-only, and a chooser
  replica's snapshot copy (`SnapshotCopy`);
- `bandit.learner.Learner`: learn_seq, the one learn path, reward windows, late feedback,
  snapshots and restore (the learning-order invariant is documented there).

What stays here is what spans the parts: opening and closing the stores, the locks (a feedback join
commits and learns under the learn lock whichever part learns), request validation, feedback
joins, designer controls, status and metrics.
"""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from artwork.records import Artwork
from artwork.paths import StorePaths
from artwork.store import Catalog, StoreError
from bandit.catalog_view import CatalogView
from bandit.chooser import Chooser, SnapshotCopy, TitleChoice
from bandit.events import BaseEventLog, open_event_log
from bandit.features import (MAX_EXCLUDE, MAX_ID_CHARS, ContextError, EmbeddingProjection, InputWarning, UserContext,
                             text_problem, unknown_inputs)
from bandit.learner import Learner, ServedPolicy, prepare_deployments
from bandit.decisions import DecisionRecord
from bandit.policy import BasePolicy
from bandit.registry import DEFAULT_POLICY, SERVABLE
from bandit.sessions import SessionTable
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

#: The names `serve --policy` accepts: the registry's servable kinds (plug-ins included).
POLICY_KINDS = SERVABLE

log = logging.getLogger("artwork.engine")

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
    # Choose with the decisions still open counted as impressions without a click (bandit.pending):
    # right when misses arrive as silence at the window's close; off when clients post their misses
    # (reward 0) as promptly as their clicks, so open decisions are not mostly misses.
    count_open: bool = True
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


def _content_type(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


class Engine:
    """Serve, log, join, learn, snapshot. Thread-safe; call `start()` before use and `close()` after.

    The facade over the parts (module docstring): it opens the stores, wires the parts to them,
    validates requests, joins feedback and answers the status and metrics calls.
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
        deploy, ab = prepare_deployments(self.config)
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
        self.role = self.config.role
        # The two locks are the engine's, not a part's: a feedback join commits and learns under the
        # learn lock in every role (a chooser too, with nothing to learn), and the choose lock guards
        # the sticky sessions that choosing, feedback and the timer all touch.
        self._choose_lock = threading.Lock()  # sampling order + sticky sessions
        self._learn_lock = threading.RLock()  # "commit reward + learn" and snapshots
        self.counters: dict[str, int] = {
            "choose_requests": 0, "decisions": 0, "repeats": 0, "title_errors": 0, "feedback_joined": 0,
            "feedback_late": 0, "feedback_duplicate": 0, "feedback_not_found": 0, "feedback_expired": 0,
            "windows_closed": 0, "learned": 0, "corrections_learned": 0, "snapshots": 0, "replayed": 0,
            "quarantined": 0, "feedback_upgraded": 0, "feedback_conflict": 0, "activated": 0,
            "trained_skipped": 0,
        }
        if self.role != "all":  # a replica's own counters (role "all" keeps exactly its old metrics)
            self.counters.update({"reloads": 0, "tail_learned": 0})
        # Sticky sessions; a chooser replica shares the log's with the other replicas.
        self.sessions = SessionTable(self.events, shared=self.role == "chooser")
        self.catalog_view = CatalogView(self.catalog, self.events, self.config.projection_dims,
                                        lambda: self.learned_seq)
        # Who holds the served policy: the learner, which learns it, or a chooser's snapshot copy.
        self.learner: Learner | None = None
        self.snapshot_copy: SnapshotCopy | None = None
        # A chooser replica's own random stream: replicas serving copies of one snapshot with one
        # seed would otherwise draw the same explore pages and the same samples in step.
        self.stream: int | None = secrets.randbits(63) if self.role == "chooser" else None
        if self.role == "chooser":
            self.snapshot_copy = SnapshotCopy(self.config, self.events, self.snapshot_dir, self.counters,
                                              self._choose_lock, self.stream)
            self._served: ServedPolicy = self.snapshot_copy
        else:
            self.learner = Learner(self.config, self.events, self.snapshot_dir, self.catalog_view, self.counters,
                                   self.clock, self._learn_lock, deploy, ab)
            self._served = self.learner
        self.chooser = Chooser(self.config, self.catalog_view, self.sessions, self.events, self._served,
                               self.counters, self.clock, self._choose_lock, self.stream)
        # Per engine, never prometheus_client's global REGISTRY: tests and the demo run several
        # engines (and servers) in one process, and a global registry refuses a second copy.
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_EngineCollector(self))
        self._last_purge = 0.0  # a chooser's session purge schedule (a learner's follows its snapshots)
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._start_timer = start_timer
        self.started = False

    # -- the served policy, whichever part holds it ---------------------------------------------------
    @property
    def policy(self) -> BasePolicy:
        return self._served.policy

    @property
    def learned_seq(self) -> int:
        return self._served.learned_seq

    @property
    def lineage(self) -> dict[str, Any]:
        return self._served.lineage

    @property
    def projection(self) -> EmbeddingProjection | None:
        return self.catalog_view.projection

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Engine:
        """Restore the policy (snapshot + replay), reload sessions, close expired windows, start the timer."""
        if self.started:
            return self
        if self.learner is not None and self.role == "learner":
            self.learner.lock_store(self.paths.events)
        try:
            self.catalog_view.load_projection()
            self.catalog_view.current(force=True)
            if self.snapshot_copy is not None:
                self.snapshot_copy.start()
            else:
                assert self.learner is not None
                self.learner.restore()
                self.learner.open_decisions.reset(self.events.open_counts())
                now = self.clock()
                if self.role == "all":  # a learner serves no pages: its sessions are the choosers' (in the log)
                    self.sessions.load(now)
                self.close_expired()
                if self.role == "learner":  # what it restored and replayed, for the choosers at once
                    self.snapshot()
        except BaseException:
            self._unlock()
            raise
        if self.learner is not None:
            self.learner.last_snapshot = time.monotonic()
        else:
            self._last_purge = time.monotonic()
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
        self.catalog_view.close()
        if self._own_catalog:
            self.catalog.close()
        self._unlock()
        self.started = False

    def _unlock(self) -> None:
        if self.learner is not None:
            self.learner.unlock_store()

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
        if self.learner is None:
            self.reload()
            if time.monotonic() - self._last_purge >= self.config.snapshot_interval_s:
                self._last_purge = time.monotonic()
                self._purge_sessions()
            return
        self.close_expired()
        if self.role == "learner":
            self.learn_tail()
        self.events.checkpoint()
        if time.monotonic() - self.learner.last_snapshot >= self.config.snapshot_interval_s:
            self.snapshot()
            self._purge_sessions()

    # -- learning (roles all and learner; a chooser learns nothing) --------------------------------------
    def close_expired(self) -> int:
        """Close every open decision past its window at reward 0 and learn from it; returns how many."""
        if self.learner is None:  # the learner closes windows
            return 0
        return self.learner.close_expired()

    def snapshot(self, source: str | None = None, force: bool = False) -> Path | None:
        """Write the policy atomically with its lineage sidecar and record which learn_seq it
        includes; None if nothing changed (unless `force`: a deployment is snapshotted as it starts)."""
        if self.learner is None:  # its policy is the learner's snapshot
            return None
        return self.learner.snapshot(source, force)

    def learn_tail(self) -> int:
        """A learner's catch-up: learn every learn event the log holds after `learned_seq` (feedback
        posted to a chooser, a window a chooser's post closed), through the one learn path."""
        if self.learner is None:
            return 0
        return self.learner.learn_tail()

    # -- replicas: a chooser's read-only policy, a learner's tail of the log ----------------------------
    def reload(self) -> bool:
        """A chooser's policy update (`SnapshotCopy.reload`); False in the other roles."""
        if self.snapshot_copy is None:
            return False
        return self.snapshot_copy.reload()

    def replica_status(self) -> dict[str, Any]:
        """A replica's view of the shared log: the snapshot it serves (chooser) or last wrote
        (learner), how old it is, and how many learn events the log holds beyond its policy."""
        head = self.events.max_learn_seq()
        served = self._served
        created = self.snapshot_copy.created if self.snapshot_copy is not None else served.lineage.get("created")
        return {"role": self.role, "pid": os.getpid(), "stream": self.stream, "snapshot": served.snap_name,
                "snapshot_learned_seq": served.snap_seq,
                "snapshot_age_s": None if created is None else max(0.0, time.time() - float(created)),
                "log_learn_seq": head, "lag_learn_events": max(0, head - served.learned_seq)}

    # -- choose ------------------------------------------------------------------------------------------
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
        return self.chooser.choose(user, title_ids, exclude, activate)

    def distribution(
        self, user: UserContext, title_ids: Sequence[str], exclude: Collection[str] = ()
    ) -> dict[str, dict[str, Any]]:
        """The policy's current distribution per title (debug; nothing logged, no sampling, no sessions)."""
        self._check_page(title_ids, exclude)
        return self.chooser.distribution(user, title_ids, exclude)

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

    def input_warnings(self, user: UserContext) -> list[InputWarning]:
        """The user's taste keys outside the catalog's taste vocabulary and history titles the
        catalog lacks, in request order (served as sent: a warning, not a change)."""
        view = self.catalog_view.current()
        return unknown_inputs(user.taste, user.history, view.vocab, view.titles)

    def taste_vocabulary(self) -> frozenset[str]:
        """Every taste key that can meet a candidate feature of the current catalog."""
        return self.catalog_view.current().vocab

    # -- sticky sessions (the choose lock is theirs: choosing, feedback and the timer touch them) -----
    def _mark_active(self, row: DecisionRecord) -> None:
        with self._choose_lock:
            self.sessions.mark_active(row)

    def _purge_sessions(self) -> None:
        now = self.clock()
        with self._choose_lock:
            self.sessions.purge(now)
        if self.role != "chooser":  # the log's sessions are shared: the learner purges them
            self.events.purge_sessions(now)

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
            if self.learner is not None:  # a chooser's joins reach the learner through the log
                self.learner.learn_written(res.learn)
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
            self._served.open_decisions.add(row.title_id, row.chosen)  # its window runs from now
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
        view = self.catalog_view.current()
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
        view = self.catalog_view.current()
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
                "image_url": self.chooser.image_url(a.artwork_id),
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
        view = self.catalog_view.current()
        a = view.artworks.get(artwork_id)
        data = self.catalog.image_bytes(artwork_id) if a is not None else None
        if a is None or data is None:
            raise NotFoundError(f"unknown artwork id {artwork_id!r}")
        return data, a.sha256, _content_type(data)

    def image_etag(self, artwork_id: str) -> str:
        """The sha256 of an artwork's image without reading its bytes."""
        a = self.catalog_view.current().artworks.get(artwork_id)
        if a is None:
            raise NotFoundError(f"unknown artwork id {artwork_id!r}")
        return a.sha256

    def set_flags(self, artwork_id: str, *, pinned: bool | None = None, disabled: bool | None = None) -> dict[str, Any]:
        """Designer controls; effective from the next request (the cached catalog view is dropped)."""
        try:
            self.catalog.set_flags(artwork_id, pinned=pinned, disabled=disabled)
        except StoreError as e:
            raise NotFoundError(str(e)) from e
        a = self.catalog_view.current(force=True).artworks[artwork_id]
        return {"artwork_id": a.artwork_id, "title_id": a.title_id, "pinned": a.pinned, "disabled": a.disabled}

    def pin(self, title_id: str, artwork_id: str) -> dict[str, Any]:
        """Pin `artwork_id` for its title (replacing any earlier pin)."""
        a = self.catalog_view.current().artworks.get(artwork_id)
        if a is None:
            raise NotFoundError(f"unknown artwork id {artwork_id!r}")
        if a.title_id != title_id:
            raise RequestError("artwork_id", f"artwork {artwork_id!r} belongs to title {a.title_id!r}, not {title_id!r}")
        return self.set_flags(artwork_id, pinned=True)

    def unpin(self, title_id: str) -> dict[str, Any]:
        """Remove a title's pin (no-op when none)."""
        tv = self.catalog_view.current().titles.get(title_id)
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
        view = self.catalog_view.current()
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
        lin, dep = self.lineage, self._served.deployment
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
        view = self.catalog_view.current()
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
        restarts = getattr(self.policy, "restarts", None)  # policies with a change detector (`bayes`)
        if isinstance(restarts, int):
            m["policy_restarts"] = float(restarts)
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
    "policy_restarts": "titles the policy restarted because an artwork's appeal changed (its change detector), all time",
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
