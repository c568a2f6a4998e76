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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

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
    "RewardModel",
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
    out as ``outer(user_vector, art_vector).ravel()``.
    """

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
        self.coef = np.zeros(self.n_features)

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

    def _user_matrix(self, contexts: Sequence[_Fields]) -> np.ndarray:
        """(n, n_user_features) user vectors; each distinct taste dict is encoded once."""
        n, nt = len(contexts), len(self.taste_keys)
        taste_row: dict[tuple[tuple[str, float], ...], int] = {}
        tastes: list[np.ndarray] = []
        taste_of = np.empty(n, dtype=np.intp)
        hot_r: list[int] = []
        hot_c: list[int] = []
        for i, (taste, device, hour, country, row) in enumerate(contexts):
            if taste:
                key = tuple(taste.items())
                j = taste_row.get(key)
                if j is None:
                    v = np.zeros(nt)
                    for k, val in taste.items():
                        col = self._taste_index.get(k)
                        if col is not None:
                            v[col] = val
                    j = taste_row[key] = len(tastes)
                    tastes.append(v)
                taste_of[i] = j
            else:
                taste_of[i] = -1
                hot_r.append(i)
                hot_c.append(self._cold)
            col = self._device_col.get(device)
            if col is not None:
                hot_r.append(i)
                hot_c.append(col)
            if hour is not None:
                hot_r.append(i)
                hot_c.append(self._hour0 + _HOUR_COLUMN[_check_opt_int("hour", hour, 0, 23)])
            col = self._country_col.get(country)
            if col is not None:
                hot_r.append(i)
                hot_c.append(col)
            if row is not None:
                hot_r.append(i)
                hot_c.append(self._row_col[row_bucket(_check_opt_int("row", row, 0, None))])
        u = np.zeros((n, self.n_user_features))
        if nt:
            # Index -1 (no taste) picks the appended zero row.
            u[:, :nt] = np.vstack([*tastes, np.zeros(nt)])[taste_of]
        u[hot_r, hot_c] = 1.0
        u[:, self._const] = 1.0
        return u

    def _art_matrix(self, features: Iterable[Mapping[str, float]]) -> tuple[np.ndarray, np.ndarray]:
        """(index of each candidate's row, distinct art vectors): each distinct feature dict is encoded once."""
        seen: dict[tuple[tuple[str, float], ...], int] = {}
        vecs: list[np.ndarray] = []
        index: list[int] = []
        for f in features:
            key = tuple(f.items())
            j = seen.get(key)
            if j is None:
                v = np.zeros(len(self.art_keys))
                for k, val in f.items():
                    col = self._akey_index.get(k)
                    if col is not None:
                        v[col] = val
                j = seen[key] = len(vecs)
                vecs.append(v)
            index.append(j)
        arts = np.vstack(vecs) if vecs else np.zeros((0, len(self.art_keys)))
        return np.asarray(index, dtype=np.intp), arts

    def user_vector(self, user: UserContext) -> np.ndarray:
        """The user side of the features (names in `user_feature_names`)."""
        return self._user_matrix([_user_fields(user)])[0]

    def features(self, user: UserContext, title_id: str, candidates: Sequence[Candidate]) -> np.ndarray:
        """(len(candidates), n_features) design rows for one visit."""
        u = self.user_vector(user)
        index, arts = self._art_matrix(c.features for c in candidates)
        rows = np.zeros((len(candidates), self.n_features))
        i = self._title_index.get(title_id)
        if i is not None:
            rows[:, i] = 1.0
        rows[:, len(self.title_ids):] = (u[None, :, None] * arts[index][:, None, :]).reshape(len(candidates), -1)
        return rows

    # -- fitting ---------------------------------------------------------------------------------

    def _penalty(self) -> np.ndarray:
        reg = np.full(self.n_features, self.l2)
        reg[: len(self.title_ids)] = 1e-3  # intercepts penalised too, lightly
        return reg

    def _newton(self, grad_hess: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], iters: int) -> RewardModel:
        """Newton / IRLS on the penalised log-likelihood; ``grad_hess(w)`` gives the unpenalised pair."""
        w = self.coef.copy()
        reg = self._penalty()
        diag = np.diag_indices(w.size)
        for _ in range(iters):
            grad, h = grad_hess(w)
            grad += reg * w
            h[diag] += reg
            step = np.linalg.solve(h, grad)
            w -= step
            if float(np.max(np.abs(step), initial=0.0)) < 1e-6:
                break
        self.coef = w
        return self

    def fit(self, x: np.ndarray, y: np.ndarray, iters: int = 25) -> RewardModel:
        """Fit on a dense design matrix (rows from `features`); `fit_records` does the same, faster."""
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)

        def grad_hess(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            p = _sigmoid(x @ w)
            return x.T @ (p - y), (x * (p * (1 - p))[:, None]).T @ x

        return self._newton(grad_hess, iters)

    def fit_records(self, records: Sequence[DecisionRecord], iters: int = 25) -> RewardModel:
        """Fit on the chosen artwork of each logged record (all must carry a reward).

        Never builds the (rows x features) design matrix: a row's interaction features are
        ``outer(u, a)``, so the Hessian's interaction block is ``sum_g kron(S_g, a_g a_g')`` over
        the distinct (title, artwork) pairs g, with ``S_g`` the weighted Gram matrix of the user
        vectors shown that artwork; the same Newton steps as `fit` on `features` rows.
        """
        n, nt = len(records), len(self.title_ids)
        if n == 0:
            raise ValueError("no records to fit on")
        title = np.array([self._title_index.get(r.title_id, -1) for r in records], dtype=np.intp)
        if np.any(title < 0):
            raise ValueError("records hold titles the model has no intercept for")
        users = self._user_matrix([_context_fields(r.context) for r in records])
        art, arts = self._art_matrix(r.candidate_features[r.candidates.index(r.chosen)] for r in records)
        if any(r.reward is None for r in records):
            raise ValueError("every record needs a reward (fit_reward_model skips those without)")
        y = np.array([float(r.reward) for r in records])  # type: ignore[arg-type]
        du, da = users.shape[1], arts.shape[1]
        # Rows sorted by (title, artwork) group: each group is one contiguous slice.
        group = title * len(arts) + art
        order = np.argsort(group, kind="stable")
        title, users, art, y, group = title[order], users[order], art[order], y[order], group[order]
        keys, start = np.unique(group, return_index=True)
        bounds = np.append(start, n)
        g_title, g_art = keys // len(arts), arts[keys % len(arts)]  # (G,), (G, da)
        g_aa = (g_art[:, :, None] * g_art[:, None, :]).reshape(len(keys), da * da)
        row_art = arts[art]  # (n, da)

        def grad_hess(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            coef = w[nt:].reshape(du, da)
            p = _sigmoid(w[title] + np.einsum("nd,nd->n", users @ coef, row_art))
            r, s = p - y, p * (1.0 - p)
            grad = np.concatenate([np.bincount(title, r, nt), ((users * r[:, None]).T @ row_art).ravel()])
            us = users * s[:, None]
            gram = np.empty((len(keys), du, du))
            for g in range(len(keys)):
                gram[g] = users[bounds[g]:bounds[g + 1]].T @ us[bounds[g]:bounds[g + 1]]
            usum = np.add.reduceat(us, start, axis=0)  # (G, du)
            h = np.empty((w.size, w.size))
            h[:nt, :nt] = np.diag(np.bincount(title, s, nt))
            cross = np.zeros((nt, du * da))
            np.add.at(cross, g_title, (usum[:, :, None] * g_art[:, None, :]).reshape(len(keys), -1))
            h[:nt, nt:] = cross
            h[nt:, :nt] = cross.T
            h[nt:, nt:] = ((gram.reshape(len(keys), du * du).T @ g_aa)
                           .reshape(du, du, da, da).transpose(0, 2, 1, 3).reshape(du * da, du * da))
            return grad, h

        return self._newton(grad_hess, iters)

    # -- prediction ------------------------------------------------------------------------------

    def _q(self, title: np.ndarray, users: np.ndarray, arts: np.ndarray) -> np.ndarray:
        """q for rows of (title index or -1, user vector, art vector)."""
        nt = len(self.title_ids)
        intercept = np.append(self.coef[:nt], 0.0)[title]  # -1: a title the log never showed
        coef = self.coef[nt:].reshape(users.shape[1], len(self.art_keys))
        return _sigmoid(intercept + np.einsum("nd,nd->n", users @ coef, arts))

    def predict(self, user: UserContext, title_id: str, candidates: Sequence[Candidate]) -> np.ndarray:
        """q(x, a) for every candidate of one visit."""
        index, arts = self._art_matrix(c.features for c in candidates)
        users = np.repeat(self._user_matrix([_user_fields(user)]), len(candidates), axis=0)
        title = np.full(len(candidates), self._title_index.get(title_id, -1), dtype=np.intp)
        return self._q(title, users, arts[index])

    def predict_records(self, records: Sequence[DecisionRecord], width: int | None = None) -> np.ndarray:
        """(len(records), width) q(x, a) for every logged candidate, 0 past a row's candidates.

        ``width`` defaults to the largest candidate set; the same values as `predict` row by row.
        """
        counts = np.array([len(r.candidates) for r in records], dtype=np.intp)
        width = int(counts.max(initial=0)) if width is None else int(width)
        if counts.size and counts.max() > width:
            raise ValueError(f"a record has {int(counts.max())} candidates, more than width {width}")
        q = np.zeros((len(records), width))
        if not counts.sum():
            return q
        users = self._user_matrix([_context_fields(r.context) for r in records])
        index, arts = self._art_matrix(f for r in records for f in r.candidate_features)
        row = np.repeat(np.arange(len(records)), counts)
        slot = np.arange(row.size) - np.repeat(np.cumsum(counts) - counts, counts)
        title = np.array([self._title_index.get(r.title_id, -1) for r in records], dtype=np.intp)
        q[row, slot] = self._q(title[row], users[row], arts[index])
        return q


def fit_reward_model(records: Sequence[DecisionRecord], l2: float = 1.0) -> RewardModel:
    """Fit a `RewardModel` on logged records that carry a reward (clicks as 0/1).

    Vocabularies (taste keys, artwork feature keys, titles, devices, countries) are the ones
    the log holds; hour and row use the policy's fixed buckets.
    """
    recs = [r for r in records if r.reward is not None]
    if not recs:
        raise ValueError("no records with a reward to fit on")
    taste_keys = sorted({k for r in recs for k in (r.context.get("taste") or {})})
    art_keys = sorted({k for r in recs for f in r.candidate_features for k in f})
    # Tag keys first, embedding dims after: only for a readable coefficient layout.
    art_keys.sort(key=lambda k: (k.startswith(EMB_PREFIX), k))
    title_ids = sorted({r.title_id for r in recs})

    def seen(field_name: str) -> list[str]:
        return sorted({str(v) for r in recs if (v := r.context.get(field_name)) is not None})

    model = RewardModel(taste_keys, art_keys, title_ids, seen("device"), l2=l2, countries=seen("country"))
    return model.fit_records(recs)
