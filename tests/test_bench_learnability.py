"""`scripts/bench_learnability.py`: what can be learned from uniformly explored pages.

The README's bound on issue 10's goal comes from this script, so its parts are pinned here on small
runs: the hidden segment it is told is the world's own, the per-segment rates are the shrunk counts
of the log, and a run writes a row per estimator with finite scores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bandit.bayes import BayesPolicy  # noqa: E402
from bandit.worlds import make_world  # noqa: E402
from scripts.bench_learnability import (  # noqa: E402
    ESTIMATORS, SEGMENT_STRENGTH, hidden_segment, one_run, segment_rates)


def test_hidden_segment_is_the_worlds_cluster_or_followed_star():
    clusters = make_world("clusters", seed=0, n_users=200)
    assert np.array_equal(hidden_segment(clusters), clusters.user_cluster)
    actors = make_world("actors", seed=0, n_users=200)
    seg = hidden_segment(actors)
    assert np.array_equal(seg, actors.follows + 1)
    assert seg.min() == 0 and (seg == 0).sum() == (actors.follows < 0).sum()  # 0: follows nobody


def test_segment_rates_shrink_each_segments_clicks_toward_the_artworks_rate():
    counts = BayesPolicy.create(seed=0)
    segment = np.array([0, 1])
    rows = [("a", "t", "x", 1.0)] * 3 + [("a", "t", "x", 0.0)] * 7 + [("b", "t", "x", 0.0)] * 10
    rates = segment_rates(rows, segment, {"a": 0, "b": 1}, counts)[("t", "x")]
    base = float(counts.rates("t", ["x"])[0][0])  # nothing learned: the prior rate
    assert rates[0] == pytest.approx((3 + SEGMENT_STRENGTH * base) / (10 + SEGMENT_STRENGTH))
    assert rates[1] == pytest.approx((0 + SEGMENT_STRENGTH * base) / (10 + SEGMENT_STRENGTH))
    assert rates[0] > base > rates[1]


def test_a_run_scores_every_estimator_against_the_same_pages():
    r = one_run(("clusters", 0, 120, 30))
    assert set(r["scores"]) == set(ESTIMATORS)
    assert r["oracle"] > r["best_fixed"] > 0.0
    for s in r["scores"].values():
        assert 0.0 < s["value"] <= r["oracle"] + 1e-12
        gap = (s["value"] - r["best_fixed"]) / (r["oracle"] - r["best_fixed"])
        assert s["gap_closed"] == pytest.approx(gap)


def test_the_script_writes_a_table_and_json(tmp_path):
    out = tmp_path / "bl.json"
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_learnability.py"), "--worlds", "clusters",
                        "--pages", "80", "--eval", "20", "--seeds", "1", "--jobs", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "| clusters | told the hidden segment |" in p.stdout
    data = json.loads(out.read_text())
    assert [r["estimator"] for r in data["rows"]] == list(ESTIMATORS)
    assert out.with_suffix(".png").stat().st_size > 0
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_learnability.py"), "--pages", "ten"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--pages must be comma-separated page counts" in bad.stderr
