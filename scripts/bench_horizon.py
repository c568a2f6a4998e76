#!/usr/bin/env python3
"""Benchmark: how the share of the best-fixed -> oracle gap closed grows with the length of a run.

`scripts/bench_learning.py` scores the last 20% of 6,000 pages. This asks the question behind its
misses: does a policy stop short (it cannot learn what the world holds) or is it slow (it would get
there with more traffic)? Each (world, policy, seed) is one `run_world` of ``--pages`` pages, scored
in windows that end at each of ``--at`` (the last 20% of a run of that length: pages
0.8 x at .. at), against that window's own best fixed artwork per title in hindsight and its oracle.
The context ceiling (`bandit.worlds.context_ceiling`, full information on the visible context) is
computed on one run of ``--ceiling-pages`` pages per (world, seed): what any policy could reach.

Prints one table (gap closed per window, mean and 95% t-interval over seeds, and the ceiling),
writes JSON and a PNG (gap closed against pages, one line per policy, the ceiling dashed).

    python scripts/bench_horizon.py                                     # clusters + actors, bayes + thompson, 3 seeds, 24,000 pages
    python scripts/bench_horizon.py --worlds linear --at 3000,6000 --pages 6000 --seeds 2
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bandit.registry import POLICIES, make_policy  # noqa: E402
from bandit.worlds import WORLDS, context_ceiling, run_world  # noqa: E402
from scripts.bench_learning import _world, check_names, mean_ci, one_blas_thread, plot_band  # noqa: E402


def window_scores(run: Any, ends: list[int]) -> list[dict[str, float]]:
    """Per window end e: policy, best fixed and oracle expected click rates over pages [0.8 e, e)."""
    out = []
    for e in ends:
        mask = (run.page >= int(round(0.8 * e))) & (run.page < e)
        n = int(mask.sum())
        _, total = run._best_fixed_columns(mask)
        policy, best, oracle = float(run.expected[mask].mean()), total / n, float(run.oracle[mask].mean())
        gap = (policy - best) / (oracle - best) if oracle - best >= 1e-9 else math.nan
        out.append({"at": e, "policy": policy, "best_fixed": best, "oracle": oracle, "gap_closed": gap})
    return out


def one_run(task: tuple[str, str, int, int, list[int]]) -> dict[str, Any]:
    world_name, policy_name, seed, pages, ends = task
    t0 = time.perf_counter()
    run = run_world(_world(world_name, seed, pages), make_policy(policy_name, seed=seed), pages, seed=seed)
    return {"world": world_name, "policy": policy_name, "seed": seed, "windows": window_scores(run, ends),
            "seconds": time.perf_counter() - t0}


def one_ceiling(task: tuple[str, int, int]) -> dict[str, Any]:
    """The context ceiling's click rate over pages [0.8 p, p) of a run of p pages (same visits as every policy's)."""
    world_name, seed, pages = task
    return {"world": world_name, "seed": seed, "ceiling": context_ceiling(_world(world_name, seed, pages), pages, seed)}


def ceiling_share(ceiling: dict[str, Any], runs: list[dict[str, Any]], at: int) -> float:
    """The ceiling as a share of the gap, against the best fixed and oracle of the same window (any
    policy's run of that seed: they see the same visits)."""
    for r in runs:
        if r["world"] == ceiling["world"] and r["seed"] == ceiling["seed"]:
            win = next(x for x in r["windows"] if x["at"] == at)
            d = win["oracle"] - win["best_fixed"]
            return (ceiling["ceiling"] - win["best_fixed"]) / d if d >= 1e-9 else math.nan
    return math.nan


def aggregate(runs: list[dict[str, Any]], ceilings: list[dict[str, Any]], worlds: list[str], policies: list[str],
              ends: list[int], ceiling_at: int) -> list[dict[str, Any]]:
    rows = []
    for w in worlds:
        ceil = [ceiling_share(c, runs, ceiling_at) for c in ceilings if c["world"] == w]
        for p in policies:
            mine = [r for r in runs if r["world"] == w and r["policy"] == p]
            cells = []
            for i, e in enumerate(ends):
                cells.append({"at": e, "gap_closed": mean_ci([r["windows"][i]["gap_closed"] for r in mine]),
                              "policy": mean_ci([r["windows"][i]["policy"] for r in mine])})
            rows.append({"world": w, "policy": p, "seeds": len(mine), "cells": cells, "ceiling": mean_ci(ceil)})
    return rows


def _pct(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{100 * x:.0f}%"


def format_table(rows: list[dict[str, Any]], ends: list[int], ceiling_at: int) -> str:
    head = ["world", "policy", *[f"gap closed at {e:,} pages" for e in ends], f"context ceiling (at {ceiling_at:,})"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [f"{_pct(c['gap_closed'][0])} [{_pct(c['gap_closed'][1])}, {_pct(c['gap_closed'][2])}]"
                 for c in r["cells"]]
        lines.append(f"| {r['world']} | {r['policy']} | " + " | ".join(cells) + f" | {_pct(r['ceiling'][0])} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], worlds: list[str], png: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0 * len(worlds), 4.0))
    FigureCanvasAgg(fig)
    for i, w in enumerate(worlds):
        ax = fig.add_subplot(1, len(worlds), i + 1)
        ceiling = None
        for r in (r for r in rows if r["world"] == w):
            plot_band(ax, [c["at"] for c in r["cells"]], [c["gap_closed"] for c in r["cells"]], r["policy"])
            ceiling = r["ceiling"][0]
        if ceiling is not None and math.isfinite(ceiling):
            ax.axhline(ceiling, linestyle="--", color="black", linewidth=1, label="context ceiling")
        ax.axhline(0.0, color="grey", linewidth=0.5)
        ax.set_title(w)
        ax.set_xlabel("pages (score: the last 20% before)")
        ax.set_ylabel("share of best-fixed → oracle gap closed")
        ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worlds", default="clusters,actors")
    ap.add_argument("--policies", default="bayes,thompson", help=f"known: {', '.join(POLICIES)}")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--pages", type=int, default=24_000)
    ap.add_argument("--at", default="6000,12000,24000", help="window ends, in pages (each <= --pages)")
    ap.add_argument("--ceiling-pages", type=int, default=6000,
                    help="pages of the context-ceiling fit (one of --at: its window's best fixed and oracle)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="bench-results/bench_horizon.json")
    args = ap.parse_args(argv)
    worlds = [w for w in args.worlds.split(",") if w]
    policies = [p for p in args.policies.split(",") if p]
    ends = sorted(int(x) for x in args.at.split(",") if x)
    check_names(ap, worlds, policies)
    if not ends or ends[0] < 10 or ends[-1] > args.pages:
        ap.error(f"--at must be window ends between 10 and --pages ({args.pages}), got {args.at!r}")
    if args.ceiling_pages not in ends:
        ap.error(f"--ceiling-pages ({args.ceiling_pages}) must be one of --at ({args.at})")
    tasks = [(w, p, s, args.pages, ends) for w in worlds for s in range(args.seeds) for p in policies]
    t0 = time.perf_counter()
    print(f"{len(tasks)} runs of {args.pages:,} pages + {len(worlds) * args.seeds} ceilings, {args.jobs} workers",
          flush=True)
    runs: list[dict[str, Any]] = []
    ctx = mp.get_context("fork")
    with ctx.Pool(args.jobs, initializer=one_blas_thread) as pool:
        ceilings = pool.map(one_ceiling, [(w, s, args.ceiling_pages) for w in worlds for s in range(args.seeds)])
        for i, r in enumerate(pool.imap_unordered(one_run, tasks), 1):
            runs.append(r)
            gaps = " ".join(f"{_pct(x['gap_closed']):>5s}" for x in r["windows"])
            print(f"[{i:3d}/{len(tasks)} {time.perf_counter() - t0:6.0f}s] {r['world']:10s} {r['policy']:9s} "
                  f"seed {r['seed']}: gap closed at {ends}: {gaps}", flush=True)
    rows = aggregate(runs, ceilings, worlds, policies, ends, args.ceiling_pages)
    print()
    print(format_table(rows, ends, args.ceiling_pages))
    out = Path(args.out)
    png = out.with_suffix(".png")
    plot(rows, worlds, png)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": vars(args), "rows": rows, "runs": runs, "ceilings": ceilings,
                               "seconds": time.perf_counter() - t0}, indent=1,
                              default=lambda o: None))
    print(f"wrote {out} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
