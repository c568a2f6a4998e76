#!/usr/bin/env python3
"""Scale-out benchmark: chooser replicas on Ray Serve, the one learner, and the event log under them.

    python scripts/bench_scale.py [--quick] [--out bench-results/bench_scale.json]

Measures, on a throwaway catalog (scripts/bench_serve.py's: 40 titles x 4 artworks, no encoder):

- event log writes (SQLite, and PostgreSQL when tests/pgkit.py can start one): 40-title pages
  chosen by an Engine(role="chooser") and one feedback post per page; the time spent inside
  `log_page` is reported apart from the whole page (choose + log), then the remaining windows are
  closed in the log (no learning), as the learner's timer would;
- learner capacity: an Engine(role="learner") started before those rows were written learns them
  all through `learn_tail` (the tail path: `_learn(events.finalized_after(learned_seq))`);
- Serve capacity for 1 and 2 chooser replicas (`bandit.rayserve.start`, a local Ray): an
  open-loop schedule of 40-title pages + one feedback each (bench_serve's load generator, in a
  process of its own) at rising rates; capacity is the highest rate whose page p99 < 50 ms with no
  errors; per-replica capacity is that over the replica count;
- snapshot staleness seen by the choosers during those runs: /health's `replica.snapshot_age_s`
  and `lag_learn_events`, sampled every 0.5 s.

Loopback only; every run is bounded by its rate x duration. --quick: ~2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_serve import _client_proc, build_catalog, pct, user_body  # noqa: E402  (the load generator)

from bandit.engine import Engine, EngineConfig, context_from_request  # noqa: E402
from bandit.server import ServeConfig, free_port  # noqa: E402

P99_GOAL_MS = 50.0


def log_and_learn(store: Path, titles: list[str], events: str, pages: int) -> dict:
    """Chooser writes (pages + feedback), closes in the log, then the learner's tail."""
    cfg = dict(events=events, feedback_window_s=60.0, max_titles=200)
    learner = Engine(store, EngineConfig(role="learner", **cfg), start_timer=False).start()
    chooser = Engine(store, EngineConfig(role="chooser", **cfg), start_timer=False).start()
    spent = [0.0]
    real_log_page = chooser.events.log_page

    def timed_log_page(*a, **kw):
        t0 = time.perf_counter()
        try:
            return real_log_page(*a, **kw)
        finally:
            spent[0] += time.perf_counter() - t0

    chooser.events.log_page = timed_log_page  # type: ignore[method-assign]
    rng = np.random.default_rng(0)
    try:
        events_to_post = []
        t0 = time.perf_counter()
        for i in range(pages):
            b = user_body(rng, i, titles)
            user = context_from_request({"user_id": b["user_id"], "taste": b["taste"], **b["context"]})
            got = chooser.choose(user, titles)
            events_to_post.append(got[i % len(got)].event_id)
        t_pages = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i, ev in enumerate(events_to_post):
            chooser.feedback(ev, click=bool(i % 3 == 0))
        t_feedback = time.perf_counter() - t0
        t0 = time.perf_counter()
        closed = 0
        while True:  # what the learner's timer does, without its learning: the log's cost alone
            n = len(chooser.events.close_expired(time.time() + 120.0))
            closed += n
            if n < 5000:
                break
        t_close = time.perf_counter() - t0
        head = learner.events.max_learn_seq()
        t0 = time.perf_counter()
        learned = learner.learn_tail()
        t_learn = time.perf_counter() - t0
        assert learned == head == learner.learned_seq, (learned, head, learner.learned_seq)
        return {
            "backend": chooser.events.backend, "pages": pages, "decisions": pages * len(titles),
            "pages_per_s": pages / t_pages, "log_page_ms": 1e3 * spent[0] / pages,
            "log_pages_per_s": pages / spent[0], "log_decisions_per_s": pages * len(titles) / spent[0],
            "feedback_per_s": pages / t_feedback, "closes_per_s": closed / t_close if t_close else None,
            "learn_rows": learned, "learn_rows_per_s": learned / t_learn,
        }
    finally:
        chooser.close()
        learner.close()


