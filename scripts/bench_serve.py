"""Serving benchmark: `artwork serve` over loopback vs the in-process decision cost of the same page.

    python scripts/bench_serve.py [--rate 100] [--duration 20] [--titles 40] [--out bench-results/bench_serve.json]

Builds a throwaway catalog (real JPEGs, designed tags, random embeddings; no encoder needed)
unless --store names one, measures `Engine.choose` in-process on a copy, then starts the server
as a subprocess on 127.0.0.1 and drives it from another process: an open-loop schedule of
40-title choose requests at --rate per second, and for every page one feedback post (the other
impressions close by window later, as most impressions do), so feedback flows at the same rate.
Latency is measured from the scheduled send time, so a stalled server cannot hide its queueing.
Only loopback, bounded request counts (rate x duration) and a hard time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from artwork.store import Catalog  # noqa: E402
from bandit.engine import Engine, EngineConfig, context_from_request  # noqa: E402
from bandit.server import free_port  # noqa: E402

LOOKS = ("crime", "romance", "comedy", "horror", "action", "drama")
MOODS = {"crime": "dark", "romance": "romantic", "comedy": "funny", "horror": "scary", "action": "epic", "drama": "emotional"}


def build_catalog(path: Path, n_titles: int, per_title: int, seed: int = 0) -> list[str]:
    """n_titles x per_title small JPEG candidates with tags and unit embeddings."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    with Catalog(path) as c:
        for t in range(n_titles):
            tid = f"t{t:03d}"
            c.ensure_title(tid)
            for k in range(per_title):
                im = Image.new("RGB", (96, 64), tuple(int(v) for v in rng.integers(0, 256, 3)))
                ImageDraw.Draw(im).ellipse((10, 10, 60, 50), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
                buf = io.BytesIO()
                im.save(buf, "JPEG")
                data = buf.getvalue()
                g = LOOKS[(t + k) % len(LOOKS)]
                tags = {"genres": {g: round(float(rng.uniform(0.4, 0.9)), 4), LOOKS[k % len(LOOKS)]: 0.2},
                        "moods": {MOODS[g]: round(float(rng.uniform(0.3, 0.9)), 4), "tense": round(float(rng.random()), 4)}}
                emb = rng.normal(size=64).astype(np.float32)
                emb /= np.linalg.norm(emb)
                c.add_artwork(tid, data, hashlib.sha256(data).hexdigest(), f"upload:{k}.jpg", 96, 64, "bench-encoder",
                              emb, tags, "bench")
        return [t.title_id for t in c.titles()]


def pct(xs: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max in milliseconds."""
    if not xs:
        return {"n": 0}
    a = np.asarray(xs) * 1e3
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "max_ms": float(a.max())}


def user_body(rng: np.random.Generator, i: int, titles: list[str]) -> dict:
    return {"user_id": f"bench-{i}", "titles": titles,
            "taste": {f"genre:{g}": round(float(rng.random()), 3) for g in LOOKS[:3]},
            "context": {"device": ["tv", "mobile", "web"][i % 3], "hour": int(i % 24), "country": "US", "row": int(i % 8)}}


def in_process(store: Path, titles: list[str], pages: int) -> dict[str, float]:
    """Engine.choose for the same page, on a copy of the catalog with its own event log."""
    d = Path(tempfile.mkdtemp(prefix="bench-inproc-"))
    try:
        shutil.copy(store, d / "c.db")
        rng = np.random.default_rng(1)
        times = []
        with Engine(d / "c.db", EngineConfig(), start_timer=False) as eng:
            for i in range(pages + 20):
                b = user_body(rng, i, titles)
                user = context_from_request({"user_id": b["user_id"], "taste": b["taste"], **b["context"]})
                t0 = time.perf_counter()
                eng.choose(user, titles)
                if i >= 20:  # warm-up: VW example cache, SQLite pages
                    times.append(time.perf_counter() - t0)
        return pct(times)
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def _drive(url: str, titles: list[str], rate: float, duration: float, warmup: float) -> dict:
    import httpx

    rng = np.random.default_rng(2)
    lat: dict[str, list[float]] = {"choose": [], "feedback": []}
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, timeout=10.0, limits=limits) as c:
        start = time.perf_counter() + 0.2
        n = int(rate * (duration + warmup))
        tasks = []

        async def one(i: int, when: float) -> None:
            await asyncio.sleep(max(0.0, when - time.perf_counter()))
            measured = when - start >= warmup
            try:
                r = await c.post("/v1/choose", json=user_body(rng, i, titles))
                t = time.perf_counter()
                if r.status_code != 200:
                    errors[f"choose {r.status_code}"] = errors.get(f"choose {r.status_code}", 0) + 1
                    return
                if measured:
                    lat["choose"].append(t - when)
                ev = r.json()["results"][i % len(titles)]["event_id"]
                t0 = time.perf_counter()
                f = await c.post("/v1/feedback", json={"event_id": ev, "click": bool(i % 3 == 0)})
                if f.status_code != 200:
                    errors[f"feedback {f.status_code}"] = errors.get(f"feedback {f.status_code}", 0) + 1
                elif measured:
                    lat["feedback"].append(time.perf_counter() - t0)
            except httpx.HTTPError as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1

        for i in range(n):
            tasks.append(asyncio.create_task(one(i, start + i / rate)))
        t_begin = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration + warmup + 60)
        wall = time.perf_counter() - t_begin
    return {"latency": lat, "errors": errors, "wall_s": wall, "sent": n}


def _client_proc(url: str, titles: list[str], rate: float, duration: float, warmup: float, q: mp.Queue) -> None:
    q.put(asyncio.run(_drive(url, titles, rate, duration, warmup)))


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process and its threads (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="existing catalog (default: build a throwaway one)")
    ap.add_argument("--titles", type=int, default=40)
    ap.add_argument("--per-title", type=int, default=4)
    ap.add_argument("--rate", type=float, default=100.0, help="choose requests per second (and as many feedback posts)")
    ap.add_argument("--duration", type=float, default=20.0, help="measured seconds (after --warmup)")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--inproc-pages", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "bench_serve.json")
    args = ap.parse_args()
    if args.rate * (args.duration + args.warmup) > 20_000:
        ap.error("rate x (duration + warmup) is capped at 20000 requests")

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    proc = None
    try:
        store = work / "catalog.db"
        if args.store:
            shutil.copy(args.store, store)
            with Catalog(store) as c:
                titles = [t.title_id for t in c.titles() if c.artworks(t.title_id)][: args.titles]
        else:
            titles = build_catalog(store, args.titles, args.per_title)
        print(f"catalog: {len(titles)} titles x {args.per_title} artworks; measuring in-process choose ...", flush=True)
        inproc = in_process(store, titles, args.inproc_pages)

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        logf = (work / "server.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "bandit.server", "--store", str(store), "--host", "127.0.0.1",
                                 "--port", str(port), "--max-titles", str(max(200, len(titles)))],
                                cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=logf, stderr=subprocess.STDOUT)
        import httpx

        for _ in range(300):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit("server did not start: " + (work / "server.log").read_text()[-2000:])
        print(f"server up on {url}; driving {args.rate:g} pages/s + {args.rate:g} feedback/s for "
              f"{args.duration:g}s (+{args.warmup:g}s warm-up) from another process ...", flush=True)
        cpu0 = _cpu_seconds(proc.pid)
        q: mp.Queue = mp.get_context("spawn").Queue()
        client = mp.get_context("spawn").Process(target=_client_proc, args=(url, titles, args.rate, args.duration, args.warmup, q))
        client.start()
        res = q.get(timeout=args.duration + args.warmup + 120)
        cpu1 = _cpu_seconds(proc.pid)
        client.join(timeout=30)
        metrics = httpx.get(url + "/metrics", timeout=5).text
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)

    lat = res["latency"]
    choose, feedback = pct(lat["choose"]), pct(lat["feedback"])
    measured_s = args.duration
    out = {
        "titles_per_page": len(titles), "artworks_per_title": args.per_title, "rate": args.rate,
        "duration_s": args.duration, "warmup_s": args.warmup,
        "in_process_choose": inproc,
        "http_choose": choose | {"rps": choose.get("n", 0) / measured_s},
        "http_feedback": feedback | {"rps": feedback.get("n", 0) / measured_s},
        "errors": res["errors"], "sent_pages": res["sent"],
        # Server CPU per page (its choose + its feedback post): what a page costs whatever the
        # machine's other load, and so how many pages one core can serve (1000 / this).
        "server_cpu_ms_per_page": (1e3 * (cpu1 - cpu0) / res["sent"]) if cpu0 is not None and res["sent"] else None,
        "goal": {"p99_ms": 50.0, "met": bool(choose.get("p99_ms", 1e9) < 50.0 and not res["errors"])},
        "machine": {"cpus": os.cpu_count(), "loadavg_after": os.getloadavg()},
        "server_metrics": {ln.split(" ")[0]: float(ln.split(" ")[1]) for ln in metrics.splitlines()
                           if ln.startswith("artwork_") and "{" not in ln},
    }
    print()
    print(f"{'':28}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, r in ((f"in-process choose ({len(titles)} titles)", inproc | {"rps": float("nan")}),
                    (f"HTTP choose ({len(titles)} titles)", out["http_choose"]),
                    ("HTTP feedback", out["http_feedback"])):
        print(f"{name:28}{r.get('rps', 0):8.1f}{r.get('p50_ms', 0):9.2f}{r.get('p95_ms', 0):9.2f}"
              f"{r.get('p99_ms', 0):9.2f}{r.get('max_ms', 0):9.2f}")
    if out["server_cpu_ms_per_page"] is not None:
        cpu = out["server_cpu_ms_per_page"]
        print(f"server CPU per page (choose + feedback): {cpu:.2f} ms, so one core serves at most ~{1e3 / cpu:.0f} pages/s")
    print(f"errors: {res['errors'] or 'none'}; goal p99 < 50 ms at {args.rate:g}/s: {'met' if out['goal']['met'] else 'NOT met'}"
          f"; load average after: {out['machine']['loadavg_after'][0]:.2f} on {os.cpu_count()} cores")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
