"""Tests for bandit.replay: offline policy evaluation estimators and their bootstrap intervals."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from bandit.replay import (
    IPS,
    SNDR,
    SNIPS,
    DirectMethod,
    DoublyRobust,
    Estimate,
    OPEInputs,
    Replay,
    SwitchDR,
    build_inputs,
    default_estimators,
    evaluate_policy,
    format_table,
    plot_estimates,
    read_logged_csv,
)

ALL_NAMES = ["replay", "ips", "snips", "dm", "dr", "sndr", "switch-dr"]

# ---------------------------------------------------------------------------------------------
# A simulated uniform log whose target-policy value is known exactly
# ---------------------------------------------------------------------------------------------

N_CTX, N_ACTIONS = 6, 4
_table_rng = np.random.default_rng(2024)
CLICK_PROB = _table_rng.uniform(0.05, 0.6, size=(N_CTX, N_ACTIONS))  # P(click | x, a)
_logits = _table_rng.normal(0.0, 1.5, size=(N_CTX, N_ACTIONS))
TARGET = np.exp(_logits) / np.exp(_logits).sum(axis=1, keepdims=True)  # pi_e(a | x), stochastic
# Contexts are uniform, so the value is the plain mean over contexts of sum_a pi_e(a|x) p(x, a).
TRUE_VALUE = float(np.mean((TARGET * CLICK_PROB).sum(axis=1)))


def simulate(seed: int, n: int, q_table: np.ndarray | None = CLICK_PROB) -> OPEInputs:
    """A uniform-random log of n rows; the reward model (if any) is q_table looked up per context."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, N_CTX, size=n)
    a = rng.integers(0, N_ACTIONS, size=n)
    r = (rng.random(n) < CLICK_PROB[x, a]).astype(float)
    q_hat = None if q_table is None else q_table[x]
    return build_inputs(TARGET[x], a, r, np.full(n, 1.0 / N_ACTIONS), q_hat)


# Seeds 0..5 at n = 4000 were checked to have every estimator's 95% interval cover the truth.
# Some seeds do not (12, 17, 19, 27 among 0..29 at this size): that is what a 95% interval
# means, and test_coverage_rate_and_unbiasedness checks the rate itself over many logs.
@pytest.mark.parametrize("seed", range(6))
def test_every_interval_covers_true_value(seed: int) -> None:
    estimates = evaluate_policy(simulate(seed, 4000), n_bootstrap=1000, seed=seed)
    assert [e.name for e in estimates] == ALL_NAMES
    for e in estimates:
        assert e.low <= TRUE_VALUE <= e.high, (e, TRUE_VALUE)


def test_coverage_rate_and_unbiasedness() -> None:
    n_logs = 80
    values: dict[str, list[float]] = {name: [] for name in ALL_NAMES}
    covered = {name: 0 for name in ALL_NAMES}
    for seed in range(100, 100 + n_logs):
        for e in evaluate_policy(simulate(seed, 2000), n_bootstrap=200, seed=seed):
            values[e.name].append(e.value)
            covered[e.name] += e.contains(TRUE_VALUE)
    for name in ALL_NAMES:
        # Nominal 95%; 0.90-0.975 observed on four blocks of 80 logs while developing (~3 sd margin).
        # 4 se on the mean: |t| stayed under 3.5 on those blocks; this block sits under 0.5.
        assert covered[name] / n_logs >= 0.85, (name, covered[name])
        vals = np.asarray(values[name])
        se = vals.std(ddof=1) / math.sqrt(n_logs)
        # Unbiased (or, for the ratio estimators, nearly so at n = 2000): mean within 4 se.
        assert abs(vals.mean() - TRUE_VALUE) < 4 * se, (name, vals.mean(), TRUE_VALUE, se)


def test_biased_reward_model_breaks_dm_but_not_dr() -> None:
    biased = np.clip(CLICK_PROB + 0.15, 0.0, 1.0)
    inputs = simulate(3, 4000, q_table=biased)
    est = {e.name: e for e in evaluate_policy(inputs, n_bootstrap=1000, seed=3)}
    assert not est["dm"].contains(TRUE_VALUE)
    assert est["dm"].low > TRUE_VALUE + 0.1  # misses by roughly the bias, not by noise
    for name in ("dr", "sndr", "switch-dr"):
        assert est[name].contains(TRUE_VALUE), est[name]


# ---------------------------------------------------------------------------------------------
# Formulas on small hand-checked cases
# ---------------------------------------------------------------------------------------------


