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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from bandit.decisions import DecisionRecord, new_record
from bandit.features import EMB_PREFIX, Candidate, UserContext
from bandit.policy import Policy
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


class RewardModel:
    """Ridge-regularised logistic regression q(x, a) of the click probability.

    Features: a per-title intercept, artwork features, and taste / device / late-night flag
    x artwork features: the shape of the interactions a personalised policy exploits, so the
    direct method is not biased against personalisation by construction.  Artworks differ only
    through their features (no per-artwork intercept): far fewer free parameters, so the model's
    own estimation noise, which no row bootstrap sees, stays small.
    """

    def __init__(self, taste_keys: Sequence[str], art_keys: Sequence[str], title_ids: Sequence[str],
                 devices: Sequence[str], l2: float = 1.0) -> None:
        self.taste_keys = list(taste_keys)
        self.art_keys = list(art_keys)
        self.devices = list(devices)
        self._title_index = {t: i for i, t in enumerate(title_ids)}
        self._taste_index = {k: i for i, k in enumerate(self.taste_keys)}
        self._akey_index = {k: i for i, k in enumerate(self.art_keys)}
        self.l2 = float(l2)
        self.coef = np.zeros(self.n_features)

    @property
    def n_features(self) -> int:
        """Length of the feature vector."""
        na = len(self.art_keys)
        return len(self._title_index) + na * (len(self.taste_keys) + len(self.devices) + 2)

    def _user_vec(self, user: UserContext) -> np.ndarray:
        t = np.zeros(len(self.taste_keys) + len(self.devices) + 2)
        t[-2] = 1.0  # constant: main effects of the artwork features
        for k, v in user.taste.items():
            i = self._taste_index.get(k)
            if i is not None:
                t[i] = v
        if user.device in self.devices:
            t[len(self.taste_keys) + self.devices.index(user.device)] = 1.0
        if user.hour is not None and (user.hour >= 21 or user.hour < 2):
            t[-1] = 1.0
        return t

    def _art_vec(self, c: Candidate) -> np.ndarray:
        a = np.zeros(len(self.art_keys))
        for k, v in c.features.items():
            i = self._akey_index.get(k)
            if i is not None:
                a[i] = v
        return a

    def features(self, user: UserContext, title_id: str, candidates: Sequence[Candidate]) -> np.ndarray:
        """(len(candidates), n_features) design rows for one visit."""
        u = self._user_vec(user)
        rows = np.zeros((len(candidates), self.n_features))
        off = len(self._title_index)
        i = self._title_index.get(title_id)
        if i is not None:
            rows[:, i] = 1.0
        for j, c in enumerate(candidates):
            rows[j, off:] = np.outer(u, self._art_vec(c)).ravel()
        return rows

    def fit(self, x: np.ndarray, y: np.ndarray, iters: int = 25) -> RewardModel:
        """Newton / IRLS on the penalised log-likelihood (intercepts penalised too, lightly)."""
        w = self.coef.copy()
        reg = np.full(x.shape[1], self.l2)
        reg[: len(self._title_index)] = 1e-3
        for _ in range(iters):
            p = 1.0 / (1.0 + np.exp(-(x @ w)))
            grad = x.T @ (p - y) + reg * w
            h = (x * (p * (1 - p))[:, None]).T @ x + np.diag(reg)
            step = np.linalg.solve(h, grad)
            w -= step
            if float(np.max(np.abs(step))) < 1e-6:
                break
        self.coef = w
        return self

    def predict(self, user: UserContext, title_id: str, candidates: Sequence[Candidate]) -> np.ndarray:
        """q(x, a) for every candidate of one visit."""
        return 1.0 / (1.0 + np.exp(-(self.features(user, title_id, candidates) @ self.coef)))


def fit_reward_model(records: Sequence[DecisionRecord], l2: float = 1.0) -> RewardModel:
    """Fit a `RewardModel` on logged records that carry a reward (clicks as 0/1)."""
    recs = [r for r in records if r.reward is not None]
    if not recs:
        raise ValueError("no records with a reward to fit on")
    taste_keys = sorted({k for r in recs for k in r.context.get("taste", {})})
    art_keys = sorted({k for r in recs for f in r.candidate_features for k in f})
    # Tag keys first, embedding dims after: only for a readable coefficient layout.
    art_keys.sort(key=lambda k: (k.startswith(EMB_PREFIX), k))
    title_ids = sorted({r.title_id for r in recs})
    devices = sorted({str(r.context.get("device")) for r in recs if r.context.get("device") is not None})
    model = RewardModel(taste_keys, art_keys, title_ids, devices, l2=l2)
    x = np.empty((len(recs), model.n_features))
    y = np.empty(len(recs))
    for i, r in enumerate(recs):
        j = r.candidates.index(r.chosen)
        c = Candidate(r.chosen, dict(r.candidate_features[j]))
        x[i] = model.features(r.user_context(), r.title_id, [c])[0]
        y[i] = float(r.reward)
    return model.fit(x, y)
