"""Online learning runs on the simulator: learning curves, plots, tables and a reward model.

`run_online` plays a policy against a `Simulator` the way production would: choose, observe a
click, `learn_one`, log a `DecisionRecord`.  Visits and click draws come from two streams
seeded by ``seed`` alone and never by the policy's choices, so policies run with the same seed
see the same users in the same order and the same "coin flips" (common random numbers):
differences between their curves are the policies', not sampling luck.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from bandit.decisions import DecisionRecord, new_record
from bandit.features import EMB_PREFIX, Candidate, UserContext, _check_opt_int
from bandit.policy import Policy, hour_bucket
from bandit.simulator import Simulator

__all__ = [
    "RunResult",
    "LearningCurve",
    "run_online",
    "plot_learning_curves",
    "format_curves_table",
    "CrossFit",
    "Design",
    "FitInfo",
    "LogTables",
    "Progress",
    "RewardModel",
    "cross_fit_q",
    "fit_reward_model",
]

# Visits are drawn in batches: one vectorised draw per batch instead of one per decision.
_VISIT_BATCH = 1000


@dataclass
class RunResult:
    """Everything one online run produced, aligned by decision index."""

    policy: str
    seed: int
    rewards: np.ndarray  # observed clicks (0/1)
    expected: np.ndarray  # true click probability of the artwork shown
    oracle: np.ndarray  # true click probability of the user's best artwork on that visit
    probabilities: np.ndarray  # logged propensity of the artwork shown
    title_ids: list[str]
    chosen: list[str]
    records: list[DecisionRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n(self) -> int:
        """Number of decisions."""
        return int(self.rewards.shape[0])

    def click_rate(self, last: int | None = None) -> float:
        """Observed click rate, over the last ``last`` decisions (all when None)."""
        r = self.rewards if last is None else self.rewards[-last:]
        return float(r.mean())

    def expected_rate(self, last: int | None = None) -> float:
        """Mean true click probability of what was shown: the click rate without click noise."""
        e = self.expected if last is None else self.expected[-last:]
        return float(e.mean())

    def oracle_rate(self, last: int | None = None) -> float:
        """What showing every visit its best artwork would have earned on the same visits."""
        o = self.oracle if last is None else self.oracle[-last:]
        return float(o.mean())

    def curve(self, window: int = 1000) -> LearningCurve:
        """Learning curve in non-overlapping windows of ``window`` decisions."""
        return LearningCurve.from_run(self, window)


@dataclass
class LearningCurve:
    """Click rate per window of decisions; ``x`` is the decision count at each window's end."""

    name: str
    x: np.ndarray
    rate: np.ndarray  # observed click rate in the window
    expected: np.ndarray  # mean true click probability in the window
    window: int

    @classmethod
    def from_run(cls, result: RunResult, window: int = 1000) -> LearningCurve:
        """Cut a run into windows (a trailing partial window is dropped)."""
        if window < 1:
            raise ValueError("window must be >= 1")
        k = result.n // window
        if k == 0:
            raise ValueError(f"run has {result.n} decisions, fewer than one window of {window}")
        r = result.rewards[: k * window].reshape(k, window).mean(axis=1)
        e = result.expected[: k * window].reshape(k, window).mean(axis=1)
        return cls(result.policy, np.arange(1, k + 1) * window, r, e, window)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "name": self.name,
            "window": self.window,
            "x": [int(v) for v in self.x],
            "rate": [round(float(v), 6) for v in self.rate],
            "expected": [round(float(v), 6) for v in self.expected],
        }


