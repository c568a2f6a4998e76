"""The choosing side of the engine: a page of artworks from the served policy, logged before it is
answered, and a chooser replica's read-only copy of the learner's newest snapshot.

Why a seam here: choosing only reads the policy. Alone on its log (role "all") the chooser serves
the learner's own policy object; a chooser replica (role "chooser") serves a copy it reloads from
the snapshots the learner writes (`SnapshotCopy`) and never learns. Either way the page is chosen
under the choose lock (`Engine._choose_lock`, shared with the sticky sessions), so the explore draw,
the policy's sampling and the sessions move in one order for a given seed, and a reload swaps the
policy between pages, never inside one.

Requests arrive here already validated (`Engine.choose`): this module raises no request errors.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bandit.baselines import UniformPolicy
from bandit.catalog_view import CatalogState, CatalogView, TitleView
from bandit.decisions import DecisionRecord
from bandit.events import BaseEventLog
from bandit.features import MAX_TASTE_KEYS, UserContext, taste_from_history
from bandit.learner import ServedPolicy, new_policy, newest_snapshot
from bandit.policy import BasePolicy, NoCandidatesError, PolicyError, TitleRequest
from bandit.sessions import Session, SessionTable
from bandit.split import SplitPolicy

if TYPE_CHECKING:  # engine.py imports this module; the config is only named in signatures here
    from bandit.engine import EngineConfig

__all__ = ["Chooser", "SnapshotCopy", "TitleChoice"]

log = logging.getLogger("artwork.engine")  # one logger for the whole engine: operators filter on it


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


class SnapshotCopy(ServedPolicy):
    """A chooser replica's policy: the newest snapshot the learner wrote, read-only, swapped under
    the choose lock (a page is chosen wholly by one policy copy)."""

    def __init__(self, config: EngineConfig, events: BaseEventLog, snapshot_dir: Path, counters: dict[str, int],
                 choose_lock: threading.Lock, stream: int | None = None) -> None:
        super().__init__(new_policy(config), config.count_open)
        self.stream = stream  # this replica's sampling stream (`BasePolicy.reseed`), None: the snapshot's own
        if stream is not None:
            self.policy.reseed(stream, 0)
        self.config = config
        self.events = events
        self.snapshot_dir = snapshot_dir
        self.counters = counters
        self.choose_lock = choose_lock
        self.created: float | None = None  # wall time the served snapshot was written

    def start(self) -> None:
        """A chooser serves the newest snapshot; until the learner writes one, a new policy."""
        if not self.reload():
            self.deployment = {"id": None, "source": f"a new {self.config.policy} policy (no snapshot yet: "
                               "the learner has not written one)", "kind": self.config.policy}
            self.lineage = self._lineage(self.deployment["source"], None)

    def reload(self) -> bool:
        """Serve the newest usable snapshot if it is not the one served and holds at least as many
        learn events (a newer learned_seq, or a new deployment at the same one). Returns whether it
        changed. Never learns: the learner's snapshots are the only source."""
        snap, info = newest_snapshot(self.events, self.snapshot_dir,
                                     lambda i: i.name != self.snap_name and i.learned_seq >= self.learned_seq)
        if snap is None or info is None:
            return False
        if self.stream is not None:  # per replica and per reload: no two copies draw in step
            snap.reseed(self.stream, self.counters["reloads"] + 1)
        # The learner's outcomes reach a replica only through the log: recount what is open (the
        # query outside the lock: choosing does not wait for it).
        still_open = self.events.open_counts()
        with self.choose_lock:  # a page is chosen wholly by one policy copy
            self.policy, self.learned_seq = snap, info.learned_seq
            self.open_decisions.reset(still_open)
            self.snap_seq, self.snap_name = info.learned_seq, info.name
            self.deployment = dict(info.lineage.get("deployment") or {})
            self.lineage = dict(info.lineage)
            created = info.lineage.get("created")
            try:
                self.created = float(created) if created is not None else info.path.stat().st_mtime
            except OSError:
                self.created = None
        self.counters["reloads"] += 1
        log.info("chooser now serves %s (learned_seq %d)", info.name, info.learned_seq)
        return True


