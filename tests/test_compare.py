"""Comparing two policies on one log: the paired bootstrap of their difference, per segment, the
rows evaluated on (`--on`), and what `artwork compare` / `artwork replay` print."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bandit.baselines import FixedPolicy, UniformPolicy
from bandit.cli import cli
from bandit.decisions import DecisionRecord, new_record, write_parquet
from bandit.features import Candidate, UserContext
from bandit.learning import run_online
from bandit.offline import SEGMENT_FIELDS, compare_log, segment_labels, select_rows
from bandit.policy import BasePolicy, Decision
from bandit.replay import OPEInputs, build_inputs, compare_policies
from bandit.simulator import Simulator, sigmoid

# ---------------------------------------------------------------------------------------------
# A table world whose two target policies have exactly known values
# ---------------------------------------------------------------------------------------------

N_CTX, N_ACTIONS = 6, 4
_rng = np.random.default_rng(7)
CLICK_PROB = _rng.uniform(0.05, 0.5, size=(N_CTX, N_ACTIONS))
_logits = _rng.normal(0.0, 1.5, size=(N_CTX, N_ACTIONS))
POLICY_A = np.exp(_logits) / np.exp(_logits).sum(axis=1, keepdims=True)
GREEDY = np.eye(N_ACTIONS)[CLICK_PROB.argmax(axis=1)]
# B agrees with A on 80% of its mass: two versions of one policy, as A/B candidates usually are.
POLICY_B = 0.8 * POLICY_A + 0.2 * GREEDY
VALUE_A = float(np.mean((POLICY_A * CLICK_PROB).sum(axis=1)))
VALUE_B = float(np.mean((POLICY_B * CLICK_PROB).sum(axis=1)))
TRUE_DIFF = VALUE_A - VALUE_B
ESTIMATORS = ["replay", "ips", "snips", "dm", "dr", "sndr", "switch-dr"]


def _pair(seed: int, n: int, target_b: np.ndarray = POLICY_B) -> tuple[OPEInputs, OPEInputs]:
    """A uniform log of n rows, as inputs for A and for ``target_b`` (reward model: the truth + noise)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, N_CTX, size=n)
    a = rng.integers(0, N_ACTIONS, size=n)
    r = (rng.random(n) < CLICK_PROB[x, a]).astype(float)
    q = np.clip(CLICK_PROB + rng.normal(0.0, 0.03, CLICK_PROB.shape), 0.01, 0.99)[x]
    ps = np.full(n, 1.0 / N_ACTIONS)
    return build_inputs(POLICY_A[x], a, r, ps, q), build_inputs(target_b[x], a, r, ps, q)


def test_the_two_policies_really_differ():
    assert TRUE_DIFF < -0.02  # B moves mass to the best action: it is better


def test_paired_interval_covers_the_true_difference_at_about_its_level():
    n_logs = 60
    covered = dict.fromkeys(ESTIMATORS, 0)
    diffs: dict[str, list[float]] = {k: [] for k in ESTIMATORS}
    for seed in range(n_logs):
        a, b = _pair(1000 + seed, 2000)
        for c in compare_policies(a, b, n_bootstrap=200, seed=seed):
            covered[c.name] += c.diff.contains(TRUE_DIFF)
            diffs[c.name].append(c.diff.value)
            assert c.diff.value == pytest.approx(c.a.value - c.b.value, abs=1e-12)
    for name in ESTIMATORS:
        vals = np.asarray(diffs[name])
        assert abs(vals.mean() - TRUE_DIFF) < 4 * vals.std(ddof=1) / math.sqrt(n_logs), name
        if name == "dm":
            continue  # DM's interval holds the (noisy) reward model fixed: it covers only the rows' noise
        # Nominal 95% (0.90-1.0 seen while writing this); an interval that ignored the pairing would
        # cover ~100% and fail the width test below instead.
        assert covered[name] / n_logs >= 0.85, (name, covered[name])


def test_paired_interval_excludes_zero_when_the_policies_differ():
    a, b = _pair(5, 6000)
    for c in compare_policies(a, b, n_bootstrap=500):
        assert c.name == "dm" or c.diff.contains(TRUE_DIFF), c  # DM: only as right as its model
        assert c.diff.high < 0, c  # B is better, and every estimator says so
    # A policy against itself: the difference is exactly 0 on every resample.
    same = compare_policies(a, a, n_bootstrap=100)
    assert all(c.diff.value == 0 and c.diff.low == 0 and c.diff.high == 0 for c in same)


