"""Where a served policy came from, and the operator's hand on it: deploy, promote, roll back.

Three records, each kept where its subject lives:

- *Training record*, inside a saved policy file (extra zip members the loaders ignore): which
  decision-log rows `artwork train` learned, as 64-bit hashes of their event ids, and the reward
  each was learned with. `replay`/`compare` use it to warn about a policy graded on rows it has
  seen; the engine uses it to skip exactly those rows when the file is deployed on a log
  (`TrainedRows`), so nothing is learned twice.
- *Lineage sidecar*, `<snapshot>.lineage.json` next to every snapshot: kind, policy name, version,
  learned_seq, created, source ("learned online", "deployed from FILE sha256=...", "promoted from
  FILE sha256=...", "rolled back to ..."), trained_rows, parent snapshot, and the *deployment* it
  belongs to (the explicit deployment that began the run of snapshots). A sidecar rather than a
  column: the snapshot files are local to the server while the event log may be SQLite or
  PostgreSQL, and a sidecar needs no schema change in either.
- *Set aside*: a rollback moves the snapshots it undoes into `set-aside/` in the snapshot folder
  (never deletes them); their rows in the event log stay, and restore skips them.

Nothing here imports the serving stack: the CLI (`artwork policy ...`, `train`) and the engine
both use it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bandit.policy import PolicyError, atomic_write_bytes

if TYPE_CHECKING:
    from bandit.decisions import DecisionRecord

__all__ = ["TRAINED_ON", "TRAINED_IDS", "TRAINED_REWARDS", "SIDECAR", "SET_ASIDE", "LineageError", "TrainedRows",
           "SnapshotInfo", "event_hash", "id_hashes", "record_training", "trained_rows", "file_sha256",
           "write_sidecar", "read_sidecar", "snapshot_infos", "snapshot_name", "keep_names", "promote",
           "rollback", "prune", "sidecar_path", "LEGACY_DEPLOYMENT"]

TRAINED_ON = "trained_on.json"
TRAINED_IDS = "trained_on_ids.u64"
TRAINED_REWARDS = "trained_on_rewards.f8"  # aligned with TRAINED_IDS; absent in files trained before it
SIDECAR = ".lineage.json"
SET_ASIDE = "set-aside"
#: The deployment of snapshots written before lineage existed: all of them count as one.
LEGACY_DEPLOYMENT = "(before lineage)"
_FORMAT = 1


class LineageError(ValueError):
    """An operator action that cannot be done (nothing to roll back to, not a policy file, ...)."""


# -- training records ----------------------------------------------------------------------------


def event_hash(event_id: str) -> int:
    """64-bit hash of one event id (blake2b-8, little endian): what training records hold."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


def id_hashes(event_ids: Iterable[str]) -> np.ndarray:
    """Sorted 64-bit hashes of event ids: a compact, exact-enough record of which rows a policy learned."""
    return np.array(sorted(event_hash(e) for e in event_ids), dtype="<u8")


def record_training(path: str | os.PathLike[str], log_name: str, learned: Sequence[Any]) -> None:
    """Add which log rows the policy at `path` learned, and with which reward, to its saved zip.

    `learned`: the records it learned (event_id, time, reward). Written to a copy that replaces
    the file atomically: a crash leaves the file as it was.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise PolicyError(f"{path}: a training record needs a zip policy file (vw or bayes), not {path.suffix or 'this'}")
    hashes = np.array([event_hash(r.event_id) for r in learned], dtype="<u8")
    order = np.argsort(hashes, kind="stable")
    rewards = np.array([float(r.reward) for r in learned], dtype="<f8")[order]
    meta = {"log": Path(log_name).name, "rows": len(learned), "time_min": min(r.time for r in learned),
            "time_max": max(r.time for r in learned),
            "event_ids": f"blake2b-8 of each event id, sorted, in {TRAINED_IDS}",
            "rewards": f"the reward learned for each, aligned, in {TRAINED_REWARDS}"}
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(path, tmp)
        with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(TRAINED_ON, json.dumps(meta, sort_keys=True))
            z.writestr(TRAINED_IDS, hashes[order].tobytes())
            z.writestr(TRAINED_REWARDS, rewards.tobytes())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def trained_rows(path: str | os.PathLike[str]) -> tuple[dict, np.ndarray] | None:
    """What `train` recorded about a saved policy's training rows (meta, sorted id hashes), or None."""
    got = _training(path)
    return None if got is None else (got[0], got[1])


def _training(path: str | os.PathLike[str]) -> tuple[dict, np.ndarray, np.ndarray | None] | None:
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read(TRAINED_ON))
            ids = np.frombuffer(z.read(TRAINED_IDS), dtype="<u8")
            names = set(z.namelist())
            rewards = np.frombuffer(z.read(TRAINED_REWARDS), dtype="<f8") if TRAINED_REWARDS in names else None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    if rewards is not None and rewards.shape != ids.shape:
        rewards = None  # a damaged record: fall back to "skip every learn event of those rows"
    return meta, ids, rewards


