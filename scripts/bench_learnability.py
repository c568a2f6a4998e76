#!/usr/bin/env python3
"""Benchmark: how much of the best-fixed -> oracle gap can be learned from N pages at all?

`scripts/bench_learning.py` scores policies that explore and learn at once, so a miss could be
exploration (the policy showed the wrong things) or estimation (the data cannot say more). This
removes exploration: every decision of ``--pages`` pages is made uniformly at random (every artwork
shown equally often: the best-balanced data a learner can get), the estimators below learn from
all of it, and each one's *greedy* choice (no exploration) is scored on ``--eval`` held-out pages,
against those pages' best fixed artwork per title and oracle:

- ``counts``: each artwork's shrunk click rate (what a per-title bandit knows);
- ``bayes``: the default policy's model (counts + personal residual + shared weights), the
  residual weighted by its guard as learned from this log;
- ``bayes, residual at full weight``: the same model with the guard open;
- ``told the hidden segment``: per artwork and per hidden user segment (the world's latent taste
  cluster; in ``actors`` the star a user follows), click rates shrunk toward the artwork's rate by
  30 pseudo-impressions. No service sees this segment: it is what a learner would reach if it
  inferred every user's segment perfectly, with this much data.

A run of 6,000 pages (the learning benchmark's length) learns from the 4,800 before its scored
window; so ``--pages 4800`` asks what can be learned in a 6,000-page run, even with perfect
exploration. Prints one table (mean and 95% t-interval over seeds), writes JSON and a PNG.

    python scripts/bench_learnability.py                               # 6 worlds, 4,800 and 19,200 pages, 5 seeds
    python scripts/bench_learnability.py --worlds clusters --pages 4800 --seeds 2
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

from bandit.baselines import UniformPolicy  # noqa: E402
from bandit.bayes import BayesPolicy  # noqa: E402
from bandit.features import Candidate, UserContext  # noqa: E402
from bandit.worlds import World, _with_row, run_world  # noqa: E402
from scripts.bench_learning import _world, check_names, mean_ci, one_blas_thread, plot_band  # noqa: E402

ESTIMATORS = ("counts", "bayes", "bayes, residual at full weight", "told the hidden segment")
SEGMENT_STRENGTH = 30.0  # pseudo-impressions of the artwork's rate in each (artwork, segment) rate


def hidden_segment(world: World) -> np.ndarray | None:
    """Each user's hidden segment: the star followed (`actors`, 0 = none) or the latent taste cluster."""
    if hasattr(world, "follows"):
        return np.asarray(world.follows) + 1
    seg = getattr(world, "user_cluster", None)
    return None if seg is None else np.asarray(seg)


class UniformLogger(UniformPolicy):
    """Chooses uniformly at random and hands every outcome to the learners (and keeps a copy)."""

    def __init__(self, learners: dict[str, BayesPolicy], seed: int) -> None:
        super().__init__(seed)
        self.learners = learners
        self.rows: list[tuple[str, str, str, float]] = []  # user id, title, artwork, reward

    def learn_one(self, user: UserContext, title_id: str, candidates: list[Candidate], chosen: str,
                  probability: float, reward: float) -> None:
        for pol in self.learners.values():
            pol.learn_one(user, title_id, candidates, chosen, probability, reward)
        self.rows.append((user.user_id, title_id, chosen, float(reward)))


def segment_rates(rows: list[tuple[str, str, str, float]], segment: np.ndarray, user_index: dict[str, int],
                  counts: BayesPolicy) -> dict[tuple[str, str], np.ndarray]:
    """(title, artwork) -> click rate per hidden segment, shrunk toward the artwork's own rate."""
    n_seg = int(segment.max()) + 1
    sums: dict[tuple[str, str], np.ndarray] = {}
    for uid, t, a, r in rows:
        s = sums.setdefault((t, a), np.zeros((2, n_seg)))
        k = segment[user_index[uid]]
        s[0, k] += r
        s[1, k] += 1.0
    out = {}
    for (t, a), s in sums.items():
        base = float(counts.rates(t, [a])[0][0])
        out[(t, a)] = (s[0] + SEGMENT_STRENGTH * base) / (s[1] + SEGMENT_STRENGTH)
    return out


