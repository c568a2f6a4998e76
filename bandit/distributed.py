"""Batch jobs on Ray Data: offline estimates over a decision log bigger than memory, and re-embedding a
catalog's images in worker processes.

`artwork replay LOG --ray` and `artwork reembed --ray` run here. Importing this module imports no
Ray (nor torch): each function imports what it uses, so `artwork --help` stays fast.

**Replay.** LOG is one Parquet decision log or a folder of them (layout version 1 or 2, one version
for the whole folder). The rows are read by `ray.data.read_parquet` and cut into batches; each
batch, in a worker process, turns its rows into `DecisionRecord`s, keeps the rewarded rows of the
`--on` slice, asks each evaluated policy for its distribution over the logged candidates (the
policy travels as its saved file's bytes and is loaded once per worker process) and reduces the
estimators' per-row terms (`bandit.replay.Estimator.terms`: value = mean(direct) + mean(num) /
mean(den)) to sums. The driver only adds sums, so the point estimates are the local path's to
rounding. Only estimators made of per-row terms alone run: replay, IPS and SNIPS. DM, DR, SNDR and
switch-DR need the reward model cross-fitted over the whole log (L-BFGS over every row, each
iteration a full pass), which is not done here.

**Intervals.** The local path resamples rows (B multinomial draws of n rows). Here every row gets,
for each replicate b, a Poisson(1) weight that is a pure function of (seed, the row's event id, b)
(splitmix64 of a 64-bit hash of the event id: a counter-based generator), computed in the worker
that holds the row; a batch returns B weighted sums per term. The Poisson bootstrap is the
multinomial bootstrap's streaming form (the two agree as n grows; the replicate's row count varies
by about sqrt(n)), so intervals are statistically equivalent to the local path's, not identical,
and they do not depend on how the log is split into files, blocks or workers.

**Re-embedding.** The driver reads the images out of the catalog (SQLite) in chunks and puts them
in Ray's object store; actors load the encoder once each, decode, embed and tag batches of images
and send back vectors and tags; the driver alone writes the catalog, in one transaction
(`Catalog.switch_encoder`), as the local path does.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import pickle
import socket
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

    from artwork.encoder import Encoder
    from artwork.store import Catalog
    from artwork.tagging import Vocabulary
    from bandit.replay import Estimate

#: ``progress(step, done, total)``, as elsewhere in the package (total 0: unknown).
Progress = Callable[[str, float, float], None]

INSTALL_HINT = "pip install 'ray[data]>=2.9'"
#: Seconds to wait for a TCP answer from `--address` before saying it is unreachable.
CONNECT_TIMEOUT_S = 5.0
#: Rows per map_batches batch in replay.
REPLAY_BATCH_ROWS = 2048
#: Estimators made of per-row terms alone (no reward model): what --ray computes.
RAY_ESTIMATORS = ("replay", "ips", "snips")
#: What --ray does not compute, and why, in one line.
NOT_ON_RAY = ("dm", "dr", "sndr", "switch-dr")
NOT_ON_RAY_NOTE = ("dm, dr, sndr and switch-dr need the reward model cross-fitted over the whole log and are not "
                   "computed with --ray (run replay without --ray for them)")


class RayError(RuntimeError):
    """Ray is missing, or the cluster cannot be reached; the message is one line saying what to do."""


# ---------------------------------------------------------------------------------------------
# Connecting
# ---------------------------------------------------------------------------------------------


def require_ray() -> Any:
    """The `ray` module with Ray Data, or RayError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayError(f"--ray needs Ray Data, which is not importable here ({exc}); install it with "
                       f"{INSTALL_HINT}, or leave out --ray") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a cluster address (`host:port`, `ray://host:port`), None for `auto`/`local`."""
    addr = address.strip()
    if addr in ("auto", "local"):
        return None
    for prefix in ("ray://", "http://", "https://"):
        if addr.startswith(prefix):
            addr = addr[len(prefix):]
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayError(f"--address {address!r}: expected HOST:PORT of a Ray cluster (e.g. 10.0.0.5:6379, or "
                       "ray://10.0.0.5:10001 for Ray Client)")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """RayError, within `timeout` seconds, when nothing answers at `address` (Ray itself would retry
    for a minute or more before giving up)."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise RayError(f"--address {address}: no Ray cluster answers there ({why} after at most {timeout:g} s); "
                       "start one with `ray start --head` and pass the address it prints, or leave out --address "
                       "to run on a local Ray instance") from None


