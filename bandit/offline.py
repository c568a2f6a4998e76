"""Offline evaluation of policies on a decision log: log + policy → estimator inputs → estimates.

The estimators themselves live in `bandit.replay` (pure formulas on arrays); this module turns
our own `DecisionRecord` logs into those arrays: the target policy's probability for every
logged candidate, and a reward model's q(x, a) cross-fitted on the log (each half of the log is
scored by a model fitted on the other half, so DM/DR do not grade rows the model memorised).
It also picks the rows to evaluate on (`select_rows`: the exploration slice, a time holdout or
all), cuts them into segments (`segment_labels`) and compares two policies on one log with a
paired bootstrap (`compare_log`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from bandit.decisions import DecisionRecord
from bandit.learning import LogTables, Progress, cross_fit_q, row_bucket
from bandit.policy import Policy, hour_bucket
from bandit.replay import Comparison, Estimate, OPEInputs, build_inputs, compare_policies, evaluate_policy


@dataclass
class LogArrays:
    """A decision log as arrays, one row per rewarded decision, candidates padded to the largest set.

    Column j of a row is its j-th logged candidate (``records[i].candidates[j]``), so the action
    space is per row: what `bandit.replay.build_inputs` takes with a target policy's ``(n, k)``
    probabilities laid out the same way (zero on padding).
    """

    action: np.ndarray  # (n,) index of the chosen artwork among the row's candidates
    reward: np.ndarray  # (n,)
    pscore: np.ndarray  # (n,) the logging policy's probability of the chosen artwork
    q_hat: np.ndarray | None  # (n, k) cross-fitted reward model per candidate, 0 on padding; None: not fitted
    mask: np.ndarray  # (n, k) True where a candidate exists
    logged: np.ndarray | None = None  # (n, k) the logging policy's whole distribution; None: a log without it


def records_to_arrays(records: Sequence[DecisionRecord], *, reward_model: bool = True, l2: float = 1.0,
                      folds: int = 2, seed: int = 0, progress: Progress | None = None) -> LogArrays:
    """The rewarded decisions of a log as the arrays every estimator reads (`LogArrays`).

    Rows without a reward yet are left out, in order otherwise. With ``reward_model`` (the default)
    ``q_hat`` is the DM/DR reward model, cross-fitted over ``folds`` (each part scored by a model
    fitted on the others, ``seed`` splitting them; ``l2`` its ridge); without it ``q_hat`` is None
    and only the model-free estimators (IPS, SNIPS, replay) run, in milliseconds. Raises ValueError
    for a log with too few rewarded rows, or a decision whose chosen artwork is not among its
    candidates.
    """
    recs = [r for r in records if r.reward is not None]
    need = 2 * folds if reward_model else 1
    if len(recs) < need:
        raise ValueError(f"the log has {len(recs)} decisions with a reward; offline evaluation needs at least "
                         f"{need}")
    tables = LogTables.from_records(recs)
    q = cross_fit_q(tables, folds=folds, seed=seed, l2=l2, progress=progress).q if reward_model else None
    logged = None
    if all(r.distribution for r in recs):
        logged = np.zeros(tables.slots.shape)
        for i, r in enumerate(recs):
            logged[i, :len(r.candidates)] = [r.distribution.get(a, 0.0) for a in r.candidates]
    return LogArrays(action=tables.chosen, reward=tables.reward, pscore=np.array([r.probability for r in recs]),
                     q_hat=q, mask=tables.slots >= 0, logged=logged)


def log_arrays(records: Sequence[DecisionRecord], l2: float = 1.0, folds: int = 2, seed: int = 0,
               progress: Progress | None = None) -> LogArrays:
    """`records_to_arrays` with the reward model (the name the commands have always used)."""
    return records_to_arrays(records, l2=l2, folds=folds, seed=seed, progress=progress)


def target_distribution(policy: Policy, records: Sequence[DecisionRecord], k: int,
                        progress: Progress | None = None, step: str = "target policy") -> np.ndarray:
    """(n, k) probabilities the target policy gives each logged candidate (rewarded rows only)."""
    recs = [r for r in records if r.reward is not None]
    dist = np.zeros((len(recs), k))
    report = progress or _no_progress
    every = max(1, len(recs) // 100)
    for i, r in enumerate(recs):
        d = policy.distribution(r.user_context(), r.title_id, r.candidate_objects())
        dist[i, :len(r.candidates)] = [d.get(a, 0.0) for a in r.candidates]
        if i % every == 0:
            report(step, i, len(recs))
    report(step, len(recs), len(recs))
    return dist


def _no_progress(step: str, done: float, total: float) -> None:
    return None


def policy_inputs(policy: Policy, records: Sequence[DecisionRecord], arrays: LogArrays,
                  progress: Progress | None = None, step: str = "target policy") -> OPEInputs:
    """Estimator inputs for one target policy on one log."""
    dist = target_distribution(policy, records, arrays.mask.shape[1], progress, step)
    return build_inputs(dist, arrays.action, arrays.reward, arrays.pscore, q_hat=arrays.q_hat)


def evaluate_log(records: Sequence[DecisionRecord], policies: Mapping[str, Policy], n_bootstrap: int = 1000,
                 level: float = 0.95, seed: int = 0, progress: Progress | None = None) -> dict[str, list[Estimate]]:
    """Every applicable estimator for every policy on one log."""
    arrays = log_arrays(records, progress=progress)
    return {name: evaluate_policy(policy_inputs(p, records, arrays, progress, f"{name}: probabilities"),
                                  n_bootstrap=n_bootstrap, level=level, seed=seed, progress=progress)
            for name, p in policies.items()}


# ---------------------------------------------------------------------------------------------
# Which rows to evaluate on
# ---------------------------------------------------------------------------------------------

#: What `--on` accepts: the uniform exploration slice, the last 20% by time, or every row.
SLICES = ("explore", "holdout", "all")
HOLDOUT_SHARE = 0.2
#: The exploration slice is the default only when it is big enough to say something.
MIN_EXPLORE_ROWS = 200
#: The engine's exploration pages are served by `UniformPolicy`, whose decisions log this name.
EXPLORE_POLICY = "uniform"


@dataclass
class Slice:
    """The rows an evaluation runs on, and in words which and why."""

    name: str
    records: list[DecisionRecord]
    description: str


def _rewarded(records: Sequence[DecisionRecord]) -> list[DecisionRecord]:
    return [r for r in records if r.reward is not None]


def slice_choice(on: str | None, n_explore: int, n_rewarded: int, policies: set[str]) -> tuple[str, str]:
    """Which slice `--on` means for a log with these counts, and why (for the description): the
    one rule `select_rows` and the Ray path (`bandit.distributed`) share. Raises ValueError for
    `explore` on a log without exploration rows."""
    if on is None:
        on = "explore" if n_explore >= min(MIN_EXPLORE_ROWS, n_rewarded) else "holdout"
        why = ("the default when the log has an exploration slice" if on == "explore" else
               f"the default: only {n_explore:,} rows come from exploration pages, fewer than {MIN_EXPLORE_ROWS}")
    else:
        why = "--on " + on
    if on == "explore" and not n_explore:
        raise ValueError(f"--on explore: no row of the log comes from a uniform exploration page (policy "
                         f"{EXPLORE_POLICY!r}); the log's policies are {', '.join(sorted(policies))}. Serve with "
                         "--explore-share to log one, or use --on holdout")
    return on, why


def select_rows(records: Sequence[DecisionRecord], on: str | None = None) -> Slice:
    """The rewarded rows to evaluate on.

    explore: decisions served on the engine's uniform exploration pages (`--explore-share`; they
    log policy "uniform"), where every candidate had support: the demo's own method.  holdout:
    the last 20% of decisions by time, so a policy trained on the first 80% is not graded on what
    it learned.  all: every rewarded row (optimistic for any policy trained on this log).
    None picks explore when the log has at least `MIN_EXPLORE_ROWS` exploration rows (or is
    uniform throughout), else holdout.
    """
    if on is not None and on not in SLICES:
        raise ValueError(f"--on must be one of {', '.join(SLICES)}; got {on!r}")
    rows = _rewarded(records)
    if not rows:
        raise ValueError("the log has no decision with a reward yet; nothing to evaluate")
    explore = [r for r in rows if r.policy == EXPLORE_POLICY]
    on, why = slice_choice(on, len(explore), len(rows), {r.policy for r in rows})
    if on == "explore":
        return Slice("explore", explore, f"{len(explore):,} rows from uniform exploration pages ({why})")
    if on == "holdout":
        ordered = sorted(range(len(rows)), key=lambda i: rows[i].time)
        take = max(1, math.ceil(HOLDOUT_SHARE * len(rows)))
        held = [rows[i] for i in sorted(ordered[-take:])]
        since = min(r.time for r in held)
        return Slice("holdout", held, f"the last {take:,} of {len(rows):,} rows by time "
                                      f"({HOLDOUT_SHARE:.0%}, from t={since:.0f}; {why})")
    return Slice("all", rows, f"all {len(rows):,} rows with a reward ({why})")


# ---------------------------------------------------------------------------------------------
# Segments
# ---------------------------------------------------------------------------------------------

#: What `--by` accepts; each is read from the logged context.
SEGMENT_FIELDS = ("device", "country", "hour", "row", "taste-cluster")
NONE_LABEL = "(none)"


def segment_labels(records: Sequence[DecisionRecord], by: str, clusters: int = 3, seed: int = 0) -> list[str]:
    """One label per record: its segment by ``by``.

    hour and row are bucketed as the policy sees them (night/morning/afternoon/evening; rows
    0..4, 5+); taste-cluster is k-means (scikit-learn, seeded) over the taste vectors, each
    cluster named by its strongest keys, and a context without taste is its own segment.
    """
    if by not in SEGMENT_FIELDS:
        raise ValueError(f"--by must be one of {', '.join(SEGMENT_FIELDS)}; got {by!r}")
    if by == "taste-cluster":
        return _taste_clusters(records, clusters, seed)
    field_name = by
    values = [r.context.get(field_name) for r in records]
    if all(v is None for v in values):
        present = sorted({k for r in records for k, v in r.context.items() if v not in (None, {}, [])})
        raise ValueError(f"--by {by}: no logged context has a {field_name}; the contexts carry "
                         f"{', '.join(present) or 'nothing'}")
    if by == "hour":
        return [NONE_LABEL if v is None else hour_bucket(int(v)) for v in values]
    if by == "row":
        return [NONE_LABEL if v is None else row_bucket(int(v)) for v in values]
    return [NONE_LABEL if v is None else str(v) for v in values]


def _taste_clusters(records: Sequence[DecisionRecord], clusters: int, seed: int) -> list[str]:
    from sklearn.cluster import KMeans

    if clusters < 1:
        raise ValueError(f"--clusters must be at least 1; got {clusters}")
    tastes = [r.context.get("taste") or {} for r in records]
    keys = sorted({k for t in tastes for k in t})
    has = np.array([bool(t) for t in tastes])
    if not has.any():
        raise ValueError("--by taste-cluster: no logged context has a taste")
    col = {k: j for j, k in enumerate(keys)}
    x = np.zeros((int(has.sum()), len(keys)))
    for i, t in enumerate(t for t in tastes if t):
        for k, v in t.items():
            x[i, col[k]] = v
    k = min(clusters, len(np.unique(x, axis=0)))
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)
    names = []
    for j, centre in enumerate(km.cluster_centers_):
        top = [keys[i] for i in np.argsort(-centre)[:2] if centre[i] > 0]
        names.append(f"taste {j + 1}: {' + '.join(top) if top else 'low on every key'}")
    labels = iter(km.labels_)
    return [names[next(labels)] if h else "no taste" for h in has]


def segments(labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Row indexes per segment label, largest segment first."""
    arr = np.asarray(labels, dtype=object)
    out = {str(v): np.flatnonzero(arr == v) for v in set(labels)}
    return dict(sorted(out.items(), key=lambda kv: (-kv[1].size, kv[0])))