class Staleness(threading.Thread):
    """Polls /health (a replica at random, Serve's choice) for the served snapshot's age and lag,
    while `loaded` is set (under load: idle, the learner has nothing new to snapshot)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.age, self.lag, self.halt = url, [], [], threading.Event()
        self.loaded = threading.Event()

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=5.0) as c:
            while not self.halt.wait(0.5):
                if not self.loaded.is_set():
                    continue
                try:
                    rs = c.get("/health").json()["replica"]
                except Exception:  # noqa: BLE001 - a busy replica: skip the sample
                    continue
                if rs["snapshot_age_s"] is not None:
                    self.age.append(rs["snapshot_age_s"])
                self.lag.append(rs["lag_learn_events"])


def drive(url: str, titles: list[str], rate: float, duration: float, warmup: float,
          loaded: threading.Event | None = None) -> dict:
    q: mp.Queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_client_proc, args=(url, titles, rate, duration, warmup, q))
    proc.start()
    time.sleep(warmup + 2.0)  # the client's start (imports) and warm-up: not what staleness is about
    if loaded is not None:
        loaded.set()
    res = q.get(timeout=duration + warmup + 120)
    if loaded is not None:
        loaded.clear()
    proc.join(timeout=30)
    choose = pct(res["latency"]["choose"])
    return {"rate": rate, "choose": choose, "feedback": pct(res["latency"]["feedback"]), "errors": res["errors"],
            "met": bool(choose.get("p99_ms", 1e9) < P99_GOAL_MS and not res["errors"])}


def serve_capacity(store: Path, titles: list[str], replicas: int, rates: list[float], duration: float,
                   warmup: float) -> dict:
    from bandit.rayserve import start

    # A log of its own per run, and sessions that expire at once: every page is a fresh decision of
    # 40 titles (bench_serve's users repeat from step to step, and repeats cost almost nothing).
    log = store.parent / f"serve-{replicas}"
    cfg = ServeConfig(store=str(store), port=free_port(),
                      engine=EngineConfig(max_titles=200, session_ttl_s=1e-3, events=f"{log}.events.db",
                                          snapshot_dir=f"{log}.snapshots"))
    svc = start(cfg, replicas=replicas)
    stale = Staleness(svc.url)
    stale.start()
    steps = []
    try:
        for rate in rates:
            r = drive(svc.url, titles, rate, duration, warmup, stale.loaded)
            steps.append(r)
            print(f"  {replicas} replica(s) at {rate:6.0f} pages/s: p99 {r['choose'].get('p99_ms', float('nan')):8.1f} ms"
                  f"  errors {r['errors'] or 0}", flush=True)
            if not r["met"]:
                break
    finally:
        stale.halt.set()
        stale.join(timeout=5)
        svc.stop()
    ok = [s["rate"] for s in steps if s["met"]]
    cap = max(ok) if ok else 0.0
    age, lag = np.asarray(stale.age or [np.nan]), np.asarray(stale.lag or [np.nan])
    return {"replicas": replicas, "capacity_pages_per_s": cap, "per_replica_pages_per_s": cap / replicas,
            "steps": steps, "staleness_s": {"p50": float(np.nanpercentile(age, 50)), "max": float(np.nanmax(age)),
                                            "samples": len(stale.age)},
            "lag_learn_events": {"p50": float(np.nanpercentile(lag, 50)), "max": float(np.nanmax(lag))}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short steps and fewer pages (~2 minutes)")
    ap.add_argument("--titles", type=int, default=40)
    ap.add_argument("--per-title", type=int, default=4)
    ap.add_argument("--pages", type=int, default=None, help="pages written for the log/learner figures")
    ap.add_argument("--rates", default=None, help="comma-separated Serve rates to step through (pages/s)")
    ap.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "bench_scale.json")
    args = ap.parse_args()
    pages = args.pages or (300 if args.quick else 2000)
    rates = [float(r) for r in args.rates.split(",")] if args.rates else (
        [10, 20, 30, 40, 60, 80] if args.quick else [10, 20, 30, 40, 50, 60, 80, 100, 120, 160, 200, 260, 320])
    duration, warmup = (4.0, 1.0) if args.quick else (10.0, 2.0)

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    out: dict = {"titles_per_page": args.titles, "artworks_per_title": args.per_title, "quick": args.quick,
                 "machine": {"cpus": os.cpu_count()}, "p99_goal_ms": P99_GOAL_MS}
    pg = None
    try:
        store = work / "catalog.db"
        titles = build_catalog(store, args.titles, args.per_title)
        logs = []
        print(f"event log + learner: {pages} pages of {len(titles)} titles ...", flush=True)
        specs = [("sqlite", lambda: str(work / "w-sqlite.events.db"))]
        if not args.no_pg:
            import pgkit

            why = pgkit.missing()
            if why:
                print(f"  PostgreSQL skipped: {why}")
            else:
                pg = pgkit.PgCluster().start()
                specs.append(("postgresql", pg.database))
        for name, spec in specs:
            r = log_and_learn(store, titles, spec(), pages)
            logs.append(r)
            print(f"  {name}: {r['log_pages_per_s']:.0f} pages/s in log_page ({r['log_decisions_per_s']:.0f} "
                  f"decisions/s), {r['feedback_per_s']:.0f} feedback/s, learner {r['learn_rows_per_s']:.0f} rows/s",
                  flush=True)
        out["event_log"] = logs
        from bandit.distributed import connect

        connect(None, num_cpus=os.cpu_count())
        serve_runs = []
        for n in (1, 2):
            print(f"Ray Serve, {n} chooser replica(s) + learner ...", flush=True)
            serve_runs.append(serve_capacity(store, titles, n, rates, duration, warmup))
        out["serve"] = serve_runs
    finally:
        if pg is not None:
            pg.stop()
        try:
            import ray

            if ray.is_initialized():
                from ray import serve

                serve.shutdown()
                ray.shutdown()
        except ImportError:
            pass
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{'event log':12}{'log pages/s':>12}{'decisions/s':>13}{'log ms/page':>13}{'feedback/s':>12}"
          f"{'closes/s':>10}{'learn rows/s':>14}")
    for r in out["event_log"]:
        print(f"{r['backend']:12}{r['log_pages_per_s']:12.0f}{r['log_decisions_per_s']:13.0f}{r['log_page_ms']:13.2f}"
              f"{r['feedback_per_s']:12.0f}{r['closes_per_s'] or 0:10.0f}{r['learn_rows_per_s']:14.0f}")
    print()
    print(f"{'Serve':12}{'pages/s @p99<50ms':>19}{'per replica':>13}{'staleness p50/max s':>22}{'lag p50/max':>14}")
    for r in out["serve"]:
        s, lag = r["staleness_s"], r["lag_learn_events"]
        print(f"{str(r['replicas']) + ' replica(s)':12}{r['capacity_pages_per_s']:19.0f}{r['per_replica_pages_per_s']:13.0f}"
              f"{s['p50']:11.1f} /{s['max']:5.1f}   {lag['p50']:8.0f} /{lag['max']:4.0f}")
    print(f"machine: {os.cpu_count()} CPUs (replicas, learner, Serve proxy, load generator and the log share them)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
