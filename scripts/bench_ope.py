#!/usr/bin/env python3
"""Benchmark: are the off-policy estimators' intervals honest?

Learning quality is measured by `scripts/bench_learning.py` over the whole family of worlds; this
script checks evaluation. Part 1 trains each policy online on the embedding-linear simulator
(``bandit.simulator``), only to get a spread of realistic policies to evaluate.

Part 2 logs ``--log-size`` uniformly random decisions, freezes each policy as it ended part 1,
and runs the estimators of `bandit.replay` on that log.  Goal: each policy's true value (exact,
from the simulator) lies inside every estimator's 95% bootstrap interval.

Writes a JSON report and a learning-curve PNG; exits 1 when a goal is missed.

    python scripts/bench_ope.py                # full run (~5 min on 2 cores)
    python scripts/bench_ope.py --quick        # smoke run (~40 s)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bandit.baselines import FixedPolicy, ThompsonPolicy, UniformPolicy  # noqa: E402
from bandit.learning import (  # noqa: E402
    RunResult,
    fit_reward_model,
    format_curves_table,
    plot_learning_curves,
    run_online,
)
from bandit.policy import VWConfig, VWPolicy  # noqa: E402
from bandit.offline import target_distribution  # noqa: E402
from bandit.replay import build_inputs, evaluate_policy, format_table  # noqa: E402
from bandit.simulator import Simulator  # noqa: E402

NON_PERSONALISED = ("uniform", "thompson", "fixed")
DEFAULT_VW = ("squarecb", "epsilon", "softmax", "bag", "cover")


def make_policies(vw_modes: list[str], seed: int) -> dict[str, Any]:
    """Fresh policies, keyed by name; the first VW mode is the one the goal is checked on."""
    pols: dict[str, Any] = {}
    for mode in vw_modes:
        pols[f"vw-{mode}"] = VWPolicy(VWConfig(exploration=mode, seed=seed))
    pols["uniform"] = UniformPolicy(seed=seed)
    pols["thompson"] = ThompsonPolicy(seed=seed)
    # The catalog's default artwork: the first candidate of each title, as a new title ships.
    pols["fixed"] = FixedPolicy(seed=seed)
    return pols


def model_q(model: Any, records: list, k: int) -> np.ndarray:
    """Reward-model predictions q(x, a) for every candidate of every logged row, padded to k."""
    q = np.zeros((len(records), k))
    for i, r in enumerate(records):
        q[i, : len(r.candidates)] = model.predict(r.user_context(), r.title_id, r.candidate_objects())
    return q


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decisions", type=int, default=50_000, help="online decisions per policy")
    ap.add_argument("--last", type=int, default=10_000, help="decisions the final click rate is taken over")
    ap.add_argument("--window", type=int, default=2_500, help="learning-curve window")
    ap.add_argument("--sim-seed", type=int, default=0)
    ap.add_argument("--run-seed", type=int, default=1, help="seed of visits/clicks and policies")
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--titles", type=int, default=40)
    ap.add_argument("--artworks", type=int, default=4, help="candidate artworks per title")
    ap.add_argument("--eval-visits", type=int, default=40_000, help="visits the exact policy values average over")
    ap.add_argument("--vw", default=",".join(DEFAULT_VW), help="VW exploration modes, comma-separated")
    ap.add_argument("--log-size", type=int, default=20_000, help="uniform-random log size for off-policy checks")
    ap.add_argument("--bootstrap", type=int, default=1_000)
    ap.add_argument("--model-log-size", type=int, default=100_000,
                    help="size of the separate uniform log the DM/DR reward model is fitted on")
    ap.add_argument("--l2", type=float, default=1.0, help="reward-model ridge penalty")
    ap.add_argument("--out", default="bench-results/bench_ope.json")
    ap.add_argument("--png", default=None, help="learning-curve PNG (default: next to --out)")
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.decisions, args.last, args.window = 8_000, 2_000, 500
        args.eval_visits, args.log_size, args.bootstrap, args.model_log_size = 8_000, 6_000, 300, 30_000
        args.vw = args.vw if args.vw != ",".join(DEFAULT_VW) else "squarecb,epsilon"
    vw_modes = [m.strip() for m in args.vw.split(",") if m.strip()]
    out = Path(args.out)
    png = Path(args.png) if args.png else out.with_name("ope_training_curves.png")
    t0 = time.perf_counter()

    sim = Simulator(seed=args.sim_seed, n_segments=args.segments, n_titles=args.titles,
                    artworks_per_title=args.artworks, n_eval=args.eval_visits)
    oracle, best_fixed, uniform_v = sim.oracle_value(), sim.best_fixed_value(), sim.uniform_value()
    print(f"simulator: {len(sim.title_ids)} titles, {sum(map(len, sim.titles.values()))} artworks, "
          f"{sim.n_users} users in {len(sim.segments)} segments "
          f"({', '.join(f'{s.name} {s.share:.0%}' for s in sim.segments)})")
    print(f"exact values: uniform {uniform_v:.4f}  best fixed {best_fixed:.4f}  oracle {oracle:.4f}  "
          f"best fixed / oracle = {best_fixed / oracle:.3f} (must be <= 0.80)")

    # ---- part 1: online learning ------------------------------------------------------------
    policies = make_policies(vw_modes, args.run_seed)
    results: dict[str, RunResult] = {}
    for name, pol in policies.items():
        results[name] = run_online(pol, sim, args.decisions, seed=args.run_seed, log=False)
        r = results[name]
        print(f"  {name:14s} {r.seconds:6.1f}s  last {args.last}: {r.click_rate(args.last):.4f}", flush=True)
    # Hindsight references on the same visits: not learners, they know the click model.
    hindsight = run_online(FixedPolicy(sim.best_fixed_artworks(), seed=args.run_seed), sim, args.decisions,
                           seed=args.run_seed, log=False, learn=False)
    last = min(args.last, args.decisions)
    ref = next(iter(results.values()))
    oracle_same = ref.oracle_rate(last)
    fixed_same = hindsight.click_rate(last)
    frozen = {name: sim.policy_value(pol.distribution) for name, pol in policies.items()}

    print()
    print(format_curves_table(results, last=last, oracle=oracle, best_fixed=best_fixed, true_values=frozen))
    print(f"same last-{last} visits: oracle {oracle_same:.4f} (expected), best fixed in hindsight "
          f"{fixed_same:.4f} (clicks), {hindsight.expected_rate(last):.4f} (expected)")

    best_np_name = max(NON_PERSONALISED, key=lambda n: results[n].click_rate(last) if n in results else -1)
    best_np = results[best_np_name].click_rate(last)
    goals: dict[str, Any] = {"fixed_over_oracle": best_fixed / oracle, "fixed_over_oracle_ok": best_fixed / oracle <= 0.8}
    gap = {}
    for name in results:
        if name.startswith("vw-"):
            rate = results[name].click_rate(last)
            gap[name] = {
                "vs_best_non_personalised": (rate - best_np) / (oracle_same - best_np),
                "vs_best_fixed_hindsight": (rate - fixed_same) / (oracle_same - fixed_same),
            }
    main_vw = f"vw-{vw_modes[0]}" if vw_modes else None
    print(f"\nbest non-personalised policy: {best_np_name} {best_np:.4f}; gap to the oracle closed "
          f"(click rate - base) / (oracle - base):")
    for name, g in gap.items():
        print(f"  {name:14s} vs {best_np_name}: {g['vs_best_non_personalised']:6.1%}   "
              f"vs best fixed in hindsight: {g['vs_best_fixed_hindsight']:6.1%}")
    if main_vw:
        goals["personalised_policy"] = main_vw
        goals["gap_closed"] = gap[main_vw]["vs_best_non_personalised"]
        goals["gap_closed_ok"] = gap[main_vw]["vs_best_non_personalised"] >= 0.5
        print(f"(home simulator only, see bench_learning.py) gap closed by {main_vw} >= 50%: {'PASS' if goals['gap_closed_ok'] else 'FAIL'} "
              f"({goals['gap_closed']:.1%})")
    print(f"best fixed / oracle <= 0.80: {'PASS' if goals['fixed_over_oracle_ok'] else 'FAIL'} "
          f"({best_fixed / oracle:.3f})")

    curves = {name: r.curve(args.window) for name, r in results.items()}
    plot_learning_curves(curves, png, oracle=oracle_same, best_fixed=hindsight.expected_rate(last),
                         title=f"Online click rate, {len(sim.title_ids)} titles x {args.artworks} artworks, "
                               f"{len(sim.segments)} taste segments")
    print(f"wrote {png}")

    # ---- part 2: off-policy evaluation on a uniform log ------------------------------------------
    log_seed = args.run_seed + 1000
    log = run_online(UniformPolicy(seed=log_seed), sim, args.log_size, seed=log_seed, log=True, learn=False)
    records = log.records
    k = max(len(r.candidates) for r in records)
    action = np.array([r.candidates.index(r.chosen) for r in records])
    reward = np.array([float(r.reward) for r in records])
    pscore = np.array([r.probability for r in records])
    # The reward model comes from a separate, larger history log: a bootstrap over the evaluation
    # log's rows cannot see the model's own estimation error, so DM's interval is only honest
    # when that error is small next to it (DR / SNDR stay unbiased either way).
    history = run_online(UniformPolicy(seed=log_seed + 1), sim, args.model_log_size, seed=log_seed + 1,
                         log=True, learn=False)
    model = fit_reward_model(history.records, l2=args.l2)
    q_hat = model_q(model, records, k)
    print(f"\nuniform log: {len(records)} decisions, click rate {reward.mean():.4f}; reward model fitted on "
          f"a separate uniform log of {len(history.records)} decisions")
    ope: dict[str, Any] = {}
    all_covered = True
    for name, pol in policies.items():
        inputs = build_inputs(target_distribution(pol, records, k), action, reward, pscore, q_hat=q_hat)
        ests = evaluate_policy(inputs, n_bootstrap=args.bootstrap, seed=args.run_seed)
        truth = frozen[name]
        covered = {e.name: e.contains(truth) for e in ests}
        all_covered &= all(covered.values())
        ope[name] = {"true_value": truth,
                     "estimates": [{"estimator": e.name, "value": e.value, "low": e.low, "high": e.high,
                                    "covers_truth": covered[e.name]} for e in ests]}
        missed = [n for n, ok in covered.items() if not ok]
        print(f"\n{name}: true value {truth:.4f}" + (f"  NOT covered by: {', '.join(missed)}" if missed else
                                                     "  (inside every interval)"))
        print(format_table(ests))
    goals["ope_all_covered"] = bool(all_covered)
    # Per estimator: for how many policies the interval holds the truth (DM's interval conditions
    # on the reward model, so a misspecified model shows up here first).
    coverage: dict[str, list[int]] = {}
    for entry in ope.values():
        for e in entry["estimates"]:
            c = coverage.setdefault(e["estimator"], [0, 0])
            c[0] += int(e["covers_truth"])
            c[1] += 1
    goals["ope_coverage"] = {name: f"{c[0]}/{c[1]}" for name, c in coverage.items()}
    print("\ncoverage of the true value: " + ", ".join(f"{n} {v}" for n, v in goals["ope_coverage"].items()))
    print(f"\nGOAL true value inside every estimator's 95% interval: {'PASS' if all_covered else 'FAIL'}")

    report = {
        "config": {k_: v for k_, v in vars(args).items()},
        "simulator": sim.summary(),
        "exact": {"uniform": uniform_v, "best_fixed": best_fixed, "oracle": oracle},
        "same_visits": {"oracle": oracle_same, "best_fixed_hindsight_clicks": fixed_same,
                        "best_fixed_hindsight_expected": hindsight.expected_rate(last)},
        "policies": {
            name: {"click_rate_last": r.click_rate(last), "expected_rate_last": r.expected_rate(last),
                   "click_rate_all": r.click_rate(), "frozen_value": frozen[name], "seconds": r.seconds,
                   "gap_closed": gap.get(name)}
            for name, r in results.items()
        },
        "best_non_personalised": {"policy": best_np_name, "click_rate_last": best_np},
        "goals": goals,
        "ope": ope,
        "curves": {name: c.to_dict() for name, c in curves.items()},
        "seconds": time.perf_counter() - t0,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=lambda o: o if not isinstance(o, float) or math.isfinite(o)
                              else None))
    print(f"wrote {out} ({report['seconds']:.0f}s)")
    ok = goals["ope_all_covered"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