def one_run(task: tuple[str, int, int, int]) -> dict[str, Any]:
    world_name, seed, pages, n_eval = task
    t0 = time.perf_counter()
    world = _world(world_name, seed, pages + n_eval)
    guarded = BayesPolicy.create(seed=seed)
    learners = {"bayes": guarded, "bayes, residual at full weight": BayesPolicy.create(seed=seed, gate=False)}
    logger = UniformLogger(learners, seed)
    run_world(world, logger, pages, seed=seed)
    segment = hidden_segment(world)
    user_index = {uid: i for i, uid in enumerate(getattr(world, "_user_ids", []))}
    seg_rates = (segment_rates(logger.rows, segment, user_index, guarded)
                 if segment is not None and user_index else None)
    # Held-out pages: the same world's visits after the training pages, from their own stream.
    rng = np.random.default_rng([seed, 0xE7A1])
    value = {e: 0.0 for e in ESTIMATORS}
    oracle, n = 0.0, 0
    per_title: dict[str, np.ndarray] = {}
    for i in range(pages, pages + n_eval):
        page = world.page(rng, i)
        catalog = world.catalog(i)
        for j, t in enumerate(page.title_ids):
            cands = catalog[t]
            ids = [c.artwork_id for c in cands]
            user = _with_row(page.user, j)
            p = world.click_probs(page, t, i)
            rates = guarded.rates(t, ids)[0]
            value["counts"] += p[int(np.argmax(rates))]
            for name, pol in learners.items():
                value[name] += p[int(np.argmax(pol.predict(user, t, cands)))]
            if seg_rates is not None:
                k = segment[page.user_index]
                s = [seg_rates[(t, a)][k] if (t, a) in seg_rates else rates[m] for m, a in enumerate(ids)]
                value["told the hidden segment"] += p[int(np.argmax(s))]
            oracle += float(p.max())
            acc = per_title.get(t)
            per_title[t] = p.copy() if acc is None or acc.shape != p.shape else acc + p
            n += 1
    best = sum(float(v.max()) for v in per_title.values()) / n
    oracle /= n
    gap = oracle - best
    scores = {}
    for e in ESTIMATORS:
        if e == "told the hidden segment" and seg_rates is None:
            continue
        v = value[e] / n
        scores[e] = {"value": v, "gap_closed": (v - best) / gap if gap >= 1e-9 else math.nan}
    return {"world": world_name, "seed": seed, "pages": pages, "best_fixed": best, "oracle": oracle,
            "scores": scores, "guard_weight": guarded.gate_weight(), "seconds": time.perf_counter() - t0}


def aggregate(runs: list[dict[str, Any]], worlds: list[str], sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for w in worlds:
        for e in ESTIMATORS:
            cells = []
            for n in sizes:
                mine = [r for r in runs if r["world"] == w and r["pages"] == n and e in r["scores"]]
                cells.append({"pages": n, "gap_closed": mean_ci([r["scores"][e]["gap_closed"] for r in mine]),
                              "value": mean_ci([r["scores"][e]["value"] for r in mine]), "seeds": len(mine)})
            if any(c["seeds"] for c in cells):
                rows.append({"world": w, "estimator": e, "cells": cells})
    return rows


def _pct(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{100 * x:.0f}%"


def format_table(rows: list[dict[str, Any]], sizes: list[int]) -> str:
    head = ["world", "estimator (greedy, learned from uniform decisions)",
            *[f"gap closed after {n:,} pages" for n in sizes]]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [f"{_pct(c['gap_closed'][0])} [{_pct(c['gap_closed'][1])}, {_pct(c['gap_closed'][2])}]"
                 for c in r["cells"]]
        lines.append(f"| {r['world']} | {r['estimator']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], worlds: list[str], png: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(3, len(worlds))
    nrows = math.ceil(len(worlds) / cols)
    fig = Figure(figsize=(4.6 * cols, 3.8 * nrows))
    FigureCanvasAgg(fig)
    for i, w in enumerate(worlds):
        ax = fig.add_subplot(nrows, cols, i + 1)
        for r in (r for r in rows if r["world"] == w):
            plot_band(ax, [c["pages"] for c in r["cells"]], [c["gap_closed"] for c in r["cells"]], r["estimator"],
                      alpha=0.12)
        ax.axhline(0.5, linestyle="--", color="black", linewidth=1, label="issue 10's goal (50%)")
        ax.axhline(0.0, color="grey", linewidth=0.5)
        ax.set_xscale("log")
        ax.set_title(w)
        ax.set_xlabel("pages of uniformly random decisions learned from")
        ax.set_ylabel("share of best-fixed → oracle gap (greedy)")
        if i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worlds", default="clusters,linear,threshold,frequent,cold,actors")
    ap.add_argument("--pages", default="4800,19200", help="training sizes, in pages of uniform decisions")
    ap.add_argument("--eval", type=int, default=600, help="held-out pages each estimator is scored on")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="bench-results/bench_learnability.json")
    args = ap.parse_args(argv)
    worlds = [w for w in args.worlds.split(",") if w]
    check_names(ap, worlds, [])
    try:
        sizes = sorted(int(x) for x in args.pages.split(",") if x)
    except ValueError:
        ap.error(f"--pages must be comma-separated page counts, got {args.pages!r}")
    if not sizes or sizes[0] < 10 or args.eval < 10 or args.seeds < 1:
        ap.error("--pages entries and --eval must be >= 10 and --seeds >= 1")
    tasks = [(w, s, n, args.eval) for n in sizes for w in worlds for s in range(args.seeds)]
    t0 = time.perf_counter()
    print(f"{len(tasks)} runs ({len(worlds)} worlds x {len(sizes)} sizes x {args.seeds} seeds), {args.jobs} workers",
          flush=True)
    runs: list[dict[str, Any]] = []
    with mp.get_context("fork").Pool(args.jobs, initializer=one_blas_thread) as pool:
        for i, r in enumerate(pool.imap_unordered(one_run, tasks), 1):
            runs.append(r)
            gaps = ", ".join(f"{e} {_pct(s['gap_closed'])}" for e, s in r["scores"].items())
            print(f"[{i:3d}/{len(tasks)} {time.perf_counter() - t0:6.0f}s] {r['world']:10s} seed {r['seed']} "
                  f"{r['pages']:>6,} pages: {gaps}", flush=True)
    rows = aggregate(runs, worlds, sizes)
    print()
    print(format_table(rows, sizes))
    out = Path(args.out)
    png = out.with_suffix(".png")
    plot(rows, worlds, png)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": vars(args), "rows": rows, "runs": runs,
                               "seconds": time.perf_counter() - t0}, indent=1, default=lambda o: None))
    print(f"wrote {out} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
