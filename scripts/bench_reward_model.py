#!/usr/bin/env python3
"""Benchmark: the cross-fitted reward model behind DM / DR / SNDR / switch-DR, per logged row.

What `artwork replay`, `compare` and `report` pay for the model-based estimators: read the log
once (`LogTables.from_records`), encode it (`RewardModel.encode`), fit one model per fold on the
other folds' rows (L-BFGS) and predict every candidate of the held-out rows
(`bandit.learning.cross_fit_q`, 2 folds). Timed on synthetic logs shaped like the engine's:

- a catalog of 200 titles with 3-8 candidates each; a candidate carries what
  `candidate_from_artwork` writes: its top-5 moods and top-5 genres (vocabularies from
  `artwork/assets/vocab/`), actors for half the titles, face features where it has a face, and a
  16-dimensional embedding projection;
- pages of 6-12 titles for one user (the row on the page in the context), users with 6-14 taste
  keys (15% cold), 4 devices, 8 countries, 24 hours; logged uniformly, clicks from a logistic
  truth with taste x artwork interactions (about 8% click rate).

Candidate feature dicts are shared per artwork, as the event log's feature sets are; every
context (and so every taste lookup) is a dict of its own, as `read_parquet` gives them.

Goal (issue 14, item 6): at most 0.05 ms per logged row, so a million rows in under a minute.
Prints a table and writes JSON (default bench-results/bench_reward_model.json).

    python scripts/bench_reward_model.py                  # 10k, 100k, 1M rows
    python scripts/bench_reward_model.py --rows 10000     # one size
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bandit.decisions import DecisionRecord  # noqa: E402
from bandit.learning import LogTables, RewardModel, cross_fit_q  # noqa: E402

GOAL_MS_PER_ROW = 0.05
VOCAB = Path(__file__).resolve().parents[1] / "artwork" / "assets" / "vocab"
DEVICES = ("tv", "mobile", "web", "tablet")
COUNTRIES = ("US", "GB", "BR", "FR", "DE", "IN", "JP", "MX")
FACE_KEYS = ("face:one", "face:two", "face:group")


def _words(name: str) -> list[str]:
    return [w.strip() for w in (VOCAB / name).read_text().splitlines() if w.strip() and not w.startswith("#")]


def synthetic_log(n: int, seed: int = 0, n_titles: int = 200) -> list[DecisionRecord]:
    """``n`` uniformly logged decisions shaped like the engine's (see the module docstring)."""
    rng = np.random.default_rng(seed)
    moods = [f"mood:{w}" for w in _words("moods.txt")]
    genres = [f"genre:{w}" for w in _words("genres.txt")]
    taste_keys = moods + genres
    # The hidden truth: how much each taste key likes each tag, and an embedding direction per key.
    like = rng.normal(0.0, 0.8, size=(len(taste_keys), len(taste_keys)))
    emb_like = rng.normal(0.0, 0.6, size=(len(taste_keys), 16))
    catalog: list[tuple[str, list[str], list[dict[str, float]], np.ndarray]] = []
    for t in range(n_titles):
        actors = [f"actor:Cast {t}-{j}" for j in range(int(rng.integers(1, 4)))] if rng.random() < 0.5 else []
        ids, feats, vecs = [], [], []
        for a in range(int(rng.integers(3, 9))):
            f: dict[str, float] = {}
            tags = np.zeros(len(taste_keys))
            for block, offset in ((moods, 0), (genres, len(moods))):
                for j in rng.choice(len(block), 5, replace=False):
                    tags[offset + j] = round(float(rng.uniform(0.05, 0.6)), 4)
                    f[block[j]] = tags[offset + j]
            for actor in actors:
                if rng.random() < 0.6:
                    f[actor] = round(float(rng.uniform(0.6, 0.95)), 4)
                    f[FACE_KEYS[int(rng.integers(3))]] = 1.0
                    f["face:share"] = round(float(rng.uniform(0.05, 0.4)), 4)
            emb = np.round(rng.normal(0.0, 0.3, 16), 4)
            f.update({f"emb:{i}": float(v) for i, v in enumerate(emb)})
            ids.append(f"t{t:03d}-a{a}")
            feats.append(f)
            vecs.append(np.concatenate([tags, emb]))
        catalog.append((f"t{t:03d}", ids, feats, np.array(vecs)))
    base = rng.normal(-2.6, 0.4, n_titles)

    n_users = max(50, n // 40)
    user_taste: list[dict[str, float]] = []
    user_vec = np.zeros((n_users, len(taste_keys)))
    for u in range(n_users):
        if rng.random() < 0.15:
            user_taste.append({})
            continue
        keys = rng.choice(len(taste_keys), int(rng.integers(6, 15)), replace=False)
        vals = np.round(rng.normal(0.0, 0.5, keys.size), 4)
        user_vec[u, keys] = vals
        user_taste.append({taste_keys[k]: float(v) for k, v in zip(keys, vals)})

    records: list[DecisionRecord] = []
    click = rng.random(n)
    while len(records) < n:
        u = int(rng.integers(n_users))
        context_base = {"user_id": f"u{u:06d}", "taste": user_taste[u], "history": [],
                        "device": DEVICES[int(rng.integers(4))], "hour": int(rng.integers(24)),
                        "country": COUNTRIES[int(rng.integers(8))]}
        for row, t in enumerate(rng.choice(n_titles, int(rng.integers(6, 13)), replace=False)):
            if len(records) == n:
                break
            title, ids, feats, vecs = catalog[t]
            k = int(rng.integers(len(ids)))
            taste = user_vec[u]
            logit = (base[t] + 0.8 * float(taste @ like @ vecs[k, :len(taste_keys)])
                     + float(taste @ emb_like @ vecs[k, len(taste_keys):]) - 0.05 * row)
            p = 1.0 / (1.0 + np.exp(-logit))
            i = len(records)
            # A context dict of its own per record (as read_parquet gives them); the taste inside
            # is copied too, so the encoder's per-user check compares dicts, not identities.
            ctx = {**context_base, "taste": dict(user_taste[u]), "row": row}
            records.append(DecisionRecord(
                event_id=f"e{i:08d}", time=float(i), user_id=ctx["user_id"], title_id=title, context=ctx,
                candidates=ids, candidate_features=feats, chosen=ids[k], probability=1.0 / len(ids),
                policy="uniform", version=0, reward=float(click[i] < p),
                distribution={a: 1.0 / len(ids) for a in ids}))
    return records


def time_one(n: int, seed: int, folds: int) -> dict[str, Any]:
    """Time each stage of the cross-fitted reward model on a fresh ``n``-row log."""
    t = time.perf_counter()
    records = synthetic_log(n, seed)
    made = time.perf_counter() - t
    gc.collect()
    gc.disable()  # the log is millions of long-lived objects: collections would only rescan them
    try:
        t0 = time.perf_counter()
        tables = LogTables.from_records(records)
        read = time.perf_counter() - t0
        fitted = cross_fit_q(tables, folds=folds, seed=seed)
        total = time.perf_counter() - t0
    finally:
        gc.enable()
    model = RewardModel.for_tables(tables)
    mask = tables.slots >= 0
    fit_s = sum(f.seconds for f in fitted.fits)
    return {
        "rows": n,
        "candidates_per_row": round(float(mask.sum(axis=1).mean()), 2),
        "coefficients": model.n_features,
        "user_features": model.n_user_features,
        "art_features": len(model.art_keys),
        "distinct_artworks": len(tables.arts),
        "distinct_tastes": len(tables.tastes),
        "click_rate": round(float(tables.reward.mean()), 4),
        "generate_log_s": round(made, 2),
        "read_s": round(read, 3),
        "fit_s": round(fit_s, 3),
        "encode_predict_s": round(total - read - fit_s, 3),
        "total_s": round(total, 3),
        "rows_per_s": round(n / total, 1),
        "ms_per_row": round(1e3 * total / n, 5),
        "meets_goal": bool(1e3 * total / n <= GOAL_MS_PER_ROW),
        "fits": [{"rows": f.rows, "iterations": f.iterations, "evaluations": f.evaluations,
                  "converged": f.converged, "seconds": round(f.seconds, 3)} for f in fitted.fits],
        "q_mean": round(float(fitted.q[mask].mean()), 5),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, action="append", help="log size (repeatable; default 10k, 100k, 1M)")
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench-results/bench_reward_model.json")
    args = ap.parse_args(argv)
    sizes = args.rows or [10_000, 100_000, 1_000_000]
    # Imports and first-call setup are paid once per process, not per row: warm them up untimed.
    cross_fit_q(LogTables.from_records(synthetic_log(400, args.seed + 1, n_titles=20)), folds=args.folds)
    results = []
    for n in sizes:
        print(f"{n:,} rows: generating the log ...", file=sys.stderr, flush=True)
        results.append(time_one(n, args.seed, args.folds))
        r = results[-1]
        print(f"{n:,} rows: {r['total_s']:.2f} s, {r['ms_per_row']:.4f} ms/row", file=sys.stderr, flush=True)

    head = ("rows", "coefs", "iterations", "read s", "fit s", "encode+predict s", "total s", "rows/s", "ms/row",
            f"<= {GOAL_MS_PER_ROW}")
    lines = [(f"{r['rows']:,}", f"{r['coefficients']:,}", "+".join(str(f["iterations"]) for f in r["fits"]),
              f"{r['read_s']:.2f}", f"{r['fit_s']:.2f}", f"{r['encode_predict_s']:.2f}",
              f"{r['total_s']:.2f}", f"{r['rows_per_s']:,.0f}", f"{r['ms_per_row']:.4f}",
              "met" if r["meets_goal"] else "NOT met") for r in results]
    widths = [max(len(x[k]) for x in [head, *lines]) for k in range(len(head))]
    print(f"cross-fitted reward model ({args.folds} folds), synthetic engine-shaped logs, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    for row in [head, *lines]:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"goal_ms_per_row": GOAL_MS_PER_ROW, "folds": args.folds, "cpus": os.cpu_count(),
                               "python": platform.python_version(), "results": results}, indent=1))
    print(f"wrote {out}")
    return 0 if all(r["meets_goal"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