# ---------------------------------------------------------------------------------------------
# Two policies on one log
# ---------------------------------------------------------------------------------------------


@dataclass
class SegmentComparison:
    """`compare_policies` on one segment of the log (``segment`` "all" for the whole slice)."""

    by: str | None
    segment: str
    n: int
    results: list[Comparison]


def compare_log(records: Sequence[DecisionRecord], a: Policy, b: Policy, *, by: Sequence[str] = (),
                clusters: int = 3, n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0,
                min_segment_rows: int = 30, progress: Progress | None = None,
                names: tuple[str, str] = ("A", "B")) -> list[SegmentComparison]:
    """Policies ``a`` and ``b`` on the rewarded rows of ``records``: their estimates and the
    paired difference ``a - b``, on the whole log and on each segment of each field in ``by``.

    One cross-fitted reward model serves both policies and every segment; each segment is
    bootstrapped within itself.  A segment with fewer than ``min_segment_rows`` rows is left
    out (its interval would say nothing).
    """
    rows = _rewarded(records)
    arrays = log_arrays(rows, progress=progress)
    ia = policy_inputs(a, rows, arrays, progress, f"{names[0]}: probabilities")
    ib = policy_inputs(b, rows, arrays, progress, f"{names[1]}: probabilities")
    report = progress or _no_progress
    out = [SegmentComparison(None, "all", ia.n, compare_policies(ia, ib, n_bootstrap=n_bootstrap, level=level,
                                                                  seed=seed, progress=progress))]
    for field_name in by:
        labels = segment_labels(rows, field_name, clusters=clusters, seed=seed)
        groups = segments(labels)
        for g, (label, idx) in enumerate(groups.items()):
            report(f"segments by {field_name}", g, len(groups))
            if idx.size < max(min_segment_rows, 2):
                continue
            sa, sb = ia.take(idx), ib.take(idx)
            out.append(SegmentComparison(field_name, label, int(idx.size),
                                         compare_policies(sa, sb, n_bootstrap=n_bootstrap, level=level, seed=seed)))
        report(f"segments by {field_name}", len(groups), len(groups))
    return out


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


