#!/usr/bin/env python3
"""Benchmark: does a policy learn who follows which actor, and show fans their star's face?

`scripts/bench_learning.py` scores the whole audience of the `actors` world, where fans are a
minority of every title's viewers. This looks at the fans themselves (`ActorsWorld.fan_exposure`):
over the last 20% of pages, on titles whose candidates include a close-up of a fan's star, how
prominent that star is in what the fan was shown (1 = the close-up) and the fans' expected click
rate. Two audiences:

- ``history``: the `actors` world as the learning benchmark runs it. Most viewers send a watch
  history, and `taste_from_history` makes anyone who watched a title look like a fan of its cast.
- ``favourites``: followers name their star in the request's taste (90%), nobody sends a history,
  and 5% of the others name a star they do not follow.

Policies: `bayes` (the default), the same without its taste-meets-tag match term
(``bayes-nomatch``: ``match_kinds=()``), and per-title Thompson sampling, which cannot tell a fan
from anyone else. Prints a table (mean and 95% t-interval over seeds), writes JSON and a PNG.

    python scripts/bench_fans.py                      # 5 seeds x 6,000 pages, ~10 min on 2 cores
    python scripts/bench_fans.py --seeds 2 --pages 2000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bandit.bayes import BayesPolicy  # noqa: E402
from bandit.registry import make_policy  # noqa: E402
from bandit.worlds import WORLDS, run_world  # noqa: E402
from scripts.bench_learning import mean_ci, one_blas_thread  # noqa: E402

AUDIENCES: dict[str, dict[str, Any]] = {
    "history": {},
    "favourites": {"history_share": 0.0, "say_star": 0.9, "false_star": 0.05},
}
POLICIES = ("bayes", "bayes-nomatch", "thompson")
METRICS = ("star_shown", "fan_click", "fan_oracle", "click", "best_fixed")


def _policy(name: str, seed: int) -> Any:
    if name == "bayes-nomatch":
        return BayesPolicy(seed=seed, match_kinds=())
    return make_policy(name, seed=seed)


def one_run(task: tuple[str, str, int, int]) -> dict[str, Any]:
    audience, policy_name, seed, pages = task
    t0 = time.perf_counter()
    world = WORLDS["actors"](seed=seed, **AUDIENCES[audience])
    run = run_world(world, _policy(policy_name, seed), pages, seed=seed)
    fans = world.fan_exposure(run, last_share=0.2)
    s = run.summary(last_share=0.2)
    return {"audience": audience, "policy": policy_name, "seed": seed, **fans, "click": s["policy"],
            "best_fixed": s["best_fixed"], "seconds": time.perf_counter() - t0}


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for audience in AUDIENCES:
        for policy in POLICIES:
            mine = sorted((r for r in runs if r["audience"] == audience and r["policy"] == policy), key=lambda r: r["seed"])
            if not mine:
                continue
            row: dict[str, Any] = {"audience": audience, "policy": policy, "seeds": len(mine)}
            for m in METRICS:
                row[m] = mean_ci([r[m] for r in mine])
            base = {r["seed"]: r for r in runs if r["audience"] == audience and r["policy"] == "thompson"}
            if policy != "thompson" and base:
                for m in ("star_shown", "fan_click", "click"):
                    row[f"{m}_vs_thompson"] = mean_ci([r[m] - base[r["seed"]][m] for r in mine if r["seed"] in base])
            rows.append(row)
    return rows


def _ci(c: tuple[float, float, float], fmt: str = "{:.4f}", sign: str = "") -> str:
    m, lo, hi = c
    f = fmt.replace("{:", "{:" + sign)
    return f"{f.format(m)} [{f.format(lo)}, {f.format(hi)}]"


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ("| audience | policy | star shown to fans | vs thompson | fans' click rate | vs thompson | fans' oracle "
            "| all viewers' click rate | vs thompson | best fixed |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        vs = lambda m, fmt="{:.4f}": _ci(r[f"{m}_vs_thompson"], fmt, "+") if f"{m}_vs_thompson" in r else "–"  # noqa: E731
        lines.append(f"| {r['audience']} | {r['policy']} | {_ci(r['star_shown'], '{:.2f}')} | {vs('star_shown', '{:.2f}')} "
                     f"| {_ci(r['fan_click'])} | {vs('fan_click')} | {r['fan_oracle'][0]:.4f} | {_ci(r['click'])} "
                     f"| {vs('click')} | {r['best_fixed'][0]:.4f} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(POLICIES)
    for ax, metric, label in ((axes[0], "star_shown", "star's prominence in what fans were shown"),
                              (axes[1], "fan_click", "fans' expected click rate")):
        for j, policy in enumerate(POLICIES):
            xs, ms, errs = [], [], []
            for i, audience in enumerate(AUDIENCES):
                r = next((r for r in rows if r["audience"] == audience and r["policy"] == policy), None)
                if r is None:
                    continue
                m, lo, hi = r[metric]
                xs.append(i + (j - (len(POLICIES) - 1) / 2) * width)
                ms.append(m)
                errs.append(0.0 if not np.isfinite(hi) else hi - m)
            ax.bar(xs, ms, width, yerr=errs, capsize=3, label=policy)
        ax.set_xticks(range(len(AUDIENCES)), list(AUDIENCES))
        ax.set_title(label, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle("actors world, last 20% of pages: fans on titles with a close-up of their star (95% CI over seeds)",
                 fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--pages", type=int, default=6000)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--out", default="bench-results/bench_fans.json")
    ap.add_argument("--png", default=None, help="default: next to --out")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.pages < 100:
        ap.error("--seeds must be >= 1 and --pages >= 100")
    tasks = [(a, p, s, args.pages) for a in AUDIENCES for s in range(args.seeds) for p in POLICIES]
    print(f"{len(tasks)} runs: {len(AUDIENCES)} audiences x {len(POLICIES)} policies x {args.seeds} seeds x "
          f"{args.pages} pages, {args.jobs} workers", flush=True)
    t0 = time.perf_counter()
    runs = []
    with mp.get_context("fork").Pool(args.jobs, initializer=one_blas_thread) as pool:
        for i, r in enumerate(pool.imap_unordered(one_run, tasks), 1):
            runs.append(r)
            print(f"[{i:3d}/{len(tasks)} {time.perf_counter() - t0:6.0f}s] {r['audience']:10s} {r['policy']:13s} "
                  f"seed {r['seed']}: star shown {r['star_shown']:.2f}, fans' click {r['fan_click']:.4f}", flush=True)
    rows = aggregate(runs)
    print()
    print(format_table(rows))
    out = Path(args.out)
    png = Path(args.png) if args.png else out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": {"seeds": args.seeds, "pages": args.pages, "audiences": AUDIENCES},
                               "runs": runs, "table": rows}, indent=1, default=float))
    plot(rows, png)
    print(f"wrote {out} and {png} ({time.perf_counter() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