def test_paired_interval_is_narrower_than_unpaired_on_correlated_policies():
    a, b = _pair(11, 4000)
    paired = {c.name: c for c in compare_policies(a, b, n_bootstrap=500)}
    unpaired = {c.name: c for c in compare_policies(a, b, n_bootstrap=500, paired=False)}
    for name in ESTIMATORS:
        p, u = paired[name].diff, unpaired[name].diff
        assert p.value == u.value  # the same point estimate; only the interval differs
        # The two policies share most of their mass, so most of each one's noise cancels.
        assert p.high - p.low < 0.5 * (u.high - u.low), (name, p, u)
        # Each policy's own interval does not depend on the pairing (same rows for a).
        assert paired[name].a == unpaired[name].a


def test_compare_policies_rejects_inputs_from_different_rows():
    a, _ = _pair(1, 500)
    _, other = _pair(2, 500)
    with pytest.raises(ValueError, match="differ in reward"):
        compare_policies(a, other, n_bootstrap=10)
    a_short, _ = _pair(1, 400)
    with pytest.raises(ValueError, match="same logged rows; got 500 and 400"):
        compare_policies(a, a_short, n_bootstrap=10)


# ---------------------------------------------------------------------------------------------
# On decision logs: a known difference, and one that flips sign between segments
# ---------------------------------------------------------------------------------------------


def _sim_log(n: int = 3000, seed: int = 3) -> tuple[Simulator, list[DecisionRecord]]:
    sim = Simulator(seed=seed, n_segments=2, n_titles=4, artworks_per_title=3)
    return sim, run_online(UniformPolicy(seed=seed), sim, n, seed=seed, log=True, learn=False).records


def test_compare_log_covers_the_known_difference_of_two_policies():
    sim, records = _sim_log()
    best = FixedPolicy(defaults=sim.best_fixed_artworks())
    truth = sim.policy_value(lambda u, t, c: best.distribution(u, t, c)) - sim.uniform_value()
    assert truth > 0.1
    [overall] = compare_log(records, best, UniformPolicy(), n_bootstrap=300)
    assert overall.by is None and overall.n == 3000
    by_name = {c.name: c for c in overall.results}
    assert set(by_name) == set(ESTIMATORS)
    for name in ("replay", "ips", "snips", "dr", "sndr", "switch-dr"):
        assert by_name[name].diff.contains(truth), (name, by_name[name].diff, truth)
        assert by_name[name].diff.low > 0
    assert abs(by_name["dm"].diff.value - truth) < 0.03  # DM: near, its interval ignores the model's error


TV_GAIN, ELSEWHERE = 1.6, -1.5
DEVICES = ("tv", "mobile", "web")


class ShowX(BasePolicy):
    """Always the artwork with the "x" look."""

    name = "show-x"

    def _distribution(self, user: UserContext, title_id: str, allowed: list[Candidate]) -> list[float]:
        return [1.0 if c.features.get("look:x") else 0.0 for c in allowed]


def _device_log(n: int, seed: int = 0) -> tuple[list[DecisionRecord], np.ndarray]:
    """Uniform log where the "x" look sells on TV and costs elsewhere; returns records and the
    true click probability of every candidate on every row."""
    rng = np.random.default_rng(seed)
    cands = {f"t{t}": [Candidate(f"t{t}-a{k}", {"look:x": float(k == 0), "look:b": round(float(rng.random()), 3)})
                       for k in range(3)] for t in range(5)}
    records, truth = [], np.zeros((n, 3))
    for i in range(n):
        title = f"t{rng.integers(5)}"
        user = UserContext(f"u{rng.integers(300)}", taste={"genre:a": round(float(rng.random()), 3)},
                           device=DEVICES[rng.integers(3)], hour=int(rng.integers(24)), row=int(rng.integers(6)))
        gain = TV_GAIN if user.device == "tv" else ELSEWHERE
        p = np.array([float(sigmoid(-1.8 + gain * c.features["look:x"])) for c in cands[title]])
        k = int(rng.integers(3))
        dist = {c.artwork_id: 1 / 3 for c in cands[title]}
        decision = Decision(title, cands[title][k].artwork_id, 1 / 3, dist, "uniform", 0)
        records.append(new_record(user, title, cands[title], decision, reward=float(rng.random() < p[k]),
                                  time=float(i)))
        truth[i] = p
    return records, truth


