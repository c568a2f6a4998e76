#!/usr/bin/env python3
"""Benchmark: `artwork replay --ray` (Ray Data, bandit.distributed) against the local model-free path.

The log: engine-shaped synthetic decisions (`bench_reward_model.synthetic_log`: 200 titles of 3-8
candidates, logged uniformly), written as 4 Parquet files in a folder. Two target policies
(uniform and fixed), the estimators both paths compute (IPS, SNIPS; replay too on a log whose
propensities are all equal, which this one's 3-8 candidates per title are not) with 1,000 bootstrap
replicates each:

- local: `read_parquet` of every file, `select_rows`, `records_to_arrays(reward_model=False)`,
  `policy_inputs`, `evaluate_policy` (multinomial bootstrap), in this process;
- ray: `bandit.distributed.run_replay` on a local Ray instance already started (`--cpus`), the
  rows read, evaluated and reduced to sums in Ray Data workers (Poisson bootstrap);
- ray.init: starting that local instance (what a cold `artwork replay --ray` adds).

The point estimates of the two paths are checked to agree to 1e-9. With `--full`, the whole local
`artwork replay` (cross-fitted reward model and all seven estimators) is timed too. Prints a table
and writes JSON (default bench-results/bench_ray.json).

    python scripts/bench_ray.py                 # 200,000 rows
    python scripts/bench_ray.py --rows 20000 --full
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_reward_model import synthetic_log  # noqa: E402

from bandit.baselines import FixedPolicy, UniformPolicy  # noqa: E402
from bandit.decisions import read_parquet, write_parquet  # noqa: E402

B = 1000
MODEL_FREE = ("replay", "ips", "snips")


def local_model_free(files: list[Path]) -> tuple[float, dict[tuple[str, str], float]]:
    from bandit.offline import policy_inputs, records_to_arrays, select_rows
    from bandit.replay import evaluate_policy

    start = time.perf_counter()
    records = [r for f in files for r in read_parquet(f)]
    rows = select_rows(records).records
    arrays = records_to_arrays(rows, reward_model=False)
    values = {}
    for name, pol in (("uniform", UniformPolicy()), ("fixed", FixedPolicy())):
        inputs = policy_inputs(pol, rows, arrays)
        for e in evaluate_policy(inputs, n_bootstrap=B):  # without a reward model: replay (uniform logs), IPS, SNIPS
            values[(name, e.name)] = e.value
    return time.perf_counter() - start, values


def local_full(folder: Path) -> float:
    import subprocess

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bandit.cli", "replay", str(folder), "--policy", "uniform", "--policy",
                    "fixed", "--quiet", "--json"], check=True, capture_output=True, cwd=ROOT,
                   env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return time.perf_counter() - start


def on_ray(folder: Path) -> tuple[float, dict[tuple[str, str], float]]:
    from bandit.distributed import run_replay

    start = time.perf_counter()
    results, _, _, _ = run_replay(str(folder), ["uniform", "fixed"], n_bootstrap=B, warn=lambda m: None,
                                  note=lambda m: None)
    values = {(name, e.name): e.value for name, ests in results.items() for e in ests}
    return time.perf_counter() - start, values


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray instance")
    ap.add_argument("--full", action="store_true", help="also time the whole local `artwork replay`")
    ap.add_argument("--out", default="bench-results/bench_ray.json")
    args = ap.parse_args(argv)

    import ray

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        folder = Path(tmp) / "log"
        t = time.perf_counter()
        records = synthetic_log(args.rows)
        bounds = np.linspace(0, len(records), 5).astype(int)
        files = []
        for k in range(4):
            files.append(folder / f"part-{k}.parquet")
            write_parquet(records[bounds[k]:bounds[k + 1]], files[-1])
        del records
        print(f"log: {args.rows:,} rows in 4 files ({sum(f.stat().st_size for f in files) / 1e6:.1f} MB), "
              f"made in {time.perf_counter() - t:.1f} s", file=sys.stderr)

        local_s, local_values = local_model_free(files)
        t = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, _temp_dir=str(Path(tmp) / "ray"), logging_level="ERROR",
                 log_to_driver=False)
        init_s = time.perf_counter() - t
        try:
            ray_s, ray_values = on_ray(folder)
            ray_again_s, _ = on_ray(folder)
        finally:
            ray.shutdown()
        worst = max(abs(ray_values[k] - local_values[k]) for k in local_values)
        full_s = local_full(folder) if args.full else None

    rows = [("local, model-free (replay/IPS/SNIPS)", local_s), ("ray, instance running (1st run)", ray_s),
            ("ray, instance running (2nd run)", ray_again_s), ("ray.init (local instance)", init_s),
            ("ray incl. ray.init (cold `replay --ray`)", init_s + ray_s)]
    if full_s is not None:
        rows.append(("local `artwork replay` (reward model, 7 estimators)", full_s))
    print(f"{'path':<52} {'seconds':>8} {'rows/s':>10}")
    for name, s in rows:
        rate = "" if name.startswith("ray.init") else f"{args.rows / s:,.0f}"
        print(f"{name:<52} {s:8.2f} {rate:>10}")
    print(f"largest |ray - local| over point estimates: {worst:.1e}; bootstrap replicates {B}; "
          f"Ray CPUs {args.cpus}; machine CPUs {os.cpu_count()}")
    doc: dict[str, Any] = {"rows": args.rows, "files": 4, "n_bootstrap": B, "ray_cpus": args.cpus,
                           "cpus": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__,
                           "seconds": {name: s for name, s in rows},
                           "rows_per_s": {name: args.rows / s for name, s in rows if not name.startswith("ray.init")},
                           "max_abs_point_difference": worst}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0 if worst < 1e-9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
