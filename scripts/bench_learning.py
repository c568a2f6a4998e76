#!/usr/bin/env python3
"""Benchmark: every policy on every simulated world, over several seeds.

Each (world, policy, seed) is one online run of ``--pages`` page views through
`bandit.worlds.run_world` (6–12 titles a page, clicks revealed after the world's delay). Over the
last 20% of pages it records the expected click rate of the choices made (the true click
probability of what was shown, so click noise does not blur the comparison), against:

- best fixed: each title's single best artwork over those same visits, in hindsight;
- oracle: each visit's best artwork.

- context ceiling: what the context the service sees can buy, fitted with full information in
  hindsight (`bandit.worlds.context_ceiling`); the oracle also knows hidden traits no context shows.

``gap closed`` = (policy - best fixed) / (oracle - best fixed): 0 is as good as the best single
image per title, 1 is the per-user oracle. ``of reachable`` = (policy - best fixed) / (context
ceiling - best fixed): the share of what the context could buy that the policy bought. Every policy of one seed sees the same users in the same
order and the same click draws (common random numbers), so per-seed differences between two
policies are paired: ``vs thompson`` is the mean paired difference with a 95% t-interval.

Goals, checked on the first policy (the serving default):
- in every world, not below per-title Thompson sampling: the upper end of the 95% interval of the
  paired difference is >= 0;
- in every world whose context carries signal, gap closed >= 50% (mean over seeds).

Prints one table, writes JSON and a PNG (gap closed per world and policy, with intervals).
Exits 1 when a goal is missed.

    python scripts/bench_learning.py                 # every world x 3 policies x 5 seeds x 6,000 pages
    python scripts/bench_learning.py --quick         # smoke run: 3 seeds x 1,500 pages
    python scripts/bench_learning.py --worlds clusters,appeal --policies bayes,thompson
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

# t quantiles (two-sided 95%) for small samples, by degrees of freedom.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t95(df: int) -> float:
    """Two-sided 95% Student t quantile (conservative: the next smaller tabulated df)."""
    if df < 1:
        return math.nan
    return _T95[max(k for k in _T95 if k <= df)] if df <= 30 else 1.96


def mean_ci(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval of a few per-seed values."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)  # None: from JSON
    if x.size == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    half = t95(x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return m, m - half, m + half


def check_names(ap: argparse.ArgumentParser, worlds: list[str], policies: list[str]) -> None:
    """A usage error naming the known ones for an unknown world or policy."""
    for w in worlds:
        if w not in WORLDS:
            ap.error(f"unknown world {w!r}; known: {', '.join(WORLDS)}")
    for p in policies:
        if p not in POLICIES:
            ap.error(f"unknown policy {p!r}; known: {', '.join(POLICIES)}")


def plot_band(ax: Any, x: list[int], cis: list[tuple[float, float, float]], label: str, alpha: float = 0.15) -> None:
    """A mean line over x and its 95% interval band (the horizon and learnability plots)."""
    ax.plot(x, [c[0] for c in cis], marker="o", label=label)
    ax.fill_between(x, [c[1] for c in cis], [c[2] for c in cis], alpha=alpha)


def _world(name: str, seed: int, pages: int) -> Any:
    cls = WORLDS[name]
    # Worlds that change mid-run (new artworks, drift) time their changes by the run's length.
    return cls(seed=seed, **({"n_pages": pages} if "n_pages" in getattr(cls, "defaults", {}) else {}))


def one_blas_thread() -> None:
    """Pool initializer: one BLAS thread per worker. The personal term's small solves gain nothing
    from threads, and two workers each spinning two BLAS threads on 2 cores ran a policy 30x slower."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def one_ceiling(task: tuple[str, int, int]) -> dict[str, Any]:
    """The context ceiling of one (world, seed): the same for every policy (same visits)."""
    world_name, seed, pages = task
    return {"world": world_name, "seed": seed, "ceiling": context_ceiling(_world(world_name, seed, pages), pages, seed)}