def test_replay_is_li_rejection_sampling_for_a_deterministic_target() -> None:
    rng = np.random.default_rng(0)
    n = 500
    x = rng.integers(0, N_CTX, size=n)
    a = rng.integers(0, N_ACTIONS, size=n)
    r = rng.random(n)
    greedy = np.eye(N_ACTIONS)[TARGET.argmax(axis=1)]  # deterministic argmax policy
    inputs = build_inputs(greedy[x], a, r, np.full(n, 0.25))
    matched = a == TARGET.argmax(axis=1)[x]
    assert Replay().estimate(inputs) == pytest.approx(r[matched].mean(), abs=1e-12)
    # Under uniform logging the expected-acceptance replay equals SNIPS.
    assert Replay().estimate(inputs) == pytest.approx(SNIPS().estimate(inputs), abs=1e-12)


def test_formulas_on_a_tiny_log() -> None:
    inputs = OPEInputs(
        reward=[1.0, 0.0, 1.0],
        pscore=[0.5, 0.5, 0.25],
        pi_e=[1.0, 0.5, 0.5],
        q_logged=[0.5, 0.5, 0.5],
        v_hat=[0.4, 0.4, 0.4],
    )
    w = np.array([2.0, 1.0, 2.0])
    r = np.array([1.0, 0.0, 1.0])
    assert IPS().estimate(inputs) == pytest.approx(np.mean(w * r))
    assert SNIPS().estimate(inputs) == pytest.approx(np.sum(w * r) / np.sum(w))
    assert DirectMethod().estimate(inputs) == pytest.approx(0.4)
    assert DoublyRobust().estimate(inputs) == pytest.approx(0.4 + np.mean(w * (r - 0.5)))
    assert SNDR().estimate(inputs) == pytest.approx(0.4 + np.sum(w * (r - 0.5)) / np.sum(w))
    # tau = 1.5 drops the two rows with w = 2 from the correction.
    assert SwitchDR(tau=1.5).estimate(inputs) == pytest.approx(0.4 + (1.0 * (0.0 - 0.5)) / 3)
    assert SwitchDR(tau=math.inf).estimate(inputs) == pytest.approx(DoublyRobust().estimate(inputs))
    assert SwitchDR(tau=1e-9).estimate(inputs) == pytest.approx(DirectMethod().estimate(inputs))


def test_build_inputs_with_positions_matches_slicing_by_hand() -> None:
    rng = np.random.default_rng(1)
    n, k, m = 50, 5, 3
    dist = rng.dirichlet(np.ones(k), size=(n, m)).transpose(0, 2, 1)  # (n, k, m), sums over k
    q = rng.random((n, k, m))
    a = rng.integers(0, k, size=n)
    p = rng.integers(0, m, size=n)
    inputs = build_inputs(dist, a, rng.random(n), np.full(n, 1 / k), q, p)
    rows = np.arange(n)
    np.testing.assert_allclose(inputs.pi_e, dist[rows, a, p])
    np.testing.assert_allclose(inputs.q_logged, q[rows, a, p])
    np.testing.assert_allclose(inputs.v_hat, (dist[rows, :, p] * q[rows, :, p]).sum(axis=1))


def test_default_set_skips_what_cannot_run() -> None:
    no_model = simulate(0, 300, q_table=None)
    assert [e.name for e in evaluate_policy(no_model, n_bootstrap=50)] == ["replay", "ips", "snips"]
    base = simulate(0, 300)
    pscore = base.pscore.copy()
    pscore[0] = 0.5  # no longer uniform: replay is not valid
    nonuniform = OPEInputs(base.reward, pscore, base.pi_e, base.q_logged, base.v_hat)
    names = [e.name for e in evaluate_policy(nonuniform, n_bootstrap=50)]
    assert names == ALL_NAMES[1:]


# ---------------------------------------------------------------------------------------------
# Bootstrap intervals
# ---------------------------------------------------------------------------------------------


def test_interval_contains_point_estimate_and_is_seeded() -> None:
    inputs = simulate(7, 2000)
    first = evaluate_policy(inputs, n_bootstrap=500, seed=11)
    for e in first:
        assert e.low <= e.value <= e.high, e
        assert e.n == 2000 and e.level == 0.95
    assert evaluate_policy(inputs, n_bootstrap=500, seed=11) == first
    assert evaluate_policy(inputs, n_bootstrap=500, seed=12) != first