def comparison_rows(result: Sequence[SegmentComparison]) -> list[dict[str, object]]:
    """One flat record per (segment, estimator): what --json and --csv print."""
    rows: list[dict[str, object]] = []
    for seg in result:
        for c in seg.results:
            rows.append({"by": seg.by or "", "segment": seg.segment, "n": seg.n, "estimator": c.name,
                         "a": _num(c.a.value), "a_low": _num(c.a.low), "a_high": _num(c.a.high),
                         "b": _num(c.b.value), "b_low": _num(c.b.low), "b_high": _num(c.b.high),
                         "diff": _num(c.diff.value), "diff_low": _num(c.diff.low), "diff_high": _num(c.diff.high),
                         "level": c.diff.level, "paired": c.paired})
    return rows


def verdict(c: Comparison) -> str:
    """"A" or "B" when the difference's interval excludes 0 (that policy is better), else "-"."""
    if c.diff.low > 0:
        return "A"
    if c.diff.high < 0:
        return "B"
    return "-"


def format_comparisons(result: Sequence[SegmentComparison], level: float = 0.95) -> str:
    """Plain-text table: segment, rows, estimator, A, B and A - B, each with its interval."""
    head = ("segment", "rows", "estimator", "A", "B", f"A - B ({level:.0%} paired CI)", "better")
    lines = []
    for seg in result:
        label = "all" if seg.by is None else f"{seg.by}={seg.segment}"
        for c in seg.results:
            lines.append((label, f"{seg.n:,}", c.name, f"{c.a.value:.4f} [{c.a.low:.4f}, {c.a.high:.4f}]",
                          f"{c.b.value:.4f} [{c.b.low:.4f}, {c.b.high:.4f}]",
                          f"{c.diff.value:+.4f} [{c.diff.low:+.4f}, {c.diff.high:+.4f}]", verdict(c)))
            label = ""  # the segment's name once, on its first estimator
    widths = [max(len(x[k]) for x in [head, *lines]) for k in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if k in (0, 2) else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *(line(x) for x in lines)])