def connect(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = True,
            timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Make sure this process is connected to Ray; True when this call started or joined it (the
    caller then calls `ray.shutdown()` when done), False when it was connected already (that
    connection is used; an `address` given is still checked to answer).

    `address`: a cluster (`HOST:PORT`, `ray://HOST:PORT`, `auto`); None: `$RAY_ADDRESS` if set, else
    a private local instance on this machine (never a stale cluster another program left running).
    """
    ray = require_ray()
    _quiet_ray_data(ray)
    if address is not None:
        check_reachable(address, timeout)  # also when connected already: a wrong address is an error
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = dict(logging_level=logging.ERROR, log_to_driver=not quiet,
                                  ignore_reinit_error=True)
    if address is None:
        kwargs.update(address="local", include_dashboard=False, num_cpus=num_cpus)
    else:
        kwargs.update(address=address)
    try:
        ray.init(**kwargs)
    except Exception as exc:  # ConnectionError, a version mismatch, a GCS that is not Ray's
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RayError(f"could not start or join Ray{' at ' + address if address else ''}: {first}") from None
    return True


def _quiet_ray_data(ray: Any) -> None:
    """Ray Data's own progress bars and INFO lines off: our progress goes through `progress`."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    for attr in ("enable_operator_progress_bars", "print_on_execution_start"):
        if hasattr(ctx, attr):
            setattr(ctx, attr, False)
    # Errors reach the caller as exceptions (one line in the CLI); Ray's own logging of them, with
    # stack traces, and its notices would only bury that line.
    for name in ("ray.data", "ray"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


# ---------------------------------------------------------------------------------------------
# Log files
# ---------------------------------------------------------------------------------------------


@dataclass
class LogFiles:
    """The Parquet files of a decision log (a file, or every *.parquet under a folder, by name)."""

    path: str
    files: list[str]
    version: int
    rows: int  # every row, from the files' footers


def log_files(path: str | os.PathLike[str]) -> LogFiles:
    """The files of LOG with their layout version and row count (footers only: nothing is read).

    Raises DecisionLogError for a folder without Parquet files, a file that is not Parquet, a newer
    layout, or files of different layout versions.
    """
    import pyarrow.parquet as pq

    from bandit.decisions import LOG_SCHEMA_VERSION, DecisionLogError, log_version

    p = Path(path)
    # In a folder: what Ray Data's reader takes from it, every *.parquet below it whose path inside the
    # folder starts with neither "." nor "_" (temporary and marker files).
    files = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() == ".parquet"
                   and not str(f.relative_to(p)).startswith((".", "_"))) if p.is_dir() else [str(p)]
    if not files:
        raise DecisionLogError(f"{path}: a folder without *.parquet files; expected decision logs from "
                               "`artwork export-log`")
    versions: dict[int, str] = {}
    rows = 0
    for f in files:
        try:
            v = log_version(f)
            rows += pq.ParquetFile(f).metadata.num_rows
        except DecisionLogError:
            raise
        except Exception as exc:
            raise DecisionLogError(f"{f}: not a decision log in Parquet format ({exc})") from None
        if v > LOG_SCHEMA_VERSION or v < 1:
            raise DecisionLogError(f"{f}: decision log version {v}, but this build of artwork-engine reads versions "
                                   f"1 to {LOG_SCHEMA_VERSION}; upgrade it (pip install -U artwork-engine) to read "
                                   "this log")
        versions.setdefault(v, f)
    if len(versions) > 1:
        (v1, f1), (v2, f2) = sorted(versions.items())[:2]
        raise DecisionLogError(f"{path}: mixes decision log versions ({f1} is version {v1}, {f2} version {v2}); "
                               f"rewrite the old files with `artwork export-log NEW.parquet --log OLD.parquet`")
    return LogFiles(str(path), files, next(iter(versions)), rows)


def _dataset(log: LogFiles, columns: Sequence[str] | None = None) -> Any:
    import ray.data

    # One path (the file, or the folder: Ray lists it as `log_files` does), not the list of files:
    # Ray Data (2.60) resolves each path it is given on a thread of its own, each importing fsspec's
    # HTTP filesystem to ask whether the path is remote; without aiohttp installed a thread can meet
    # another's half-failed import, get ImportError instead of the ModuleNotFoundError Ray expects,
    # and fail the read (in the ListFiles task, intermittently).
    if Path(log.path).is_dir():
        ds = ray.data.read_parquet(str(Path(log.path).resolve()))
    else:
        ds = ray.data.read_parquet(str(Path(log.path).resolve()), file_extensions=None)
    return ds.select_columns(list(columns)) if columns is not None else ds


def records_from_table(table: pa.Table, version: int) -> list:
    """A batch of a Parquet decision log (`pyarrow.Table`) as DecisionRecords, as `read_parquet`
    reads a whole file."""
    from bandit import decisions as D

    if version == 1:
        return D._read_v1(table)
    n = table.num_rows
    times = D._time_floats(table.column("time"))
    features = D._map_lists(table.column("candidate_features"))
    dist = (D._map_dicts(table.column("distribution").combine_chunks()) if "distribution" in table.column_names
            else [None] * n)
    d = table.drop_columns([c for c in ("time", "candidate_features", "distribution") if c in table.column_names]
                           ).to_pydict(maps_as_pydicts="strict")
    return [D.DecisionRecord(event_id=d["event_id"][i], time=times[i], user_id=d["user_id"][i],
                             title_id=d["title_id"][i], context=D._context_dict(d["context"][i]),
                             candidates=list(d["candidates"][i]), candidate_features=features[i],
                             chosen=d["chosen"][i], probability=d["probability"][i], policy=d["policy"][i],
                             version=d["version"][i], reward=d["reward"][i], distribution=dist[i] or {})
            for i in range(n)]


def _time_keys(column: Any, version: int) -> np.ndarray:
    """Sortable times: int64 nanoseconds (version 2) or the float seconds themselves (version 1)."""
    import pyarrow as pa

    if version == 1:
        return column.to_numpy(zero_copy_only=False).astype(np.float64)
    return column.cast(pa.int64()).to_numpy(zero_copy_only=False)


def _key_seconds(key: Any, version: int) -> float:
    if version == 1:
        return float(key)
    sec = int(key) // 1_000_000_000
    return float(sec) + (int(key) - sec * 1_000_000_000) / 1e9


# ---------------------------------------------------------------------------------------------
# Which rows (--on), without holding the log
# ---------------------------------------------------------------------------------------------


@dataclass
class RowSlice:
    """`bandit.offline.Slice` as a per-row predicate: the same rows, the same words."""

    name: str
    description: str
    rows: int  # rewarded rows in the slice
    log_rows: int  # every row of the log
    rewarded: int  # rows with a reward
    cut: Any = None  # holdout: rows with a later time key are in
    cut_event: str | None = None  # holdout, ties at `cut`: rows at `cut` with event_id >= this are in
    notes: list[str] = field(default_factory=list)

    def mask(self, rewarded: np.ndarray, policy: np.ndarray, time_key: np.ndarray | None,
             event_id: np.ndarray | None) -> np.ndarray:
        """Which rows of a batch are in the slice (``rewarded``: the reward is not null)."""
        from bandit.offline import EXPLORE_POLICY

        if self.name == "explore":
            return rewarded & (policy == EXPLORE_POLICY)
        if self.name == "holdout":
            assert time_key is not None
            inside = time_key > self.cut
            at = time_key == self.cut
            if self.cut_event is None:
                inside |= at
            elif at.any():
                assert event_id is not None
                inside |= at & (event_id >= self.cut_event)
            return rewarded & inside
        return rewarded


def _scan_batch(table: pa.Table) -> dict[str, Any]:
    """Counts of one batch: rows, rewarded rows, exploration rows and the policies logged."""
    from bandit.offline import EXPLORE_POLICY

    rewarded = table.column("reward").is_valid().to_numpy(zero_copy_only=False)
    policy = np.asarray(table.column("policy").to_pylist(), dtype=object)
    got = {"rows": [table.num_rows], "rewarded": [int(rewarded.sum())],
           "explore": [int((rewarded & (policy == EXPLORE_POLICY)).sum())],
           "policies": [pickle.dumps(set(policy[rewarded].tolist()))]}
    return got


def _times_batch(table: pa.Table, version: int) -> dict[str, Any]:
    rewarded = table.column("reward").is_valid().to_numpy(zero_copy_only=False)
    keys = _time_keys(table.column("time"), version)[rewarded]
    return {"keys": [pickle.dumps(keys)]}


def _events_at_batch(table: pa.Table, version: int, cut: Any) -> dict[str, Any]:
    rewarded = table.column("reward").is_valid().to_numpy(zero_copy_only=False)
    at = rewarded & (_time_keys(table.column("time"), version) == cut)
    ids = np.asarray(table.column("event_id").to_pylist(), dtype=object)[at]
    return {"ids": [pickle.dumps(ids.tolist())]}


@dataclass
class _Failed:
    """A batch's ValueError (a bad row, a policy that cannot load), sent back as data: a Ray task's
    exception reaches the driver wrapped, its message only inside the remote traceback's text."""

    message: str


def _errors_as_data(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """`fn` (a batch function returning {"payload": [pickled]}) with its ValueError returned as `_Failed`."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            return {"payload": [pickle.dumps(_Failed(str(exc)))]}

    return wrapper


def _collect(ds: Any, column: str = "payload") -> Iterable[Any]:
    """The pickled values of `column` in every output batch; ValueError for a batch that failed."""
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        for blob in batch.column(column).to_pylist():
            got = pickle.loads(blob)
            if isinstance(got, _Failed):
                raise ValueError(got.message)
            yield got


def select_slice(log: LogFiles, on: str | None = None) -> RowSlice:
    """The rows `bandit.offline.select_rows` would pick, found in passes over the log's columns
    (reward, policy; time and event id for the holdout) instead of in memory.

    Holdout ties: when several rows share the time where the last 20% begins, the local path takes
    the last of them in file order; here the ones with the largest event ids (a file folder has no
    order), and a note says so.
    """
    from bandit.offline import HOLDOUT_SHARE, SLICES, slice_choice

    if on is not None and on not in SLICES:
        raise ValueError(f"--on must be one of {', '.join(SLICES)}; got {on!r}")
    ds = _dataset(log, ["reward", "policy"]).map_batches(_scan_batch, batch_format="pyarrow",
                                                          batch_size=None)
    n_log = rewarded = explore = 0
    policies: set[str] = set()
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        n_log += sum(batch.column("rows").to_pylist())
        rewarded += sum(batch.column("rewarded").to_pylist())
        explore += sum(batch.column("explore").to_pylist())
        for blob in batch.column("policies").to_pylist():
            policies |= pickle.loads(blob)
    if not rewarded:
        raise ValueError("the log has no decision with a reward yet; nothing to evaluate")
    on, why = slice_choice(on, explore, rewarded, policies)
    if on == "explore":
        return RowSlice("explore", f"{explore:,} rows from uniform exploration pages ({why})", explore, n_log,
                        rewarded)
    if on == "all":
        return RowSlice("all", f"all {rewarded:,} rows with a reward ({why})", rewarded, n_log, rewarded)
    take = max(1, math.ceil(HOLDOUT_SHARE * rewarded))
    times = _dataset(log, ["reward", "time"]).map_batches(_times_batch, batch_format="pyarrow", batch_size=None,
                                                         fn_kwargs={"version": log.version})
    keys = np.concatenate(list(_collect(times, "keys")))
    cut = np.partition(keys, keys.size - take)[keys.size - take]
    above = int((keys > cut).sum())
    at = int((keys == cut).sum())
    sl = RowSlice("holdout", "", take, n_log, rewarded, cut=cut.item())
    if above + at != take:  # a tie at the cut: split it by event id
        ids = _dataset(log, ["reward", "time", "event_id"]).map_batches(
            _events_at_batch, batch_format="pyarrow", batch_size=None,
            fn_kwargs={"version": log.version, "cut": cut.item()})
        at_ids = sorted(i for chunk in _collect(ids, "ids") for i in chunk)
        sl.cut_event = at_ids[len(at_ids) - (take - above)]
        sl.notes.append(f"{at:,} rows share the holdout's first time (t={_key_seconds(cut, log.version):.0f}); "
                        f"--ray keeps the {take - above:,} with the largest event ids (without --ray: the last in "
                        "the file)")
    sl.description = (f"the last {take:,} of {rewarded:,} rows by time ({HOLDOUT_SHARE:.0%}, from "
                      f"t={_key_seconds(cut, log.version):.0f}; {why})")
    return sl


# ---------------------------------------------------------------------------------------------
# Policies shipped to the workers
# ---------------------------------------------------------------------------------------------


@dataclass
class PolicySpec:
    """A policy as the workers get it: a baseline by kind, or a saved policy file's bytes.

    Each worker process loads a saved policy once (from a private copy of the bytes) and keeps it,
    so a policy file on the driver's disk need not exist on the workers' machines.
    """

    name: str
    kind: str  # "uniform" | "fixed" | "saved"
    data: bytes = b""
    suffix: str = ""
    trained: np.ndarray | None = None  # sorted event-id hashes the saved file says it learned
    trained_meta: dict | None = None

    @classmethod
    def saved(cls, name: str, path: str | os.PathLike[str]) -> PolicySpec:
        """A saved policy file (checked to load here first, so a bad file fails before any work)."""
        from bandit.lineage import trained_rows
        from bandit.registry import load_policy

        load_policy(path)
        trained = trained_rows(path)
        return cls(name, "saved", Path(path).read_bytes(), Path(path).suffix,
                   None if trained is None else np.asarray(trained[1], dtype="<u8"),
                   None if trained is None else dict(trained[0]))

    @classmethod
    def of(cls, name: str, policy: Any) -> PolicySpec:
        """An in-memory policy (e.g. thompson fitted on the driver) by way of its saved form."""
        with tempfile.TemporaryDirectory(prefix="artwork-ray-") as tmp:
            path = Path(tmp) / "policy"
            policy.save(path)
            return cls(name, "saved", path.read_bytes(), "")

    def load(self) -> Any:
        key = (self.kind, hashlib.sha256(self.data).hexdigest())
        got = _LOADED.get(key)
        if got is None:
            got = _LOADED[key] = self._load()
        return got

    def _load(self) -> Any:
        from bandit.baselines import FixedPolicy, UniformPolicy
        from bandit.registry import load_policy

        if self.kind == "uniform":
            return UniformPolicy()
        if self.kind == "fixed":
            return FixedPolicy()
        fd, tmp = tempfile.mkstemp(prefix="artwork-policy-", suffix=self.suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.data)
            return load_policy(tmp)
        finally:
            os.unlink(tmp)


#: Policies loaded in this (worker) process, by kind and content hash.
_LOADED: dict[tuple[str, str], Any] = {}


@_errors_as_data
def _thompson_rows(table: pa.Table, version: int, sl: RowSlice) -> dict[str, Any]:
    """The rewarded rows of a batch outside the slice, as pickled records (to fit thompson on)."""
    recs = records_from_table(table, version)
    rewarded = np.array([r.reward is not None for r in recs], dtype=bool)
    inside = _slice_mask(recs, rewarded, sl, version, table)
    return {"payload": [pickle.dumps([r for r, k in zip(recs, rewarded & ~inside) if k])]}


def fit_thompson(log: LogFiles, sl: RowSlice, progress: Progress | None = None) -> tuple[Any, int]:
    """ThompsonPolicy learned from the rewarded rows outside the slice (streamed to the driver), as the
    local path fits it; on every rewarded row when the slice is all of them. Returns it and the
    number of rows it learned."""
    from bandit.baselines import ThompsonPolicy

    pol = ThompsonPolicy()
    everything = sl.rows == sl.rewarded
    learned = 0
    if everything:
        sl = RowSlice("none", "", 0, sl.log_rows, sl.rewarded)  # nothing is inside: learn every rewarded row
    import ray.data

    ds = _dataset(log).map_batches(_thompson_rows, batch_format="pyarrow", batch_size=REPLAY_BATCH_ROWS,
                                   fn_kwargs={"version": log.version, "sl": sl})
    # In file order, as the local path learns them: fractional rewards then add up to the same floats,
    # and thompson's distribution (seeded by its counts) is the same to the last bit.
    options = ray.data.DataContext.get_current().execution_options
    was, options.preserve_order = options.preserve_order, True
    try:
        for recs in _collect(ds):
            learned += pol.learn_many(recs)
            if progress is not None:
                progress("thompson: learning", learned, sl.rewarded - (0 if everything else sl.rows))
    finally:
        options.preserve_order = was
    return pol, learned


def _slice_mask(recs: Sequence[Any], rewarded: np.ndarray, sl: RowSlice, version: int, table: pa.Table) -> np.ndarray:
    if sl.name == "none":
        return np.zeros(len(recs), dtype=bool)
    policy = np.asarray([r.policy for r in recs], dtype=object)
    keys = _time_keys(table.column("time"), version) if sl.name == "holdout" else None
    ids = np.asarray([r.event_id for r in recs], dtype=object) if sl.cut_event is not None else None
    return sl.mask(rewarded, policy, keys, ids)


# ---------------------------------------------------------------------------------------------
# The Poisson bootstrap, a pure function of (seed, row, replicate)
# ---------------------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
# P(X <= k) for X ~ Poisson(1), k = 0..24 (P(X > 24) < 1e-25, below a double's resolution of u).
_POISSON1_CDF = np.cumsum([math.exp(-1.0) / math.factorial(k) for k in range(25)])
#: Rows x replicates of Poisson weights drawn at once (8 MB of float64).
_BLOCK_ELEMENTS = 1_000_000


def _splitmix64(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = z ^ (z >> np.uint64(30))
        z = z * np.uint64(0xBF58476D1CE4E5B9)
        z = z ^ (z >> np.uint64(27))
        z = z * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def row_keys(event_ids: Sequence[str]) -> np.ndarray:
    """64-bit keys of rows for the bootstrap: blake2b-8 of each event id (stable across files, blocks
    and workers, unlike a position)."""
    return np.fromiter((int.from_bytes(hashlib.blake2b(e.encode(), digest_size=8).digest(), "little")
                        for e in event_ids), dtype=np.uint64, count=len(event_ids))


def poisson_weights(keys: np.ndarray, n_bootstrap: int, seed: int = 0) -> np.ndarray:
    """(n_bootstrap, len(keys)) Poisson(1) weights; entry (b, i) depends on seed, keys[i] and b only."""
    with np.errstate(over="ignore"):
        salt = _splitmix64(np.array([seed], dtype=np.uint64) + _GOLDEN)[0]
        base = _splitmix64(np.asarray(keys, dtype=np.uint64) ^ salt)
        steps = np.arange(1, n_bootstrap + 1, dtype=np.uint64) * _GOLDEN
        z = _splitmix64(base[None, :] + steps[:, None])
    u = (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return np.searchsorted(_POISSON1_CDF, u, side="right").astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Sufficient sums: what a batch sends back
# ---------------------------------------------------------------------------------------------


@dataclass
class Sums:
    """One group of rows (the whole slice, or one segment): row count, logged rewards, the range of
    propensities (is replay's uniform-log condition met?), and per (policy, estimator, part) the sum
    of the part's per-row terms and its B Poisson-weighted sums; ``weights`` are the B replicates'
    row counts (sums of weights)."""

    n: int = 0
    reward: float = 0.0
    pmin: float = math.inf
    pmax: float = -math.inf
    weights: np.ndarray | None = None
    point: dict[tuple[str, str, str], float] = field(default_factory=dict)
    boot: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)

    def add(self, other: Sums) -> None:
        self.n += other.n
        self.reward += other.reward
        self.pmin = min(self.pmin, other.pmin)
        self.pmax = max(self.pmax, other.pmax)
        self.weights = other.weights if self.weights is None else (
            self.weights if other.weights is None else self.weights + other.weights)
        for k, v in other.point.items():
            self.point[k] = self.point.get(k, 0.0) + v
        for k, v in other.boot.items():
            self.boot[k] = self.boot[k] + v if k in self.boot else v.copy()


@dataclass
class ReplayJob:
    """Everything a worker needs to turn a batch into sums."""

    version: int
    slice: RowSlice
    policies: list[PolicySpec]
    by: tuple[str, ...]
    n_bootstrap: int
    seed: int


def _label(field_name: str, value: Any) -> str:
    from bandit.learning import row_bucket
    from bandit.offline import NONE_LABEL
    from bandit.policy import hour_bucket

    if value is None:
        return NONE_LABEL
    if field_name == "hour":
        return hour_bucket(int(value))
    if field_name == "row":
        return row_bucket(int(value))
    return str(value)


@_errors_as_data
def _replay_batch(table: pa.Table, job: ReplayJob) -> dict[str, Any]:
    """One batch of log rows -> pickled {"groups": {(by, label): Sums}, "seen": ..., "rows": n, ...}."""
    from bandit.lineage import event_hash
    from bandit.replay import IPS, SNIPS, Replay, _arrays, build_inputs

    recs = records_from_table(table, job.version)
    rewarded = np.array([r.reward is not None for r in recs], dtype=bool)
    keep = _slice_mask(recs, rewarded, job.slice, job.version, table)
    rows = [r for r, k in zip(recs, keep) if k]
    out: dict[str, Any] = {"rows": table.num_rows, "groups": {}, "seen": {}, "present": set()}
    if not rows:
        return {"payload": [pickle.dumps(out, protocol=5)]}
    for r in rows:
        out["present"].update(k for k, v in r.context.items() if v not in (None, {}, []))
    width = max(len(r.candidates) for r in rows)
    action = np.array([r.candidates.index(r.chosen) if r.chosen in r.candidates else -1 for r in rows])
    if (action < 0).any():
        bad = rows[int(np.flatnonzero(action < 0)[0])]
        raise ValueError(f"logged decision {bad.event_id}: chosen artwork {bad.chosen!r} is not among its candidates "
                         f"{bad.candidates}")
    reward = np.array([float(r.reward) for r in rows])
    pscore = np.array([float(r.probability) for r in rows])
    estimators = [Replay(), IPS(), SNIPS()]
    columns: list[tuple[str, str, str]] = []
    values: list[np.ndarray] = []
    asked = [(r.user_context(), r.title_id, r.candidate_objects()) for r in rows]  # validated once, for every policy
    for spec in job.policies:
        policy = spec.load()
        dist = np.zeros((len(rows), width))
        for i, (r, (user, title, candidates)) in enumerate(zip(rows, asked)):
            d = policy.distribution(user, title, candidates)
            dist[i, :len(r.candidates)] = [d.get(a, 0.0) for a in r.candidates]
        arrays = _arrays(build_inputs(dist, action, reward, pscore))
        for est in estimators:
            terms = est.terms(arrays)
            for part in ("direct", "num", "den"):
                got = getattr(terms, part)
                if got is not None:
                    columns.append((spec.name, est.name, part))
                    values.append(np.asarray(got, dtype=np.float64))
        if spec.trained is not None:
            hashes = np.array([event_hash(r.event_id) for r in rows], dtype="<u8")
            out["seen"][spec.name] = int(np.isin(hashes, spec.trained).sum())
    terms_matrix = np.stack(values, axis=1)  # (rows, columns)
    groups: dict[tuple[str, str], np.ndarray] = {("", "all"): np.arange(len(rows))}
    for field_name in job.by:
        labels = np.array([_label(field_name, r.context.get(field_name)) for r in rows], dtype=object)
        for label in dict.fromkeys(labels.tolist()):
            groups[(field_name, label)] = np.flatnonzero(labels == label)
    keys = row_keys([r.event_id for r in rows])
    step = max(1, _BLOCK_ELEMENTS // job.n_bootstrap)
    sums = {g: Sums(n=int(idx.size), reward=float(reward[idx].sum()), pmin=float(pscore[idx].min()),
                    pmax=float(pscore[idx].max()), weights=np.zeros(job.n_bootstrap),
                    point={c: float(terms_matrix[idx, j].sum()) for j, c in enumerate(columns)},
                    boot={c: np.zeros(job.n_bootstrap) for c in columns})
            for g, idx in groups.items()}
    member = {g: np.zeros(len(rows), dtype=bool) for g in groups}
    for g, idx in groups.items():
        member[g][idx] = True
    for start in range(0, len(rows), step):
        stop = min(start + step, len(rows))
        w = poisson_weights(keys[start:stop], job.n_bootstrap, job.seed)  # (B, m)
        block = terms_matrix[start:stop]
        for g, s in sums.items():
            inside = member[g][start:stop]
            if not inside.any():
                continue
            wg = w[:, inside] if not inside.all() else w
            s.weights += wg.sum(axis=1)
            weighted = wg @ block[inside]  # (B, columns)
            for j, c in enumerate(columns):
                s.boot[c] += weighted[:, j]
    out["groups"] = sums
    return {"payload": [pickle.dumps(out, protocol=5)]}


# ---------------------------------------------------------------------------------------------
# The driver: combine and turn sums into estimates
# ---------------------------------------------------------------------------------------------


@dataclass
class RayReplay:
    """What `replay_on_ray` found: per policy its estimates on the slice, per segment field and label
    per policy its estimates there (as the local replay's `results` and `segs`), and more."""

    results: dict[str, list[Estimate]]
    segments: dict[str, dict[str, dict[str, list[Estimate]]]]
    rows: int
    logged_click_rate: float
    seen: dict[str, int]  # policy name -> rows of the slice its training record says it learned
    batches: int


def _estimates(s: Sums, policies: Sequence[str], level: float) -> dict[str, list[Estimate]]:
    from bandit.replay import Estimate, _percentiles, _ratio

    uniform = s.pmax - s.pmin <= 1e-9 * s.pmin
    out: dict[str, list[Estimate]] = {}
    w = s.weights if s.weights is not None else np.zeros(0)
    for name in policies:
        ests = []
        for est in RAY_ESTIMATORS:
            if est == "replay" and not uniform:
                continue
            value = 0.0
            boot = np.zeros_like(w)
            with np.errstate(divide="ignore", invalid="ignore"):
                if (name, est, "direct") in s.point:
                    value += s.point[(name, est, "direct")] / s.n
                    boot = boot + s.boot[(name, est, "direct")] / w
                if (name, est, "num") in s.point:
                    num, bnum = s.point[(name, est, "num")] / s.n, s.boot[(name, est, "num")] / w
                    if (name, est, "den") in s.point:
                        den, bden = s.point[(name, est, "den")] / s.n, s.boot[(name, est, "den")] / w
                        value += float(_ratio(np.array(num), np.array(den)))
                        boot = boot + _ratio(bnum, bden)
                    else:
                        value += num
                        boot = boot + bnum
            boot = np.where(w > 0, boot, np.nan)
            ests.append(Estimate(est, float(value), *_percentiles(boot, level), s.n, level))
        out[name] = ests
    return out


def _check_by(by: Sequence[str]) -> None:
    bad = [b for b in by if b not in ("device", "country", "hour", "row")]
    if bad:
        raise ValueError(f"--by {bad[0]} is not available with --ray (taste clusters are k-means over the whole "
                         "log); use device, country, hour or row, or run without --ray")


def replay_on_ray(log: LogFiles, sl: RowSlice, policies: Sequence[PolicySpec], *, by: Sequence[str] = (),
                  n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0, min_segment_rows: int = 2,
                  progress: Progress | None = None, batch_rows: int = REPLAY_BATCH_ROWS) -> RayReplay:
    """Replay, IPS and SNIPS of each policy on the slice's rows, with Poisson-bootstrap intervals,
    computed by Ray Data map_batches; per segment of each `by` field too (device, country, hour, row:
    labelled per row; taste clusters need k-means over the whole log and are refused).

    Raises ValueError for what the local path refuses (a distribution that does not sum to 1, a
    chosen artwork missing from its candidates, a `by` field no context has).
    """
    from bandit.replay import _check_bootstrap

    _check_bootstrap(n_bootstrap, level)
    _check_by(by)
    job = ReplayJob(log.version, sl, list(policies), tuple(by), n_bootstrap, seed)
    ds = _dataset(log).map_batches(_replay_batch, batch_format="pyarrow", batch_size=batch_rows,
                                   fn_kwargs={"job": job})
    total: dict[tuple[str, str], Sums] = {}
    seen: dict[str, int] = {}
    present: set[str] = set()
    done = batches = 0
    for part in _collect(ds):
        batches += 1
        done += part["rows"]
        present |= part["present"]
        for g, s in part["groups"].items():
            total.setdefault(g, Sums()).add(s)
        for name, k in part["seen"].items():
            seen[name] = seen.get(name, 0) + k
        if progress is not None:
            progress("replay on ray: rows", done, log.rows)
    names = [p.name for p in policies]
    whole = total.get(("", "all"))
    if whole is None or whole.n == 0:
        raise ValueError("no row of the log is in the slice to evaluate")
    segs: dict[str, dict[str, dict[str, list[Estimate]]]] = {}
    for field_name in by:
        groups = {label: s for (f, label), s in total.items() if f == field_name}
        from bandit.offline import NONE_LABEL

        if set(groups) <= {NONE_LABEL}:
            raise ValueError(f"--by {field_name}: no logged context has a {field_name}; the contexts carry "
                             f"{', '.join(sorted(present)) or 'nothing'}")
        ordered = sorted(groups.items(), key=lambda kv: (-kv[1].n, kv[0]))
        segs[field_name] = {label: _estimates(s, names, level) for label, s in ordered if s.n >= min_segment_rows}
    return RayReplay(_estimates(whole, names, level), segs, whole.n, whole.reward / whole.n, seen, batches)


# ---------------------------------------------------------------------------------------------
# Re-embedding a catalog
# ---------------------------------------------------------------------------------------------

#: Images per object-store chunk the driver puts (it holds one chunk of bytes at a time).
REEMBED_CHUNK = 256


class _Embedder:
    """A Ray Data actor: the encoder and tagger loaded once, then batches of images embedded and tagged."""

    def __init__(self, factory: Callable[[], Encoder], vocab: Vocabulary):
        from artwork.tagging import ZeroShotTagger

        # A worker that cannot load the encoder (weights not on its machine) says so in its output: an
        # actor that fails to start would only reach the driver as a retried, wrapped ActorDiedError.
        self.error = ""
        try:
            self.encoder = factory()
            self.tagger = ZeroShotTagger(self.encoder, vocab)
        except Exception as exc:
            self.error = f"a Ray worker could not load the encoder: {type(exc).__name__}: {exc}"

    def __call__(self, batch: pa.Table) -> dict[str, Any]:
        import json

        from artwork.images import ImageLimits, load_image

        shas = batch.column("sha256").to_pylist()
        if self.error:
            return {"sha256": shas, "vector": [b""] * len(shas), "tags": [""] * len(shas),
                    "encoder_id": [""] * len(shas), "error": [self.error] * len(shas)}
        try:
            images = [load_image(data, sha, ImageLimits(min_side=1)).image
                      for sha, data in zip(shas, batch.column("data").to_pylist())]
        except ValueError as exc:  # ImageRejected: a stored image that no longer decodes
            return {"sha256": shas, "vector": [b""] * len(shas), "tags": [""] * len(shas),
                    "encoder_id": [""] * len(shas), "error": [str(exc)] * len(shas)}
        vectors = self.encoder.embed_images(images, batch_size=max(1, len(images)))
        tags = self.tagger.tag(vectors) if len(images) else []
        return {"sha256": shas, "vector": [np.asarray(v, dtype=np.float32).tobytes() for v in vectors],
                "tags": [json.dumps(t) for t in tags], "encoder_id": [self.encoder.encoder_id] * len(shas),
                "error": [""] * len(shas)}


def embed_on_ray(images: Iterable[tuple[str, bytes]], total: int, factory: Callable[[], Encoder],
                 vocab: Vocabulary, *, batch_size: int = 32, workers: int | None = None,
                 progress: Progress | None = None) -> tuple[str, dict[str, np.ndarray], dict[str, dict]]:
    """(encoder id, sha256 -> unit vector, sha256 -> tags) of (sha256, bytes) images, embedded and tagged
    by Ray Data actors that each call `factory()` once (a picklable zero-argument callable, e.g.
    ``functools.partial(load_encoder, model=...)``: the model itself never travels)."""
    import json

    import pyarrow as pa
    import ray
    import ray.data

    refs = []
    chunk: list[tuple[str, bytes]] = []
    for item in images:
        chunk.append(item)
        if len(chunk) == REEMBED_CHUNK:
            refs.append(ray.put(pa.table({"sha256": [s for s, _ in chunk], "data": [d for _, d in chunk]})))
            chunk = []
    if chunk:
        refs.append(ray.put(pa.table({"sha256": [s for s, _ in chunk], "data": [d for _, d in chunk]})))
    if not refs:
        return "", {}, {}
    cpus = int(ray.available_resources().get("CPU", 1)) or 1
    n_actors = max(1, min(workers or cpus, math.ceil(total / batch_size)))
    with warnings.catch_warnings():
        # max_restarts=0: an actor that dies fails the job (rerun it) instead of being restarted, which
        # Ray (2.60) otherwise warns cannot work with constructor arguments in the object store; the
        # keyword is what Ray Data documents for it, though **ray_remote_args are marked deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = ray.data.from_arrow_refs(refs).map_batches(
            _Embedder, batch_format="pyarrow", batch_size=batch_size, concurrency=n_actors, num_cpus=1,
            max_restarts=0, fn_constructor_kwargs={"factory": factory, "vocab": vocab})
    vectors: dict[str, np.ndarray] = {}
    tags: dict[str, dict] = {}
    ids: set[str] = set()
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        for sha, vec, tag, enc, error in zip(*(batch.column(c).to_pylist()
                                               for c in ("sha256", "vector", "tags", "encoder_id", "error"))):
            if error:
                raise ValueError(error)
            vectors[sha] = np.frombuffer(vec, dtype=np.float32).copy()
            tags[sha] = json.loads(tag)
            ids.add(enc)
        if progress is not None:
            progress("re-embed on ray", len(vectors), total)
    if len(ids) != 1:
        raise ValueError(f"the workers loaded different encoders ({', '.join(sorted(ids))}); expected one")
    return ids.pop(), vectors, tags


def reembed_catalog_on_ray(catalog: Catalog, factory: Callable[[], Encoder], encoder_id: str, *,
                           vocab: Vocabulary | None = None, batch_size: int = 32, workers: int | None = None,
                           progress: Progress | None = None) -> int:
    """`Ingestor.reembed_catalog` with the embedding and tagging in Ray Data actors: every stored image
    embedded and tagged with the encoder `factory()` builds (whose id must be `encoder_id`, the one
    the driver loaded), then the catalog switched to it in one transaction, by this process alone.
    Returns the number of images."""
    from artwork.store import StoreError
    from artwork.tagging import load_vocabulary

    vocab = vocab or load_vocabulary()
    hashes = catalog.all_image_hashes()
    got_id, vectors, tags = embed_on_ray(((h, catalog.blob(h)) for h in hashes), len(hashes), factory, vocab,
                                         batch_size=batch_size, workers=workers, progress=progress)
    if hashes and got_id != encoder_id:
        raise StoreError(f"the Ray workers loaded encoder {got_id}, not {encoder_id}: give the workers the same "
                         "weights (a checkpoint path they can read, or the same cache)")
    catalog.switch_encoder(encoder_id, vectors, tags, vocab.key)
    return len(hashes)


# ---------------------------------------------------------------------------------------------
# `artwork replay LOG --ray`
# ---------------------------------------------------------------------------------------------


def run_replay(log: str, specs: Sequence[str], *, on: str | None = None, by: Sequence[str] = (),
               n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0, address: str | None = None,
               progress: Progress | None = None, warn: Callable[[str], None] = print,
               note: Callable[[str], None] = print) -> tuple[dict, dict, dict[str, Any], str]:
    """What `artwork replay LOG --ray` computes: (results, segments, fields for the JSON document,
    header line), in the shapes the local replay prints. Policies as `--policy` names them (uniform,
    fixed, thompson: fitted on the rewarded rows outside the slice, or a saved policy file), with
    the local path's warnings (`warn`) and notes (`note`). Connects to Ray (RayError when it cannot)
    and leaves it as it found it."""
    _check_by(by)
    log_info = log_files(log)  # a bad log fails before Ray starts
    with contextlib.redirect_stdout(sys.stderr):  # Ray prints raylet notices to stdout: results only there
        started = connect(address)
        try:
            return _run_replay(log, log_info, specs, on=on, by=by, n_bootstrap=n_bootstrap, level=level, seed=seed,
                               progress=progress, warn=warn, note=note)
        finally:
            if started:
                import ray

                ray.shutdown()


def _run_replay(log: str, log_info: LogFiles, specs: Sequence[str], *, on: str | None, by: Sequence[str],
                n_bootstrap: int, level: float, seed: int, progress: Progress | None, warn: Callable[[str], None],
                note: Callable[[str], None]) -> tuple[dict, dict, dict[str, Any], str]:
    if progress is not None:
        progress("ray: which rows (--on)", 0, 0)
    sl = select_slice(log_info, on)
    for line in sl.notes:
        note(f"note: {line}")
    named: list[PolicySpec] = []
    for spec in specs:
        if spec in ("uniform", "fixed"):
            named.append(PolicySpec(spec, spec))
        elif spec == "thompson":
            pol, learned = fit_thompson(log_info, sl, progress)
            if sl.rows == sl.rewarded:
                named.append(PolicySpec.of("thompson (fit on this log)", pol))
                warn(f"thompson was fitted on the same {sl.rows:,} rows it is evaluated on: its estimates are "
                     "optimistic (use --on explore or --on holdout)")
            else:
                named.append(PolicySpec.of(f"thompson (fit on {sl.rewarded - sl.rows:,} rows outside the slice)",
                                           pol))
        else:
            got = PolicySpec.saved(Path(spec).name, spec)
            named.append(got)
            if got.trained is None:
                note(f"note: {spec} does not record which rows it learned (only `artwork train` records them): "
                     "if it learned from this log, its estimates are optimistic")
    result = replay_on_ray(log_info, sl, named, by=by, n_bootstrap=n_bootstrap, level=level, seed=seed,
                           progress=progress)
    for spec in named:
        seen = result.seen.get(spec.name, 0)
        if spec.trained is not None and seen:
            meta = spec.trained_meta or {}
            rows = meta.get("rows")
            warn(f"{spec.name} learned {seen:,} of the {sl.rows:,} rows evaluated here (trained on {meta.get('log')}, "
                 f"{rows:,} rows): it is graded on clicks it has seen, so its estimates are optimistic. Evaluate it "
                 "on rows it did not learn: `artwork train --holdout` then `--on holdout`, or another log"
                 if isinstance(rows, int) else
                 f"{spec.name} learned {seen:,} of the {sl.rows:,} rows evaluated here: its estimates are optimistic")
    note(f"note: {NOT_ON_RAY_NOTE}")
    doc = {"rows": result.rows, "log_rows": sl.log_rows, "logged_click_rate": result.logged_click_rate,
           "on": sl.name, "on_description": sl.description, "engine": "ray",
           "files": len(log_info.files), "not_available": list(NOT_ON_RAY),
           "interval": "Poisson bootstrap (per-row weights seeded by event id)"}
    header = (f"{log}: {sl.log_rows} decisions; evaluated on {sl.description}; logged click rate "
              f"{result.logged_click_rate:.4f}")
    return result.results, result.segments, doc, header
