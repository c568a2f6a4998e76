"""Late clicks: positive feedback after a decision's window closed at reward 0 is stored, learned as a
correction with its own learn_seq, counted, exported and replayed exactly after a restart."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from artwork.store import Catalog
from bandit.baselines import ThompsonPolicy
from bandit.engine import Engine, EngineConfig
from bandit.events import SCHEMA_VERSION, EventLog
from bandit.features import Candidate, UserContext
from bandit.policy import VWConfig, VWPolicy
from bandit.report import report_data_from, write_report
from servekit import LiveServer, build_catalog

WINDOW = 10.0  # feedback window of the in-process engines (s, on their fake clock)


class Clock:
    """The engine's injectable clock, moved by hand."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def engine(store: Path, clock: Clock, **cfg) -> Engine:
    cfg.setdefault("feedback_window_s", WINDOW)
    cfg.setdefault("session_ttl_s", 3600.0)
    return Engine(store, EngineConfig(**cfg), clock=clock, start_timer=False).start()


def kill(eng: Engine) -> None:
    """Close the files without the shutdown snapshot: what a SIGKILL leaves behind."""
    eng.started = False
    eng.close()


def arm(eng: Engine, title_id: str, artwork_id: str) -> list[float]:
    return list(eng.policy.counts[title_id][artwork_id])


# -- the late path, step by step -------------------------------------------------------------------


def test_late_click_after_the_timer_closed_the_window_is_learned_as_a_correction(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=2)
    clock = Clock()
    with engine(store, clock, policy="thompson") as eng:
        [c] = eng.choose(UserContext("ann"), ["t00"])
        clock.t += WINDOW + 1
        assert eng.close_expired() == 1  # the timer's tick: reward 0, learned
        row = eng.events.decision(c.event_id)
        assert (row.status, row.reward, row.learn_seq, row.late) == ("closed", 0.0, 1, False)
        assert arm(eng, "t00", c.artwork_id) == [0.0, 1.0] and eng.policy.version == 1
        stats0 = next(a["stats"] for a in eng.title_artworks("t00") if a["artwork_id"] == c.artwork_id)

        out = eng.feedback(c.event_id, click=True)
        assert (out.status, out.changed, out.reward) == ("late", True, 1.0)
        assert "correction" in out.message
        # Learned exactly: the failure became a success, one more policy update, the next learn_seq.
        assert arm(eng, "t00", c.artwork_id) == [1.0, 0.0]
        assert eng.policy.version == 2 and eng.learned_seq == 2
        row = eng.events.decision(c.event_id)
        assert (row.status, row.reward, row.learn_seq, row.late_seq, row.late) == ("closed", 1.0, 1, 2, True)
        stats = next(a["stats"] for a in eng.title_artworks("t00") if a["artwork_id"] == c.artwork_id)
        assert stats["clicks"] == stats0["clicks"] + 1 and stats["outcomes"] == stats0["outcomes"]
        assert stats["reward_sum"] == stats0["reward_sum"] + 1.0
        counts = eng.events.counts()
        assert (counts["late"], counts["corrections"], counts["feedback"], counts["closed"]) == (1, 1, 1, 1)
        assert eng.events.max_learn_seq() == 2
        m = eng.metrics()
        assert m["feedback_late_total"] == 1 and m["feedback_expired_total"] == 0 and m["log_corrections"] == 1
        # Offline evaluation sees the click.
        [rec] = eng.events.records()
        assert rec.event_id == c.event_id and rec.reward == 1.0


def test_late_click_closes_an_overdue_window_and_corrects_it_in_the_same_call(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=2)
    clock = Clock()
    with engine(store, clock, policy="thompson") as eng:
        [c] = eng.choose(UserContext("bo"), ["t01"])
        clock.t += WINDOW + 1  # no timer tick: the decision is still 'open' in the log
        assert eng.events.decision(c.event_id).status == "open"
        out = eng.feedback(c.event_id, reward=0.6)
        assert (out.status, out.changed, out.reward) == ("late", True, 0.6)
        # Two learn events in order: the close at reward 0 (seq 1), then the correction (seq 2).
        rows = list(eng.events.finalized_after(0))
        assert [(r.learn_seq, r.reward, r.old_reward) for r in rows] == [(1, 0.0, None), (2, 0.6, 0.0)]
        assert eng.learned_seq == 2 and eng.policy.version == 2
        assert arm(eng, "t01", c.artwork_id) == pytest.approx([0.6, 0.4])
        assert eng.counters["windows_closed"] == 1


