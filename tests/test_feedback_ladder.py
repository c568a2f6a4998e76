"""Feedback as an upgrade ladder (click -> play raises the reward, a contradiction is a 409), reward
weights from `serve`, and deferred activation (a decision that was never rendered is never learned)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from artwork.store import Catalog
from bandit.engine import Engine, EngineConfig, NotFoundError, RequestError
from bandit.events import SCHEMA_VERSION, EventLog
from bandit.features import UserContext
from bandit.server import serve_command
from servekit import LiveServer, build_catalog

WINDOW = 10.0


class Clock:
    def __init__(self, t: float = 2_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def engine(store: Path, clock: Clock, **cfg) -> Engine:
    cfg.setdefault("feedback_window_s", WINDOW)
    cfg.setdefault("session_ttl_s", 3600.0)
    cfg.setdefault("policy", "thompson")
    return Engine(store, EngineConfig(**cfg), clock=clock, start_timer=False).start()


def kill(eng: Engine) -> None:
    """Close without the shutdown snapshot (what a SIGKILL leaves)."""
    eng.started = False
    eng.close()


def arm(eng: Engine, title: str, artwork: str) -> list[float]:
    return list(eng.policy.counts[title][artwork])


def state(eng: Engine) -> tuple:
    """Everything a post that changes nothing must leave alone."""
    counts = eng.events.counts()
    counts.pop("expired_feedback")
    return (eng.learned_seq, eng.policy.version, json.dumps(getattr(eng.policy, "counts", None), sort_keys=True),
            counts, eng.events.max_learn_seq())


def stats(eng: Engine, title: str, artwork: str) -> dict:
    return next(a["stats"] for a in eng.title_artworks(title) if a["artwork_id"] == artwork)


PROBES = [UserContext("p1", taste={"genre:crime": 0.9}, device="tv", hour=22), UserContext("p2")]


def probe(eng: Engine, titles: list[str]) -> list[dict]:
    return [eng.distribution(u, titles) for u in PROBES]


# -- the ladder ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["thompson", "bayes"])
def test_click_then_play_is_upgraded_learned_as_a_correction_and_replayed(tmp_path: Path, kind: str) -> None:
    store = tmp_path / "c.db"
    titles = build_catalog(store, n_titles=3)
    clock = Clock()
    eng = engine(store, clock, policy=kind, click_reward=0.4, play_reward=1.0)
    a, b, c = eng.choose(UserContext("ann", taste={"genre:crime": 0.5}), titles)
    out = eng.feedback(a.event_id, click=True)
    assert (out.status, out.changed, out.reward) == ("joined", True, 0.4)
    assert eng.learned_seq == 1 and eng.policy.version == 1
    # thompson keeps [successes, failures], bayes [clicks, impressions]
    after_click, after_play = ([0.4, 0.6], [1.0, 0.0]) if kind == "thompson" else ([0.4, 1.0], [1.0, 1.0])
    assert arm(eng, "t00", a.artwork_id) == pytest.approx(after_click)
    s0 = stats(eng, "t00", a.artwork_id)

    up = eng.feedback(a.event_id, play=True)
    assert (up.status, up.changed, up.reward) == ("upgraded", True, 1.0)
    assert eng.learned_seq == 2 and eng.policy.version == 2  # one correction, learned once
    assert arm(eng, "t00", a.artwork_id) == pytest.approx(after_play)  # relearn(0.4 -> 1.0), same count
    row = eng.events.decision(a.event_id)
    assert (row.status, row.reward, row.learn_seq, row.upgrade_seq, row.late) == ("joined", 1.0, 1, 2, False)
    s1 = stats(eng, "t00", a.artwork_id)
    assert (s1["outcomes"], s1["clicks"]) == (s0["outcomes"], s0["clicks"])
    assert s1["reward_sum"] == pytest.approx(s0["reward_sum"] + 0.6)
    ev = list(eng.events.finalized_after(0))
    assert [(r.learn_seq, r.reward, r.old_reward) for r in ev] == [(1, 0.4, None), (2, 1.0, 0.4)]
    counts = eng.events.counts()
    assert (counts["upgrades"], counts["corrections"], counts["late"], counts["feedback"]) == (1, 1, 0, 1)
    m = eng.metrics()
    assert m["feedback_upgraded_total"] == 1 and m["log_upgrades"] == 1
    assert [r.reward for r in eng.events.records() if r.event_id == a.event_id] == [1.0]

    # A late click, then a play on top of it: two corrections of one decision, in learn_seq order.
    clock.t += WINDOW + 1
    assert eng.close_expired() == 2
    assert eng.feedback(b.event_id, click=True).status == "late"
    assert eng.feedback(b.event_id, play=True).status == "upgraded"
    assert eng.events.decision(b.event_id).reward == 1.0
    ev = list(eng.events.finalized_after(2))
    assert [(r.event_id, r.reward, r.old_reward) for r in ev][-2:] == [(b.event_id, 0.4, 0.0), (b.event_id, 1.0, 0.4)]
    before, version, seq = probe(eng, titles), eng.policy.version, eng.learned_seq
    snapshot_counts = json.dumps(getattr(eng.policy, "counts", None), sort_keys=True)
    kill(eng)

    for snaps in (None, str(tmp_path / "none")):  # no snapshot was taken either way: full replay
        eng = engine(store, clock, policy=kind, click_reward=0.4, play_reward=1.0, snapshot_dir=snaps)
        try:
            assert (eng.learned_seq, eng.policy.version, eng.counters["replayed"]) == (seq, version, seq)
            assert json.dumps(getattr(eng.policy, "counts", None), sort_keys=True) == snapshot_counts
            assert probe(eng, titles) == before  # exact
        finally:
            kill(eng)


def test_click_false_then_click_true_is_upgraded(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=2)
    clock = Clock()
    with engine(store, clock) as eng:
        a, b = eng.choose(UserContext("bo"), ["t00", "t01"])
        assert eng.feedback(a.event_id, click=False).status == "joined"
        assert eng.feedback(b.event_id, reward=0.0).status == "joined"
        assert arm(eng, "t00", a.artwork_id) == [0.0, 1.0]
        out = eng.feedback(a.event_id, click=True)
        assert (out.status, out.changed, out.reward) == ("upgraded", True, 1.0)
        assert arm(eng, "t00", a.artwork_id) == [1.0, 0.0] and eng.learned_seq == 3
        # After the window too (the decision was joined at 0: not a late click, an upgrade).
        clock.t += WINDOW * 5
        out = eng.feedback(b.event_id, reward=0.8)
        assert (out.status, out.reward) == ("upgraded", 0.8)
        assert arm(eng, "t01", b.artwork_id) == pytest.approx([0.8, 0.2]) and eng.learned_seq == 4
        assert eng.events.counts()["late"] == 0 and eng.events.counts()["upgrades"] == 2


def test_same_or_weaker_outcomes_are_duplicates_and_change_nothing(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=3)
    clock = Clock()
    with engine(store, clock, click_reward=0.5, play_reward=1.0) as eng:
        a, b, c = eng.choose(UserContext("cy"), ["t00", "t01", "t02"])
        assert eng.feedback(a.event_id, click=True).status == "joined"
        assert eng.feedback(b.event_id, play=True).status == "joined"
        assert eng.feedback(c.event_id, reward=0.75).status == "joined"
        before = state(eng)
        for eid, post in [(a.event_id, {"click": True}), (a.event_id, {"click": False}), (a.event_id, {"reward": 0.0}),
                          (a.event_id, {"reward": 0.5}), (b.event_id, {"click": True}), (b.event_id, {"play": True}),
                          (b.event_id, {"click": True, "play": False}), (c.event_id, {"reward": 0.75}),
                          (c.event_id, {"click": True}), (c.event_id, {"reward": 0.0})]:
            out = eng.feedback(eid, **post)
            assert (out.status, out.changed) == ("duplicate", False), post
        assert state(eng) == before
        assert eng.counters["feedback_duplicate"] == 10


def test_equal_weights_record_the_play_without_a_learn_event(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=1)
    with engine(store, Clock()) as eng:  # defaults: click 1.0, play 1.0
        [a] = eng.choose(UserContext("dan"), ["t00"])
        eng.feedback(a.event_id, click=True)
        before = (eng.learned_seq, eng.policy.version)
        out = eng.feedback(a.event_id, play=True)
        assert (out.status, out.changed, out.reward) == ("upgraded", True, 1.0)
        assert (eng.learned_seq, eng.policy.version) == before and eng.events.counts()["corrections"] == 0
        db = sqlite3.connect(eng.events_path)
        try:
            assert db.execute("SELECT reward, click, play FROM feedback").fetchall() == [(1.0, 1, 1)]
        finally:
            db.close()
        assert eng.feedback(a.event_id, play=True).status == "duplicate"


def test_a_contradicting_reward_is_a_conflict_and_changes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=3)
    clock = Clock()
    with engine(store, clock, click_reward=0.6, play_reward=0.9) as eng:
        a, b, c = eng.choose(UserContext("eve"), ["t00", "t01", "t02"])
        eng.feedback(a.event_id, reward=0.5)
        eng.feedback(b.event_id, click=True)
        eng.feedback(c.event_id, reward=0.75)
        before = state(eng)
        out = eng.feedback(a.event_id, reward=0.7)
        assert (out.status, out.changed, out.reward, out.recorded, out.posted) == ("conflict", False, 0.5, 0.5, 0.7)
        assert out.to_dict()["recorded"] == 0.5 and "0.7" in out.message
        assert eng.feedback(b.event_id, reward=0.5).posted == 0.5  # numeric after flags, different value
        assert eng.feedback(c.event_id, play=True).posted == 0.9  # a play worth 0.9 on a recorded 0.75
        assert eng.counters["feedback_conflict"] == 3
        assert state(eng) == before
        assert eng.events.decision(a.event_id).reward == 0.5
        # Batch: a conflict is that item's status, the rest are served.
        res = eng.feedback_many([{"event_id": a.event_id, "reward": 0.2}, {"event_id": a.event_id, "reward": 0.5}])
        assert [r.status for r in res] == ["conflict", "duplicate"]
        assert "recorded" not in res[1].to_dict()


def test_engine_config_refuses_weights_outside_the_reward_range() -> None:
    with pytest.raises(ValueError, match="play_reward"):
        EngineConfig(play_reward=1.5)
    with pytest.raises(ValueError, match="click_reward"):
        EngineConfig(click_reward=-0.1)
    assert EngineConfig(reward_max=2.0, play_reward=2.0).play_reward == 2.0


def test_serve_refuses_a_weight_outside_the_reward_range(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=1)
    res = CliRunner().invoke(serve_command, ["--play-reward", "1.5"], obj={"store": str(store)})
    assert res.exit_code == 2 and "play_reward" in res.output


# -- deferred activation ---------------------------------------------------------------------------


def test_an_inactive_decision_is_never_closed_nor_learned_until_activated(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=2)
    clock = Clock()
    eng = engine(store, clock)
    a, b = eng.choose(UserContext("fay"), ["t00", "t01"], activate=False)
    assert (a.active, b.active) == (False, False) and a.to_dict()["active"] is False
    assert "active" not in eng.choose(UserContext("gus"), ["t00"])[0].to_dict()
    clock.t += WINDOW * 10
    assert eng.close_expired() == 1  # only gus's decision
    row = eng.events.decision(a.event_id)
    assert (row.status, row.reward, row.learn_seq, row.active) == ("open", None, None, False)
    assert eng.learned_seq == 1
    counts = eng.events.counts()
    assert (counts["inactive"], counts["open"], counts["closed"], counts["decisions"]) == (2, 0, 1, 3)
    assert stats(eng, "t00", a.artwork_id)["impressions"] <= 1  # gus's, maybe; never fay's
    m = eng.metrics()
    assert m["decisions_inactive"] == 2 and m["open_windows"] == 0
    assert "artwork_decisions_inactive 2\n" in eng.metrics_text()
    kill(eng)

    eng = engine(store, clock)  # startup closes overdue windows: not these
    try:
        assert eng.events.decision(a.event_id).status == "open" and eng.learned_seq == 1
        imp = stats(eng, "t00", a.artwork_id)["impressions"]
        out = eng.activate(a.event_id)
        assert (out["status"], out["changed"], out["deadline"]) == ("activated", True, clock.t + WINDOW)
        assert stats(eng, "t00", a.artwork_id)["impressions"] == imp + 1
        again = eng.activate(a.event_id)
        assert (again["status"], again["changed"], again["deadline"]) == ("already_active", False, clock.t + WINDOW)
        clock.t += WINDOW - 1
        assert eng.close_expired() == 0  # the window runs from activation
        clock.t += 1
        assert eng.close_expired() == 1
        row = eng.events.decision(a.event_id)
        assert (row.status, row.reward, row.learn_seq) == ("closed", 0.0, 2) and eng.learned_seq == 2
        assert arm(eng, "t00", a.artwork_id)[1] >= 1.0
        assert eng.activate(a.event_id)["status"] == "already_active"  # finalized: still idempotent
        with pytest.raises(NotFoundError):
            eng.activate("no-such-event")
        with pytest.raises(RequestError):
            eng.activate("bad\x00id")
        assert eng.events.decision(b.event_id).active is False
    finally:
        kill(eng)


def test_feedback_on_an_inactive_decision_activates_and_joins_it(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=1)
    clock = Clock()
    with engine(store, clock) as eng:
        [a] = eng.choose(UserContext("hal"), ["t00"], activate=False)
        clock.t += WINDOW * 3  # long after choose: the window had not started
        out = eng.feedback(a.event_id, click=True)
        assert (out.status, out.changed, out.reward) == ("joined", True, 1.0)
        row = eng.events.decision(a.event_id)
        assert (row.active, row.status, row.learn_seq, row.deadline) == (True, "joined", 1, clock.t + WINDOW)
        assert eng.counters["activated"] == 1 and stats(eng, "t00", a.artwork_id)["impressions"] == 1
        [r] = eng.choose(UserContext("hal"), ["t00"], activate=False)
        assert (r.repeat, r.event_id, r.active) == (True, a.event_id, True)  # the session learned it too


def test_a_repeat_keeps_an_inactive_decision_inactive_until_a_page_activates_it(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=2)
    clock = Clock()
    with engine(store, clock) as eng:
        first = eng.choose(UserContext("ivy"), ["t00", "t01"], activate=False)
        clock.t += 5
        again = eng.choose(UserContext("ivy"), ["t00"], activate=False)
        assert (again[0].repeat, again[0].event_id, again[0].active) == (True, first[0].event_id, False)
        assert eng.events.decision(first[0].event_id).active is False
        shown = eng.choose(UserContext("ivy"), ["t00"])  # a page that is rendered: activates it
        assert (shown[0].repeat, shown[0].active) == (True, True)
        row = eng.events.decision(first[0].event_id)
        assert (row.active, row.deadline) == (True, clock.t + WINDOW)
        assert eng.events.decision(first[1].event_id).active is False
        assert eng.user_session("ivy")["titles"]["t00"]["event_id"] == first[0].event_id
        with pytest.raises(RequestError):
            eng.choose(UserContext("ivy"), ["t00"], activate="yes")  # type: ignore[arg-type]


# -- an event log written before the ladder -------------------------------------------------------

V2_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE requests (
    request_id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, user_id TEXT NOT NULL, context TEXT NOT NULL);
CREATE TABLE featuresets (fs_key TEXT PRIMARY KEY, features TEXT NOT NULL);
CREATE TABLE decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
    request_id INTEGER NOT NULL REFERENCES requests(request_id),
    time REAL NOT NULL, user_id TEXT NOT NULL, title_id TEXT NOT NULL,
    candidates TEXT NOT NULL, fs_key TEXT NOT NULL REFERENCES featuresets(fs_key),
    chosen TEXT NOT NULL, probability REAL NOT NULL, distribution TEXT NOT NULL,
    policy TEXT NOT NULL, version INTEGER NOT NULL, deadline REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'joined', 'closed')),
    reward REAL, final_time REAL, learn_seq INTEGER UNIQUE, late_seq INTEGER);
CREATE INDEX decisions_open ON decisions(deadline) WHERE status = 'open';
CREATE TABLE feedback (
    event_id TEXT PRIMARY KEY REFERENCES decisions(event_id), time REAL NOT NULL,
    reward REAL NOT NULL, click INTEGER, play INTEGER);
CREATE TABLE sessions (
    user_id TEXT NOT NULL, title_id TEXT NOT NULL, event_id TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (user_id, title_id));
CREATE TABLE artwork_stats (
    artwork_id TEXT PRIMARY KEY, impressions INTEGER NOT NULL DEFAULT 0,
    closed INTEGER NOT NULL DEFAULT 0, clicks INTEGER NOT NULL DEFAULT 0, reward_sum REAL NOT NULL DEFAULT 0);
CREATE TABLE corrections (
    learn_seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL REFERENCES decisions(event_id),
    time REAL NOT NULL, old_reward REAL NOT NULL, new_reward REAL NOT NULL);
CREATE INDEX corrections_event ON corrections(event_id);
CREATE TABLE snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, path TEXT NOT NULL,
    learned_seq INTEGER NOT NULL, version INTEGER NOT NULL);
"""


