"""Decision log: one record per served artwork, enough to replay learning and run off-policy evaluation.

`DecisionRecord` is the one decision type: the serving event log returns it, the engine learns from
it, and the Parquet log, exports and offline evaluation read and write it.
"""

from __future__ import annotations

import json
import math
import os
import time as _time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bandit.features import Candidate, UserContext

if TYPE_CHECKING:
    from bandit.policy import Decision

__all__ = ["DecisionRecord", "DecisionLogError", "new_record", "write_parquet", "read_parquet", "log_version",
           "SCHEMA", "LEGACY_SCHEMA", "LOG_SCHEMA_VERSION", "VERSION_KEY"]


@dataclass
class DecisionRecord:
    """A logged decision, from the event log to the policy and into the Parquet log.

    `reward` is None until the outcome (click / no click) is joined in. The fields after
    `distribution` are the serving event log's bookkeeping: set on records the log returns, left at
    their defaults elsewhere (new_record, Parquet, simulations), and never written to Parquet.
    """

    event_id: str
    time: float  # unix seconds
    user_id: str
    title_id: str
    context: dict[str, Any]  # UserContext.to_dict()
    candidates: list[str]  # artwork ids actually offered (after exclusions), in order
    # Aligned with candidates. Empty on a record read from the event log, which stores the features
    # once per feature set (`fs_key`): a reader that needs them resolves the key, caching across rows.
    candidate_features: list[dict[str, float]]
    chosen: str
    probability: float
    policy: str
    version: int
    reward: float | None = None
    distribution: dict[str, float] = field(default_factory=dict)  # full pmf, for off-policy evaluation
    # First the two a fresh decision sets: the engine makes one per title of a page, positionally.
    fs_key: str | None = None  # the feature set of the candidates (the log's `featuresets` table)
    active: bool = True  # False: logged with activate=false and not activated yet (no window running)
    seq: int | None = None  # the log's row order
    deadline: float | None = None  # the feedback window's end (+inf while inactive)
    status: str | None = None  # "open" | "joined" | "closed"
    learn_seq: int | None = None  # the learn event: finalized, or (with old_reward) a correction
    late_seq: int | None = None  # learn_seq of the late click that corrected the reward-0 close
    upgrade_seq: int | None = None  # learn_seq of the latest ladder upgrade (a correction too)
    # Set only on a correction learn event (from `finalized_after` / `FinalizeResult.learn`): the
    # reward learned before; `reward` and `learn_seq` are then the correction's.
    old_reward: float | None = None
    session_expires: float | None = None  # on a record read as a user's sticky session

    @property
    def late(self) -> bool:
        """Closed at reward 0, then corrected by a late click."""
        return self.late_seq is not None

    @property
    def is_correction(self) -> bool:
        """This record is a correction learn event (learn with `Policy.relearn`), not a first outcome."""
        return self.old_reward is not None

    def user_context(self) -> UserContext:
        """The logged context as a validated UserContext."""
        return UserContext.from_dict(self.context)

    def candidate_objects(self, featureset: Mapping[str, dict[str, float]] | None = None) -> list[Candidate]:
        """The logged candidates as Candidate objects (for learn_one); `featureset` ({artwork_id:
        features}, the one `fs_key` names) for a record from the event log."""
        if featureset is not None:
            return [Candidate(a, featureset.get(a, {})) for a in self.candidates]
        if self.fs_key is not None and self.candidates and not self.candidate_features:
            # zip would silently offer no candidates at all
            raise ValueError(f"event {self.event_id}: its candidate features are in feature set {self.fs_key!r}; "
                             "pass that feature set")
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


#: The Parquet key-value metadata key holding the log's layout version. Files without it are
#: version 1 (`LEGACY_SCHEMA`, written before the key existed) and are still read.
VERSION_KEY = b"artwork.decision_log.version"
#: 2: Arrow struct/map/list columns and a timestamp instead of JSON strings and a float epoch.
LOG_SCHEMA_VERSION = 2