class Chooser:
    """Chooses pages from `served.policy` (the learner's, or a `SnapshotCopy`), logs them, keeps
    the sticky sessions. Call `choose` and `distribution` with validated requests."""

    def __init__(self, config: EngineConfig, view: CatalogView, sessions: SessionTable, events: BaseEventLog,
                 served: ServedPolicy, counters: dict[str, int], clock: Callable[[], float],
                 lock: threading.Lock, stream: int | None = None) -> None:
        self.config = config
        self.view = view
        self.sessions = sessions
        self.events = events
        self.served = served
        self.counters = counters
        self.clock = clock
        self.lock = lock
        self._explorer = UniformPolicy(seed=config.seed + 1)
        self._explore_rng = random.Random(config.seed + 2)
        if stream is not None:  # a chooser replica: its own explore pages and uniform draws
            self._explorer.reseed(stream)
            self._explore_rng = random.Random(f"{config.seed + 2}/{stream}")

    @property
    def policy(self) -> BasePolicy:
        return self.served.policy

    def image_url(self, artwork_id: str) -> str:
        return f"{self.config.image_url_prefix}/v1/artworks/{artwork_id}/image"

    def with_taste(self, user: UserContext, state: CatalogState) -> UserContext:
        # Taste keys outside the vocabulary are kept (and reported by `input_warnings`): the personal
        # term learns from any user feature, so a client's own segments ("segment:night-owl") carry
        # signal even though no artwork is tagged with them. `serve --strict` refuses them instead.
        if user.taste or not user.history:
            return user
        taste = taste_from_history(user.history, state.by_title)
        if not taste:
            return user
        if len(taste) > MAX_TASTE_KEYS:  # a long history can yield more keys than a client may send
            keep = sorted(taste.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_TASTE_KEYS]
            taste = dict(sorted(keep))
        return UserContext(user.user_id, taste, user.history, user.device, user.hour, user.country, user.row)

    def choose(self, user: UserContext, title_ids: Sequence[str], exclude: Collection[str],
               activate: bool) -> list[TitleChoice]:
        """`Engine.choose` once the request is checked."""
        view = self.view.current()
        user = self.with_taste(user, view)
        excl = frozenset(exclude)
        out: list[TitleChoice | None] = []  # None: a slot filled once the policy has chosen
        fresh: list[DecisionRecord] = []
        fsets: dict[str, str] = {}
        with self.lock:
            now = self.clock()
            sessions = self.sessions.for_user(user.user_id, [t for t in title_ids if t in view.titles], now)
            explore = self.config.explore_share > 0 and self._explore_rng.random() < self.config.explore_share
            chooser = self._explorer if explore else self.policy
            wake: list[str] = []  # inactive repeats shown on an activate=True page
            pending: list[tuple[int, str, TitleView]] = []  # (slot in out, title) still to choose
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
                    out.append(TitleChoice(tid, s.chosen, self.image_url(s.chosen), s.event_id, s.probability,
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
                out[slot] = TitleChoice(tid, d.chosen, self.image_url(d.chosen), nd.event_id, nd.probability,
                                        nd.policy, nd.version, active=activate)
            # Logged (committed) before anyone sees the answer: a choice we cannot log is not served.
            self.events.log_page(now, user.user_id, ctx, fresh, fsets,
                                 now + self.config.feedback_window_s, now + self.config.session_ttl_s)
            for nd in fresh:
                self.sessions.remember(user.user_id, nd.title_id, nd, now + self.config.session_ttl_s, nd.active)
                if nd.active:
                    self.served.open_decisions.add(nd.title_id, nd.chosen)
            for tid in wake:
                s = Session._make(sessions[tid])
                if self.events.activate(s.event_id, now + self.config.feedback_window_s)[0] == "activated":
                    self.served.open_decisions.add(tid, s.chosen)
                    self.counters["activated"] += 1
                sessions[tid] = tuple(s._replace(active=True))
            self.counters["choose_requests"] += 1
            self.counters["decisions"] += len(fresh)
            self.counters["repeats"] += sum(c.repeat for c in out)
            self.counters["title_errors"] += sum(c.error is not None for c in out)
        return out

    def distribution(self, user: UserContext, title_ids: Sequence[str], exclude: Collection[str]
                     ) -> dict[str, dict[str, Any]]:
        """`Engine.distribution` once the request is checked."""
        view = self.view.current()
        user = self.with_taste(user, view)
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
