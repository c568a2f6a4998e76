"""The learning side of the engine: learn_seq, reward windows, late feedback, snapshots and restore.

Learning order is the invariant everything hangs on: every learn event (joined feedback, a window
closed at reward 0, or a late click correcting such a close) gets a `learn_seq` in the same event-log
transaction that records it, and the policy learns events strictly in learn_seq order (one lock
around "commit + learn"), through one function (`Learner._learn`) fed by the rows the transaction
wrote or, at restart, by `EventLog.finalized_after`. A snapshot records the last learn_seq it
includes, so a restart = load snapshot + replay learn_seq > that, which rebuilds exactly the policy
that was running (VW learning is deterministic). An explicit deployment (a file trained offline,
another policy kind, an A/B split) catches up the same way, from learn_seq 0 through the same
`_learn`, skipping the rows its file's training recorded (`bandit.lineage.TrainedRows`).

Why a seam here: everything that advances learned_seq or writes a snapshot is in this one class,
so "what the policy holds" has one owner. It runs in roles "all" and "learner"; a chooser replica
has none and serves a read-only copy of the snapshots it writes (`bandit.chooser.SnapshotCopy`).
The lock it learns under is the engine's (`Engine._learn_lock`): a feedback join commits and
learns under it too, so the log's learn_seq order and the policy's stay one order.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bandit.catalog_view import CatalogView
from bandit.decisions import DecisionRecord
from bandit.events import BaseEventLog
from bandit.features import UserContext
from bandit.lineage import (SnapshotInfo, TrainedRows, file_sha256, keep_names, prune, snapshot_infos,
                            snapshot_name, write_sidecar)
from bandit.pending import Pending
from bandit.policy import BasePolicy, PolicyError
from bandit.registry import SERVABLE, load_policy, make_policy
from bandit.split import SplitPolicy

if TYPE_CHECKING:  # engine.py imports this module; the config is only named in signatures here
    from bandit.engine import EngineConfig

__all__ = ["Deployment", "Learner", "ServedPolicy", "new_policy", "newest_snapshot",
           "prepare_deployments"]

log = logging.getLogger("artwork.engine")  # one logger for the whole engine: operators filter on it


def new_policy(cfg: EngineConfig, kind: str | None = None, seed: int | None = None) -> BasePolicy:
    kind = kind or cfg.policy
    options = {"exploration": cfg.exploration} if kind == "vw" else {}
    return make_policy(kind, seed=cfg.seed if seed is None else seed, **options)


@dataclass
class Deployment:
    """A policy an operator named (serve --policy / --ab): a registered name, or a saved file that
    is read (and checked) when the engine is built, so a bad file fails before anything opens."""

    spec: str
    kind: str
    policy: BasePolicy | None = None  # the loaded file; None for a name (built when used)
    file: str | None = None
    sha256: str | None = None
    trained: TrainedRows | None = None

    @classmethod
    def prepare(cls, spec: str, what: str) -> Deployment:
        if spec in SERVABLE:
            return cls(spec, spec)
        path = Path(spec)
        if not path.is_file():
            raise PolicyError(f"{what} {spec!r}: neither a policy name ({', '.join(SERVABLE)}) nor an existing "
                              "saved policy file")
        try:
            pol = load_policy(path)
        except (PolicyError, OSError) as e:
            raise PolicyError(f"{what} {spec}: not a saved policy file (.vwz, .bayes, .json, .split): {e}") from None
        return cls(spec, pol.kind, pol, str(path.resolve()), file_sha256(path), TrainedRows.from_file(path))

    def build(self, cfg: EngineConfig, seed: int) -> BasePolicy:
        return self.policy if self.policy is not None else new_policy(cfg, self.kind, seed)

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


def prepare_deployments(cfg: EngineConfig) -> tuple[Deployment | None, Deployment | None]:
    """The explicit deployment (`deploy`) and A/B arm B (`ab`) of a config, files read and checked."""
    deploy = Deployment.prepare(cfg.deploy, "policy") if cfg.deploy else None
    ab = Deployment.prepare(cfg.ab, "A/B arm B") if cfg.ab else None
    if ab is not None and ab.kind == SplitPolicy.kind:
        raise PolicyError(f"A/B arm B {cfg.ab}: holds an A/B split itself; give one policy")
    if ab is not None and deploy is not None and deploy.kind == SplitPolicy.kind:
        raise PolicyError(f"policy {cfg.deploy}: holds an A/B split; arm A of a new A/B test must be "
                          "one policy")
    return deploy, ab


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


def newest_snapshot(events: BaseEventLog, snapshot_dir: Path, wanted: Callable[[SnapshotInfo], bool] | None = None
                    ) -> tuple[BasePolicy | None, SnapshotInfo | None]:
    """The newest recorded snapshot that loads, with its info: set-aside ones (a rollback) are
    skipped, an unreadable one gives way to an older one. With `wanted`, the search stops (None,
    None) at the first candidate it refuses: a chooser asks only for snapshots newer than its own."""
    for i in snapshot_infos(events, snapshot_dir):
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


class ServedPolicy:
    """The policy a process serves and where it came from: what /health, the lineage summary and
    replica status read. The learner's is the one it learns; a chooser's a snapshot copy."""

    def __init__(self, policy: BasePolicy, count_open: bool = True) -> None:
        # Decisions shown whose outcome is not learned yet (bandit.pending): the chooser counts
        # them in, `_learn` counts them out, a restore or a reload resets them from the log; the
        # served policy chooses with them unless `EngineConfig.count_open` is off.
        self.open_decisions = Pending()
        self._count_open = count_open
        self.policy = policy
        self.learned_seq = 0
        self.snap_seq: int | None = None
        self.snap_name: str | None = None  # the snapshot served from (restored or last written)
        # The deployment the running policy belongs to and the lineage of its newest snapshot
        # (bandit.lineage); set by a restore or a reload, advanced by each snapshot.
        self.deployment: dict[str, Any] = {"id": None, "source": "not started"}
        self.lineage: dict[str, Any] = {}

    @property
    def policy(self) -> BasePolicy:
        return self._policy

    @policy.setter
    def policy(self, policy: BasePolicy) -> None:
        # Every policy this process serves (restored, deployed, reloaded) chooses with its open decisions.
        policy.attach_pending(self.open_decisions if self._count_open else None)
        self._policy = policy

    def _lineage(self, source: str, parent: str | None, snapshot: str | None = None,
                 created: float | None = None) -> dict[str, Any]:
        """The running policy's lineage (bandit.lineage): a snapshot's sidecar, or what /health shows
        before the first snapshot of a deployment is written."""
        return {"snapshot": snapshot, "kind": self.policy.kind, "policy": self.policy.name,
                "version": self.policy.version, "learned_seq": self.learned_seq, "created": created,
                "source": source, "trained_rows": self.deployment.get("trained_rows"), "parent": parent,
                "deployment": self.deployment}


class Learner(ServedPolicy):
    """Learns every learn event in learn_seq order, closes reward windows, snapshots and restores.

    Roles "all" and "learner" (`EngineConfig.role`); `counters` are the engine's (one metrics
    source), `lock` its learn lock, `view` turns a logged feature set back into candidates.
    """

    def __init__(self, config: EngineConfig, events: BaseEventLog, snapshot_dir: Path, view: CatalogView,
                 counters: dict[str, int], clock: Callable[[], float], lock: threading.RLock,
                 deploy: Deployment | None, ab: Deployment | None) -> None:
        super().__init__(new_policy(config), config.count_open)
        self.config = config
        self.role = config.role
        self.events = events
        self.snapshot_dir = snapshot_dir
        self.view = view
        self.counters = counters
        self.clock = clock
        self.lock = lock
        self._deploy, self._ab = deploy, ab
        self._trained: TrainedRows | None = None  # rows to skip while a deployed file catches up
        self.last_snapshot = 0.0  # monotonic time of the last snapshot (the timer's schedule)
        self._lock_fd: int | None = None  # the store lock a learner holds
        # learn_seq -> event_id of learn events that could not be learned (see `_learn`).
        self._quarantined: dict[int, str] = self.events.quarantined()

    # -- the store lock ------------------------------------------------------------------------------
    def lock_store(self, path: Path | str) -> None:
        """One learner per log, as one `artwork serve` per store."""
        from bandit.storelock import lock_store

        self._lock_fd = lock_store(path)

    def unlock_store(self) -> None:
        if self._lock_fd is not None:
            from bandit.storelock import unlock_store

            unlock_store(self._lock_fd)
            self._lock_fd = None

    # -- restore -------------------------------------------------------------------------------------
    def restore(self) -> None:
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
        snap, info = newest_snapshot(self.events, self.snapshot_dir)
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
            self.snap_seq, self.snap_name = info.learned_seq, info.name
            self.deployment, self.lineage = held, dict(info.lineage)
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
            pol, seq, trained = new_policy(cfg), 0, None
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
        self.deployment = deployment
        self.lineage = self._lineage(source or deployment["source"], info.name if info else None)
        if source is not None:  # an explicit deployment: restarts restore it from here on
            self.snap_name = info.name if info else None
            self.snapshot(source=source, force=True)
        log.info("policy %s started at learn_seq %d (%d replayed): %s", self.policy.name, self.learned_seq, n,
                 source or deployment["source"])

    def _catch_up(self, policy: BasePolicy, seq: int, trained: TrainedRows | None, what: str,
                  upto: int | None = None) -> int:
        """Make `policy` (which holds every learn event up to `seq`) the served one and learn the
        log's events after it (up to `upto`), skipping the rows `trained` says it learned offline."""
        with self.lock:
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

    # -- learning ------------------------------------------------------------------------------------
    def _learn(self, rows: Iterable[DecisionRecord]) -> int:
        """The one learn path: apply learn events (decisions and corrections) in learn_seq order.

        Live learning passes the rows a transaction just wrote (`FinalizeResult.learn`,
        `EventLog.close_expired`); restart replay passes `EventLog.finalized_after`. Both come
        from the same query, so the policy sees byte-identical examples either way. Call with
        the learn lock held. Returns how many events were learned.
        """
        n = 0
        for row in rows:
            assert row.learn_seq is not None and row.reward is not None
            seq = int(row.learn_seq)
            if seq <= self.learned_seq:  # already in the policy: every event is learned exactly once
                continue
            if seq != self.learned_seq + 1:
                log.warning("learn_seq jumps from %d to %d: events in between were not learned", self.learned_seq, seq)
            if row.old_reward is None:  # a decision's outcome: no longer open
                self.open_decisions.resolve(row.title_id, row.chosen)
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
                cands = self.view.candidates(row)
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

    def learn_written(self, rows: Iterable[DecisionRecord]) -> int:
        """Learn the learn events a transaction of ours just wrote (call with the learn lock held).

        Alone on its log (role "all") those are the next ones. A learner shares the log with
        choosers, whose rows may sit between its last learned one and these: it reads the log's
        tail instead (these rows and everything before them, in learn_seq order), so that no row
        is skipped. (A chooser has no learner: its rows reach the learner through the log.)
        """
        if self.role == "learner":
            return self.learn_tail()
        return self._learn(rows)

    def learn_tail(self) -> int:
        """A learner's catch-up: learn every learn event the log holds after `learned_seq` (feedback
        posted to a chooser, a window a chooser's post closed), through the one learn path."""
        if self.role != "learner":
            return 0
        with self.lock:
            n = self._learn(self.events.finalized_after(self.learned_seq))
        self.counters["tail_learned"] += n
        return n

    def close_expired(self) -> int:
        """Close every open decision past its window at reward 0 and learn from it; returns how many."""
        total = 0
        with self.lock:
            while True:
                rows = self.events.close_expired(self.clock())
                self.learn_written(rows)
                total += len(rows)
                if len(rows) < 5000:
                    break
        self.counters["windows_closed"] += total
        return total

    # -- snapshots -----------------------------------------------------------------------------------
    def snapshot(self, source: str | None = None, force: bool = False) -> Path | None:
        """Write the policy atomically with its lineage sidecar and record which learn_seq it
        includes; None if nothing changed (unless `force`: a deployment is snapshotted as it starts)."""
        with self.lock:
            self.last_snapshot = time.monotonic()
            if self.snap_seq == self.learned_seq and not force:
                return None
            seq = self.learned_seq
            name = snapshot_name(self.snapshot_dir, (n for n, _, _ in self.events.snapshots()), seq,
                                 self.policy.file_suffix)
            path = self.snapshot_dir / name
            self.policy.save(path)
            if self.deployment.get("id") is None:  # a deployment is named after its first snapshot
                self.deployment = {**self.deployment, "id": name}
            lineage = self._lineage(source or "learned online", self.snap_name, snapshot=name, created=time.time())
            write_sidecar(path, lineage)
            # Recorded after the file and its sidecar are complete: a crash in between leaves an
            # unrecorded file that restore ignores, never a record pointing at a partial model.
            self.events.record_snapshot(lineage["created"], name, seq, self.policy.version)
            self.snap_seq, self.snap_name, self.lineage = seq, name, lineage
            self.counters["snapshots"] += 1
        infos = snapshot_infos(self.events, self.snapshot_dir)
        prune(self.snapshot_dir, keep_names(infos, self.config.keep_snapshots, self.snap_name))
        return path