def test_duplicate_and_expired_late_feedback_change_nothing(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=3)
    clock = Clock()
    with engine(store, clock, policy="thompson") as eng:
        a, b, c = eng.choose(UserContext("cy"), ["t00", "t01", "t02"])
        clock.t += WINDOW + 1
        eng.close_expired()
        assert eng.feedback(a.event_id, click=True).status == "late"
        state = (eng.learned_seq, eng.policy.version, json.dumps(eng.policy.counts, sort_keys=True),
                 eng.events.counts())

        dup = eng.feedback(a.event_id, click=True)
        assert (dup.status, dup.changed, dup.reward) == ("duplicate", False, 1.0)
        assert eng.feedback(a.event_id, reward=0.0).status == "duplicate"
        exp = eng.feedback(b.event_id, click=False)
        assert (exp.status, exp.changed, exp.reward) == ("expired", False, 0.0) and "closed" in exp.message
        after = eng.events.counts()
        assert after["expired_feedback"] == state[3]["expired_feedback"] + 1
        assert {k: v for k, v in after.items() if k != "expired_feedback"} == \
            {k: v for k, v in state[3].items() if k != "expired_feedback"}
        assert (eng.learned_seq, eng.policy.version, json.dumps(eng.policy.counts, sort_keys=True)) == state[:3]
        row = eng.events.decision(b.event_id)
        assert (row.status, row.reward, row.late) == ("closed", 0.0, False)
        m = eng.metrics()
        assert (m["feedback_late_total"], m["feedback_duplicate_total"], m["feedback_expired_total"]) == (1, 2, 1)
        assert m["log_expired_feedback"] == 1
        # An expired (reward 0) post does not use up the event: a real click after it still counts.
        assert eng.feedback(b.event_id, click=True).status == "late"
        assert eng.learned_seq == state[0] + 1
        assert eng.events.decision(c.event_id).late is False


def test_a_click_on_a_repeat_view_after_the_first_window_closed_is_learned(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=2)
    clock = Clock()
    with engine(store, clock, policy="thompson", session_ttl_s=600.0) as eng:
        first = eng.choose(UserContext("dee"), ["t00", "t01"])
        clock.t += WINDOW + 5  # past the feedback window, well within the session TTL
        eng.close_expired()
        again = eng.choose(UserContext("dee"), ["t01", "t00"])
        assert [(x.event_id, x.repeat) for x in again] == [(first[1].event_id, True), (first[0].event_id, True)]
        assert eng.events.counts()["decisions"] == 2  # the repeat logged nothing new
        out = eng.feedback(again[0].event_id, click=True)
        assert (out.status, out.changed) == ("late", True)
        assert arm(eng, "t01", first[1].artwork_id) == [1.0, 0.0] and eng.learned_seq == 3


# -- policies ----------------------------------------------------------------------------------------


def _cands() -> list[Candidate]:
    return [Candidate("x", {"mood:dark": 0.9, "genre:crime": 0.7}), Candidate("y", {"mood:warm": 0.8}),
            Candidate("z", {"mood:tense": 0.5, "genre:crime": 0.2})]


def test_thompson_relearn_moves_counts_exactly() -> None:
    user, cands = UserContext("u"), _cands()
    p = ThompsonPolicy(seed=1)
    p.learn_one(user, "t", cands, "x", 0.5, 0.0)
    p.learn_one(user, "t", cands, "x", 0.5, 0.0)
    p.relearn(user, "t", cands, "x", 0.5, 0.0, 1.0)
    assert p.counts["t"]["x"] == [1.0, 1.0] and p.version == 3
    p.relearn(user, "t", cands, "x", 0.5, 0.0, 0.25)
    assert p.counts["t"]["x"] == pytest.approx([1.25, 0.75])
    direct = ThompsonPolicy(seed=1)
    direct.learn_one(user, "t", cands, "x", 0.5, 1.0)
    direct.learn_one(user, "t", cands, "x", 0.5, 0.25)
    assert direct.distribution(user, "t", cands) == p.distribution(user, "t", cands)