#: Version 1: nested dicts as JSON strings, time as float unix seconds. Read, never written.
LEGACY_SCHEMA = pa.schema(
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

# Feature, taste and probability dicts have keys that vary per row (tags, cast names, artwork ids),
# so they are maps, not structs: a struct would need one column per key ever seen. A map keeps its
# entries in order and string keys and float64 values exactly, an empty dict included.
_FLOAT_MAP = pa.map_(pa.string(), pa.float64())
#: `UserContext.to_dict()` as typed fields. `extra` (a JSON object, null when empty) holds any key
#: that is not a UserContext field or whose value does not fit its column, so a damaged context in
#: the event log still exports without loss; `UserContext.from_dict` rejects it as before. A null
#: user_id/taste/history is a key the dict did not have; a null device/hour/country/row reads as
#: None (`UserContext.to_dict()`, what the engine logs, always has all four).
CONTEXT_TYPE = pa.struct(
    [
        ("user_id", pa.string()),
        ("taste", _FLOAT_MAP),
        ("history", pa.list_(pa.string())),
        ("device", pa.string()),
        ("hour", pa.int64()),
        ("country", pa.string()),
        ("row", pa.int64()),
        ("extra", pa.string()),
    ]
)
#: Nanoseconds, so every float unix time since 1970-04-08 comes back bit for bit (its spacing is
#: over 1 ns there); earlier, simulated times keep 9 decimals (integers and 0.25 steps exactly).
TIME_TYPE = pa.timestamp("ns", tz="UTC")
#: The Parquet schema written now (version `LOG_SCHEMA_VERSION`, in the file's metadata).
SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("time", TIME_TYPE),
        ("user_id", pa.string()),
        ("title_id", pa.string()),
        ("context", CONTEXT_TYPE),
        ("candidates", pa.list_(pa.string())),
        ("candidate_features", pa.list_(_FLOAT_MAP)),  # aligned with candidates
        ("chosen", pa.string()),
        ("probability", pa.float64()),
        ("policy", pa.string()),
        ("version", pa.int64()),
        ("reward", pa.float64()),  # null: no outcome yet
        ("distribution", _FLOAT_MAP),
    ],
    metadata={VERSION_KEY: str(LOG_SCHEMA_VERSION).encode()},
)


class DecisionLogError(ValueError):
    """A decision log cannot be written or read as asked; the message names the file (or the event)
    and what was expected."""


def _dumps(obj: Any) -> str:
    # allow_nan=False: a NaN in a log would silently poison every later replay.
    return json.dumps(obj, allow_nan=False, separators=(",", ":"))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _fits(key: str, v: Any) -> bool:
    """Whether a context value fits its typed column (else it goes to `extra`, as JSON)."""
    if key == "user_id":
        return isinstance(v, str)
    if key == "taste":
        return isinstance(v, Mapping) and all(isinstance(k, str) and _is_number(x) for k, x in v.items())
    if key == "history":
        return isinstance(v, (list, tuple)) and all(isinstance(t, str) for t in v)
    if key in ("device", "country"):
        return v is None or isinstance(v, str)
    if key in ("hour", "row"):
        return v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                             and -2**63 <= int(v) < 2**63)
    return False


_CONTEXT_KEYS = tuple(f.name for f in CONTEXT_TYPE if f.name != "extra")
_NULL_MEANS_ABSENT = ("user_id", "taste", "history")  # a null device/hour/country/row reads as None


