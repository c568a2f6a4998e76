"""Offline policy evaluation: estimate a target policy's click rate from a logged bandit log.

Every estimator is a small class holding one formula over per-row arrays, in the style of
Open Bandit Pipeline (OBP, Saito et al. 2021). Notation, with i a logged row:

- ``reward``   r_i            the logged click (or any bounded reward)
- ``pscore``   pi0_i          logging policy's probability of the logged action, in (0, 1]
- ``pi_e``     pi_e_i         target policy's probability of the logged action, in [0, 1]
- ``q_logged`` q_i            reward model at the logged action, q(x_i, a_i)
- ``v_hat``    v_i            reward model averaged over the target policy, sum_a pi_e(a|x_i) q(x_i, a)
- w_i = pi_e_i / pi0_i        importance weight

Formulas (sums and means over rows):

- replay    sum(pi_e r) / sum(pi_e)                      (uniform logs only, see `Replay`)
- ips       mean(w r)
- snips     sum(w r) / sum(w)
- dm        mean(v)
- dr        mean(v) + mean(w (r - q))
- sndr      mean(v) + sum(w (r - q)) / sum(w)
- switch-dr mean(v) + mean(1[w <= tau] w (r - q))

With positions (slates as in the Open Bandit Dataset) the same formulas hold with every
probability and model value taken at the row's logged position; `build_inputs` does that.

Each estimator is one small dataclass whose formula returns per-round terms (value = mean(direct)
+ mean(num) / mean(den)); each estimate carries a percentile bootstrap confidence interval over
logged rows, and `compare_policies` differences two policies' terms on the same resampled rows
(a paired bootstrap). Nothing here reads files except `read_logged_csv`, and nothing but
`plot_estimates` writes any.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
#: ``progress(step, done, total)`` for long steps (as in `bandit.learning.Progress`).
Progress = Callable[[str, float, float], None]

__all__ = [
    "DEFAULT_SWITCH_TAU",
    "Comparison",
    "DirectMethod",
    "DoublyRobust",
    "Estimate",
    "Estimator",
    "IPS",
    "OPEInputs",
    "Replay",
    "SNDR",
    "SNIPS",
    "SwitchDR",
    "Terms",
    "applicable_estimators",
    "build_inputs",
    "compare_policies",
    "default_estimators",
    "evaluate_policy",
    "format_table",
    "plot_estimates",
    "read_logged_csv",
]

# OBP's own default is tau = inf (switch-DR == DR); 100 matches the reference run on the Open
# Bandit Dataset and only bites when the target puts >100x the logging mass on an action.
DEFAULT_SWITCH_TAU = 100.0

# Bootstrap resamples are drawn in blocks so that the (block, n) index matrix stays small
# (~8 MB per gathered array at n = 10k) whatever n_bootstrap is.
_BOOTSTRAP_BLOCK_ELEMENTS = 1_000_000


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """One estimator's value of a target policy with its bootstrap confidence interval."""

    name: str
    value: float
    low: float
    high: float
    n: int
    level: float = 0.95

    @property
    def half_width(self) -> float:
        """Half the interval's width (a symmetric summary for tables)."""
        return (self.high - self.low) / 2.0

    def contains(self, x: float) -> bool:
        """Whether x lies in [low, high]."""
        return self.low <= x <= self.high


