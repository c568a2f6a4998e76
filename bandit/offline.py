"""Offline evaluation of policies on a decision log: log + policy → estimator inputs → estimates.

The estimators themselves live in `bandit.replay` (pure formulas on arrays); this module turns
our own `DecisionRecord` logs into those arrays: the target policy's probability for every
logged candidate, and a reward model's q(x, a) cross-fitted on the log (each half of the log is
scored by a model fitted on the other half, so DM/DR do not grade rows the model memorised).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from bandit.decisions import DecisionRecord
from bandit.learning import fit_reward_model
from bandit.policy import Policy
from bandit.replay import Estimate, OPEInputs, build_inputs, evaluate_policy


@dataclass
class LogArrays:
    """A decision log as arrays padded to the largest candidate set."""

    action: np.ndarray  # index of the chosen artwork among the row's candidates
    reward: np.ndarray
    pscore: np.ndarray
    q_hat: np.ndarray  # (n, k): reward model per candidate; 0 on padding
    mask: np.ndarray  # (n, k) True where a candidate exists


def log_arrays(records: Sequence[DecisionRecord], l2: float = 1.0, folds: int = 2, seed: int = 0) -> LogArrays:
    """Arrays of the rewarded rows of a log, with a cross-fitted reward model."""
    recs = [r for r in records if r.reward is not None]
    if len(recs) < 2 * folds:
        raise ValueError(f"the log has {len(recs)} decisions with a reward; offline evaluation needs at least "
                         f"{2 * folds}")
    counts = np.array([len(r.candidates) for r in recs])
    k = int(counts.max())
    n = len(recs)
    mask = np.arange(k)[None, :] < counts[:, None]
    q = np.zeros((n, k))
    # Random folds: logs come in pages (title 1, 2, 3, 4, 1, 2, ...), so `i % folds` would put
    # whole titles in one fold and leave the other fold's model without their intercepts.
    fold = np.random.default_rng(seed).permutation(n) % folds
    for f in range(folds):
        model = fit_reward_model([r for r, g in zip(recs, fold) if g != f], l2=l2)
        rows = np.flatnonzero(fold == f)
        q[rows] = model.predict_records([recs[i] for i in rows], width=k)
    return LogArrays(
        action=np.array([r.candidates.index(r.chosen) for r in recs]),
        reward=np.array([float(r.reward) for r in recs]),
        pscore=np.array([r.probability for r in recs]),
        q_hat=q, mask=mask)


def target_distribution(policy: Policy, records: Sequence[DecisionRecord], k: int) -> np.ndarray:
    """(n, k) probabilities the target policy gives each logged candidate (rewarded rows only)."""
    recs = [r for r in records if r.reward is not None]
    dist = np.zeros((len(recs), k))
    for i, r in enumerate(recs):
        d = policy.distribution(r.user_context(), r.title_id, r.candidate_objects())
        dist[i, :len(r.candidates)] = [d.get(a, 0.0) for a in r.candidates]
    return dist


def policy_inputs(policy: Policy, records: Sequence[DecisionRecord], arrays: LogArrays) -> OPEInputs:
    """Estimator inputs for one target policy on one log."""
    dist = target_distribution(policy, records, arrays.mask.shape[1])
    return build_inputs(dist, arrays.action, arrays.reward, arrays.pscore, q_hat=arrays.q_hat)


def evaluate_log(records: Sequence[DecisionRecord], policies: Mapping[str, Policy], n_bootstrap: int = 1000,
                 level: float = 0.95, seed: int = 0) -> dict[str, list[Estimate]]:
    """Every applicable estimator for every policy on one log."""
    arrays = log_arrays(records)
    return {name: evaluate_policy(policy_inputs(p, records, arrays), n_bootstrap=n_bootstrap, level=level, seed=seed)
            for name, p in policies.items()}