def test_a_version_2_event_log_opens_replays_and_takes_upgrades(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=1)
    with Catalog(store) as cat:
        ids = [a.artwork_id for a in cat.artworks("t00")]
    t0 = 2_000_000.0
    events = tmp_path / "v2.events.db"
    db = sqlite3.connect(events)
    db.executescript(V2_SCHEMA)
    db.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    db.execute("INSERT INTO requests (time, user_id, context) VALUES (?, 'old', ?)",
               (t0, json.dumps(UserContext("old").to_dict())))
    db.execute("INSERT INTO featuresets VALUES ('fs1', ?)", (json.dumps({a: {} for a in ids}),))
    dist = json.dumps({a: 1 / 3 for a in ids})
    # old0: closed at 0 (seq 1) then a late click (seq 3); old1: joined with a click (seq 2); old2: open.
    for k, (status, reward, seq, late) in enumerate([("closed", 1.0, 1, 3), ("joined", 1.0, 2, None),
                                                     ("open", None, None, None)]):
        db.execute("INSERT INTO decisions (event_id, request_id, time, user_id, title_id, candidates, fs_key, chosen, "
                   "probability, distribution, policy, version, deadline, status, reward, learn_seq, late_seq) "
                   "VALUES (?, 1, ?, 'old', 't00', ?, 'fs1', ?, ?, ?, 'thompson', 0, ?, ?, ?, ?, ?)",
                   (f"old{k}", t0, json.dumps(ids), ids[0], 1 / 3, dist, t0 + WINDOW, status, reward, seq, late))
    db.execute("INSERT INTO feedback VALUES ('old0', ?, 1.0, 1, NULL)", (t0 + 20,))
    db.execute("INSERT INTO feedback VALUES ('old1', ?, 1.0, 1, NULL)", (t0 + 1,))
    db.execute("INSERT INTO corrections VALUES (3, 'old0', ?, 0.0, 1.0)", (t0 + 20,))
    db.execute("INSERT INTO artwork_stats VALUES (?, 3, 2, 2, 2.0)", (ids[0],))
    db.commit()
    db.close()

    clock = Clock(t0 + 100)  # startup closes old2 at reward 0 (learn_seq 4)
    with engine(store, clock, events=str(events), play_reward=1.0, click_reward=0.5) as eng:
        assert eng.counters["replayed"] == 3 and eng.learned_seq == 4
        assert arm(eng, "t00", ids[0]) == [2.0, 1.0]
        assert [(r.learn_seq, r.reward, r.old_reward) for r in eng.events.finalized_after(0)] == [
            (1, 0.0, None), (2, 1.0, None), (3, 1.0, 0.0), (4, 0.0, None)]
        counts = eng.events.counts()
        assert (counts["late"], counts["upgrades"], counts["inactive"], counts["decisions"]) == (1, 0, 0, 3)
        assert eng.feedback("old1", click=True).status == "duplicate"
        assert eng.feedback("old1", reward=0.4).status == "conflict"
        out = eng.feedback("old2", click=True)  # closed at 0 by startup: a late click, worth 0.5
        assert (out.status, out.reward) == ("late", 0.5)
        assert eng.feedback("old2", play=True).status == "upgraded"
        assert eng.learned_seq == 6 and arm(eng, "t00", ids[0]) == [3.0, 0.0]
    db = sqlite3.connect(events)
    try:
        cols = {r[1] for r in db.execute("PRAGMA table_info(decisions)")}
        assert {"upgrade_seq", "inactive"} <= cols
        assert db.execute("SELECT learn_seq, kind FROM corrections ORDER BY learn_seq").fetchall() == [
            (3, "late"), (5, "late"), (6, "upgrade")]
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    finally:
        db.close()
    log = EventLog(events)  # opening a migrated log again is a no-op
    try:
        assert [r.learn_seq for r in log.finalized_after(0)] == [1, 2, 3, 4, 5, 6]
    finally:
        log.close()