def _as_1d(name: str, values: ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of per-row values; got shape {arr.shape}")
    return arr


def _check_finite(name: str, arr: FloatArray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        kind = "NaN" if np.isnan(arr[i]) else "an infinite value"
        raise ValueError(
            f"{name} must be finite; it contains {kind} at index {i} "
            f"({int(bad.sum())} non-finite value(s) in all)"
        )


def _check_range(name: str, arr: FloatArray, low: float, high: float, low_open: bool) -> None:
    too_low = arr <= low if low_open else arr < low
    bad = too_low | (arr > high)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        interval = f"({low:g}, {high:g}]" if low_open else f"[{low:g}, {high:g}]"
        raise ValueError(
            f"{name} must be in {interval}; got {float(arr[i])!r} at index {i} "
            f"({int(bad.sum())} value(s) out of range)"
        )


@dataclass(frozen=True)
class OPEInputs:
    """Per-row arrays every estimator reads; validated on construction (ValueError on bad input).

    ``q_logged`` and ``v_hat`` are optional: without them only the model-free estimators run.
    """

    reward: FloatArray
    pscore: FloatArray
    pi_e: FloatArray
    q_logged: FloatArray | None = None
    v_hat: FloatArray | None = None

    def __post_init__(self) -> None:
        # Coerce here (object.__setattr__ because frozen) so callers may pass lists.
        reward = _as_1d("reward", self.reward)
        n = reward.shape[0]
        if n == 0:
            raise ValueError("reward is empty; at least one logged row is needed")
        fields: dict[str, FloatArray] = {"reward": reward}
        for name in ("pscore", "pi_e", "q_logged", "v_hat"):
            raw = getattr(self, name)
            if raw is None:
                continue
            arr = _as_1d(name, raw)
            if arr.shape[0] != n:
                raise ValueError(
                    f"{name} must have one value per logged row, the length of reward ({n}); "
                    f"got length {arr.shape[0]}"
                )
            fields[name] = arr
        if (self.q_logged is None) != (self.v_hat is None):
            raise ValueError(
                "q_logged and v_hat go together: the model-based estimators need both "
                "(give both or neither)"
            )
        for name, arr in fields.items():
            _check_finite(name, arr)
        _check_range("pscore", fields["pscore"], 0.0, 1.0, low_open=True)
        _check_range("pi_e", fields["pi_e"], 0.0, 1.0, low_open=False)
        for name, arr in fields.items():
            object.__setattr__(self, name, arr)

    @property
    def n(self) -> int:
        """Number of logged rows."""
        return int(self.reward.shape[0])

    @property
    def has_model(self) -> bool:
        """Whether reward-model arrays are present (DM, DR and friends can run)."""
        return self.q_logged is not None

    @property
    def is_uniform_log(self) -> bool:
        """Whether every row has the same logging propensity (what `Replay` requires)."""
        return bool(np.allclose(self.pscore, self.pscore[0], rtol=1e-9, atol=0.0))

    def take(self, rows: ArrayLike) -> OPEInputs:
        """The same inputs restricted to ``rows`` (indexes or a boolean mask): a segment of the log."""
        idx = np.asarray(rows)
        pick = (lambda x: None if x is None else x[idx])  # noqa: E731
        return OPEInputs(self.reward[idx], self.pscore[idx], self.pi_e[idx], pick(self.q_logged), pick(self.v_hat))


def build_inputs(
    action_dist: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    q_hat: ArrayLike | None = None,
    position: ArrayLike | None = None,
) -> OPEInputs:
    """Build `OPEInputs` from OBP-shaped arrays.

    ``action_dist`` is the target policy, (n, n_actions) or (n, n_actions, n_positions);
    ``q_hat`` (optional) has the same shape; ``action`` and ``position`` (0-based, required
    exactly when ``action_dist`` is 3-D) index the logged choice of each row.
    """
    dist = np.asarray(action_dist, dtype=np.float64)
    if dist.ndim not in (2, 3):
        raise ValueError(
            "action_dist must have shape (n, n_actions) or (n, n_actions, n_positions); "
            f"got shape {dist.shape}"
        )
    n, n_actions = dist.shape[0], dist.shape[1]
    act = _as_index("action", action, n, n_actions)
    if dist.ndim == 3:
        if position is None:
            raise ValueError(
                f"position is required when action_dist is 3-D (shape {dist.shape}): "
                "the probabilities are read at each row's logged position"
            )
        pos = _as_index("position", position, n, dist.shape[2])
    else:
        if position is not None:
            raise ValueError(
                f"position was given but action_dist is 2-D (shape {dist.shape}); "
                "pass an (n, n_actions, n_positions) action_dist to use positions"
            )
        pos = None
    _check_finite("action_dist", dist.reshape(-1))
    _check_range("action_dist", dist.reshape(-1), 0.0, 1.0, low_open=False)

    rows = np.arange(n)
    # Slice each row's distribution at its logged position: (n, n_actions).
    dist_at = dist if pos is None else dist[rows, :, pos]
    sums = dist_at.sum(axis=1)
    off = np.abs(sums - 1.0) > 1e-6
    if off.any():
        i = int(np.flatnonzero(off)[0])
        where = f"row {i}" if pos is None else f"row {i} at position {int(pos[i])}"
        raise ValueError(
            f"action_dist must sum to 1 over actions; {where} sums to {float(sums[i])!r}"
        )
    pi_e = dist_at[rows, act]

    q_logged: FloatArray | None = None
    v_hat: FloatArray | None = None
    if q_hat is not None:
        q = np.asarray(q_hat, dtype=np.float64)
        if q.shape != dist.shape:
            raise ValueError(
                f"q_hat must have the same shape as action_dist {dist.shape}; got {q.shape}"
            )
        q_at = q if pos is None else q[rows, :, pos]
        _check_finite("q_hat", q_at.reshape(-1))
        q_logged = q_at[rows, act]
        v_hat = np.einsum("ij,ij->i", dist_at, q_at)
    return OPEInputs(
        reward=np.asarray(reward), pscore=np.asarray(pscore), pi_e=pi_e, q_logged=q_logged,
        v_hat=v_hat,
    )


def _as_index(name: str, values: ArrayLike, n: int, size: int) -> NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(
            f"{name} must be a 1-D array with one index per row of action_dist ({n}); "
            f"got shape {arr.shape}"
        )
    if arr.dtype.kind == "f":
        # Accept integral floats (CSV readers produce them) but not 1.5.
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer indices; got non-integer values")
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer indices; got dtype {arr.dtype}")
    idx = arr.astype(np.int64)
    bad = (idx < 0) | (idx >= size)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be in [0, {size - 1}]; got {idx[i]} at index {i}")
    return idx


# --------------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------------

# Every estimator here is one small dataclass whose formula gives per-round terms, and its value
# is mean(direct) + mean(num) / mean(den) over rounds. Terms are arrays of shape (..., n) and the
# value reduces the last axis, so the same code gives the point estimate (shape (n,)) and a whole
# block of bootstrap resamples (shape (B, n)); and two policies' terms on the same resampled rows
# give a paired bootstrap of their difference.


def _ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    """num / den, NaN where den == 0 (no support for the target in that (re)sample)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)


@dataclass(frozen=True)
class Terms:
    """One estimator's per-round terms: value = mean(direct) + mean(num) / mean(den).

    A missing part contributes nothing (``direct``, ``num``) or is 1 (``den``, a plain mean).
    """

    direct: FloatArray | None = None
    num: FloatArray | None = None
    den: FloatArray | None = None

    def value(self) -> FloatArray:
        """The estimate over the last axis."""
        out: FloatArray | float = 0.0
        if self.direct is not None:
            out = np.mean(self.direct, axis=-1)
        if self.num is not None:
            num = np.mean(self.num, axis=-1)
            out = out + (num if self.den is None else _ratio(num, np.mean(self.den, axis=-1)))
        return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True)
class Estimator:
    """Base class: one formula (`terms`) over `OPEInputs` arrays, plus a bootstrap interval."""

    name: ClassVar[str] = "estimator"
    needs_model: ClassVar[bool] = False

    def terms(self, a: Mapping[str, FloatArray]) -> Terms:
        """Per-round terms from the arrays in ``a`` (keys as in `OPEInputs`, rounds on the last axis)."""
        raise NotImplementedError

    def formula(self, a: Mapping[str, FloatArray]) -> FloatArray:
        """The estimator over the last axis of the arrays in ``a``."""
        return self.terms(a).value()

    def check(self, inputs: OPEInputs) -> None:
        """Raise ValueError if this estimator cannot run on ``inputs``."""
        if self.needs_model and not inputs.has_model:
            raise ValueError(
                f"{self.name} needs a reward model: build the inputs with q_logged and v_hat "
                "(or q_hat in build_inputs)"
            )

    def estimate(self, inputs: OPEInputs) -> float:
        """Point estimate of the target policy's value."""
        self.check(inputs)
        return float(self.formula(_arrays(inputs)))

    def estimate_interval(
        self,
        inputs: OPEInputs,
        n_bootstrap: int = 1000,
        level: float = 0.95,
        seed: int = 0,
    ) -> Estimate:
        """Point estimate plus a percentile bootstrap interval over logged rows."""
        return _bootstrap_all([self], inputs, n_bootstrap, level, seed)[0]


def _weight(a: Mapping[str, FloatArray]) -> FloatArray:
    return a["pi_e"] / a["pscore"]


@dataclass(frozen=True)
class Replay(Estimator):
    """Replay (Li et al., WSDM 2011): mean reward over rows where the target agrees with the log.

    For a deterministic target (pi_e in {0, 1}) this is exactly Li et al.'s rejection sampler:
    keep rows whose logged action equals the target's action, average their rewards. For a
    stochastic target, rather than sampling the target's action per row (accepting row i with
    probability pi_e_i), we use the expectation of that acceptance: sum(pi_e r) / sum(pi_e).
    That has the same expectation per accepted row and lower variance. Both require a uniform
    logging policy, so this raises ValueError when ``pscore`` varies; under uniform logging the
    value equals SNIPS.
    """

    name: ClassVar[str] = "replay"

    def check(self, inputs: OPEInputs) -> None:
        super().check(inputs)
        if not inputs.is_uniform_log:
            raise ValueError(
                "replay requires a uniform logging policy (the same pscore on every row); "
                f"pscore ranges from {inputs.pscore.min():g} to {inputs.pscore.max():g}. "
                "Use ips/snips for non-uniform logs"
            )

    def terms(self, a: Mapping[str, FloatArray]) -> Terms:
        return Terms(num=a["pi_e"] * a["reward"], den=a["pi_e"])


@dataclass(frozen=True)
class IPS(Estimator):
    """Inverse propensity scoring: mean(w r), w = pi_e / pscore. Unbiased given full support."""

    name: ClassVar[str] = "ips"

    def terms(self, a: Mapping[str, FloatArray]) -> Terms:
        return Terms(num=_weight(a) * a["reward"])


@dataclass(frozen=True)
class SNIPS(Estimator):
    """Self-normalised IPS: sum(w r) / sum(w). Slightly biased, much lower variance."""

    name: ClassVar[str] = "snips"

    def terms(self, a: Mapping[str, FloatArray]) -> Terms:
        w = _weight(a)
        return Terms(num=w * a["reward"], den=w)


@dataclass(frozen=True)
class DirectMethod(Estimator):
    """Direct method: mean over rows of sum_a pi_e(a|x) q(x, a). Only as good as the model."""

    name: ClassVar[str] = "dm"
    needs_model: ClassVar[bool] = True

    def terms(self, a: Mapping[str, FloatArray]) -> Terms:
        return Terms(direct=a["v_hat"])


@dataclass(frozen=True)
class DoublyRobust(Estimator):
    """Doubly robust: DM plus IPS of the model's residual; unbiased if either part is right."""

    name: ClassVar[str] = "dr"
    needs_model: ClassVar[bool] = True

    def terms(self, a: Mapping[str, FloatArray]) -> Terms:
        return Terms(direct=a["v_hat"] + _weight(a) * (a["reward"] - a["q_logged"]))


@dataclass(frozen=True)
class SNDR(Estimator):
    """Self-normalised DR: DM plus the residual correction normalised by sum(w)."""

    name: ClassVar[str] = "sndr"
    needs_model: ClassVar[bool] = True

    def terms(self, a: Mapping[str, FloatArray]) -> Terms:
        w = _weight(a)
        return Terms(direct=a["v_hat"], num=w * (a["reward"] - a["q_logged"]), den=w)


@dataclass(frozen=True)
class SwitchDR(Estimator):
    """Switch-DR (Wang et al. 2017): DR on rows with w <= tau, DM alone where w > tau."""

    tau: float = DEFAULT_SWITCH_TAU
    name: ClassVar[str] = "switch-dr"
    needs_model: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not self.tau > 0:  # also rejects NaN
            raise ValueError(f"switch-dr tau must be a positive weight threshold; got {self.tau!r}")
        object.__setattr__(self, "tau", float(self.tau))

    def terms(self, a: Mapping[str, FloatArray]) -> Terms:
        w = _weight(a)
        kept = np.where(w <= self.tau, w, 0.0)
        return Terms(direct=a["v_hat"] + kept * (a["reward"] - a["q_logged"]))


def default_estimators(switch_tau: float = DEFAULT_SWITCH_TAU) -> list[Estimator]:
    """Every estimator of this module, in table order."""
    return [Replay(), IPS(), SNIPS(), DirectMethod(), DoublyRobust(), SNDR(), SwitchDR(switch_tau)]


def applicable_estimators(inputs: OPEInputs, switch_tau: float = DEFAULT_SWITCH_TAU) -> list[Estimator]:
    """The default set less what cannot run here: model-based ones without a model, replay on a
    non-uniform log."""
    return [est for est in default_estimators(switch_tau)
            if (inputs.has_model or not est.needs_model) and (inputs.is_uniform_log or not isinstance(est, Replay))]


# --------------------------------------------------------------------------------------------
# Bootstrap and the all-estimators entry points
# --------------------------------------------------------------------------------------------


def _arrays(inputs: OPEInputs) -> dict[str, FloatArray]:
    out = {"reward": inputs.reward, "pscore": inputs.pscore, "pi_e": inputs.pi_e}
    if inputs.q_logged is not None and inputs.v_hat is not None:
        out["q_logged"] = inputs.q_logged
        out["v_hat"] = inputs.v_hat
    return out


def _check_bootstrap(n_bootstrap: int, level: float) -> None:
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)):
        raise ValueError(f"n_bootstrap must be an int; got {n_bootstrap!r}")
    if n_bootstrap < 2:
        raise ValueError(f"n_bootstrap must be at least 2 resamples; got {n_bootstrap}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be a confidence level in (0, 1), e.g. 0.95; got {level!r}")


