"""Benchmark: our Policy.choose vs bare vowpal-wabbit-next predict_one on the same features.

A page is 40 titles x 10 candidate artworks for one user. We time, per decision and per page:
  bare  - ws.predict_one(pre-parsed examples): the public vowpal-wabbit-next call;
  core  - the extension call predict_one wraps (no per-call label checks): VW's own floor;
  ours  - VWPolicy.choose(user, title, candidates): feature text, caches, predict, pmf, sampling;
  bayes - the serving default (bandit/bayes.py) choose on the same pages, for its cost per page,
          title by title and as one `choose_many` call per page (what the HTTP path does).
Prints a table and writes JSON (default bench-results/bench_policy.json).

    python scripts/bench_policy.py [out.json] [--pages 300] [--exploration squarecb]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any
from pathlib import Path

import numpy as np
import vowpal_wabbit_next as vw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bandit.features import Candidate, UserContext  # noqa: E402
from bandit.policy import TitleRequest, VWConfig, VWPolicy, action_line, shared_line  # noqa: E402
from bandit.registry import DEFAULT_POLICY, make_policy  # noqa: E402

N_TITLES = 40
N_ARTWORKS = 10
MOODS = ["dark", "tense", "romantic", "funny", "calm", "epic", "eerie", "warm", "cold", "gritty"]
GENRES = ["crime", "comedy", "drama", "horror", "romance", "scifi", "action", "documentary"]
ACTORS = [f"Actor {i}" for i in range(30)]


def make_catalog(rng: np.random.Generator, emb_dims: int = 24) -> dict[str, list[Candidate]]:
    """40 titles x 10 artworks with realistic feature counts: 5 moods, 3 genres, <=2 actors, 24 emb dims."""
    titles: dict[str, list[Candidate]] = {}
    for t in range(N_TITLES):
        cands = []
        for a in range(N_ARTWORKS):
            f: dict[str, float] = {}
            for m in rng.choice(MOODS, 5, replace=False):
                f[f"mood:{m}"] = round(float(rng.random()), 4)
            for g in rng.choice(GENRES, 3, replace=False):
                f[f"genre:{g}"] = round(float(rng.random()), 4)
            for ac in rng.choice(ACTORS, int(rng.integers(0, 3)), replace=False):
                f[f"actor:{ac}"] = round(float(0.2 + 0.2 * rng.random()), 4)
            for i, v in enumerate(rng.normal(0, 0.1, emb_dims)):
                f[f"emb:{i}"] = round(float(v), 4)
            cands.append(Candidate(f"t{t:02d}-a{a}", f))
        titles[f"t{t:02d}"] = cands
    return titles


def make_users(rng: np.random.Generator, n: int) -> list[UserContext]:
    """Users with ~10 taste entries and full request context."""
    users = []
    for i in range(n):
        taste = {f"genre:{g}": round(float(rng.random()), 3) for g in rng.choice(GENRES, 4, replace=False)}
        taste |= {f"mood:{m}": round(float(rng.random()), 3) for m in rng.choice(MOODS, 4, replace=False)}
        taste |= {f"actor:{a}": 1.0 for a in rng.choice(ACTORS, 2, replace=False)}
        users.append(
            UserContext(
                f"u{i}", taste=taste, device=str(rng.choice(["tv", "web", "ios", "android"])),
                hour=int(rng.integers(24)), country=str(rng.choice(["US", "FR", "BR", "IN"])), row=int(rng.integers(8)),
            )
        )
    return users


def warm_up_policy(pol: "VWPolicy | Any", catalog: dict[str, list[Candidate]], users: list[UserContext], n: int, rng: np.random.Generator) -> None:
    """Give the model non-zero weights so predict does realistic work."""
    titles = list(catalog)
    for i in range(n):
        u = users[i % len(users)]
        t = titles[int(rng.integers(len(titles)))]
        d = pol.choose(u, t, catalog[t])
        pol.learn_one(u, t, catalog[t], d.chosen, d.probability, float(rng.random() < 0.1))


def time_pages(page_fn: Callable[[int], None], pages: int) -> np.ndarray:
    """Per-page latencies in microseconds (page_fn records its own per-decision times)."""
    per_page: list[float] = []
    clock = time.perf_counter_ns
    gc.disable()  # GC pauses are real but belong to the whole server, not to this comparison
    try:
        for p in range(pages):
            t0 = clock()
            page_fn(p)
            per_page.append((clock() - t0) / 1e3)
    finally:
        gc.enable()
    return np.asarray(per_page)


def summarise(per_call_us: np.ndarray, per_page_us: np.ndarray) -> dict[str, float]:
    """Throughput and latency percentiles."""
    return {
        "decisions_per_s": float(1e6 / per_call_us.mean()),
        "decision_p50_us": float(np.percentile(per_call_us, 50)),
        "decision_p99_us": float(np.percentile(per_call_us, 99)),
        "decision_mean_us": float(per_call_us.mean()),
        "page_p50_us": float(np.percentile(per_page_us, 50)),
        "page_p99_us": float(np.percentile(per_page_us, 99)),
    }


def run(pages: int, exploration: str, seed: int) -> dict[str, object]:
    """Run both variants on the same users, catalog and model; returns the results dict."""
    rng = np.random.default_rng(seed)
    catalog = make_catalog(rng)
    users = make_users(rng, 200)
    pol = VWPolicy(VWConfig(exploration=exploration, seed=seed))
    warm_up_policy(pol, catalog, users, 3000, rng)
    default = make_policy(DEFAULT_POLICY, seed=seed)
    warm_up_policy(default, catalog, users, 3000, np.random.default_rng(seed + 1))
    titles = list(catalog)

    # Bare VW: a second workspace loaded from the same model, examples parsed up front.
    ws = vw.Workspace(["--quiet"], model_data=pol._ws.serialize())
    parser = vw.TextFormatParser(ws)
    actions = {t: [parser.parse_line(action_line(c)) for c in cands] for t, cands in catalog.items()}
    shared = [parser.parse_line(shared_line(u)) for u in users]
    core = ws._workspace.predict_multi_ex_one
    raw_actions = {t: [ex._example for ex in exs] for t, exs in actions.items()}
    raw_shared = [ex._example for ex in shared]

    clock = time.perf_counter_ns
    bare_calls: list[float] = []
    core_calls: list[float] = []
    ours_calls: list[float] = []
    default_calls: list[float] = []

    def bare_page(p: int) -> None:
        sh = shared[p % len(shared)]
        for t in titles:
            t0 = clock()
            ws.predict_one([sh, *actions[t]])
            bare_calls.append((clock() - t0) / 1e3)

    def core_page(p: int) -> None:
        sh = raw_shared[p % len(raw_shared)]
        for t in titles:
            t0 = clock()
            core([sh, *raw_actions[t]])
            core_calls.append((clock() - t0) / 1e3)

    def ours_page(p: int) -> None:
        u = users[p % len(users)]
        for t in titles:
            t0 = clock()
            pol.choose(u, t, catalog[t])
            ours_calls.append((clock() - t0) / 1e3)

    def default_page(p: int) -> None:
        u = users[p % len(users)]
        for t in titles:
            t0 = clock()
            default.choose(u, t, catalog[t])
            default_calls.append((clock() - t0) / 1e3)

    requests = [TitleRequest(t, catalog[t]) for t in titles]
    many_calls: list[float] = []

    def many_page(p: int) -> None:
        # The HTTP path: one call for the page (Engine.choose -> choose_many), per-user work shared.
        u = users[p % len(users)]
        t0 = clock()
        default.choose_many(u, requests)
        many_calls.extend([(clock() - t0) / 1e3 / len(titles)] * len(titles))

    # Warm both paths (first call parses and caches the candidates), then interleave blocks
    # so drift on a shared machine hits both variants alike.
    time_pages(bare_page, 5)
    time_pages(core_page, 5)
    time_pages(ours_page, 5)
    time_pages(default_page, 5)
    time_pages(many_page, 5)
    many_calls.clear()
    default_calls.clear()
    bare_calls.clear()
    core_calls.clear()
    ours_calls.clear()
    bare_pages: list[np.ndarray] = []
    core_pages: list[np.ndarray] = []
    ours_pages: list[np.ndarray] = []
    default_pages: list[np.ndarray] = []
    many_pages: list[np.ndarray] = []
    block = 1  # alternate page by page so load spikes from other processes hit all variants alike
    done = 0
    while done < pages:
        n = min(block, pages - done)
        bare_pages.append(time_pages(bare_page, n))
        core_pages.append(time_pages(core_page, n))
        ours_pages.append(time_pages(ours_page, n))
        default_pages.append(time_pages(default_page, n))
        many_pages.append(time_pages(many_page, n))
        done += n

    bare = summarise(np.asarray(bare_calls), np.concatenate(bare_pages))
    floor = summarise(np.asarray(core_calls), np.concatenate(core_pages))
    ours = summarise(np.asarray(ours_calls), np.concatenate(ours_pages))
    return {
        "setup": {
            "titles_per_page": N_TITLES, "artworks_per_title": N_ARTWORKS, "pages": pages,
            "exploration": exploration, "vw_args": pol.config.vw_args(), "seed": seed,
            "features_per_artwork": int(np.mean([len(c.features) for cs in catalog.values() for c in cs])),
            "python": platform.python_version(), "vowpal_wabbit_next": vw.__version__, "machine": platform.machine(),
            # Other processes on the box inflate p99 far more than p50; record how busy it was.
            "loadavg_1min_at_end": os.getloadavg()[0], "cpu_count": os.cpu_count(),
        },
        "bare_vw_predict_one": bare,
        "bare_vw_core_call": floor,
        "policy_choose": ours,
        "default_policy_choose": {"policy": DEFAULT_POLICY,
                                  **summarise(np.asarray(default_calls), np.concatenate(default_pages))},
        "default_policy_page": {"policy": DEFAULT_POLICY,
                                **summarise(np.asarray(many_calls), np.concatenate(many_pages))},
        "overhead_ratio_mean": ours["decision_mean_us"] / bare["decision_mean_us"],
        "overhead_ratio_p50": ours["decision_p50_us"] / bare["decision_p50_us"],
        "overhead_ratio_p99": ours["decision_p99_us"] / bare["decision_p99_us"],
        "ratio_vs_core_mean": ours["decision_mean_us"] / floor["decision_mean_us"],
        "ratio_vs_core_p50": ours["decision_p50_us"] / floor["decision_p50_us"],
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default="bench-results/bench_policy.json")
    ap.add_argument("--pages", type=int, default=300)
    ap.add_argument("--exploration", default="squarecb")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    res = run(args.pages, args.exploration, args.seed)
    b, c, o = res["bare_vw_predict_one"], res["bare_vw_core_call"], res["policy_choose"]
    assert isinstance(b, dict) and isinstance(c, dict) and isinstance(o, dict)
    print(f"{N_TITLES} titles x {N_ARTWORKS} artworks per page, {args.pages} pages, exploration={args.exploration}")
    print(f"{'variant':<24}{'decisions/s':>13}{'p50 us':>10}{'p99 us':>10}{'page p50 us':>13}{'page p99 us':>13}")
    d = res["default_policy_choose"]
    assert isinstance(d, dict)
    for name, r in (("bare VW predict_one", b), ("bare VW core call", c), ("Policy.choose", o),
                    (f"{DEFAULT_POLICY} choose (default)", d),
                    (f"{DEFAULT_POLICY} page in one call", res["default_policy_page"])):
        print(f"{name:<24}{r['decisions_per_s']:>13,.0f}{r['decision_p50_us']:>10.1f}{r['decision_p99_us']:>10.1f}"
              f"{r['page_p50_us']:>13.0f}{r['page_p99_us']:>13.0f}")
    print(f"overhead ratio (ours / bare): mean {res['overhead_ratio_mean']:.2f}x, "
          f"p50 {res['overhead_ratio_p50']:.2f}x, p99 {res['overhead_ratio_p99']:.2f}x  (goal <= 2x)")
    print(f"vs the core call: mean {res['ratio_vs_core_mean']:.2f}x, p50 {res['ratio_vs_core_p50']:.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
