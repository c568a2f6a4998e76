"""The whole product end to end, from one command: catalog → HTTP service → audience → evaluation → report.

1. Build a catalog from `assets/samples/`: uploaded photos, a cast gallery, and a title whose
   candidates are mined from a video.
2. Start the real HTTP service (uvicorn) on a free loopback port and drive a simulated audience
   with several taste segments through it: choose for a page of titles, then post clicks. Missing
   clicks become reward 0 when their feedback window closes, as in production.
3. Evaluate the logged decisions offline (learned policy and baselines) with intervals; the
   simulator also knows each policy's true value, which the report shows beside the estimates.
4. Write the HTML report.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import httpx
import numpy as np

from artwork.encoder import Encoder
from artwork.ingest import IngestReport, Ingestor
from artwork.store import Catalog
from bandit.baselines import FixedPolicy, ThompsonPolicy, UniformPolicy
from bandit.decisions import DecisionRecord
from bandit.engine import Engine, EngineConfig
from bandit.features import UserContext
from bandit.learning import LearningCurve, run_online
from bandit.offline import evaluate_log
from bandit.report import candidates_by_title, report_data_from, write_report
from bandit.server import ServeConfig, create_app, free_port
from bandit.simulator import Simulator

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SAMPLES = ASSETS / "samples"


@dataclass
class DemoConfig:
    """Sizes and seeds of a demo run."""

    visits: int = 1500  # pages shown; each page holds every demo title
    segments: int = 3
    users: int = 2000  # simulated audience; people come back, as they do
    session_ttl_s: float = 5.0  # the demo's clock runs ~150 page views a second: 5 s is a "session"
    seed: int = 0
    report_dir: Path = Path("report")
    explore_share: float = 0.2  # pages served uniformly at random: the slice replay evaluation uses
    feedback_window_s: float = 1.0  # short, so the demo's no-clicks close while it runs
    curve_window: int = 500
    n_bootstrap: int = 500
    progress: bool = True
    samples: Path = SAMPLES


@dataclass
class DemoResult:
    report: Path
    decisions: int
    click_rate: float
    true_values: dict[str, float] = field(default_factory=dict)
    oracle: float = 0.0
    best_fixed: float = 0.0
    ingest: list[IngestReport] = field(default_factory=list)


def build_catalog(catalog: Catalog, encoder: Encoder, samples: Path = SAMPLES, progress: bool = True) -> list[IngestReport]:
    """Upload every sample title (photos or a video's frames) and its cast gallery."""
    manifest = json.loads((samples / "titles.json").read_text())
    ingestor = Ingestor(catalog, encoder)
    reports = []
    for title_id, spec in manifest.items():
        if "video" in spec:
            reports.append(ingestor.add_video_frames(title_id, samples / spec["video"], spec.get("max_frames", 6),
                                                     title_name=spec["name"], progress=progress))
        else:
            reports.append(ingestor.upload_files(title_id, [samples / title_id], title_name=spec["name"],
                                                 progress=progress))
        for name, refs in spec.get("cast", {}).items():
            ingestor.add_cast_member(title_id, name, [samples / r for r in refs])
    return reports


class LiveServer:
    """The real ASGI app on uvicorn in a background thread, on a free loopback port."""

    def __init__(self, engine: Engine, store: str):
        import uvicorn

        self.port = free_port()
        app = create_app(ServeConfig(store=store, port=self.port), engine)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="demo-server", daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the demo server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _request_body(user: UserContext, user_id: str, titles: Sequence[str]) -> dict[str, Any]:
    context = {k: v for k, v in (("device", user.device), ("hour", user.hour), ("country", user.country),
                                 ("row", user.row)) if v is not None}
    return {"user_id": user_id, "taste": {k: float(v) for k, v in user.taste.items()}, "context": context,
            "titles": list(titles)}


def drive_audience(url: str, sim: Simulator, visits: int, seed: int, run_tag: str,
                   advance: Callable[[int], None] = lambda n: None) -> int:
    """Simulated users open pages over HTTP and click by the simulator's true probabilities."""
    rng = np.random.default_rng(seed)
    titles = sim.title_ids
    decisions = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(visits):
            user, _title = sim.sample_visit(rng)
            # A run tag in the id keeps a re-run's users out of an earlier run's sticky sessions.
            resp = client.post("/v1/choose", json=_request_body(user, f"{run_tag}:{user.user_id}", titles))
            resp.raise_for_status()
            clicks = []
            for r in resp.json()["results"]:
                if r.get("error") or r.get("repeat"):
                    continue
                decisions += 1
                if rng.random() < sim.click_probability(user, r["title_id"], r["artwork_id"]):
                    clicks.append({"event_id": r["event_id"], "click": True})
            if clicks:  # only clicks are posted; silence becomes reward 0 when the window closes
                client.post("/v1/feedback/batch", json={"events": clicks}).raise_for_status()
            advance(1)
    return decisions


def _sim_user(record: DecisionRecord) -> UserContext:
    ctx = dict(record.context)
    ctx["user_id"] = record.user_id.split(":", 1)[-1]
    return UserContext.from_dict(ctx)


def served_curve(records: Sequence[DecisionRecord], sim: Simulator, window: int, name: str) -> LearningCurve:
    """Click rate (observed, and expected from the simulator) per window of served decisions."""
    rewarded = [r for r in records if r.reward is not None]
    k = len(rewarded) // window
    if k == 0:
        raise ValueError(f"only {len(rewarded)} rewarded decisions, fewer than one window of {window}")
    rewards = np.array([float(r.reward) for r in rewarded[:k * window]])
    expected = np.array([sim.click_probability(_sim_user(r), r.title_id, r.chosen) for r in rewarded[:k * window]])
    return LearningCurve(name, np.arange(1, k + 1) * window, rewards.reshape(k, window).mean(axis=1),
                         expected.reshape(k, window).mean(axis=1), window)


def run_demo(store: str | Path, encoder: Encoder, cfg: DemoConfig = DemoConfig(),
             say: Callable[[str], None] = print) -> DemoResult:
    """Run the four steps; returns where the report is and the headline numbers."""
    from artwork.progress import progress_bar

    store = str(store)
    with Catalog(store) as catalog:
        ingest = build_catalog(catalog, encoder, cfg.samples, progress=cfg.progress)
        for rep in ingest:
            say(f"catalog: {rep.title_id}: {rep.count('added')} added, {rep.count('duplicate')} already stored, "
                f"{rep.count('rejected')} rejected")

    engine = Engine(store, EngineConfig(policy="vw", seed=cfg.seed, feedback_window_s=cfg.feedback_window_s,
                                        session_ttl_s=cfg.session_ttl_s, explore_share=cfg.explore_share,
                                        close_interval_s=0.2,
                                        snapshot_interval_s=15.0))
    run_tag = f"demo{int(time.time())}"
    with LiveServer(engine, store) as live:
        say(f"service: {live.url} (OpenAPI at {live.url}/docs)")
        candidates = {t: c for t, c in candidates_by_title(engine.catalog, engine.projection).items() if c}
        sim = Simulator.from_catalog(candidates, seed=cfg.seed, n_segments=cfg.segments, n_users=cfg.users)
        with progress_bar(cfg.visits, "audience", enabled=cfg.progress, unit="pages") as advance:
            drive_audience(live.url, sim, cfg.visits, cfg.seed, run_tag, advance)
        time.sleep(cfg.feedback_window_s + 0.5)  # let the last windows close and be learned
        engine.close_expired()
        records = [r for r in engine.events.records() if r.user_id.startswith(f"{run_tag}:")]  # this run only
        learned = engine.policy
        policies = {"learned (served)": learned, "uniform": UniformPolicy(seed=cfg.seed), "fixed": FixedPolicy(),
                    "thompson (fit on log)": ThompsonPolicy(seed=cfg.seed)}
        policies["thompson (fit on log)"].learn_many(records)
        # Judge policies on the randomised slice: a log from the deployed policy alone gives
        # policies unlike it (uniform, fixed) too little support for honest intervals.
        explored = [r for r in records if r.policy == "uniform"]
        eval_log = explored if len(explored) >= 200 else records
        say(f"evaluation: {len(eval_log)} logged decisions "
            f"({'the uniform exploration slice' if eval_log is explored else 'the whole log'}), "
            f"{len(policies)} policies")
        estimates = evaluate_log(eval_log, policies, n_bootstrap=cfg.n_bootstrap, seed=cfg.seed)
        true_values = {name: sim.policy_value(lambda u, t, c, p=p: p.distribution(u, t, c))
                       for name, p in policies.items()}
        # Small runs (tests) still get a curve of ~10 points.
        window = min(cfg.curve_window, max(10, sum(r.reward is not None for r in records) // 10))
        curves = {"VW policy over HTTP": served_curve(records, sim, window, "VW policy over HTTP")}
        for name, pol in (("uniform (in-process)", UniformPolicy(seed=cfg.seed)),
                          ("thompson per title (in-process)", ThompsonPolicy(seed=cfg.seed))):
            curves[name] = run_online(pol, sim, len(records), seed=cfg.seed, log=False).curve(window)
        # A segment's representative user states its taste over tags, as requests do; the
        # simulator's hidden taste over embedding directions is not something a user can say.
        segments = {s.name: UserContext(user_id=f"segment-{s.name}",
                                        taste={k: v for k, v in s.centre.items() if not k.startswith("emb:")})
                    for s in sim.segments}
        shares = {s.name: s.share for s in sim.segments}
        rewarded = [r for r in records if r.reward is not None]
        click_rate = float(np.mean([r.reward for r in rewarded])) if rewarded else 0.0
        notes = [
            f"{len(records)} decisions served over HTTP to {cfg.visits} simulated page views by {cfg.users} "
            f"users in {cfg.segments} taste segments (a user back within {cfg.session_ttl_s:g} s sees the same "
            f"artwork again: no new decision); observed click rate {click_rate:.3f}.",
            "True values from the simulator (what each policy would really earn): "
            + ", ".join(f"{n} {v:.3f}" for n, v in true_values.items())
            + f"; best single artwork per title {sim.best_fixed_value():.3f}, oracle {sim.oracle_value():.3f}.",
            f"Offline estimates use {len(eval_log)} decisions: "
            + (f"the {cfg.explore_share:.0%} of pages served uniformly at random (propensity 1/K), which "
               "supports every policy's choices." if eval_log is explored else "the whole log."),
        ]
        if encoder.is_tiny:
            notes.append("Pretrained CLIP weights were not available: the catalog was embedded and tagged by the "
                         "project's tiny random test encoder, so tags carry no meaning (see README, CLIP weights).")
        data = report_data_from(engine.catalog, records, title="Artwork engine demo", policy=learned,
                                policy_name="learned VW policy", segments=segments, segment_shares=shares,
                                projection=engine.projection, curves=curves, oracle=sim.oracle_value(),
                                best_fixed=sim.best_fixed_value(), estimates=estimates, notes=notes)
    index = write_report(data, cfg.report_dir)
    return DemoResult(report=index, decisions=len(records), click_rate=click_rate, true_values=true_values,
                      oracle=sim.oracle_value(), best_fixed=sim.best_fixed_value(), ingest=ingest)