def _resamples(rng: np.random.Generator, n: int, n_bootstrap: int) -> Iterable[tuple[slice, NDArray[np.int64]]]:
    """Blocks of resampled row indices, (block, n) each, with the block's place in the B resamples."""
    block = max(1, _BOOTSTRAP_BLOCK_ELEMENTS // n)
    for start in range(0, n_bootstrap, block):
        stop = min(start + block, n_bootstrap)
        yield slice(start, stop), rng.integers(0, n, size=(stop - start, n))


def _percentiles(samples: FloatArray, level: float) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return math.nan, math.nan
    # A ratio estimator can be undefined on a resample with no support (NaN); the interval is
    # then over the resamples where it is defined.
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def _bootstrap_all(
    estimators: Sequence[Estimator],
    inputs: OPEInputs,
    n_bootstrap: int,
    level: float,
    seed: int,
    progress: Progress | None = None,
) -> list[Estimate]:
    _check_bootstrap(n_bootstrap, level)
    for est in estimators:
        est.check(inputs)

    arrays = _arrays(inputs)
    n = inputs.n
    values = [float(est.formula(arrays)) for est in estimators]
    # All estimators see the same resamples, so differences between them are not resampling noise.
    boot = np.empty((len(estimators), n_bootstrap), dtype=np.float64)
    for where, idx in _resamples(np.random.default_rng(seed), n, n_bootstrap):
        resampled = {k: v[idx] for k, v in arrays.items()}
        for j, est in enumerate(estimators):
            boot[j, where] = est.formula(resampled)
        if progress is not None:
            progress("bootstrap resamples", where.stop, n_bootstrap)
    return [Estimate(est.name, value, *_percentiles(samples, level), n, level)
            for est, value, samples in zip(estimators, values, boot)]


def evaluate_policy(
    inputs: OPEInputs,
    estimators: Iterable[Estimator] | None = None,
    *,
    switch_tau: float = DEFAULT_SWITCH_TAU,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[Estimate]:
    """Run every applicable estimator (default: all of them) with bootstrap intervals.

    With the default set, model-based estimators are skipped when ``inputs`` has no reward
    model and `Replay` is skipped on non-uniform logs; an explicit ``estimators`` list is run
    as given and raises ValueError for any that cannot run.
    """
    chosen = applicable_estimators(inputs, switch_tau) if estimators is None else list(estimators)
    return _bootstrap_all(chosen, inputs, n_bootstrap, level, seed, progress)


@dataclass(frozen=True)
class Comparison:
    """Two policies' estimates by one estimator on the same rows, and their difference ``a - b``.

    ``diff``'s interval is a paired bootstrap (each resample draws the rows once and evaluates
    both policies on them) unless the comparison was asked unpaired.
    """

    a: Estimate
    b: Estimate
    diff: Estimate
    paired: bool = True

    @property
    def name(self) -> str:
        return self.a.name


def compare_policies(
    a: OPEInputs,
    b: OPEInputs,
    estimators: Iterable[Estimator] | None = None,
    *,
    switch_tau: float = DEFAULT_SWITCH_TAU,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    paired: bool = True,
    progress: Progress | None = None,
) -> list[Comparison]:
    """Every applicable estimator's value of policies ``a`` and ``b`` and of their difference.

    Both inputs must come from the same logged rows (same rewards and propensities, same reward
    model): only the target probabilities differ.  Each bootstrap resample draws rows once and
    computes both policies' estimates on them, so the difference's interval leaves out the
    sampling noise the two share (which rows happened to be logged, and their clicks); with
    ``paired=False`` the two are resampled independently instead (wider when they are
    positively correlated, as two policies evaluated on one log nearly always are).
    """
    _check_bootstrap(n_bootstrap, level)
    if a.n != b.n:
        raise ValueError(f"the two policies' inputs must cover the same logged rows; got {a.n} and {b.n} rows")
    for field_name in ("reward", "pscore", "q_logged"):
        xa, xb = getattr(a, field_name), getattr(b, field_name)
        if (xa is None) != (xb is None) or (xa is not None and not np.array_equal(xa, xb)):
            raise ValueError(f"the two policies' inputs differ in {field_name}: a paired comparison needs both "
                             "evaluated on the same log rows with the same reward model")
    chosen = applicable_estimators(a, switch_tau) if estimators is None else list(estimators)
    for est in chosen:
        est.check(a)
        est.check(b)
    arr_a, arr_b = _arrays(a), _arrays(b)
    n, k = a.n, len(chosen)
    values_a = np.array([float(est.formula(arr_a)) for est in chosen])
    values_b = np.array([float(est.formula(arr_b)) for est in chosen])
    boot_a = np.empty((k, n_bootstrap))
    boot_b = np.empty((k, n_bootstrap))
    rng = np.random.default_rng(seed)
    # Unpaired: b's rows come from a stream of their own, independent of a's.
    rng_b = rng if paired else np.random.default_rng([seed, 1])
    blocks_b = None if paired else _resamples(rng_b, n, n_bootstrap)
    for where, idx in _resamples(rng, n, n_bootstrap):
        idx_b = idx if blocks_b is None else next(blocks_b)[1]
        ra = {key: v[idx] for key, v in arr_a.items()}
        rb = {key: v[idx_b] for key, v in arr_b.items()}
        for j, est in enumerate(chosen):
            boot_a[j, where] = est.formula(ra)
            boot_b[j, where] = est.formula(rb)
        if progress is not None:
            progress("bootstrap resamples", where.stop, n_bootstrap)
    out = []
    for j, est in enumerate(chosen):
        ea = Estimate(est.name, float(values_a[j]), *_percentiles(boot_a[j], level), n, level)
        eb = Estimate(est.name, float(values_b[j]), *_percentiles(boot_b[j], level), n, level)
        ed = Estimate(est.name, float(values_a[j] - values_b[j]), *_percentiles(boot_a[j] - boot_b[j], level), n,
                      level)
        out.append(Comparison(ea, eb, ed, paired))
    return out


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def format_table(estimates: Sequence[Estimate]) -> str:
    """A plain-text table: estimator, value, interval, n."""
    if not estimates:
        return "(no estimates)"
    levels = {e.level for e in estimates}
    ci_head = f"{round(levels.pop() * 100):g}% CI" if len(levels) == 1 else "CI"
    header = ("estimator", "value", ci_head, "n")
    rows = [
        (e.name, f"{e.value:.6f}", f"[{e.low:.6f}, {e.high:.6f}]", str(e.n)) for e in estimates
    ]
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(4)]

    def line(cells: Sequence[str]) -> str:
        # Names left-aligned, numbers right-aligned so decimal points line up.
        return "  ".join(
            c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths))
        )

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def plot_estimates(
    estimates_by_policy: Mapping[str, Sequence[Estimate]],
    path: str | PathLike[str],
    title: str = "Off-policy value estimates",
) -> Path:
    """Write a PNG with one error bar per (estimator, policy); returns the path written."""
    # Figure + Agg canvas directly, not pyplot: no global state, no GUI backend, thread-safe.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not estimates_by_policy:
        raise ValueError("estimates_by_policy is empty; nothing to plot")
    names: list[str] = []
    for ests in estimates_by_policy.values():
        for e in ests:
            if e.name not in names:
                names.append(e.name)
    x_of = {name: i for i, name in enumerate(names)}
    n_pol = len(estimates_by_policy)
    spread = 0.7
    step = spread / n_pol

    fig = Figure(figsize=(max(6.0, 1.1 * len(names) + 2.0), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for k, (policy, ests) in enumerate(estimates_by_policy.items()):
        offset = -spread / 2 + step * (k + 0.5)
        xs = np.array([x_of[e.name] + offset for e in ests], dtype=float)
        vals = np.array([e.value for e in ests], dtype=float)
        # errorbar wants distances; clip at 0 in case a degenerate interval misses the value.
        lower = np.clip(vals - np.array([e.low for e in ests], dtype=float), 0.0, None)
        upper = np.clip(np.array([e.high for e in ests], dtype=float) - vals, 0.0, None)
        ax.errorbar(xs, vals, yerr=np.vstack([lower, upper]), fmt="o", capsize=4, label=policy)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    ax.set_ylabel("estimated value (click rate)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png")
    return out


def read_logged_csv(path: str | PathLike[str]) -> dict[str, FloatArray]:
    """Read an Open-Bandit-Dataset-style log: item_id, position, click, propensity_score.

    Returns float arrays keyed by those column names (positions as in the file, 1-based in
    the OBD); other columns are ignored. Standard library only, no pandas.
    """
    wanted = ("item_id", "position", "click", "propensity_score")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: empty file, expected a header row") from None
        missing = [c for c in wanted if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header is {header[:8]}...")
        cols = [header.index(c) for c in wanted]
        rows = [[float(row[c]) for c in cols] for row in reader if row]
    table = np.array(rows, dtype=np.float64).reshape(-1, len(wanted))
    return {name: table[:, k].copy() for k, name in enumerate(wanted)}