def _context_row(ctx: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {k: None for k in _CONTEXT_KEYS}
    extra = {}
    for k, v in ctx.items():
        if _fits(k, v):
            row[k] = v
        else:
            extra[k] = v
    row["extra"] = _dumps(extra) if extra else None
    return row


def _context_dict(row: dict[str, Any]) -> dict[str, Any]:
    extra = row.pop("extra", None)
    for k in _NULL_MEANS_ABSENT:
        if row.get(k, 0) is None:
            del row[k]
    if extra:
        row.update(json.loads(extra))
    return row


def _array(name: str, values: list[Any], typ: pa.DataType, ids: Sequence[str]) -> pa.Array:
    """`values` as an Arrow array of `typ`; a value that does not fit names its event and field."""
    try:
        return pa.array(values, type=typ)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        for i, v in enumerate(values):  # only on failure: find the first row that does not fit
            try:
                pa.array([v], type=typ)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                raise DecisionLogError(f"event {ids[i]}: {name} {_short(v)} does not fit the log's {typ} column "
                                       f"({exc})") from None
        raise DecisionLogError(f"{name}: {exc}") from None


def _nth(items: Sequence[Any], k: int) -> Any:
    return items[k] if 0 <= k < len(items) else f"candidate #{k}"


def _short(v: Any, limit: int = 200) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[:limit] + "..."


def _check_finite_items(name: str, maps: pa.MapArray, row_of_map: np.ndarray, ids: Sequence[str],
                        where: Any = None) -> None:
    """Every value of every map finite, else the event, field and key that is not (`where(m)`: words
    for map `m`, e.g. which candidate)."""
    values = maps.items.to_numpy(zero_copy_only=False)
    bad = ~np.isfinite(values)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        m = int(np.searchsorted(maps.offsets.to_numpy(), j, side="right")) - 1
        key = maps.keys[j].as_py()
        raise DecisionLogError(f"event {ids[int(row_of_map[m])]}: {name}[{key!r}]{where(m) if where else ''} is "
                               f"{float(values[j])!r}; a decision log holds finite numbers only (a NaN would "
                               "poison every later replay)")


def _check_finite(name: str, values: Sequence[float | None], ids: Sequence[str]) -> None:
    for i, v in enumerate(values):
        if v is not None and not math.isfinite(v):
            raise DecisionLogError(f"event {ids[i]}: {name} is {v!r}; a decision log holds finite numbers only")


def _time_array(times: Sequence[float], ids: Sequence[str]) -> pa.Array:
    t = np.asarray(times, dtype=np.float64)
    bad = ~np.isfinite(t) | (np.abs(t) >= 9.2e9)  # int64 nanoseconds reach years 1678..2262
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DecisionLogError(f"event {ids[i]}: time {float(t[i])!r} is not unix seconds between 1678 and 2261")
    # Whole seconds and the fraction apart: t * 1e9 in one float product would round to 256 ns.
    sec = np.floor(t)
    ns = sec.astype(np.int64) * 1_000_000_000 + np.rint((t - sec) * 1e9).astype(np.int64)
    return pa.array(ns, type=pa.int64()).cast(TIME_TYPE)


def _time_floats(column: pa.ChunkedArray) -> list[float]:
    ns = column.cast(pa.int64()).to_numpy()
    sec = ns // 1_000_000_000
    # One rounding of (whole seconds + a correctly rounded fraction): the float that was written.
    return (sec.astype(np.float64) + (ns - sec * 1_000_000_000) / 1e9).tolist()


def write_parquet(records: Iterable[DecisionRecord], path: str | os.PathLike[str]) -> None:
    """Write records to one Parquet file (temp file + os.replace, so readers never see half a file).

    Layout `SCHEMA` (version `LOG_SCHEMA_VERSION`, stored under `VERSION_KEY` in the file's key-value
    metadata): the context a struct, feature/taste/probability dicts maps, time a UTC timestamp.
    Raises DecisionLogError naming the event for a non-finite number or a value of the wrong type.
    """
    recs = list(records)
    ids = [str(r.event_id) for r in recs]
    probability = [float(r.probability) for r in recs]
    reward = [None if r.reward is None else float(r.reward) for r in recs]
    _check_finite("probability", probability, ids)
    _check_finite("reward", reward, ids)
    context = _array("context", [_context_row(r.context) for r in recs], CONTEXT_TYPE, ids)
    features = _array("candidate_features", [list(r.candidate_features) for r in recs],
                      pa.list_(_FLOAT_MAP), ids)
    distribution = _array("distribution", [r.distribution for r in recs], _FLOAT_MAP, ids)
    rows = np.arange(len(recs))
    _check_finite_items("context.taste", context.field("taste"), rows, ids)
    _check_finite_items("distribution", distribution, rows, ids)
    starts = features.offsets.to_numpy()
    owner = np.repeat(rows, np.diff(starts))
    _check_finite_items("candidate_features", features.values, owner, ids,
                        lambda m: f" of artwork {_short(_nth(recs[owner[m]].candidates, m - starts[owner[m]]))}")
    cols: dict[str, Any] = {
        "event_id": _array("event_id", [r.event_id for r in recs], pa.string(), ids),
        "time": _time_array([r.time for r in recs], ids),
        "user_id": _array("user_id", [r.user_id for r in recs], pa.string(), ids),
        "title_id": _array("title_id", [r.title_id for r in recs], pa.string(), ids),
        "context": context,
        "candidates": _array("candidates", [list(r.candidates) for r in recs], pa.list_(pa.string()), ids),
        "candidate_features": features,
        "chosen": _array("chosen", [r.chosen for r in recs], pa.string(), ids),
        "probability": pa.array(probability, type=pa.float64()),
        "policy": _array("policy", [r.policy for r in recs], pa.string(), ids),
        "version": _array("version", [int(r.version) for r in recs], pa.int64(), ids),
        "reward": pa.array(reward, type=pa.float64()),
        "distribution": distribution,
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


def log_version(path: str | os.PathLike[str]) -> int:
    """The layout version of the Parquet decision log at `path` (1 for files written before versions
    were recorded)."""
    raw = (pq.read_schema(path).metadata or {}).get(VERSION_KEY)
    if raw is None:
        return 1
    try:
        return int(raw)
    except ValueError:
        raise DecisionLogError(f"{path}: the decision log version in its Parquet metadata ({VERSION_KEY.decode()}) "
                               f"is {raw!r}, not a number") from None


_REQUIRED = ("event_id", "time", "user_id", "title_id", "context", "candidates", "candidate_features", "chosen",
             "probability", "policy", "version", "reward")


def read_parquet(path: str | os.PathLike[str]) -> list[DecisionRecord]:
    """Read a decision log written by `write_parquet`, this version's layout or version 1's (JSON
    strings, float time). Extra columns are ignored and `distribution` is optional; a log from a
    newer version is refused (DecisionLogError) rather than half understood."""
    version = log_version(path)
    if version > LOG_SCHEMA_VERSION or version < 1:
        raise DecisionLogError(f"{path}: decision log version {version}, but this build of artwork-engine reads "
                               f"versions 1 to {LOG_SCHEMA_VERSION}; upgrade it (pip install -U artwork-engine) "
                               "to read this log")
    table = pq.read_table(path)
    missing = [c for c in _REQUIRED if c not in table.column_names]
    if missing:
        raise DecisionLogError(f"{path}: no column(s) {', '.join(missing)}; a decision log (from `artwork "
                               f"export-log`) has {', '.join(_REQUIRED)} and distribution")
    if version == 1:
        return _read_v1(table)
    n = table.num_rows
    times = _time_floats(table.column("time"))
    # The map columns by hand: Arrow's generic conversion of list<map> is 4x slower on a large log.
    features = _map_lists(table.column("candidate_features"))
    dist = _map_dicts(table.column("distribution").combine_chunks()) if "distribution" in table.column_names \
        else [None] * n
    d = table.drop_columns([c for c in ("time", "candidate_features", "distribution") if c in table.column_names]
                           ).to_pydict(maps_as_pydicts="strict")
    return [
        DecisionRecord(
            event_id=d["event_id"][i],
            time=times[i],
            user_id=d["user_id"][i],
            title_id=d["title_id"][i],
            context=_context_dict(d["context"][i]),
            candidates=list(d["candidates"][i]),
            candidate_features=features[i],
            chosen=d["chosen"][i],
            probability=d["probability"][i],
            policy=d["policy"][i],
            version=d["version"][i],
            reward=d["reward"][i],
            distribution=dist[i] or {},
        )
        for i in range(n)
    ]


def _map_dicts(maps: pa.MapArray) -> list[dict[str, float] | None]:
    """Each map as a dict (None for a null map), entries in their stored order."""
    off = maps.offsets.to_numpy().tolist()
    keys = maps.keys.to_pylist()  # the whole child arrays: `off` indexes them directly
    values = maps.items.to_numpy(zero_copy_only=False).tolist()
    valid = maps.is_valid().to_pylist()
    return [dict(zip(keys[a:b], values[a:b])) if ok else None for a, b, ok in zip(off[:-1], off[1:], valid)]


def _map_lists(column: pa.ChunkedArray) -> list[list[dict[str, float]]]:
    lists = column.combine_chunks()
    off = lists.offsets.to_numpy().tolist()
    maps = _map_dicts(lists.values)
    return [[m or {} for m in maps[a:b]] for a, b in zip(off[:-1], off[1:])]


def _read_v1(table: pa.Table) -> list[DecisionRecord]:
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