def test_default_relearn_learns_the_new_reward_as_one_more_observation() -> None:
    user, cands = UserContext("u", taste={"genre:crime": 0.9}), _cands()
    relearned, twice, once = (VWPolicy(VWConfig(seed=0)) for _ in range(3))
    for p in (relearned, twice, once):
        p.learn_one(user, "t", cands, "x", 1 / 3, 0.0)
    relearned.relearn(user, "t", cands, "x", 1 / 3, 0.0, 1.0)
    twice.learn_one(user, "t", cands, "x", 1 / 3, 1.0)
    assert relearned.version == twice.version == 2
    assert relearned.distribution(user, "t", cands) == twice.distribution(user, "t", cands)
    assert relearned.distribution(user, "t", cands) != once.distribution(user, "t", cands)


# -- restart -----------------------------------------------------------------------------------------

PROBES = [UserContext("p1", taste={"genre:crime": 0.9, "mood:dark": 0.6}, device="tv", hour=22),
          UserContext("p2", taste={"genre:romance": 0.8}, device="mobile", hour=9, row=2),
          UserContext("p3")]


def _probe(eng: Engine, titles: list[str]) -> list[dict]:
    return [eng.distribution(u, titles) for u in PROBES]


@pytest.mark.parametrize("kind", ["vw", "thompson"])
def test_restart_replays_corrections_in_order_and_rebuilds_the_same_policy(tmp_path: Path, kind: str) -> None:
    store = tmp_path / "c.db"
    titles = build_catalog(store, n_titles=4)
    clock = Clock()
    eng = engine(store, clock, policy=kind, seed=3)
    served: list = []
    for i in range(60):
        page = eng.choose(UserContext(f"u{i}", taste={"genre:crime": (i % 7) / 7}, device="tv"), titles[:3])
        served += page
        for k, c in enumerate(page):
            if (i + k) % 3 == 0:
                eng.feedback(c.event_id, click=(i + k) % 2 == 0)  # within the window: joined
        clock.t += 1.5
        if i % 4 == 0:
            eng.close_expired()
        # Late clicks on decisions from 8-9 pages ago: some closed by the timer, some still open.
        for j, c in enumerate(served[-27:-24]):
            if (i + j) % 2 == 0:
                eng.feedback(c.event_id, click=True)
        if i == 30:
            eng.snapshot()
    clock.t += WINDOW + 1
    eng.close_expired()  # what the restart's own startup close would otherwise learn
    before, version, seq = _probe(eng, titles), eng.policy.version, eng.learned_seq
    counts_before = json.dumps(getattr(eng.policy, "counts", None), sort_keys=True)
    assert eng.counters["feedback_late"] >= 10 and eng.counters["corrections_learned"] == eng.counters["feedback_late"]
    snap_seq = eng.events.snapshots()[0][1]
    replayed = list(eng.events.finalized_after(snap_seq))
    assert sum(r.is_correction for r in replayed) >= 3, "replay must include corrections"
    assert [r.learn_seq for r in replayed] == list(range(snap_seq + 1, seq + 1))  # one gap-free sequence
    kill(eng)

    eng = engine(store, clock, policy=kind, seed=3)
    try:
        assert eng.counters["replayed"] == seq - snap_seq
        assert (eng.learned_seq, eng.policy.version) == (seq, version)
        assert json.dumps(getattr(eng.policy, "counts", None), sort_keys=True) == counts_before
        assert _probe(eng, titles) == before  # exact float equality
    finally:
        kill(eng)
    # Without any snapshot (a fresh snapshot folder): everything replayed from learn_seq 0, same policy.
    eng = engine(store, clock, policy=kind, seed=3, snapshot_dir=str(tmp_path / "no-snapshots"))
    try:
        assert eng.counters["replayed"] == seq and eng.policy.version == version
        assert _probe(eng, titles) == before
    finally:
        kill(eng)


# -- an event log written before corrections existed ------------------------------------------------

V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE requests (
    request_id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, user_id TEXT NOT NULL, context TEXT NOT NULL);