def run_online(
    policy: Policy,
    sim: Simulator,
    n_decisions: int,
    seed: int = 0,
    log: bool = True,
    learn: bool = True,
) -> RunResult:
    """Play ``policy`` online against ``sim`` for ``n_decisions`` visits.

    Each step: draw a visit, ``policy.choose``, draw the click from the simulator's true click
    probability, ``policy.learn_one`` (unless ``learn`` is False) and, when ``log``, keep a
    `DecisionRecord` with the reward filled in.  Record times are the decision index, so a
    seeded run's log is reproducible apart from the random event ids.
    """
    if n_decisions < 1:
        raise ValueError("n_decisions must be >= 1")
    visit_rng = np.random.default_rng([int(seed), 0x7151])
    click_rng = np.random.default_rng([int(seed), 0xC11C])
    rewards = np.empty(n_decisions)
    expected = np.empty(n_decisions)
    oracle = np.empty(n_decisions)
    probs = np.empty(n_decisions)
    titles: list[str] = []
    chosen: list[str] = []
    records: list[DecisionRecord] = []
    start = time.perf_counter()
    visits: list[tuple[UserContext, str]] = []
    for i in range(n_decisions):
        if not visits:
            visits = sim.sample_visits(visit_rng, min(_VISIT_BATCH, n_decisions - i))[::-1]
        user, title_id = visits.pop()
        candidates = sim.titles[title_id]
        decision = policy.choose(user, title_id, candidates)
        p_all = sim.click_probabilities(user, title_id)
        p = p_all[decision.chosen]
        # One uniform per step whatever the policy did: common random numbers across policies.
        reward = float(click_rng.random() < p)
        if learn:
            policy.learn_one(user, title_id, candidates, decision.chosen, decision.probability, reward)
        if log:
            records.append(new_record(user, title_id, candidates, decision, reward=reward, time=float(i)))
        rewards[i], expected[i], oracle[i], probs[i] = reward, p, max(p_all.values()), decision.probability
        titles.append(title_id)
        chosen.append(decision.chosen)
    return RunResult(
        policy=getattr(policy, "name", type(policy).__name__),
        seed=int(seed),
        rewards=rewards,
        expected=expected,
        oracle=oracle,
        probabilities=probs,
        title_ids=titles,
        chosen=chosen,
        records=records,
        seconds=time.perf_counter() - start,
    )