def ceilings_for(pairs: list[tuple[str, int]], pages: int, jobs: int, have: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Context ceilings of every (world, seed) in ``pairs``, computing only those not in ``have``."""
    known = {(c["world"], c["seed"]) for c in have}
    todo = [(w, s, pages) for w, s in pairs if (w, s) not in known]
    out = list(have)
    if todo:
        print(f"context ceilings: {len(todo)} (world, seed) pairs", flush=True)
        with mp.get_context("fork").Pool(jobs, initializer=one_blas_thread) as pool:
            out += pool.map(one_ceiling, todo)
    return out


def one_run(task: tuple[str, str, int, int, int]) -> dict[str, Any]:
    """One (world, policy, seed) run; returns its summary and learning curve."""
    world_name, policy_name, seed, pages, window = task
    world = _world(world_name, seed, pages)
    policy = make_policy(policy_name, seed=seed)
    run = run_world(world, policy, pages, seed=seed)
    s = run.summary(last_share=0.2)
    curve = run.curve(window)
    return {"world": world_name, "policy": policy_name, "seed": seed, "summary": s,
            "curve": [float(v) for v in curve.expected]}


def aggregate(runs: list[dict[str, Any]], policies: list[str], baseline: str,
              ceilings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per world and policy: means and intervals over seeds, paired differences vs the baseline."""
    out: dict[str, Any] = {}
    by = {(r["world"], r["policy"], r["seed"]): r["summary"] for r in runs}
    ceil = {(c["world"], c["seed"]): c["ceiling"] for c in ceilings or []}
    for w in dict.fromkeys(r["world"] for r in runs):
        seeds = sorted({r["seed"] for r in runs if r["world"] == w})
        entry: dict[str, Any] = {"signal": bool(WORLDS[w].signal), "description": WORLDS[w].description,
                                 "seeds": seeds, "policies": {}}
        ref = [by[(w, policies[0], s)] for s in seeds if (w, policies[0], s) in by]
        for key in ("oracle", "best_fixed", "uniform"):
            entry[key] = float(np.mean([r[key] for r in ref])) if ref else math.nan
        cs = [ceil[(w, s)] for s in seeds if (w, s) in ceil]
        entry["ceiling"] = float(np.mean(cs)) if cs else math.nan
        # The ceiling's own share of the best-fixed -> oracle gap: the most a policy could close.
        shares = [(ceil[(w, s)] - r["best_fixed"]) / (r["oracle"] - r["best_fixed"])
                  for s, r in zip(seeds, ref) if (w, s) in ceil and r["oracle"] - r["best_fixed"] >= 1e-9]
        entry["ceiling_gap_closed"] = float(np.mean(shares)) if shares else math.nan
        for p in policies:
            rows = [by[(w, p, s)] for s in seeds if (w, p, s) in by]
            if not rows:
                continue
            e: dict[str, Any] = {}
            e["click_rate"] = mean_ci([r["policy"] for r in rows])
            e["gap_closed"] = mean_ci([r["gap_closed"] for r in rows])
            e["regret"] = mean_ci([r["regret"] for r in rows])
            reach = [(by[(w, p, s)]["policy"] - by[(w, p, s)]["best_fixed"]) / (ceil[(w, s)] - by[(w, p, s)]["best_fixed"])
                     for s in seeds if (w, p, s) in by and (w, s) in ceil
                     and ceil[(w, s)] - by[(w, p, s)]["best_fixed"] >= 1e-3]
            e["of_reachable"] = mean_ci(reach) if reach else (math.nan,) * 3
            if p != baseline:
                diffs = [by[(w, p, s)]["policy"] - by[(w, baseline, s)]["policy"]
                         for s in seeds if (w, p, s) in by and (w, baseline, s) in by]
                e["vs_" + baseline] = mean_ci(diffs)
            entry["policies"][p] = e
        out[w] = entry
    return out


def goals_of(table: dict[str, Any], main: str, baseline: str) -> dict[str, Any]:
    """The two goals, per world, for the serving default."""
    per_world = {}
    for w, e in table.items():
        pe = e["policies"].get(main)
        if pe is None:
            continue
        diff = pe.get("vs_" + baseline, (math.nan,) * 3)
        not_below = bool(diff[2] >= 0) if math.isfinite(diff[2]) else None
        gap_ok = bool(pe["gap_closed"][0] >= 0.5) if e["signal"] else None
        per_world[w] = {"not_below_" + baseline: not_below, "gap_closed_ge_50": gap_ok}
    ok = all(v is not False for g in per_world.values() for v in g.values())
    return {"policy": main, "baseline": baseline, "per_world": per_world, "all_met": ok}


def fmt_ci(t: tuple[float, float, float], pct: bool = False, digits: int = 4) -> str:
    m, lo, hi = t
    if not math.isfinite(m):
        return "-"
    if pct:
        return f"{m:6.0%} [{lo:5.0%},{hi:5.0%}]" if math.isfinite(lo) else f"{m:6.0%}"
    return f"{m:+.{digits}f} [{lo:+.{digits}f},{hi:+.{digits}f}]" if math.isfinite(lo) else f"{m:+.{digits}f}"


def format_table(table: dict[str, Any], policies: list[str], baseline: str) -> str:
    """One row per world and policy."""
    header = ["world", "signal", "policy", "click rate", "gap closed [95% CI]", "of reachable [95% CI]",
              f"vs {baseline} [95% CI]", "regret"]
    rows = []
    for w, e in table.items():
        rows.append([w, "yes" if e["signal"] else "no", "(uniform / best fixed / context ceiling / oracle)",
                     f"{e['uniform']:.4f} / {e['best_fixed']:.4f} / {e.get('ceiling', math.nan):.4f} / "
                     f"{e['oracle']:.4f}", "", "", "", ""])
        for p in policies:
            pe = e["policies"].get(p)
            if pe is None:
                continue
            rows.append(["", "", p, f"{pe['click_rate'][0]:.4f}", fmt_ci(pe["gap_closed"], pct=True),
                         fmt_ci(pe.get("of_reachable", (math.nan,) * 3), pct=True),
                         fmt_ci(pe.get("vs_" + baseline, (math.nan,) * 3)), f"{pe['regret'][0]:.4f}"])
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
    lines = ["  ".join(c.ljust(widths[k]) for k, c in enumerate(header)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(widths[k]) for k, c in enumerate(r)) for r in rows]
    return "\n".join(lines)


def plot(table: dict[str, Any], policies: list[str], baseline: str, path: Path) -> None:
    """Two panels per world: gap closed, and the paired difference vs the baseline (95% intervals)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    worlds = list(table)
    nan3 = (math.nan,) * 3
    fig = Figure(figsize=(max(10.0, 0.9 * len(worlds) * len(policies) / 2), 8.0), dpi=100)
    FigureCanvasAgg(fig)
    x = np.arange(len(worlds))
    width = 0.8 / max(1, len(policies))
    panels = [("gap_closed", policies, "gap closed:\n(policy - best fixed) / (oracle - best fixed)"),
              ("vs_" + baseline, [p for p in policies if p != baseline],
               f"expected click rate minus {baseline}'s\n(paired, same users and coin flips)")]
    for k, (key, pols, label) in enumerate(panels):
        ax = fig.add_subplot(2, 1, k + 1)
        for i, p in enumerate(pols):
            vals = [table[w]["policies"].get(p, {}).get(key, nan3) for w in worlds]
            m = np.array([v[0] for v in vals], dtype=float)
            err = np.vstack([np.nan_to_num(m - np.array([v[1] for v in vals], dtype=float)),
                             np.nan_to_num(np.array([v[2] for v in vals], dtype=float) - m)])
            ax.bar(x + (i - (len(pols) - 1) / 2) * width, m, width, yerr=err, capsize=2, label=p,
                   color=f"C{policies.index(p)}")
        ax.axhline(0.0, color="grey", linewidth=1.0)
        if key == "gap_closed":
            ax.axhline(0.5, color="black", linestyle=":", linewidth=1.0, label="50% of the gap")
            ceil = [table[w].get("ceiling_gap_closed", math.nan) for w in worlds]
            if any(math.isfinite(c) for c in ceil):
                ax.scatter(x, ceil, marker="_", s=900, color="black", linewidths=2.0,
                           label="context ceiling (full information, hindsight)", zorder=3)
            ax.set_ylim(bottom=max(-1.5, ax.get_ylim()[0]))
            ax.set_title("Last 20% of pages, mean over seeds with 95% intervals (no bar: oracle = best fixed)")
        ax.set_xticks(x, [w + ("" if table[w]["signal"] else "\n(no signal)") for w in worlds], fontsize="small")
        ax.set_ylabel(label, fontsize="small")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="small", loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")


def _finite(o: Any) -> Any:
    """NaN/inf -> None, so the JSON is valid JSON (gap closed is undefined where oracle = best fixed)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worlds", default=",".join(WORLDS), help="comma-separated world names")
    ap.add_argument("--policies", default="bayes,thompson,vw",
                    help=f"comma-separated, first = the one the goals are checked on; known: {', '.join(POLICIES)}")
    ap.add_argument("--baseline", default="thompson", help="the policy the first one must not lose to")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--pages", type=int, default=6000)
    ap.add_argument("--window", type=int, default=250, help="learning-curve window, in pages")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--out", default="bench-results/bench_learning.json")
    ap.add_argument("--png", default=None, help="default: next to --out")
    ap.add_argument("--quick", action="store_true", help="3 seeds x 1,500 pages")
    ap.add_argument("--replot", metavar="JSON", help="no runs: rebuild table, goals and PNG from an earlier --out")
    ap.add_argument("--reuse", metavar="JSON",
                    help="take the runs of every policy not in --policies from an earlier --out (same pages and "
                         "seeds; their code must not have changed), and run only --policies")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.pages = 3, 1500
    worlds = [w.strip() for w in args.worlds.split(",") if w.strip()]
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    check_names(ap, worlds, policies)
    reused: list[dict[str, Any]] = []
    reused_ceilings: list[dict[str, Any]] = []
    if args.reuse:
        old = json.loads(Path(args.reuse).read_text())
        if old["config"]["pages"] != args.pages:
            ap.error(f"--reuse {args.reuse}: its runs have {old['config']['pages']} pages, not {args.pages}")
        reused = [r for r in old["runs"] if r["policy"] not in policies and r["world"] in worlds
                  and r["seed"] < args.seeds]
        # A ceiling depends on the world, seed and pages only: reused with the runs.
        reused_ceilings = [c for c in old.get("ceilings") or [] if c["world"] in worlds and c["seed"] < args.seeds]
        run_now = list(policies)
        policies += [p for p in old["policies"] if p not in policies]
    if args.baseline not in policies:
        policies.append(args.baseline)
    if not args.reuse:
        run_now = list(policies)
    out = Path(args.out)
    png = Path(args.png) if args.png else out.with_suffix(".png")
    if args.replot:
        old = json.loads(Path(args.replot).read_text())
        policies, runs = old["policies"], old["runs"]
        pairs = list(dict.fromkeys((r["world"], r["seed"]) for r in runs))
        old["ceilings"] = ceilings_for(pairs, old["config"]["pages"], args.jobs, old.get("ceilings") or [])
        table = old["table"] = aggregate(runs, policies, args.baseline, old["ceilings"])
        Path(args.replot).write_text(json.dumps(_finite(old), indent=1, default=lambda o: None))
        print(format_table(table, policies, args.baseline))
        plot(table, policies, args.baseline, png)
        print(f"wrote {png}")
        return 0 if goals_of(table, policies[0], args.baseline)["all_met"] else 1
    tasks = [(w, p, s, args.pages, args.window) for w in worlds for s in range(args.seeds) for p in run_now]
    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = list(reused)
    print(f"{len(tasks)} runs: {len(worlds)} worlds x {len(run_now)} policies x {args.seeds} seeds x "
          f"{args.pages} pages, {args.jobs} workers ({len(reused)} runs reused from {args.reuse})", flush=True)
    ctx = mp.get_context("fork")
    with ctx.Pool(args.jobs, initializer=one_blas_thread) as pool:
        for i, r in enumerate(pool.imap_unordered(one_run, tasks), 1):
            runs.append(r)
            s = r["summary"]
            print(f"[{i:3d}/{len(tasks)} {time.perf_counter() - t0:6.0f}s] {r['world']:11s} {r['policy']:9s} "
                  f"seed {r['seed']}: click {s['policy']:.4f}  gap closed {s['gap_closed']:+.2f}", flush=True)
    ceilings = ceilings_for([(w, s) for w in worlds for s in range(args.seeds)], args.pages, args.jobs, reused_ceilings)
    table = aggregate(runs, policies, args.baseline, ceilings)
    goals = goals_of(table, policies[0], args.baseline)
    print()
    print(format_table(table, policies, args.baseline))
    print()
    for w, g in goals["per_world"].items():
        flags = [f"{k}: {'PASS' if v else 'FAIL'}" for k, v in g.items() if v is not None]
        print(f"  {w:11s} {'  '.join(flags)}")
    print(f"GOALS for {policies[0]}: {'ALL MET' if goals['all_met'] else 'NOT MET'}")
    plot(table, policies, args.baseline, png)
    report = {"config": vars(args), "worlds": worlds, "policies": policies, "table": table, "goals": goals,
              "runs": runs, "ceilings": ceilings, "seconds": time.perf_counter() - t0}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_finite(report), indent=1, default=lambda o: None))
    print(f"wrote {out} and {png} ({report['seconds']:.0f}s)")
    return 0 if goals["all_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