CREATE TABLE featuresets (fs_key TEXT PRIMARY KEY, features TEXT NOT NULL);
CREATE TABLE decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    request_id INTEGER NOT NULL REFERENCES requests(request_id),
    time REAL NOT NULL, user_id TEXT NOT NULL, title_id TEXT NOT NULL,
    candidates TEXT NOT NULL, fs_key TEXT NOT NULL REFERENCES featuresets(fs_key),
    chosen TEXT NOT NULL, probability REAL NOT NULL, distribution TEXT NOT NULL,
    policy TEXT NOT NULL, version INTEGER NOT NULL,
    deadline REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'joined', 'closed')),
    reward REAL, final_time REAL, learn_seq INTEGER UNIQUE);
CREATE INDEX decisions_open ON decisions(deadline) WHERE status = 'open';
CREATE TABLE feedback (
    event_id TEXT PRIMARY KEY REFERENCES decisions(event_id), time REAL NOT NULL,
    reward REAL NOT NULL, click INTEGER, play INTEGER);
CREATE TABLE sessions (
    user_id TEXT NOT NULL, title_id TEXT NOT NULL, event_id TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (user_id, title_id));
CREATE TABLE artwork_stats (
    artwork_id TEXT PRIMARY KEY, impressions INTEGER NOT NULL DEFAULT 0,
    closed INTEGER NOT NULL DEFAULT 0, clicks INTEGER NOT NULL DEFAULT 0,
    reward_sum REAL NOT NULL DEFAULT 0);
CREATE TABLE snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, path TEXT NOT NULL,
    learned_seq INTEGER NOT NULL, version INTEGER NOT NULL);