class TrainedRows:
    """The learn events a policy already holds from offline training, for the learner's `_learn`.

    Training learned each decision once, with the reward the exported log had. So a decision's own
    learn event is skipped, and so is a correction the training already saw (its new reward is not
    above the trained one); a correction that came after the export (a late click on a row trained
    at reward 0) is learned, as a correction from the trained reward. Files trained before rewards
    were recorded skip every learn event of their rows: never learning twice wins over a late click.
    """

    def __init__(self, ids: np.ndarray, rewards: np.ndarray | None, meta: dict | None = None) -> None:
        self.meta = meta or {}
        self.rows = int(ids.size)
        self._reward: dict[int, float | None] = (
            dict(zip(ids.tolist(), rewards.tolist())) if rewards is not None else dict.fromkeys(ids.tolist()))
        self.skipped = 0

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TrainedRows | None:
        got = _training(path)
        return None if got is None else cls(got[1], got[2], got[0])

    def adjust(self, row: DecisionRecord) -> DecisionRecord | None:
        """`row` as the policy still has to learn it, or None when training already learned it."""
        h = event_hash(row.event_id)
        if h not in self._reward:
            return row
        trained = self._reward[h]
        if trained is None or row.old_reward is None or row.reward <= trained:
            self.skipped += 1
            return None
        if row.old_reward < trained:  # the first correction after the export: it corrects what was trained
            return dataclasses.replace(row, old_reward=trained)
        return row


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- lineage sidecars and the snapshot folder ------------------------------------------------------


def sidecar_path(snapshot: Path) -> Path:
    return snapshot.with_name(snapshot.name + SIDECAR)


def write_sidecar(snapshot: Path, lineage: dict[str, Any]) -> None:
    """Write a snapshot's lineage atomically, before the snapshot is recorded in the event log."""
    atomic_write_bytes(sidecar_path(snapshot), json.dumps({"format": _FORMAT, **lineage}, indent=1,
                                                          sort_keys=True).encode())


