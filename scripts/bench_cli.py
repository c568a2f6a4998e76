"""Start-up benchmark of the `artwork` command: wall time of light commands, goal < 1 s each.

    python scripts/bench_cli.py [--runs 7] [--out bench-results/bench_cli.json]

Times whole processes, as a user or a script sees them: `artwork --help`, `artwork --version`,
`artwork titles` and `artwork show TITLE --json` on a small throwaway catalog (5 titles x 3 JPEGs
written straight to the store, no encoder), next to a bare `python -c pass` (the interpreter's own
start) and `python -c "import bandit.cli"`. One warm-up run per command is discarded (cold page
cache), then --runs runs each, interleaved so that a burst of load on a shared machine hits every
command alike. Prints a table and writes JSON with every run.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL_S = 1.0


def build_store(path: Path, n_titles: int = 5, per_title: int = 3) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    from artwork.store import Catalog

    rng = np.random.default_rng(0)
    with Catalog(path) as cat:
        for t in range(n_titles):
            tid = f"t{t:02d}"
            cat.ensure_title(tid, f"Title {t}")
            for k in range(per_title):
                im = Image.new("RGB", (96, 64), tuple(int(v) for v in rng.integers(0, 256, 3)))
                ImageDraw.Draw(im).ellipse((10, 10, 60, 50), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
                buf = io.BytesIO()
                im.save(buf, "JPEG")
                data = buf.getvalue()
                emb = rng.normal(size=32).astype(np.float32)
                cat.add_artwork(tid, data, hashlib.sha256(data).hexdigest(), f"upload:{k}.jpg", 96, 64,
                                "bench-encoder", emb / np.linalg.norm(emb), {}, "bench-vocab")


def artwork_command() -> list[str]:
    """The installed console script next to this interpreter (what users run), else `python -m bandit.cli`."""
    script = Path(sys.executable).parent / "artwork"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "bandit.cli"]


def time_once(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs per command (after one warm-up)")
    ap.add_argument("--out", default=str(ROOT / "bench-results" / "bench_cli.json"))
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    with tempfile.TemporaryDirectory(prefix="bench_cli_") as tmp:
        store = Path(tmp) / "bench.db"
        build_store(store)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("ARTWORK_STORE", None)
        art = artwork_command()
        commands = {
            "python -c pass (interpreter start)": [sys.executable, "-c", "pass"],
            "python -c 'import bandit.cli'": [sys.executable, "-c", "import bandit.cli"],
            "artwork --help": [*art, "--help"],
            "artwork --version": [*art, "--version"],
            "artwork titles": [*art, "--store", str(store), "titles"],
            "artwork show t00 --json": [*art, "--store", str(store), "show", "t00", "--json"],
        }
        for cmd in commands.values():  # warm-up: page cache, .pyc files
            time_once(cmd, env)
        runs: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                runs[name].append(time_once(cmd, env))

    results = {}
    print(f"{'command':<38} {'median s':>9} {'min s':>7} {'max s':>7}  goal < {GOAL_S:.0f} s")
    for name, times in runs.items():
        med = statistics.median(times)
        goal = name.startswith("artwork")
        results[name] = {"median_s": round(med, 4), "min_s": round(min(times), 4), "max_s": round(max(times), 4),
                         "runs_s": [round(t, 4) for t in times], "goal_met": (med < GOAL_S) if goal else None}
        verdict = ("met" if med < GOAL_S else "NOT MET") if goal else ""
        print(f"{name:<38} {med:>9.3f} {min(times):>7.3f} {max(times):>7.3f}  {verdict}")
    report = {
        "benchmark": "bench_cli",
        "goal": f"artwork --help and light commands start in < {GOAL_S} s (median wall time)",
        "runs": args.runs,
        "command": " ".join(art),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