"""


def test_an_old_event_log_without_corrections_opens_and_takes_late_clicks(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=1)
    with Catalog(store) as cat:
        ids = [a.artwork_id for a in cat.artworks("t00")]
    t0 = 1_000_000.0
    events = tmp_path / "old.events.db"
    db = sqlite3.connect(events)
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO requests (time, user_id, context) VALUES (?, 'old', ?)",
               (t0, json.dumps(UserContext("old").to_dict())))
    db.execute("INSERT INTO featuresets VALUES ('fs1', ?)", (json.dumps({a: {} for a in ids}),))
    dist = json.dumps({a: 1 / 3 for a in ids})
    for k, (status, reward, seq) in enumerate([("closed", 0.0, 1), ("joined", 1.0, 2), ("open", None, None)]):
        db.execute("INSERT INTO decisions (event_id, request_id, time, user_id, title_id, candidates, fs_key, "
                   "chosen, probability, distribution, policy, version, deadline, status, reward, learn_seq) "
                   "VALUES (?, 1, ?, 'old', 't00', ?, 'fs1', ?, ?, ?, 'thompson', 0, ?, ?, ?, ?)",
                   (f"old{k}", t0, json.dumps(ids), ids[0], 1 / 3, dist, t0 + WINDOW, status, reward, seq))
    db.execute("INSERT INTO feedback VALUES ('old1', ?, 1.0, 1, NULL)", (t0 + 1,))
    db.execute("INSERT INTO artwork_stats VALUES (?, 3, 2, 1, 1.0)", (ids[0],))
    db.commit()
    db.close()

    clock = Clock(t0 + 100)  # every window has passed: startup closes 'old2' at reward 0 (learn_seq 3)
    with engine(store, clock, policy="thompson", events=str(events)) as eng:
        assert eng.counters["replayed"] == 2 and eng.learned_seq == 3
        assert arm(eng, "t00", ids[0]) == [1.0, 2.0]
        out = eng.feedback("old0", click=True)
        assert (out.status, out.changed) == ("late", True)
        assert arm(eng, "t00", ids[0]) == [2.0, 1.0] and eng.learned_seq == 4
        assert eng.feedback("old1", click=True).status == "duplicate"
        assert eng.events.counts()["corrections"] == 1
    db = sqlite3.connect(events)
    try:
        assert "late_seq" in {r[1] for r in db.execute("PRAGMA table_info(decisions)")}
        assert db.execute("SELECT learn_seq, event_id, old_reward, new_reward FROM corrections").fetchall() == [
            (4, "old0", 0.0, 1.0)]
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        assert db.execute("SELECT closed, clicks, reward_sum FROM artwork_stats").fetchone() == (3, 2, 2.0)
    finally:
        db.close()
    log = EventLog(events)  # opening a migrated log again is a no-op
    try:
        assert [r.learn_seq for r in log.finalized_after(0)] == [1, 2, 3, 4]
        assert log.decision("old0").late and log.decision("old0").reward == 1.0
    finally:
        log.close()


# -- the report --------------------------------------------------------------------------------------


def test_report_counts_late_clicks_and_expired_feedback(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=3)
    clock = Clock()
    with engine(store, clock, policy="thompson") as eng:
        a, b, c = eng.choose(UserContext("eve"), ["t00", "t01", "t02"])
        eng.feedback(c.event_id, click=True)
        clock.t += WINDOW + 1
        assert eng.feedback(a.event_id, click=True).status == "late"
        assert eng.feedback(b.event_id, click=False).status == "expired"
        records, counts = eng.events.records(), eng.events.counts()
        data = report_data_from(eng.catalog, records, feedback_counts=counts)
        plain = report_data_from(eng.catalog, records)
    assert (data.log.late, data.log.expired, data.log.clicks, data.log.judged) == (1, 1, 2, 3)
    html = write_report(data, tmp_path / "report").read_text(encoding="utf-8")
    assert 'id="log-late">1<' in html and 'id="log-expired">1<' in html
    assert (plain.log.late, plain.log.expired) == (None, None)
    assert "log-late" not in write_report(plain, tmp_path / "plain").read_text(encoding="utf-8")


# -- over HTTP, with a SIGKILL ---------------------------------------------------------------------------


def test_late_click_over_http_in_metrics_and_replayed_after_sigkill(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=3)
    # No periodic snapshot: the restart replays every learn event, the correction included.
    args = ("--feedback-window", "1", "--close-interval", "0.2", "--snapshot-interval", "600", "--session-ttl", "600")
    probe = {"user_id": "probe", "titles": ["t00", "t01", "t02"], "taste": {"genre:crime": 0.8}}
    server = LiveServer(store, *args).start()
    try:
        with server.client() as c:
            page = c.post("/v1/choose", json={"user_id": "fay", "titles": ["t00", "t01", "t02"]}).json()["results"]
            assert c.post("/v1/feedback", json={"event_id": page[2]["event_id"], "click": True}).json()["status"] == "joined"
            time.sleep(1.8)  # the windows of the other two pass; the timer closes them at reward 0
            again = c.post("/v1/choose", json={"user_id": "fay", "titles": ["t00", "t01"]}).json()["results"]
            assert [(x["event_id"], x["repeat"]) for x in again] == [(page[0]["event_id"], True),
                                                                      (page[1]["event_id"], True)]
            r = c.post("/v1/feedback", json={"event_id": again[0]["event_id"], "click": True})
            assert r.status_code == 200, r.text
            assert r.json() | {"message": ""} == {"event_id": page[0]["event_id"], "status": "late", "changed": True,
                                                  "reward": 1.0, "message": ""}
            r = c.post("/v1/feedback/batch", json={"events": [{"event_id": page[0]["event_id"], "click": True},
                                                              {"event_id": page[1]["event_id"], "click": False}]})
            assert [x["status"] for x in r.json()["results"]] == ["duplicate", "expired"]
            assert c.post("/v1/feedback", json={"event_id": page[1]["event_id"], "reward": 0}).status_code == 410
            m = c.get("/metrics").text
            assert "artwork_feedback_late_total 1\n" in m and "artwork_feedback_expired_total 2\n" in m
            assert "artwork_log_corrections 1\n" in m and "# TYPE artwork_feedback_late_total counter" in m
            h = c.get("/health").json()
            assert h["learned_seq"] == 4 and h["policy_version"] == 4
            before = c.post("/v1/policy/distribution", json=probe).json()["titles"]
    finally:
        server.kill()
    server = LiveServer(store, *args).start()
    try:
        with server.client() as c:
            assert c.get("/health").json()["learned_seq"] == 4
            assert c.post("/v1/policy/distribution", json=probe).json()["titles"] == before
            m = c.get("/metrics").text
            assert "artwork_replayed_total 4\n" in m and "artwork_log_corrections 1\n" in m
    finally:
        server.stop()