# ---------------------------------------------------------------------------------------------
# An online A/B test (serve --ab): the arms' own decisions, resampled by user
# ---------------------------------------------------------------------------------------------

#: How a split's arms name their decisions (bandit.split.ARM_PREFIXES), spelled out so that this
#: module does not import the policies.
ARM_PREFIXES = {"A": "A:", "B": "B:"}


@dataclass
class ArmResult:
    """One arm on one segment: its own decisions with a reward, and their click rate."""

    arm: str  # "A" | "B"
    policies: list[str]  # the names its decisions logged ("A:bayes-ts")
    decisions: int  # with a reward
    users: int
    rate: float  # mean reward over its decisions with a reward
    low: float
    high: float


@dataclass
class OnlineComparison:
    """B - A on one segment: the online difference (users resampled) and, when the log has an
    exploration slice and the arms' policies are given, the offline estimate of the same difference."""

    by: str | None
    segment: str
    a: ArmResult
    b: ArmResult
    diff: float
    low: float
    high: float
    level: float
    offline: Comparison | None = None  # B - A by the offline estimator on the exploration slice


def arm_of_record(policy: str) -> str | None:
    """"A" / "B" for a decision an A/B arm served, None for any other (exploration pages, before the split)."""
    for arm, prefix in ARM_PREFIXES.items():
        if policy.startswith(prefix):
            return arm
    return None