def test_interval_narrows_with_more_data() -> None:
    small = {e.name: e for e in evaluate_policy(simulate(5, 500), n_bootstrap=500)}
    large = {e.name: e for e in evaluate_policy(simulate(5, 8000), n_bootstrap=500)}
    for name in ALL_NAMES:
        # Width shrinks like 1/sqrt(n): 16x the data -> about 1/4 the width.
        assert large[name].high - large[name].low < 0.5 * (small[name].high - small[name].low)


def test_level_widens_interval() -> None:
    inputs = simulate(2, 1000)
    narrow = IPS().estimate_interval(inputs, n_bootstrap=1000, level=0.5)
    wide = IPS().estimate_interval(inputs, n_bootstrap=1000, level=0.99)
    assert wide.low < narrow.low <= narrow.high < wide.high
    assert narrow.value == wide.value


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _ok(**overrides: object) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "reward": [1.0, 0.0, 1.0],
        "pscore": [0.5, 0.5, 0.5],
        "pi_e": [0.2, 0.3, 0.4],
        "q_logged": [0.1, 0.2, 0.3],
        "v_hat": [0.2, 0.2, 0.2],
    }
    kwargs.update(overrides)
    return kwargs


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pscore": [0.5, 0.5]}, r"pscore must have one value per logged row.*\(3\).*length 2"),
        ({"pi_e": [0.1, 0.2, 0.3, 0.4]}, r"pi_e must have one value per logged row.*length 4"),
        ({"v_hat": [0.1]}, r"v_hat must have one value per logged row"),
        ({"pscore": [0.5, 0.0, 0.5]}, r"pscore must be in \(0, 1\]; got 0\.0 at index 1"),
        ({"pscore": [0.5, -0.1, 0.5]}, r"pscore must be in \(0, 1\]; got -0\.1 at index 1"),
        ({"pscore": [0.5, 0.5, 1.5]}, r"pscore must be in \(0, 1\]; got 1\.5 at index 2"),
        ({"pi_e": [0.5, 1.2, 0.5]}, r"pi_e must be in \[0, 1\]; got 1\.2 at index 1"),
        ({"reward": [1.0, math.nan, 1.0]}, r"reward must be finite; it contains NaN at index 1"),
        ({"pscore": [math.nan, 0.5, 0.5]}, r"pscore must be finite; it contains NaN at index 0"),
        ({"q_logged": [0.1, 0.2, math.inf]}, r"q_logged must be finite.*infinite.*index 2"),
        ({"v_hat": None}, r"q_logged and v_hat go together"),
        ({"reward": [[1.0, 0.0, 1.0]]}, r"reward must be a 1-D array.*\(1, 3\)"),
        ({"reward": [], "pscore": [], "pi_e": [], "q_logged": [], "v_hat": []}, r"reward is empty"),
    ],
)
def test_invalid_inputs_raise(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OPEInputs(**_ok(**overrides))  # type: ignore[arg-type]


def test_build_inputs_validation() -> None:
    dist = np.full((3, 4), 0.25)
    r, ps = np.zeros(3), np.full(3, 0.25)
    with pytest.raises(ValueError, match=r"action must be in \[0, 3\]; got 4 at index 2"):
        build_inputs(dist, [0, 1, 4], r, ps)
    with pytest.raises(ValueError, match=r"action must be a 1-D array with one index per row"):
        build_inputs(dist, [0, 1], r, ps)
    with pytest.raises(ValueError, match=r"action must hold integer indices"):
        build_inputs(dist, [0.0, 1.5, 2.0], r, ps)
    with pytest.raises(ValueError, match=r"action_dist must sum to 1 over actions; row 1"):
        build_inputs(np.array([[0.25] * 4, [0.5] * 4, [0.25] * 4]), [0, 1, 2], r, ps)
    with pytest.raises(ValueError, match=r"q_hat must have the same shape as action_dist"):
        build_inputs(dist, [0, 1, 2], r, ps, q_hat=np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"position is required when action_dist is 3-D"):
        build_inputs(np.full((3, 4, 2), 0.25), [0, 1, 2], r, ps)
    with pytest.raises(ValueError, match=r"position was given but action_dist is 2-D"):
        build_inputs(dist, [0, 1, 2], r, ps, position=[0, 0, 0])
    with pytest.raises(ValueError, match=r"position must be in \[0, 1\]; got 2 at index 0"):
        build_inputs(np.full((3, 4, 2), 0.25), [0, 1, 2], r, ps, position=[2, 0, 0])
    with pytest.raises(ValueError, match=r"pscore must be in \(0, 1\]"):
        build_inputs(dist, [0, 1, 2], r, np.zeros(3))


def test_estimator_preconditions() -> None:
    no_model = simulate(0, 100, q_table=None)
    with pytest.raises(ValueError, match=r"dr needs a reward model"):
        DoublyRobust().estimate(no_model)
    with pytest.raises(ValueError, match=r"dm needs a reward model"):
        evaluate_policy(no_model, [DirectMethod()], n_bootstrap=10)
    nonuniform = OPEInputs([1.0, 0.0], [0.5, 0.25], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"replay requires a uniform logging policy"):
        Replay().estimate(nonuniform)
    with pytest.raises(ValueError, match=r"tau must be a positive"):
        SwitchDR(tau=0.0)
    with pytest.raises(ValueError, match=r"n_bootstrap must be at least 2"):
        IPS().estimate_interval(no_model, n_bootstrap=1)
    with pytest.raises(ValueError, match=r"level must be a confidence level in \(0, 1\)"):
        IPS().estimate_interval(no_model, level=95)


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------


def test_format_table_lists_every_estimator() -> None:
    estimates = evaluate_policy(simulate(0, 500), n_bootstrap=100)
    table = format_table(estimates)
    for name in ALL_NAMES:
        assert name in table
    assert "95% CI" in table
    assert len(table.splitlines()) == 2 + len(ALL_NAMES)
    assert format_table([]) == "(no estimates)"


def test_plot_estimates_writes_a_png(tmp_path: Path) -> None:
    from PIL import Image

    by_policy = {
        "softmax": evaluate_policy(simulate(0, 500), n_bootstrap=100),
        "uniform": evaluate_policy(simulate(1, 500, q_table=None), n_bootstrap=100),
    }
    out = plot_estimates(by_policy, tmp_path / "ope.png")
    assert out == tmp_path / "ope.png"
    with Image.open(out) as img:
        img.verify()
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.size[0] > 100 and img.size[1] > 100
    with pytest.raises(ValueError, match="empty"):
        plot_estimates({}, tmp_path / "none.png")


def test_estimate_record() -> None:
    e = Estimate("ips", 0.5, 0.4, 0.7, 100)
    assert e.contains(0.4) and e.contains(0.7) and not e.contains(0.71)
    assert e.half_width == pytest.approx(0.15)
    assert [est.name for est in default_estimators()] == ALL_NAMES


# ---------------------------------------------------------------------------------------------
# Real data: the Open Bandit Dataset sample against OBP 0.4.1's numbers
# ---------------------------------------------------------------------------------------------


def _obd_dir() -> Path:
    override = os.environ.get("OBD_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "obd"


def test_open_bandit_dataset_matches_obp_reference() -> None:
    obd = _obd_dir()
    needed = [obd / f for f in ("random_all.csv", "all_ope_inputs.npz", "reference_values.json")]
    if not all(p.is_file() for p in needed):
        pytest.skip(f"Open Bandit Dataset sample not found at {obd} (set OBD_DIR to point at it)")

    log = read_logged_csv(obd / "random_all.csv")
    with np.load(obd / "all_ope_inputs.npz") as arrays:
        action_dist, q_hat = arrays["action_dist"], arrays["q_hat"]
    reference = json.loads((obd / "reference_values.json").read_text())["all"]
    assert log["click"].shape == (10_000,)

    # OBD positions are 1-based in the CSV, 0-based in the arrays.
    inputs = build_inputs(
        action_dist, log["item_id"], log["click"], log["propensity_score"], q_hat,
        log["position"] - 1,
    )
    estimates = {e.name: e for e in evaluate_policy(inputs, switch_tau=100.0, n_bootstrap=1000)}
    ours_by_obp_name = {
        "ipw": "ips", "snipw": "snips", "dm": "dm", "dr": "dr", "sndr": "sndr",
        "switch-dr": "switch-dr",
    }
    for obp_name, ours in ours_by_obp_name.items():
        assert estimates[ours].value == pytest.approx(reference[obp_name], abs=1e-9), obp_name
        assert estimates[ours].low <= estimates[ours].value <= estimates[ours].high
    # The log is uniform, so replay is defined and equals SNIPS.
    assert estimates["replay"].value == pytest.approx(reference["snipw"], abs=1e-9)
    # The intervals should cover what the evaluated policy really achieved on-policy.
    for name in ("ips", "snips", "dr", "sndr"):
        assert estimates[name].contains(reference["bts_on_policy"]), estimates[name]
