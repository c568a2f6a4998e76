"""Decision log: one record per served artwork, enough to replay learning and run off-policy evaluation."""

from __future__ import annotations

import json
import os
import time as _time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from bandit.features import Candidate, UserContext

if TYPE_CHECKING:
    from bandit.policy import Decision

__all__ = ["DecisionRecord", "new_record", "write_parquet", "read_parquet", "SCHEMA"]


@dataclass
class DecisionRecord:
    """A logged decision; `reward` is None until the outcome (click / no click) is joined in."""

    event_id: str
    time: float  # unix seconds
    user_id: str
    title_id: str
    context: dict[str, Any]  # UserContext.to_dict()
    candidates: list[str]  # artwork ids actually offered (after exclusions), in order
    candidate_features: list[dict[str, float]]  # aligned with candidates
    chosen: str
    probability: float
    policy: str
    version: int
    reward: float | None = None
    distribution: dict[str, float] = field(default_factory=dict)  # full pmf, for off-policy evaluation

    def user_context(self) -> UserContext:
        """The logged context as a validated UserContext."""
        return UserContext.from_dict(self.context)

    def candidate_objects(self) -> list[Candidate]:
        """The logged candidates as Candidate objects (for learn_one)."""
        return [Candidate(a, dict(f)) for a, f in zip(self.candidates, self.candidate_features)]


def new_record(
    user: UserContext,
    title_id: str,
    candidates: Sequence[Candidate],
    decision: Decision,
    reward: float | None = None,
    time: float | None = None,
) -> DecisionRecord:
    """Log record for a decision (uuid4 event id).

    Only candidates present in `decision.distribution` are kept: excluded/disabled artworks were
    not part of the action set, and replaying them would teach the policy about choices it never had.
    """
    offered = [c for c in candidates if c.artwork_id in decision.distribution]
    if decision.chosen not in {c.artwork_id for c in offered}:
        raise ValueError(f"chosen artwork {decision.chosen!r} is not among the candidates")
    return DecisionRecord(
        event_id=str(uuid.uuid4()),
        time=_time.time() if time is None else float(time),
        user_id=user.user_id,
        title_id=title_id,
        context=user.to_dict(),
        candidates=[c.artwork_id for c in offered],
        candidate_features=[dict(c.features) for c in offered],
        chosen=decision.chosen,
        probability=float(decision.probability),
        policy=decision.policy,
        version=int(decision.version),
        reward=None if reward is None else float(reward),
        distribution=dict(decision.distribution),
    )


#: Parquet schema; nested dicts are JSON strings (Python's float repr round-trips exactly).
SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("time", pa.float64()),
        ("user_id", pa.string()),
        ("title_id", pa.string()),
        ("context", pa.string()),
        ("candidates", pa.list_(pa.string())),
        ("candidate_features", pa.list_(pa.string())),
        ("chosen", pa.string()),
        ("probability", pa.float64()),
        ("policy", pa.string()),
        ("version", pa.int64()),
        ("reward", pa.float64()),
        ("distribution", pa.string()),
    ]
)


def _dumps(obj: Any) -> str:
    # allow_nan=False: a NaN in a log would silently poison every later replay.
    return json.dumps(obj, allow_nan=False, separators=(",", ":"))


def write_parquet(records: Iterable[DecisionRecord], path: str | os.PathLike[str]) -> None:
    """Write records to one Parquet file (temp file + os.replace, so readers never see half a file)."""
    recs = list(records)
    cols: dict[str, list[Any]] = {
        "event_id": [r.event_id for r in recs],
        "time": [float(r.time) for r in recs],
        "user_id": [r.user_id for r in recs],
        "title_id": [r.title_id for r in recs],
        "context": [_dumps(r.context) for r in recs],
        "candidates": [list(r.candidates) for r in recs],
        "candidate_features": [[_dumps(f) for f in r.candidate_features] for r in recs],
        "chosen": [r.chosen for r in recs],
        "probability": [float(r.probability) for r in recs],
        "policy": [r.policy for r in recs],
        "version": [int(r.version) for r in recs],
        "reward": [None if r.reward is None else float(r.reward) for r in recs],
        "distribution": [_dumps(r.distribution) for r in recs],
    }
    table = pa.Table.from_pydict(cols, schema=SCHEMA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_parquet(path: str | os.PathLike[str]) -> list[DecisionRecord]:
    """Read records written by `write_parquet` (extra columns ignored; `distribution` optional)."""
    table = pq.read_table(path)
    d = table.to_pydict()
    n = table.num_rows
    dist = d.get("distribution", [None] * n)
    return [
        DecisionRecord(
            event_id=d["event_id"][i],
            time=d["time"][i],
            user_id=d["user_id"][i],
            title_id=d["title_id"][i],
            context=json.loads(d["context"][i]),
            candidates=list(d["candidates"][i]),
            candidate_features=[json.loads(f) for f in d["candidate_features"][i]],
            chosen=d["chosen"][i],
            probability=d["probability"][i],
            policy=d["policy"][i],
            version=d["version"][i],
            reward=d["reward"][i],
            distribution=json.loads(dist[i]) if dist[i] else {},
        )
        for i in range(n)
    ]