def _per_user(rows: Sequence[DecisionRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(reward sum, decisions) per user, users in first-seen order."""
    index: dict[str, int] = {}
    sums: list[float] = []
    counts: list[int] = []
    for r in rows:
        i = index.setdefault(r.user_id, len(index))
        if i == len(sums):
            sums.append(0.0)
            counts.append(0)
        sums[i] += float(r.reward)  # type: ignore[arg-type]
        counts[i] += 1
    return np.array(sums), np.array(counts, dtype=float)


def _boot_rates(sums: np.ndarray, counts: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """The arm's rate on `n_bootstrap` resamples of its users (with replacement): the user, not the
    decision, is what was randomised, and one user's decisions are not independent."""
    users = sums.size
    out = np.empty(n_bootstrap)
    chunk = max(1, min(n_bootstrap, 20_000_000 // max(users, 1)))
    for start in range(0, n_bootstrap, chunk):
        k = min(chunk, n_bootstrap - start)
        idx = rng.integers(0, users, size=(k, users))
        out[start:start + k] = sums[idx].sum(axis=1) / np.maximum(counts[idx].sum(axis=1), 1.0)
    return out


def _arm_result(arm: str, rows: Sequence[DecisionRecord], boot: np.ndarray, level: float) -> ArmResult:
    lo, hi = np.quantile(boot, [(1 - level) / 2, 1 - (1 - level) / 2])
    return ArmResult(arm, sorted({r.policy for r in rows}), len(rows), len({r.user_id for r in rows}),
                     float(np.mean([float(r.reward) for r in rows])), float(lo), float(hi))  # type: ignore[arg-type]


def compare_online(records: Sequence[DecisionRecord], *, by: Sequence[str] = (), clusters: int = 3,
                   n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0, min_segment_rows: int = 30,
                   policies: tuple[Policy, Policy] | None = None, estimator: str = "dr",
                   progress: Progress | None = None) -> list[OnlineComparison]:
    """The online difference B - A of an A/B split's arms on a decision log, whole and per segment.

    Each arm's click rate is over the decisions it served (policy "A:..." / "B:...") that have a
    reward; the interval resamples each arm's users with replacement (`n_bootstrap` times, each
    arm on its own: their users are disjoint). With `policies` (arm A's and arm B's policy) and an
    exploration slice in the log, each segment also gets the offline estimate of B - A on that
    slice (`compare_log`, the named `estimator`). Raises ValueError for a log with no A/B decision.
    """
    rows = [r for r in _rewarded(records) if arm_of_record(r.policy) is not None]
    if not rows:
        names = sorted({r.policy for r in records})
        raise ValueError("the log has no rewarded decision served by an A/B split (policy names 'A:...' and "
                         f"'B:...'; serve with --ab); its policies are {', '.join(names) or 'none'}")
    arms = np.array([arm_of_record(r.policy) for r in rows])
    missing = [a for a in ARM_PREFIXES if not (arms == a).any()]
    if missing:
        raise ValueError(f"the log has no rewarded decision of arm {missing[0]} (policy names "
                         f"'{ARM_PREFIXES[missing[0]]}...'): nothing to compare yet")
    rng = np.random.default_rng(seed)
    offline: dict[tuple[str | None, str], Comparison] = {}
    explore = [r for r in _rewarded(records) if r.policy == EXPLORE_POLICY]
    if policies is not None and len(explore) >= 4:
        for seg in compare_log(explore, policies[1], policies[0], by=by, clusters=clusters, n_bootstrap=n_bootstrap,
                               level=level, seed=seed, min_segment_rows=min_segment_rows, progress=progress,
                               names=("B", "A")):
            got = next((c for c in seg.results if c.name == estimator), None)
            if got is not None:
                offline[(seg.by, seg.segment)] = got
    groups: list[tuple[str | None, str, np.ndarray]] = [(None, "all", np.arange(len(rows)))]
    for field_name in by:
        for label, idx in segments(segment_labels(rows, field_name, clusters=clusters, seed=seed)).items():
            groups.append((field_name, label, idx))
    out = []
    report = progress or _no_progress
    for g, (field_name, label, idx) in enumerate(groups):
        report("online bootstrap", g, len(groups))
        seg_rows = [rows[i] for i in idx]
        seg_arms = arms[idx]
        a_rows = [r for r, a in zip(seg_rows, seg_arms) if a == "A"]
        b_rows = [r for r, a in zip(seg_rows, seg_arms) if a == "B"]
        if field_name is not None and (len(seg_rows) < min_segment_rows or len(a_rows) < 2 or len(b_rows) < 2):
            continue
        if not a_rows or not b_rows:
            continue
        boot_a = _boot_rates(*_per_user(a_rows), n_bootstrap, rng)
        boot_b = _boot_rates(*_per_user(b_rows), n_bootstrap, rng)
        ra, rb = _arm_result("A", a_rows, boot_a, level), _arm_result("B", b_rows, boot_b, level)
        lo, hi = np.quantile(boot_b - boot_a, [(1 - level) / 2, 1 - (1 - level) / 2])
        out.append(OnlineComparison(field_name, label, ra, rb, rb.rate - ra.rate, float(lo), float(hi), level,
                                    offline.get((field_name, label))))
    report("online bootstrap", len(groups), len(groups))
    return out


def online_verdict(low: float, high: float) -> str:
    """"B" or "A" when the interval on B - A excludes 0 (that arm is better), else "-"."""
    return "B" if low > 0 else "A" if high < 0 else "-"


def online_rows(result: Sequence[OnlineComparison]) -> list[dict[str, object]]:
    """One flat record per segment: what --json and --csv print."""
    rows: list[dict[str, object]] = []
    for c in result:
        off = c.offline
        rows.append({"by": c.by or "", "segment": c.segment,
                     "a_decisions": c.a.decisions, "a_users": c.a.users, "a_rate": c.a.rate,
                     "a_low": c.a.low, "a_high": c.a.high,
                     "b_decisions": c.b.decisions, "b_users": c.b.users, "b_rate": c.b.rate,
                     "b_low": c.b.low, "b_high": c.b.high,
                     "diff": c.diff, "diff_low": c.low, "diff_high": c.high, "level": c.level,
                     "better": online_verdict(c.low, c.high),
                     "offline_estimator": off.name if off else None, "offline_rows": off.diff.n if off else None,
                     "offline_diff": _num(off.diff.value) if off else None,
                     "offline_low": _num(off.diff.low) if off else None,
                     "offline_high": _num(off.diff.high) if off else None})
    return rows


def format_online(result: Sequence[OnlineComparison]) -> str:
    """Plain-text table: per segment, each arm's decisions, users and rate, B - A online with its
    user-resampled interval, and the offline estimate of B - A beside it."""
    level = result[0].level if result else 0.95
    head = ("segment", "A rows", "A users", "A rate", "B rows", "B users", "B rate",
            f"B - A online ({level:.0%} CI, users resampled)", "better", "B - A offline (explore slice)")
    lines = []
    for c in result:
        off = c.offline
        lines.append(("all" if c.by is None else f"{c.by}={c.segment}", f"{c.a.decisions:,}", f"{c.a.users:,}",
                      f"{c.a.rate:.4f}", f"{c.b.decisions:,}", f"{c.b.users:,}", f"{c.b.rate:.4f}",
                      f"{c.diff:+.4f} [{c.low:+.4f}, {c.high:+.4f}]", online_verdict(c.low, c.high),
                      f"{off.diff.value:+.4f} [{off.diff.low:+.4f}, {off.diff.high:+.4f}] {off.name}, {off.diff.n:,} rows"
                      if off else "-"))
    widths = [max(len(x[k]) for x in [head, *lines]) for k in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *(line(x) for x in lines)])