# -- over HTTP ---------------------------------------------------------------------------------------


def test_ladder_conflict_weights_and_activation_over_http(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=4)
    args = ("--feedback-window", "1", "--close-interval", "0.2", "--snapshot-interval", "600",
            "--click-reward", "0.3", "--play-reward", "0.9")
    probe_body = {"user_id": "probe", "titles": ["t00", "t01", "t02", "t03"], "taste": {"genre:crime": 0.8}}
    server = LiveServer(store, *args).start()
    try:
        with server.client() as c:
            page = c.post("/v1/choose", json={"user_id": "jo", "titles": ["t00", "t01"]}).json()["results"]
            assert all("active" not in r for r in page)
            e0, e1 = (r["event_id"] for r in page)
            r = c.post("/v1/feedback", json={"event_id": e0, "click": True})
            assert (r.status_code, r.json()["status"], r.json()["reward"]) == (200, "joined", 0.3)
            r = c.post("/v1/feedback", json={"event_id": e0, "play": True})
            assert r.status_code == 200 and (r.json()["status"], r.json()["changed"], r.json()["reward"]) == (
                "upgraded", True, 0.9)
            assert c.post("/v1/feedback", json={"event_id": e0, "click": True}).json()["status"] == "duplicate"
            assert c.post("/v1/feedback", json={"event_id": e1, "reward": 0.5}).json()["status"] == "joined"
            before = c.get("/health").json()
            r = c.post("/v1/feedback", json={"event_id": e1, "reward": 0.7})
            assert r.status_code == 409, r.text
            body = r.json()
            assert {k: body[k] for k in ("error", "event_id", "recorded", "posted", "status", "changed")} == {
                "error": "conflict", "event_id": e1, "recorded": 0.5, "posted": 0.7, "status": 409,
                "changed": False}
            assert c.get("/health").json() == before
            r = c.post("/v1/feedback/batch", json={"events": [{"event_id": e1, "reward": 0.7},
                                                              {"event_id": e0, "play": True}]})
            assert r.status_code == 200 and [x["status"] for x in r.json()["results"]] == ["conflict", "duplicate"]

            later = c.post("/v1/choose", json={"user_id": "kim", "titles": ["t02", "t03"],
                                               "activate": False}).json()["results"]
            assert [x["active"] for x in later] == [False, False]
            assert c.post("/v1/choose", json={"user_id": "kim", "titles": ["t02"], "activate": "no"}).status_code == 422
            r = c.post(f"/v1/events/{later[0]['event_id']}/activate")
            assert r.status_code == 200 and (r.json()["status"], r.json()["changed"]) == ("activated", True)
            r = c.post(f"/v1/events/{later[0]['event_id']}/activate")
            assert r.status_code == 200 and r.json()["status"] == "already_active"
            r = c.post("/v1/events/no-such-event/activate")
            assert r.status_code == 404 and r.json()["error"] == "not_found"
            import time
            time.sleep(1.8)  # the activated window passes and closes at 0; the inactive one stays open
            m = c.get("/metrics").text
            for line in ("artwork_feedback_upgraded_total 1\n", "artwork_feedback_conflict_total 2\n",
                         "artwork_decisions_inactive 1\n", "# TYPE artwork_feedback_conflict_total counter\n",
                         "# TYPE artwork_decisions_inactive gauge\n", "artwork_log_corrections 1\n"):
                assert line in m, line
            h = c.get("/health").json()
            assert h["learned_seq"] == 4 and h["policy_version"] == 4  # 2 joins, 1 upgrade, 1 close
            dist = c.post("/v1/policy/distribution", json=probe_body).json()["titles"]
    finally:
        server.kill()
    server = LiveServer(store, *args).start()
    try:
        with server.client() as c:
            assert c.get("/health").json()["learned_seq"] == 4
            assert c.post("/v1/policy/distribution", json=probe_body).json()["titles"] == dist
            assert "artwork_decisions_inactive 1\n" in c.get("/metrics").text
            r = c.post(f"/v1/events/{later[1]['event_id']}/activate")
            assert r.status_code == 200 and r.json()["status"] == "activated"
    finally:
        server.stop()