def read_sidecar(snapshot: Path) -> dict[str, Any] | None:
    """The lineage of a snapshot, or None (written before lineage, or unreadable)."""
    try:
        doc = json.loads(sidecar_path(snapshot).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    doc.pop("format", None)
    return doc


@dataclass
class SnapshotInfo:
    """One recorded snapshot as the operator sees it."""

    name: str
    learned_seq: int
    version: int
    state: str  # "live" | "set aside" | "missing"
    path: Path
    lineage: dict[str, Any]

    @property
    def deployment(self) -> str:
        return str((self.lineage.get("deployment") or {}).get("id") or LEGACY_DEPLOYMENT)


def _legacy_lineage(name: str, seq: int, version: int) -> dict[str, Any]:
    return {"snapshot": name, "learned_seq": seq, "version": version, "source": "learned online (before lineage)",
            "deployment": {"id": LEGACY_DEPLOYMENT, "source": "before lineage was recorded"}}


def snapshot_infos(events: Any, snapshot_dir: str | os.PathLike[str]) -> list[SnapshotInfo]:
    """Every snapshot the event log records, newest first, with its state and lineage."""
    folder = Path(snapshot_dir)
    try:
        present = set(os.listdir(folder))
    except OSError:
        present = set()
    try:
        aside = set(os.listdir(folder / SET_ASIDE))
    except OSError:
        aside = set()
    out = []
    for name, seq, version in events.snapshots():
        if name in present:
            state, path = "live", folder / name
        elif name in aside:
            state, path = "set aside", folder / SET_ASIDE / name
        else:
            state, path = "missing", folder / name
        if state == "missing":  # pruned (or removed by hand): only the event log's row is left
            lin = {"snapshot": name, "learned_seq": seq, "version": version,
                   "source": "pruned (the file is no longer in the snapshot folder)"}
        else:
            lin = read_sidecar(path) or _legacy_lineage(name, seq, version)
        out.append(SnapshotInfo(name, int(seq), int(version), state, path, lin))
    return out


def snapshot_name(snapshot_dir: str | os.PathLike[str], taken: Iterable[str], seq: int, suffix: str) -> str:
    """`policy-<seq>.<suffix>`, or `policy-<seq>-<n>.<suffix>` when that name is used already (a
    deployment or rollback can write a second snapshot at the same learned_seq)."""
    folder = Path(snapshot_dir)
    used = set(taken)
    for sub in (folder, folder / SET_ASIDE):
        try:
            used.update(os.listdir(sub))
        except OSError:
            pass
    name, n = f"policy-{seq:012d}.{suffix}", 1
    while name in used:
        n += 1
        name = f"policy-{seq:012d}-{n}.{suffix}"
    return name


def keep_names(infos: Sequence[SnapshotInfo], keep: int, current: str | None) -> set[str]:
    """Snapshot files pruning must leave: the newest `keep` live ones, the one being served (after a
    rollback it is not the newest record), and the newest of every earlier deployment (what
    `rollback` goes back to)."""
    live = [i for i in infos if i.state == "live"]
    names = {i.name for i in live[:max(keep, 1)]}
    if current is not None:
        names.add(current)
    seen: set[str] = set()
    for i in live:
        if i.deployment not in seen:
            seen.add(i.deployment)
            names.add(i.name)
    return names


def prune(snapshot_dir: str | os.PathLike[str], keep: set[str]) -> list[str]:
    """Delete snapshot files (and sidecars) of the top folder not in `keep`; returns their names.
    Set-aside snapshots are never pruned: a rollback keeps what it undid."""
    gone = []
    for p in Path(snapshot_dir).glob("policy-*"):
        base = p.name[:-len(SIDECAR)] if p.name.endswith(SIDECAR) else p.name
        if base not in keep and p.is_file():
            p.unlink(missing_ok=True)
            gone.append(p.name)
    return gone


# -- operator actions (run with the server stopped: the caller holds the store lock) --------------


def _current(infos: Sequence[SnapshotInfo]) -> SnapshotInfo | None:
    return next((i for i in infos if i.state == "live"), None)


def promote(events: Any, snapshot_dir: str | os.PathLike[str], file: str | os.PathLike[str],
            now: float | None = None) -> dict[str, Any]:
    """Record the saved policy FILE as the newest snapshot, at learned_seq 0: the next serve start
    restores it and learns every finalized event of the log except the rows its training recorded.
    Returns the new snapshot's lineage."""
    from bandit.registry import load_policy

    src = Path(file)
    if not src.is_file():
        raise LineageError(f"{src}: no such file; expected a saved policy (.vwz, .bayes, .json, .split)")
    try:
        pol = load_policy(src)
    except PolicyError as e:
        raise LineageError(f"{src}: not a saved policy file ({e})") from None
    now = time.time() if now is None else now
    infos = snapshot_infos(events, snapshot_dir)
    parent = _current(infos)
    folder = Path(snapshot_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = snapshot_name(folder, (i.name for i in infos), 0, pol.file_suffix)
    data = src.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    training = _training(src)
    rows = int(training[1].size) if training else None
    source = f"promoted from {src.resolve()} sha256={sha}"
    lineage = {"snapshot": name, "kind": pol.kind, "policy": pol.name, "version": pol.version, "learned_seq": 0,
               "created": now, "source": source, "trained_rows": rows,
               "parent": parent.name if parent else None,
               "deployment": {"id": name, "source": source, "kind": pol.kind, "file": str(src.resolve()),
                              "sha256": sha, "trained_rows": rows}}
    # The bytes as they are, training record included: restore reads it to skip those rows.
    atomic_write_bytes(folder / name, data)
    write_sidecar(folder / name, lineage)
    events.record_snapshot(now, name, 0, pol.version)
    return lineage


def rollback(events: Any, snapshot_dir: str | os.PathLike[str], to: str | None = None,
             now: float | None = None) -> tuple[dict[str, Any], list[str]]:
    """Undo the current deployment: its snapshots are set aside and the newest snapshot of the
    previous deployment (or the live snapshot `to`) becomes current again, as a new snapshot
    record whose lineage says "rolled back to ...". Returns (its lineage, the names set aside)."""
    infos = snapshot_infos(events, snapshot_dir)
    live = [i for i in infos if i.state == "live"]
    if not live:
        raise LineageError(f"{snapshot_dir}: no snapshot to roll back (nothing has been snapshotted yet)")
    current = live[0]
    if to is not None:
        target = next((i for i in live if i.name == to), None)
        if target is None:
            aside = any(i.name == to for i in infos if i.state == "set aside")
            raise LineageError(f"--to {to}: {'set aside by an earlier rollback' if aside else 'no such snapshot'}; "
                               f"live snapshots: {', '.join(i.name for i in live)}")
        if target is current:
            raise LineageError(f"--to {to}: that is the current snapshot already")
    else:
        target = next((i for i in live if i.deployment != current.deployment), None)
        if target is None:
            if len(live) == 1:
                raise LineageError(f"only one snapshot ({current.name}); there is nothing to roll back to")
            raise LineageError(
                f"nothing to roll back to: all {len(live)} kept snapshots belong to the current deployment "
                f"({(current.lineage.get('deployment') or {}).get('source', current.deployment)}); rollback goes "
                f"back to the previous deployment, or give --to NAME (see `artwork policy list`)")
    now = time.time() if now is None else now
    folder = Path(snapshot_dir)
    newer = live[:live.index(target)]
    name = snapshot_name(folder, (i.name for i in infos), target.learned_seq, target.path.name.rsplit(".", 1)[-1])
    lineage = {**target.lineage, "snapshot": name, "created": now, "parent": target.name,
               "source": f"rolled back to {target.name} (set aside: {', '.join(i.name for i in newer)})"}
    lineage.setdefault("deployment", {"id": target.deployment})
    atomic_write_bytes(folder / name, target.path.read_bytes())
    write_sidecar(folder / name, lineage)
    events.record_snapshot(now, name, target.learned_seq, target.version)
    # Only after the new record: a crash in between still restores the target.
    (folder / SET_ASIDE).mkdir(exist_ok=True)
    for i in newer:
        for p in (i.path, sidecar_path(i.path)):
            if p.exists():
                os.replace(p, folder / SET_ASIDE / p.name)
    return lineage, [i.name for i in newer]