def test_segments_show_a_difference_that_flips_sign_by_device():
    records, truth = _device_log(6000)
    result = compare_log(records, ShowX(), UniformPolicy(), by=["device"], n_bootstrap=300)
    assert [s.segment for s in result] == ["all", *sorted(DEVICES, key=lambda d: -sum(
        r.context["device"] == d for r in records))]
    device = np.array([r.context["device"] for r in records])
    for seg in result:
        rows = np.ones(len(records), bool) if seg.by is None else device == seg.segment
        true_diff = float(np.mean(truth[rows, 0] - truth[rows].mean(axis=1)))
        est = {c.name: c for c in seg.results}
        assert seg.n == int(rows.sum())
        for name in ("snips", "dr", "sndr"):
            assert est[name].diff.contains(true_diff), (seg.segment, name, est[name].diff, true_diff)
        if seg.segment == "tv":
            assert true_diff > 0.1 and est["dr"].diff.low > 0
        elif seg.by == "device":
            assert true_diff < -0.05 and est["dr"].diff.high < 0


def test_segment_labels_bucket_as_the_policy_sees_and_name_taste_clusters():
    records, _ = _device_log(300)
    assert set(segment_labels(records, "hour")) <= {"night", "morning", "afternoon", "evening"}
    assert set(segment_labels(records, "row")) <= {"0", "1", "2", "3", "4", "5+"}
    clusters = segment_labels(records, "taste-cluster", clusters=2)
    assert len(set(clusters)) == 2 and all(c.startswith("taste ") for c in clusters)
    with pytest.raises(ValueError, match="no logged context has a country; the contexts carry .*device"):
        segment_labels(records, "country")
    assert SEGMENT_FIELDS == ("device", "country", "hour", "row", "taste-cluster")


# ---------------------------------------------------------------------------------------------
# Which rows: --on explore | holdout | all
# ---------------------------------------------------------------------------------------------


def _mixed_log(n: int = 1500) -> tuple[Simulator, list[DecisionRecord]]:
    """A served log: 30% of decisions from uniform exploration pages, the rest from a fixed policy."""
    sim, uniform = _sim_log(n, seed=4)
    served = run_online(FixedPolicy(), sim, n, seed=5, log=True, learn=False).records
    rng = np.random.default_rng(0)
    log = [u if rng.random() < 0.3 else s for u, s in zip(uniform, served)]
    for i, r in enumerate(log):
        r.time = float(i)
    return sim, log


def test_select_rows_defaults_to_the_exploration_slice_then_to_a_time_holdout():
    _, log = _mixed_log()
    explore = [r for r in log if r.policy == "uniform"]
    sl = select_rows(log)
    assert sl.name == "explore" and sl.records == explore and "default" in sl.description
    held = select_rows(log, "holdout")
    assert len(held.records) == 300 and [r.time for r in held.records] == [float(t) for t in range(1200, 1500)]
    assert len(select_rows(log, "all").records) == 1500
    served_only = [r for r in log if r.policy != "uniform"]
    assert select_rows(served_only).name == "holdout"  # no exploration slice: the honest fallback
    with pytest.raises(ValueError, match="no row of the log comes from a uniform exploration page.*fixed"):
        select_rows(served_only, "explore")
    with pytest.raises(ValueError, match="--on must be one of"):
        select_rows(log, "train")


