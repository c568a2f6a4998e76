"""Kill the server with SIGKILL mid-stream and restart it: nothing acknowledged is lost, the policy comes back exact."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bandit.events import EventLog
from servekit import LiveServer, build_catalog

PROBE = [
    {"user_id": "probe-a", "taste": {"genre:crime": 0.9, "mood:dark": 0.7}, "context": {"device": "tv", "hour": 22},
     "titles": ["t00", "t01", "t02", "t03"]},
    {"user_id": "probe-b", "taste": {"genre:romance": 0.8}, "context": {"device": "mobile", "hour": 9, "row": 2},
     "titles": ["t02", "t04", "t05"]},
    {"user_id": "probe-c", "titles": ["t01", "t05"]},
]


def open_log(store: Path) -> EventLog:
    return EventLog(Path(f"{store}.events.db"))


def drive(client: httpx.Client, rng: np.random.Generator, pages: int, titles: list[str]) -> None:
    for i in range(pages):
        page = [str(t) for t in rng.choice(titles, size=3, replace=False)]
        res = client.post("/v1/choose", json={"user_id": f"seq{rng.integers(1000)}", "titles": page,
                                              "taste": {"genre:crime": float(rng.random())}}).json()["results"]
        fb = [{"event_id": r["event_id"], "click": bool(rng.random() < 0.3)} for r in res if not r["repeat"]]
        if fb:
            client.post("/v1/feedback/batch", json={"events": fb})


def probe(client: httpx.Client) -> tuple[list[dict], int]:
    dists = [client.post("/v1/policy/distribution", json=b).json()["titles"] for b in PROBE]
    return dists, client.get("/health").json()["policy_version"]


def test_sigkill_mid_stream_loses_nothing_acknowledged_and_policy_restores_exactly(tmp_path: Path) -> None:
    store = tmp_path / "catalog.db"
    titles = build_catalog(store, n_titles=6)
    args = ("--feedback-window", "120", "--snapshot-interval", "0.5", "--close-interval", "0.2", "--session-ttl", "600")
    server = LiveServer(store, *args).start()
    acked_decisions: dict[str, tuple[str, float]] = {}
    acked_feedback: dict[str, float] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def worker(k: int) -> None:
        rng = np.random.default_rng(k)
        with httpx.Client(base_url=server.url, timeout=10) as c:
            while not stop.is_set():
                try:
                    page = [str(t) for t in rng.choice(titles, size=3, replace=False)]
                    r = c.post("/v1/choose", json={"user_id": f"w{k}-{rng.integers(50)}", "titles": page,
                                                   "context": {"device": "tv"}})
                    if r.status_code != 200:
                        continue
                    fresh = [x for x in r.json()["results"] if not x["repeat"]]
                    with lock:
                        acked_decisions.update({x["event_id"]: (x["artwork_id"], x["probability"]) for x in fresh})
                    for x in fresh:
                        reward = float(rng.random() < 0.4)
                        f = c.post("/v1/feedback", json={"event_id": x["event_id"], "reward": reward})
                        if f.status_code == 200 and f.json()["status"] == "joined":
                            with lock:
                                acked_feedback[x["event_id"]] = reward
                except httpx.HTTPError:
                    return  # the server is gone

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked_feedback) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()  # mid-stream: the workers are still posting
    stop.set()
    for t in threads:
        t.join(timeout=15)
    assert len(acked_feedback) >= 150

    # Every 2xx decision and feedback is in the log, joined to the right decision.
    log = open_log(store)
    try:
        for eid, (chosen, prob) in acked_decisions.items():
            row = log.decision(eid)
            assert row is not None and row.chosen == chosen and row.probability == prob
        for eid, reward in acked_feedback.items():
            row = log.decision(eid)
            assert row.status == "joined" and row.reward == reward and row.learn_seq
        counts = log.counts()
        assert counts["feedback"] == counts["joined"] >= len(acked_feedback)
        max_seq = log.max_learn_seq()
    finally:
        log.close()

    # Restart: the policy resumes from its snapshot plus every event learned after it.
    server = LiveServer(store, *args).start()
    try:
        with server.client() as c:
            h = c.get("/health").json()
            assert h["learned_seq"] == max_seq and h["policy_version"] == max_seq
            # Then a quiet kill: probabilities before and after must be identical.
            rng = np.random.default_rng(7)
            drive(c, rng, 30, titles)
            time.sleep(1.2)  # a periodic snapshot lands ...
            drive(c, rng, 15, titles)  # ... and these events come after it
            before, version = probe(c)
    finally:
        server.kill()
    log = open_log(store)
    try:
        snap_seq = log.snapshots()[0][1]
        assert 0 < snap_seq < log.max_learn_seq(), "the restart must exercise snapshot + replay"
    finally:
        log.close()
    server = LiveServer(store, *args).start()
    try:
        with server.client() as c:
            after, version_after = probe(c)
            assert version_after == version
            assert after == before  # exact float equality, every title of every probe
            m = c.get("/metrics").text
            assert "artwork_replayed_total 0" not in m
    finally:
        server.stop()


def test_reward_windows_and_sessions_survive_a_restart(tmp_path: Path) -> None:
    store = tmp_path / "catalog.db"
    build_catalog(store, n_titles=3)
    args = ("--feedback-window", "1.5", "--close-interval", "60", "--session-ttl", "600")
    server = LiveServer(store, *args).start()
    with server.client() as c:
        first = c.post("/v1/choose", json={"user_id": "zoe", "titles": ["t00", "t01", "t02"]}).json()["results"]
    server.kill()
    time.sleep(2.0)  # every window passes while the server is down
    server = LiveServer(store, *args).start()  # timer interval 60 s: only startup can close them
    try:
        log = open_log(store)
        try:
            rows = [log.decision(r["event_id"]) for r in first]
        finally:
            log.close()
        assert all(r.status == "closed" and r.reward == 0.0 and r.learn_seq for r in rows)
        with server.client() as c:
            # Closed at startup: feedback without a positive reward is refused as expired, nothing changes.
            r = c.post("/v1/feedback", json={"event_id": first[0]["event_id"], "click": False})
            assert r.status_code == 410 and r.json()["error"] == "expired"
            again = c.post("/v1/choose", json={"user_id": "zoe", "titles": ["t02", "t00"]}).json()["results"]
            assert [(a["event_id"], a["repeat"]) for a in again] == [(first[2]["event_id"], True),
                                                                      (first[0]["event_id"], True)]
            assert c.get("/health").json()["learned_seq"] == 3
            # A click on the repeat view, after the restart closed its window, is learned as a correction.
            r = c.post("/v1/feedback", json={"event_id": again[1]["event_id"], "click": True})
            assert r.status_code == 200 and r.json()["status"] == "late"
            assert c.get("/health").json()["learned_seq"] == 4
    finally:
        server.stop()
