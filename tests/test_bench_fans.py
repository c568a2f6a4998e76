"""`scripts/bench_fans.py`: the README's fan figures come from it, so its parts are pinned on tiny runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_fans import AUDIENCES, POLICIES, aggregate, main  # noqa: E402


def test_a_tiny_run_writes_one_row_per_audience_and_policy_with_paired_differences(tmp_path):
    out = tmp_path / "fans.json"
    assert main(["--seeds", "2", "--pages", "150", "--jobs", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 5000
    rows = {(r["audience"], r["policy"]): r for r in data["table"]}
    assert set(rows) == {(a, p) for a in AUDIENCES for p in POLICIES}
    runs = {(r["audience"], r["policy"], r["seed"]): r for r in data["runs"]}
    for (audience, policy), row in rows.items():
        assert 0.0 <= row["star_shown"][0] <= 1.0 and row["fan_click"][0] <= row["fan_oracle"][0]
        if policy == "thompson":
            assert "star_shown_vs_thompson" not in row
            continue
        # paired by seed: the mean of per-seed differences
        diffs = [runs[(audience, policy, s)]["fan_click"] - runs[(audience, "thompson", s)]["fan_click"] for s in (0, 1)]
        assert row["fan_click_vs_thompson"][0] == pytest.approx(sum(diffs) / 2)
    # Thompson does not look at the context: the same choices whatever the audience tells it.
    assert runs[("history", "thompson", 0)]["star_shown"] == runs[("favourites", "thompson", 0)]["star_shown"]


def test_aggregate_skips_what_was_not_run():
    run = {"audience": "history", "policy": "bayes", "seed": 0, "star_shown": 0.5, "fan_click": 0.1,
           "fan_oracle": 0.2, "click": 0.08, "best_fixed": 0.09}
    rows = aggregate([run])
    assert [(r["audience"], r["policy"]) for r in rows] == [("history", "bayes")]
    assert "fan_click_vs_thompson" not in rows[0]