# ---------------------------------------------------------------------------------------------
# The commands: output flags, plots only where asked, warnings, clear errors
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def logged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a plot written unasked would land here
    sim, records = _sim_log(1500)
    write_parquet(records, tmp_path / "log.parquet")
    FixedPolicy(defaults=sim.best_fixed_artworks()).save(tmp_path / "best.json")
    return tmp_path


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_compare_command_table_json_and_csv(logged):
    res = _run("compare", "best.json", "uniform", "--log", "log.parquet", "--n-bootstrap", "200", "--by", "device")
    assert res.exit_code == 0, res.output
    assert "A = best.json" in res.stdout and "B = uniform" in res.stdout and "device=tv" in res.stdout
    assert "paired" in res.stdout

    res = _run("compare", "best.json", "uniform", "--log", "log.parquet", "--n-bootstrap", "200", "--by", "device",
               "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # nothing but the document on stdout
    assert doc["a"] == "best.json" and doc["b"] == "uniform" and doc["rows"] == 1500 and doc["paired"] is True
    assert doc["on"] == "explore"  # a uniform log is one big exploration slice
    overall = [r for r in doc["results"] if r["segment"] == "all"]
    assert [r["estimator"] for r in overall] == ESTIMATORS
    for r in doc["results"]:
        assert r["diff"] == pytest.approx(r["a"] - r["b"], abs=1e-12)
        assert r["diff_low"] <= r["diff"] <= r["diff_high"]
    assert {r["segment"] for r in doc["results"] if r["by"] == "device"} == {"tv", "mobile", "web"}
    assert all(r["diff_low"] > 0 for r in overall)  # the best artwork per title beats uniform clearly

    res = _run("compare", "best.json", "uniform", "--log", "log.parquet", "--n-bootstrap", "200", "--by", "device",
               "--csv")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == len(doc["results"])
    assert float(rows[0]["diff"]) == pytest.approx(doc["results"][0]["diff"])
    assert not list(Path(".").glob("*.png"))  # no plot unless asked


def test_compare_and_replay_write_a_plot_only_where_asked(logged):
    res = _run("compare", "best.json", "uniform", "--log", "log.parquet", "--n-bootstrap", "50", "--plot", "d.png")
    assert res.exit_code == 0, res.output
    res = _run("replay", "log.parquet", "--policy", "uniform", "--n-bootstrap", "50", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert {r["estimator"] for r in doc["results"]} == set(ESTIMATORS) and doc["rows"] == 1500
    assert [p.name for p in Path(".").glob("*.png")] == ["d.png"]  # replay.png is not written unasked
    from PIL import Image

    assert Image.open("d.png").size[0] > 100


def test_replay_csv_and_segments(logged):
    res = _run("replay", "log.parquet", "--policy", "uniform", "--policy", "best.json", "--n-bootstrap", "50",
               "--csv", "--by", "row")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert {r["policy"] for r in rows} == {"uniform", "best.json"}
    assert {r["segment"] for r in rows if r["by"] == "row"} <= {"0", "1", "2", "3", "4", "5+"}
    ips_uniform = next(r for r in rows if r["policy"] == "uniform" and r["estimator"] == "ips" and r["by"] == "")
    assert float(ips_uniform["low"]) <= float(ips_uniform["value"]) <= float(ips_uniform["high"])


def test_bad_input_gets_one_clear_line(logged):
    res = _run("compare", "nonsense", "uniform", "--log", "log.parquet")
    assert res.exit_code == 2 and "'nonsense' is neither uniform, fixed, thompson nor a saved policy" in res.output
    res = _run("compare", "uniform", "uniform", "--log", "log.parquet")
    assert res.exit_code == 2 and "same policy" in res.output
    write_parquet(_device_log(200)[0], "no-country.parquet")
    res = _run("compare", "fixed", "uniform", "--log", "no-country.parquet", "--by", "country", "--n-bootstrap", "20")
    assert res.exit_code == 1 and "--by country: no logged context has a country" in res.output
    assert "Traceback" not in res.output
    Path("junk.parquet").write_bytes(b"not parquet")
    res = _run("compare", "best.json", "uniform", "--log", "junk.parquet")
    assert res.exit_code == 1 and "junk.parquet: not a decision log in Parquet format" in res.output
    res = _run("replay", "log.parquet", "--policy", "uniform", "--json", "--csv")
    assert res.exit_code == 2 and "one of --json and --csv" in res.output


def test_a_policy_graded_on_rows_it_learned_is_flagged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, records = _sim_log(1500)
    write_parquet(records, "log.parquet")
    res = _run("train", "log.parquet", "warm.vwz")
    assert res.exit_code == 0, res.output
    res = _run("replay", "log.parquet", "--policy", "warm.vwz", "--on", "all", "--n-bootstrap", "20", "--json")
    assert res.exit_code == 0, res.output
    assert "WARNING" in res.stderr and "learned 1,500 of the 1,500 rows evaluated here" in res.stderr
    assert json.loads(res.stdout)["warnings"]  # machine-readable output carries it too
    # Trained on the first 80% only, it is graded on the last 20% without a warning.
    res = _run("train", "log.parquet", "held.vwz", "--holdout")
    assert res.exit_code == 0 and "learned 1200 of 1200" in res.output, res.output
    res = _run("replay", "log.parquet", "--policy", "held.vwz", "--on", "holdout", "--n-bootstrap", "20", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["warnings"] == [] and doc["rows"] == 300 and "WARNING" not in res.stderr
    # ... and the saved file still loads as a policy (the training record is extra zip members).
    from bandit.registry import load_policy

    assert load_policy("held.vwz").version == 1200