def plot_learning_curves(
    curves: Mapping[str, LearningCurve],
    path: str | PathLike[str],
    oracle: float | None = None,
    best_fixed: float | None = None,
    title: str = "Online click rate on the simulated audience",
    expected: bool = False,
) -> Path:
    """Write a PNG of click rate against decisions, one line per curve; returns the path.

    ``oracle`` and ``best_fixed`` draw horizontal reference lines.  With ``expected`` the
    lines show the mean true click probability per window (no click noise) instead of the
    observed click rate.
    """
    # Figure + Agg canvas directly, not pyplot: no global state, no GUI backend needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("no curves to plot")
    fig = Figure(figsize=(9.0, 5.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, c in curves.items():
        ax.plot(c.x, c.expected if expected else c.rate, label=label, linewidth=1.6)
    if oracle is not None:
        ax.axhline(oracle, color="black", linestyle="--", linewidth=1.2, label=f"oracle ({oracle:.3f})")
    if best_fixed is not None:
        ax.axhline(best_fixed, color="grey", linestyle=":", linewidth=1.4, label=f"best fixed ({best_fixed:.3f})")
    window = {c.window for c in curves.values()}
    ax.set_xlabel("decisions")
    what = "expected click rate" if expected else "click rate"
    ax.set_ylabel(f"{what} per {window.pop()} decisions" if len(window) == 1 else what)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def format_curves_table(
    results: Mapping[str, RunResult],
    last: int = 10_000,
    oracle: float | None = None,
    best_fixed: float | None = None,
    true_values: Mapping[str, float] | None = None,
) -> str:
    """Plain-text table of each run's click rate over its last ``last`` decisions.

    Columns: observed click rate with a 95% normal interval, expected click rate (true
    probabilities of what was shown), and, when given, the exact value of the final frozen
    policy.  ``oracle`` / ``best_fixed`` add reference rows.
    """
    header = ["policy", f"clicks/last {last}", "95% CI", "expected", "frozen value"]
    rows: list[list[str]] = []
    for name, r in results.items():
        n = min(last, r.n)
        rate = r.click_rate(n)
        half = 1.96 * math.sqrt(max(rate * (1 - rate), 1e-12) / n)
        tv = "" if true_values is None or name not in true_values else f"{true_values[name]:.4f}"
        rows.append([name, f"{rate:.4f}", f"±{half:.4f}", f"{r.expected_rate(n):.4f}", tv])
    if best_fixed is not None:
        rows.append(["(best fixed)", "", "", "", f"{best_fixed:.4f}"])
    if oracle is not None:
        rows.append(["(oracle)", "", "", "", f"{oracle:.4f}"])
    widths = [max(len(row[k]) for row in [header, *rows]) for k in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


# ---------------------------------------------------------------------------------------------
# Reward model for the model-based off-policy estimators (DM, DR, SNDR)
# ---------------------------------------------------------------------------------------------

#: Day parts exactly as the policy buckets the hour (taken from `bandit.policy.hour_bucket`).
HOUR_BUCKETS: tuple[str, ...] = tuple(dict.fromkeys(hour_bucket(h) for h in range(24)))
_HOUR_COLUMN = {h: HOUR_BUCKETS.index(hour_bucket(h)) for h in range(24)}
#: Page rows as the policy's shared example buckets them (`bandit.policy.shared_line`).
ROW_BUCKETS: tuple[str, ...] = ("0", "1", "2", "3", "4", "5+")


def row_bucket(row: int) -> str:
    """Row 0..4 as itself, anything further down the page as "5+" (as `shared_line` writes it)."""
    return str(row) if row < 5 else "5+"


# What a context contributes: taste, device, hour, country, row (user id and history are not
# part of what the policy sees, so they are not part of what the reward model sees either).
_Fields = tuple[Mapping[str, float], Any, Any, Any, Any]


def _user_fields(user: UserContext) -> _Fields:
    return user.taste, user.device, user.hour, user.country, user.row


def _context_fields(ctx: Mapping[str, Any]) -> _Fields:
    """The same fields read straight from a logged context dict (no UserContext round trip)."""
    return ctx.get("taste") or {}, ctx.get("device"), ctx.get("hour"), ctx.get("country"), ctx.get("row")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warnings for large |x|


#: ``progress(step, done, total)``: long steps report through this, so a CLI can draw it on stderr
#: and a library caller can ignore it; total 0 means not known yet.
Progress = Callable[[str, float, float], None]


def _no_progress(step: str, done: float, total: float) -> None:
    return None


@dataclass
class LogTables:
    """A log read once: each distinct taste and candidate-feature dict kept once, rows index them.

    The one Python pass over the records; everything after it (vocabulary, design, fit,
    predictions) is array work. Rows are the records in order.
    """

    title_ids: list[str]
    tastes: list[Mapping[str, float]]  # distinct taste dicts
    taste_of: np.ndarray  # (n,) index into tastes, -1 for a context without taste (cold)
    devices: list[Any]
    hours: list[Any]
    countries: list[Any]
    rows: list[Any]
    arts: list[Mapping[str, float]]  # distinct candidate feature dicts
    slots: np.ndarray  # (n, k) index into arts of each candidate, -1 past the row's candidates
    chosen: np.ndarray  # (n,) slot of the logged choice
    reward: np.ndarray  # (n,) NaN where the record has no reward yet

    @property
    def n(self) -> int:
        return len(self.title_ids)

    @classmethod
    def from_records(cls, records: Sequence[DecisionRecord], width: int | None = None) -> LogTables:
        """Read ``records``; ``width`` (default: the largest candidate set) is the padded slot count."""
        n = len(records)
        counts = np.fromiter((len(r.candidates) for r in records), dtype=np.intp, count=n)
        k = int(counts.max(initial=0)) if width is None else int(width)
        if counts.size and counts.max() > k:
            raise ValueError(f"a record has {int(counts.max())} candidates, more than width {k}")
        slots = np.full((n, k), -1, dtype=np.intp)
        chosen = np.empty(n, dtype=np.intp)
        reward = np.full(n, np.nan)
        tastes: list[Mapping[str, float]] = []
        taste_of = np.full(n, -1, dtype=np.intp)
        taste_by_content: dict[tuple[tuple[str, float], ...], int] = {}
        taste_by_user: dict[str, int] = {}
        arts: list[Mapping[str, float]] = []
        art_by_content: dict[tuple[tuple[str, float], ...], int] = {}
        # A title's candidate set rarely changes: comparing the whole list against the last one seen
        # is one C-level comparison per record instead of a Python step per candidate.
        last_set: dict[str, tuple[list[str], list[dict[str, float]], np.ndarray]] = {}
        title_ids, devices, hours, countries, rows = [], [], [], [], []
        for i, r in enumerate(records):
            ctx = r.context
            title_ids.append(r.title_id)
            devices.append(ctx.get("device"))
            hours.append(ctx.get("hour"))
            countries.append(ctx.get("country"))
            rows.append(ctx.get("row"))
            taste = ctx.get("taste")
            if taste:
                # Same user, same taste as last time: a dict comparison, no tuple to build and hash.
                j = taste_by_user.get(r.user_id)
                if j is None or tastes[j] != taste:
                    key = tuple(taste.items())
                    j = taste_by_content.get(key)
                    if j is None:
                        j = taste_by_content[key] = len(tastes)
                        tastes.append(taste)
                    taste_by_user[r.user_id] = j
                taste_of[i] = j
            seen = last_set.get(r.title_id)
            if seen is not None and seen[0] == r.candidates and seen[1] == r.candidate_features:
                idx = seen[2]
            else:
                idx = np.empty(len(r.candidates), dtype=np.intp)
                for s, f in enumerate(r.candidate_features):
                    key = tuple(f.items())
                    j = art_by_content.get(key)
                    if j is None:
                        j = art_by_content[key] = len(arts)
                        arts.append(f)
                    idx[s] = j
                last_set[r.title_id] = (r.candidates, r.candidate_features, idx)
            slots[i, :idx.size] = idx
            try:
                chosen[i] = r.candidates.index(r.chosen)
            except ValueError:
                raise ValueError(f"logged decision {r.event_id} (row {i}): chosen artwork {r.chosen!r} is not among "
                                 f"its candidates {r.candidates}") from None
            if r.reward is not None:
                reward[i] = r.reward
        return cls(title_ids, tastes, taste_of, devices, hours, countries, rows, arts, slots, chosen, reward)


@dataclass
class Design:
    """A log encoded for one `RewardModel`: built once, then fitted and predicted on row subsets."""

    title: np.ndarray  # (n,) title index, -1 for a title without an intercept
    users: sp.csr_matrix  # (n, n_user_features) user vectors
    arts: np.ndarray  # (n_arts, n_art_keys) distinct artwork vectors
    slots: np.ndarray  # (n, k) row of ``arts`` of each candidate, -1 past the row's candidates
    chosen: np.ndarray  # (n,) slot of the logged choice
    reward: np.ndarray  # (n,) NaN where there is no reward

    @property
    def n(self) -> int:
        return int(self.title.shape[0])

    def crossed(self, art: np.ndarray, rows: np.ndarray | None = None) -> sp.csr_matrix:
        """The user vectors placed in each row's artwork block: ``(len(rows), n_arts * n_user_features)``.

        A row's interaction features are ``outer(u, a)``, so its logit is ``u . (W a)``: with
        ``P = arts @ W.T`` the interaction logits of all rows are this matrix times ``P.ravel()``.
        It has the user vectors' nonzeros only (a few dozen per row) where the explicit design
        would have ``nnz(u) * nnz(a)`` (hundreds), and its transpose gives the gradient.
        """
        users = self.users if rows is None else self.users[rows]
        du = users.shape[1]
        per_row = np.diff(users.indptr)
        block = np.repeat(np.asarray(art, dtype=np.int64), per_row)
        return sp.csr_matrix((users.data, block * du + users.indices, users.indptr),
                             shape=(users.shape[0], max(len(self.arts), 1) * du))


@dataclass
class FitInfo:
    """How a fit went: iterations, function evaluations, final penalised loss, seconds."""

    rows: int
    iterations: int
    evaluations: int
    loss: float
    converged: bool
    seconds: float
    message: str = ""


class RewardModel:
    """Ridge-regularised logistic regression q(x, a) of the click probability.

    The user side is exactly what the policy's shared example carries (`bandit.policy.shared_line`),
    encoded generically, and nothing else: taste values (keys seen in the log), device one-hot
    (devices seen in the log), hour as the policy's day parts (`hour_bucket`), country one-hot
    (countries seen in the log), row bucket (0..4, 5+), a cold flag (no taste) and a constant.
    Two contexts the policy cannot tell apart get the same features, so the model cannot use a
    rule of whatever produced the clicks (a simulator's late-night hours, say) that the policy
    could not learn too.  Every user feature is crossed with every artwork feature (the shape of
    the interactions a personalised policy exploits, so the direct method is not biased against
    personalisation by construction; the constant gives the artwork features' main effects), plus
    a per-title intercept.  Artworks differ only through their features (no per-artwork
    intercept): far fewer free parameters, so the model's own estimation noise, which no row
    bootstrap sees, stays small.

    Coefficients: ``coef[:n_titles]`` are the title intercepts, then the interaction block laid
    out as ``outer(user_vector, art_vector).ravel()``.  Penalty: ``l2 / 2 * |W|^2`` on the
    interactions, 1e-3 on the intercepts (penalised lightly so a title the fold never showed
    gets 0, the shared effects alone).

    Fitting (`fit_design`) is L-BFGS (scipy) on a design encoded once (`encode`), with each
    evaluation two sparse products over the user vectors' nonzeros: linear in the rows, never
    a Hessian.  `fit` takes an explicit design matrix instead and hands it to scikit-learn's
    `LogisticRegression`; the two agree (tests check it), the first is the one that scales.
    """

    INTERCEPT_L2 = 1e-3

    def __init__(self, taste_keys: Sequence[str], art_keys: Sequence[str], title_ids: Sequence[str],
                 devices: Sequence[str], l2: float = 1.0, *, countries: Sequence[str] = ()) -> None:
        self.taste_keys = list(taste_keys)
        self.art_keys = list(art_keys)
        self.title_ids = list(title_ids)
        self.devices = list(devices)
        self.countries = list(countries)
        self._title_index = {t: i for i, t in enumerate(self.title_ids)}
        self._taste_index = {k: i for i, k in enumerate(self.taste_keys)}
        self._akey_index = {k: i for i, k in enumerate(self.art_keys)}
        # Column offsets of the user vector's blocks.
        self._dev0 = len(self.taste_keys)
        self._hour0 = self._dev0 + len(self.devices)
        self._country0 = self._hour0 + len(HOUR_BUCKETS)
        self._row0 = self._country0 + len(self.countries)
        self._cold = self._row0 + len(ROW_BUCKETS)
        self._const = self._cold + 1
        self._device_col = {d: self._dev0 + i for i, d in enumerate(self.devices)}
        self._country_col = {c: self._country0 + i for i, c in enumerate(self.countries)}
        self._row_col = {b: self._row0 + i for i, b in enumerate(ROW_BUCKETS)}
        self.l2 = float(l2)
        if not self.l2 > 0:
            raise ValueError(f"l2 must be positive (the ridge keeps unseen features at 0); got {l2!r}")
        self.coef = np.zeros(self.n_features)
        self.fit_info: FitInfo | None = None

    @classmethod
    def for_tables(cls, tables: LogTables, l2: float = 1.0) -> RewardModel:
        """A model whose vocabularies are the ones the log holds; hour and row use fixed buckets."""
        taste_keys = sorted({k for t in tables.tastes for k in t})
        # Tag keys first, embedding dims after: only for a readable coefficient layout.
        art_keys = sorted({k for f in tables.arts for k in f}, key=lambda k: (k.startswith(EMB_PREFIX), k))

        def seen(values: list[Any]) -> list[str]:
            return sorted({str(v) for v in set(values) if v is not None})

        return cls(taste_keys, art_keys, sorted(set(tables.title_ids)), seen(tables.devices), l2=l2,
                   countries=seen(tables.countries))

    # -- features --------------------------------------------------------------------------------

    @property
    def user_feature_names(self) -> list[str]:
        """Names of the user vector's entries, in order."""
        return ([f"taste:{k}" for k in self.taste_keys] + [f"device={d}" for d in self.devices]
                + [f"hour={b}" for b in HOUR_BUCKETS] + [f"country={c}" for c in self.countries]
                + [f"row={b}" for b in ROW_BUCKETS] + ["cold", "const"])

    @property
    def n_user_features(self) -> int:
        """Length of the user vector."""
        return self._const + 1

    @property
    def n_features(self) -> int:
        """Length of the feature vector."""
        return len(self.title_ids) + self.n_user_features * len(self.art_keys)

    def _one_hot(self, values: list[Any], column: Callable[[Any], int | None]) -> np.ndarray:
        """Column of each row's value (-1: none); each distinct value is mapped (and validated) once."""
        cols: dict[tuple[type, Any], int] = {}
        out = np.empty(len(values), dtype=np.intp)
        for i, v in enumerate(values):
            key = (type(v), v)  # True and 1 hash alike but validate differently
            c = cols.get(key)
            if c is None:
                found = column(v)
                c = cols[key] = -1 if found is None else found
            out[i] = c
        return out

    def _users(self, tables: LogTables) -> sp.csr_matrix:
        n, du = tables.n, self.n_user_features
        # Distinct tastes as sparse rows; the appended empty row stands for "no taste".
        t_rows, t_cols, t_vals = [], [], []
        for j, taste in enumerate(tables.tastes):
            for k, val in taste.items():
                col = self._taste_index.get(k)
                if col is not None and val != 0.0:
                    t_rows.append(j)
                    t_cols.append(col)
                    t_vals.append(float(val))
        taste = sp.csr_matrix((t_vals, (t_rows, t_cols)), shape=(len(tables.tastes) + 1, du))
        users = taste[np.where(tables.taste_of < 0, len(tables.tastes), tables.taste_of)]
        hour = lambda v: None if v is None else self._hour0 + _HOUR_COLUMN[_check_opt_int("hour", v, 0, 23)]  # noqa: E731
        row = lambda v: None if v is None else self._row_col[row_bucket(_check_opt_int("row", v, 0, None))]  # noqa: E731
        hot = [self._one_hot(tables.devices, lambda v: self._device_col.get(v)),
               self._one_hot(tables.hours, hour),
               self._one_hot(tables.countries, lambda v: self._country_col.get(v)),
               self._one_hot(tables.rows, row),
               np.where(tables.taste_of < 0, self._cold, -1),
               np.full(n, self._const, dtype=np.intp)]
        cols = np.stack(hot, axis=1)
        keep = cols >= 0
        r_idx = np.broadcast_to(np.arange(n)[:, None], cols.shape)[keep]
        onehot = sp.csr_matrix((np.ones(int(keep.sum())), (r_idx, cols[keep])), shape=(n, du))
        out = (users + onehot).tocsr()
        out.sort_indices()
        return out

    def _art_vectors(self, arts: Sequence[Mapping[str, float]]) -> np.ndarray:
        out = np.zeros((len(arts), len(self.art_keys)))
        for j, f in enumerate(arts):
            for k, val in f.items():
                col = self._akey_index.get(k)
                if col is not None:
                    out[j, col] = val
        return out

    def encode(self, tables: LogTables) -> Design:
        """The log as this model's design: user vectors, distinct artwork vectors, title indexes."""
        title = np.array([self._title_index.get(t, -1) for t in tables.title_ids], dtype=np.intp)
        return Design(title, self._users(tables), self._art_vectors(tables.arts), tables.slots, tables.chosen,
                      tables.reward)

    def user_vector(self, user: UserContext) -> np.ndarray:
        """The user side of the features (names in `user_feature_names`)."""
        return self._user_matrix([_user_fields(user)])[0]

    def _user_matrix(self, contexts: Sequence[_Fields]) -> np.ndarray:
        """(n, n_user_features) dense user vectors of a few contexts."""
        n = len(contexts)
        tables = LogTables([""] * n, [], np.full(n, -1, dtype=np.intp), [c[1] for c in contexts],
                           [c[2] for c in contexts], [c[3] for c in contexts], [c[4] for c in contexts], [],
                           np.zeros((n, 0), dtype=np.intp), np.zeros(n, dtype=np.intp), np.full(n, np.nan))
        for i, c in enumerate(contexts):
            if c[0]:
                tables.taste_of[i] = len(tables.tastes)
                tables.tastes.append(c[0])
        return self._users(tables).toarray()

    def features(self, user: UserContext, title_id: str, candidates: Sequence[Candidate]) -> np.ndarray:
        """(len(candidates), n_features) explicit design rows for one visit."""
        u = self.user_vector(user)
        arts = self._art_vectors([c.features for c in candidates])
        rows = np.zeros((len(candidates), self.n_features))
        i = self._title_index.get(title_id)
        if i is not None:
            rows[:, i] = 1.0
        rows[:, len(self.title_ids):] = (u[None, :, None] * arts[:, None, :]).reshape(len(candidates), -1)
        return rows

    # -- fitting ---------------------------------------------------------------------------------

    def _penalty(self) -> np.ndarray:
        reg = np.full(self.n_features, self.l2)
        reg[: len(self.title_ids)] = self.INTERCEPT_L2
        return reg

    def fit(self, x: np.ndarray | sp.spmatrix, y: np.ndarray, tol: float = 1e-10) -> RewardModel:
        """Fit on an explicit design matrix (rows from `features`) with scikit-learn.

        `LogisticRegression` penalises every coefficient alike, so columns are rescaled by
        sqrt(l2 / penalty): the scaled problem's optimum, scaled back, is this model's.
        """
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y, dtype=float)
        if not np.all((y == 0) | (y == 1)) or np.unique(y).size < 2:
            raise ValueError("fit needs 0/1 rewards of both kinds; fit_design takes any reward in [0, 1]")
        scale = np.sqrt(self.l2 / self._penalty())
        xs = sp.csr_matrix(x).multiply(scale[None, :]).tocsr() if sp.issparse(x) else np.asarray(x, float) * scale
        clf = LogisticRegression(C=1.0 / self.l2, fit_intercept=False, solver="lbfgs", tol=tol, max_iter=10_000)
        clf.fit(xs, y.astype(int))
        self.coef = clf.coef_.ravel() * scale
        return self

    def fit_design(self, design: Design, rows: np.ndarray | None = None, *, tol: float = 1e-7,
                   max_iter: int = 3000, progress: Progress | None = None, step: str = "reward model") -> RewardModel:
        """Fit on the logged choices of ``rows`` (all rows when None) of an encoded log.

        L-BFGS (scipy) on the penalised loss per row, each coefficient scaled by the inverse square
        root of its Hessian diagonal at p = 1/2 (the user and artwork features have very different
        scales and counts; unscaled, L-BFGS needs about twice the iterations).  ``tol`` bounds the
        scaled gradient: 1e-7 moves a DM estimate by about 1e-6 against a fit to 1e-10 on the
        benchmark's logs.  Starts from the current coefficients, so a second fold started from the
        first one's solution needs fewer iterations (the optimum is unique: only the path changes).
        """
        from scipy.optimize import minimize
        from threadpoolctl import threadpool_limits

        rows = np.arange(design.n) if rows is None else np.asarray(rows, dtype=np.intp)
        if rows.size == 0:
            raise ValueError("no rows to fit on")
        y = design.reward[rows]
        if np.isnan(y).any():
            raise ValueError("every row fitted needs a reward (fit_reward_model skips those without)")
        title = design.title[rows]
        if np.any(title < 0):
            raise ValueError("rows hold titles the model has no intercept for")
        report = progress or _no_progress
        start = time.perf_counter()
        nt, du = len(self.title_ids), self.n_user_features
        reg, n = self._penalty(), float(rows.size)
        m = design.crossed(design.slots[rows, design.chosen[rows]], rows)
        mt = m.T.tocsr()  # the gradient's product, row-major like the forward one
        arts = sp.csr_matrix(design.arts)  # tags are top-k per kind: mostly zeros
        arts_t = arts.T.tocsr()
        # Jacobi scaling: the Hessian's diagonal at p = 1/2 is sum over rows of x^2 / 4 (+ ridge).
        sq = m.copy()
        sq.data **= 2
        arts_sq = arts.multiply(arts).T.tocsr()
        diag = np.empty(self.n_features)
        diag[:nt] = np.bincount(title, minlength=nt)
        diag[nt:] = (arts_sq @ (sq.T @ np.ones(m.shape[0])).reshape(-1, du)).T.ravel()
        scale = 1.0 / np.sqrt(0.25 * diag + reg)
        evals = [0]

        def loss_grad(v: np.ndarray) -> tuple[float, np.ndarray]:
            evals[0] += 1
            w = v * scale
            z = w[:nt][title] + m @ (arts @ w[nt:].reshape(du, -1).T).ravel()
            # log(1 + e^z) - y z: the logistic loss, for any reward in [0, 1].
            loss = float(np.sum(np.logaddexp(0.0, z) - y * z)) + 0.5 * float(reg @ (w * w))
            r = _sigmoid(z) - y
            grad = np.empty_like(w)
            grad[:nt] = np.bincount(title, r, nt)
            grad[nt:] = (arts_t @ (mt @ r).reshape(-1, du)).T.ravel()
            grad += reg * w
            return loss / n, grad * scale / n

        iters = [0]

        def tick(_: np.ndarray) -> None:
            iters[0] += 1
            report(step, iters[0], 0)  # 0: how many iterations it will take is not known ahead

        # Every product here is small (a few ms): BLAS threads only add contention, and on a busy
        # machine they made each iteration ten times slower.
        with threadpool_limits(limits=1, user_api="blas"):
            res = minimize(loss_grad, self.coef / scale, jac=True, method="L-BFGS-B", callback=tick,
                           options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-15, "maxcor": 10})
        report(step, iters[0], iters[0])
        self.coef = res.x * scale
        self.fit_info = FitInfo(int(rows.size), int(res.nit), evals[0], float(res.fun), bool(res.success),
                                time.perf_counter() - start, str(res.message))
        return self

    def fit_records(self, records: Sequence[DecisionRecord], **options: Any) -> RewardModel:
        """Fit on the chosen artwork of each logged record (all must carry a reward)."""
        if not records:
            raise ValueError("no records to fit on")
        return self.fit_design(self.encode(LogTables.from_records(records)), **options)

    # -- prediction ------------------------------------------------------------------------------

    def predict_design(self, design: Design, rows: np.ndarray | None = None) -> np.ndarray:
        """(len(rows), k) q(x, a) for every candidate of the rows, 0 past a row's candidates."""
        rows = np.arange(design.n) if rows is None else np.asarray(rows, dtype=np.intp)
        slots = design.slots[rows]
        q = np.zeros(slots.shape)
        if not slots.size:
            return q
        nt = len(self.title_ids)
        p = (design.arts @ self.coef[nt:].reshape(self.n_user_features, -1).T).ravel()
        intercept = np.append(self.coef[:nt], 0.0)[design.title[rows]]  # -1: a title the fit never saw
        users = design.users[rows]
        per_row = np.diff(users.indptr)
        for s in range(slots.shape[1]):
            present = slots[:, s] >= 0
            if not present.any():
                continue
            block = np.repeat(np.maximum(slots[:, s], 0).astype(np.int64), per_row)
            m = sp.csr_matrix((users.data, block * self.n_user_features + users.indices, users.indptr),
                              shape=(users.shape[0], max(len(design.arts), 1) * self.n_user_features))
            q[:, s] = np.where(present, _sigmoid(intercept + m @ p), 0.0)
        return q

    def predict(self, user: UserContext, title_id: str, candidates: Sequence[Candidate]) -> np.ndarray:
        """q(x, a) for every candidate of one visit."""
        x = self.features(user, title_id, candidates)
        return _sigmoid(x @ self.coef)

    def predict_records(self, records: Sequence[DecisionRecord], width: int | None = None) -> np.ndarray:
        """(len(records), width) q(x, a) for every logged candidate, 0 past a row's candidates.

        ``width`` defaults to the largest candidate set; the same values as `predict` row by row.
        """
        return self.predict_design(self.encode(LogTables.from_records(records, width)))


def fit_reward_model(records: Sequence[DecisionRecord], l2: float = 1.0, **options: Any) -> RewardModel:
    """Fit a `RewardModel` on logged records that carry a reward (clicks as 0/1).

    Vocabularies (taste keys, artwork feature keys, titles, devices, countries) are the ones
    the log holds; hour and row use the policy's fixed buckets.
    """
    recs = [r for r in records if r.reward is not None]
    if not recs:
        raise ValueError("no records with a reward to fit on")
    tables = LogTables.from_records(recs)
    model = RewardModel.for_tables(tables, l2=l2)
    return model.fit_design(model.encode(tables), **options)


@dataclass
class CrossFit:
    """Out-of-fold reward-model predictions and how each fold's fit went."""

    q: np.ndarray  # (n, k) q(x, a) of every candidate of every row; 0 past a row's candidates
    fits: list[FitInfo]
    fold: np.ndarray  # (n,) the fold of each row (its q comes from the model fitted without it)


def cross_fit_q(tables: LogTables, folds: int = 2, seed: int = 0, l2: float = 1.0,
                progress: Progress | None = None) -> CrossFit:
    """Every candidate of every row scored by a model fitted on the other folds only, so DM/DR
    never grade rows the model memorised.

    The design is encoded once with the whole log's vocabularies; a feature a training fold
    never saw gets no gradient and stays at 0 under the ridge, as if the fold had its own
    vocabulary.  Folds are random, not ``i % folds``: logs come in pages (title 1, 2, 3, 4, 1, 2,
    ...), and a modulus would put whole titles in one fold.  Each fold's fit starts from the
    previous fold's solution: the folds' optima are close, so later folds converge faster.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2 (a row is never scored by a model fitted on it); got {folds}")
    if np.isnan(tables.reward).any():
        raise ValueError("cross_fit_q needs a reward on every row (drop the open decisions first)")
    report = progress or _no_progress
    model = RewardModel.for_tables(tables, l2=l2)
    report("encoding the log", 0, 1)
    design = model.encode(tables)
    report("encoding the log", 1, 1)
    fold = np.random.default_rng(seed).permutation(tables.n) % folds
    q = np.zeros(tables.slots.shape)
    fits: list[FitInfo] = []
    for f in range(folds):
        train = np.flatnonzero(fold != f)
        # A title only the held-out fold shows has no intercept to fit: it keeps 0 (shared effects).
        model.fit_design(design, train, progress=progress,
                         step=f"reward model, fold {f + 1}/{folds} (L-BFGS iterations)")
        assert model.fit_info is not None
        fits.append(model.fit_info)
        held = np.flatnonzero(fold == f)
        q[held] = model.predict_design(design, held)
    return CrossFit(q, fits, fold)
