"""The event log's two backends held to one behaviour, and PostgreSQL where SQLite never goes.

- Backend-parametrized (SQLite and PostgreSQL): late clicks, the feedback ladder, deferred
  activation, sessions, quarantine, snapshots, and a restart that replays to the identical policy.
- PostgreSQL only: several processes logging, posting feedback and closing windows at once
  (every acknowledged write present once, learn_seq gap-free, every window closed once); bad URLs
  and an unreachable or restarted server; `artwork serve --events postgresql://...` over HTTP,
  killed and restarted; one learner per log.

The server is a throwaway PostgreSQL 15 (tests/pgkit.py); its tests skip when the binaries are absent.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from bandit.cli import cli
from bandit.engine import Engine, EngineConfig
from bandit.decisions import DecisionRecord
from bandit.events import (SCHEMA_VERSION, BaseEventLog, EventLog, EventLogError, EventLogUnavailable,
                           open_event_log)
from bandit.features import UserContext
from bandit.server import free_port
from pgkit import PgCluster, pg_cluster, pg_url, events_spec  # noqa: F401 - fixtures
from servekit import ROOT, LiveServer, build_catalog

WINDOW = 10.0
SECRET = "hunter2-not-a-real-password"


def _fresh(event_id: str, title_id: str, chosen: str, distribution: dict[str, float], *, active: bool = True,
           policy: str = "thompson") -> DecisionRecord:
    """A decision as the engine hands it to `log_page` (the page's time, user and context are log_page's)."""
    return DecisionRecord(event_id, 0.0, "", title_id, {}, list(distribution), [], chosen, distribution[chosen], policy,
                          0, None, distribution, fs_key="fs", active=active)


class Clock:
    def __init__(self, t: float = 3_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t




def engine(store: Path, clock: Clock, events: str, **cfg) -> Engine:
    cfg.setdefault("feedback_window_s", WINDOW)
    cfg.setdefault("session_ttl_s", 3600.0)
    cfg.setdefault("policy", "thompson")
    return Engine(store, EngineConfig(events=events, **cfg), clock=clock, start_timer=False).start()


def kill(eng: Engine) -> None:
    """Close without the shutdown snapshot: what a SIGKILL leaves."""
    eng.started = False
    eng.close()


def arm(eng: Engine, title: str, artwork: str) -> list[float]:
    return list(eng.policy.counts[title][artwork])


def stats(eng: Engine, title: str, artwork: str) -> dict:
    return next(a["stats"] for a in eng.title_artworks(title) if a["artwork_id"] == artwork)


def learn_seqs(log: BaseEventLog) -> list[int]:
    return [int(r.learn_seq) for r in log.finalized_after(0)]


# -- one behaviour, two backends ------------------------------------------------------------------------


def test_joins_late_clicks_duplicates_and_expired_posts(tmp_path: Path, events_spec: str) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=4)
    clock = Clock()
    with engine(store, clock, events_spec) as eng:
        assert eng.health()["event_log"] == ("postgresql" if events_spec.startswith("postgresql") else "sqlite")
        a, b, c = eng.choose(UserContext("ann"), ["t00", "t01", "t02"])
        assert eng.feedback(a.event_id, click=True).status == "joined"
        assert (eng.learned_seq, arm(eng, "t00", a.artwork_id)) == (1, [1.0, 0.0])
        clock.t += 5
        [d] = eng.choose(UserContext("ann"), ["t03"])
        clock.t += WINDOW - 4
        assert eng.close_expired() == 2  # b and c; d's window is still running
        assert eng.events.open_counts() == [("t03", d.artwork_id, 1)]  # what a restart counts as open
        assert eng.close_expired() == 0  # closed once
        s0 = stats(eng, "t01", b.artwork_id)
        late = eng.feedback(b.event_id, click=True)
        assert (late.status, late.changed, late.reward) == ("late", True, 1.0)
        row = eng.events.decision(b.event_id)
        assert (row.status, row.reward, row.late, row.late_seq) == ("closed", 1.0, True, 4)
        s1 = stats(eng, "t01", b.artwork_id)
        assert (s1["clicks"], s1["outcomes"], s1["reward_sum"]) == (s0["clicks"] + 1, s0["outcomes"], s0["reward_sum"] + 1)
        clock.t += 5  # d's window has passed, and no timer tick closed it
        overdue = eng.feedback(d.event_id, reward=0.6)  # closed at 0 and corrected in one call
        assert (overdue.status, overdue.reward) == ("late", 0.6)
        assert [(r.event_id, r.learn_seq, r.reward, r.old_reward) for r in eng.events.finalized_after(4)] == [
            (d.event_id, 5, 0.0, None), (d.event_id, 6, 0.6, 0.0)]
        assert eng.feedback(b.event_id, click=True).status == "duplicate"
        assert eng.feedback(a.event_id, reward=0.0).status == "duplicate"
        exp = eng.feedback(c.event_id, click=False)
        assert (exp.status, exp.changed) == ("expired", False)
        assert eng.feedback("no-such-event", click=True).status == "not_found"
        counts = eng.events.counts()
        assert {k: counts[k] for k in ("joined", "closed", "late", "corrections", "feedback", "expired_feedback",
                                       "decisions", "requests")} == {
            "joined": 1, "closed": 3, "late": 2, "corrections": 2, "feedback": 3, "expired_feedback": 1,
            "decisions": 4, "requests": 2}
        assert eng.learned_seq == eng.events.max_learn_seq() == 6 and learn_seqs(eng.events) == [1, 2, 3, 4, 5, 6]
        assert {r.event_id: r.reward for r in eng.events.records()} == {
            a.event_id: 1.0, b.event_id: 1.0, c.event_id: 0.0, d.event_id: 0.6}
        assert eng.metrics()["log_corrections"] == 2 and eng.metrics()["event_log_bytes"] > 0


def test_ladder_upgrades_conflicts_and_equal_weights(tmp_path: Path, events_spec: str) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=3)
    clock = Clock()
    with engine(store, clock, events_spec, click_reward=0.4, play_reward=1.0) as eng:
        a, b, c = eng.choose(UserContext("bo"), ["t00", "t01", "t02"])
        assert eng.feedback(a.event_id, click=True).reward == 0.4
        up = eng.feedback(a.event_id, play=True)
        assert (up.status, up.reward, eng.learned_seq) == ("upgraded", 1.0, 2)
        assert arm(eng, "t00", a.artwork_id) == pytest.approx([1.0, 0.0])
        assert eng.feedback(a.event_id, click=True).status == "duplicate"  # a play implies the click
        eng.feedback(b.event_id, reward=0.5)
        conflict = eng.feedback(b.event_id, reward=0.7)
        assert (conflict.status, conflict.recorded, conflict.posted) == ("conflict", 0.5, 0.7)
        assert eng.events.decision(b.event_id).reward == 0.5
        assert eng.feedback(c.event_id, reward=0.0).status == "joined"
        clock.t += WINDOW * 3  # after the window: a raise of a joined 0 is an upgrade, not a late click
        assert eng.feedback(c.event_id, reward=0.8).status == "upgraded" and eng.learned_seq == 5
        counts = eng.events.counts()
        assert (counts["upgrades"], counts["late"], counts["corrections"]) == (2, 0, 2)
        assert [(r.learn_seq, r.reward, r.old_reward) for r in eng.events.finalized_after(2)] == [
            (3, 0.5, None), (4, 0.0, None), (5, 0.8, 0.0)]
    with engine(store, clock, events_spec) as eng:  # default weights 1.0 / 1.0
        [e] = eng.choose(UserContext("cy"), ["t00"])
        eng.feedback(e.event_id, click=True)
        seq = eng.learned_seq
        play = eng.feedback(e.event_id, play=True)
        assert (play.status, play.reward, eng.learned_seq) == ("upgraded", 1.0, seq)  # recorded, nothing to learn
        assert eng.events._query("SELECT reward, click, play FROM feedback WHERE event_id=?", (e.event_id,)) == [
            (1.0, 1, 1)]


def test_deferred_activation_and_sessions(tmp_path: Path, events_spec: str) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=3)
    clock = Clock()
    eng = engine(store, clock, events_spec, session_ttl_s=100.0)
    a, b = eng.choose(UserContext("dee"), ["t00", "t01"], activate=False)
    [g] = eng.choose(UserContext("gus"), ["t02"])
    clock.t += WINDOW * 3
    assert eng.close_expired() == 1  # only gus's: dee's were never rendered
    assert eng.events.counts()["inactive"] == 2 and eng.events.decision(a.event_id).learn_seq is None
    imp = stats(eng, "t00", a.artwork_id)["impressions"]
    assert eng.events.activate(a.event_id, clock.t + WINDOW)[0] == "activated"
    assert eng.events.activate(a.event_id, clock.t + 99)[0] == "already_active"  # idempotent: one impression
    assert stats(eng, "t00", a.artwork_id)["impressions"] == imp + 1
    assert eng.events.decision(a.event_id).deadline == clock.t + WINDOW
    assert eng.events.activate("nope", 0.0) == ("not_found", None)
    fb = eng.feedback(b.event_id, click=True)  # feedback activates first, then joins
    assert (fb.status, eng.counters["activated"]) == ("joined", 1)
    kill(eng)

    eng = engine(store, clock, events_spec, session_ttl_s=100.0)  # sessions come back from the log
    try:
        again = eng.choose(UserContext("dee"), ["t01", "t00"])
        assert [(x.event_id, x.repeat) for x in again] == [(b.event_id, True), (a.event_id, True)]
        assert len(eng.events.active_sessions(clock.t)) == 3
        assert eng.events.purge_sessions(clock.t + 101) == 3 and eng.events.active_sessions(clock.t) == []
        clock.t += 101
        assert eng.choose(UserContext("gus"), ["t02"])[0].event_id != g.event_id  # expired: a fresh decision
    finally:
        kill(eng)


@pytest.mark.parametrize("kind", ["vw", "thompson"])
def test_restart_replays_to_the_identical_policy(tmp_path: Path, events_spec: str, kind: str) -> None:
    store = tmp_path / "c.db"
    titles = build_catalog(store, n_titles=4)
    clock = Clock()
    probes = [UserContext("p1", taste={"genre:crime": 0.9}, device="tv", hour=22), UserContext("p2")]
    eng = engine(store, clock, events_spec, policy=kind, seed=5)
    served: list = []
    for i in range(40):
        page = eng.choose(UserContext(f"u{i}", taste={"genre:crime": (i % 5) / 5}), titles[:3])
        served += [c for c in page if not c.repeat]
        for k, c in enumerate(page):
            if (i + k) % 3 == 0:
                eng.feedback(c.event_id, click=(i + k) % 2 == 0)
        clock.t += 1.5
        if i % 4 == 0:
            eng.close_expired()
        for j, c in enumerate(served[-27:-24]):  # late clicks on decisions 8-9 pages (12-13 s) old
            if (i + j) % 2 == 0:
                eng.feedback(c.event_id, click=True)
        if i == 20:
            eng.snapshot()
    clock.t += WINDOW + 1
    eng.close_expired()
    before = [eng.distribution(u, titles) for u in probes]
    seq, version = eng.learned_seq, eng.policy.version
    assert eng.counters["feedback_late"] >= 5 and learn_seqs(eng.events) == list(range(1, seq + 1))
    snap_seq = eng.events.snapshots()[0][1]
    kill(eng)
    for snapshots in (None, str(tmp_path / "no-snapshots")):  # from the snapshot, and replaying everything
        eng = engine(store, clock, events_spec, policy=kind, seed=5, snapshot_dir=snapshots)
        try:
            assert eng.counters["replayed"] == (seq - snap_seq if snapshots is None else seq)
            assert (eng.learned_seq, eng.policy.version) == (seq, version)
            assert [eng.distribution(u, titles) for u in probes] == before  # exact
        finally:
            kill(eng)


def test_log_level_contract(tmp_path: Path, events_spec: str) -> None:
    log = open_event_log(events_spec)
    try:
        assert log.get_meta("schema_version") == str(SCHEMA_VERSION) and log.max_learn_seq() == 0
        page = [_fresh(f"e{i}", f"t{i}", "a", {"a": 0.5, "b": 0.5}, active=i < 2) for i in range(3)]
        log.log_page(10.0, "u", {"user_id": "u"}, [], {}, 20.0, 99.0)  # an empty page writes nothing
        log.log_page(10.0, "u", {"user_id": "u"}, page, {"fs": '{"a":{"x":1.0}}'}, 20.0, 99.0)
        log.log_page(11.0, "v", {"user_id": "v"}, [_fresh("f0", "t0", "a", {"a": 1.0})], {"fs": "ignored"}, 21.0, 99.0)
        assert log.featureset("fs") == '{"a":{"x":1.0}}'  # same key: the first content stays
        assert log.artwork_stats(["a", "zz"]) == {"a": (3, 0, 0, 0.0)}  # the inactive one is not an impression
        joined = log.join_feedback("e0", 0.5, 15.0)
        assert [(r.learn_seq, r.event_id) for r in joined.learn] == [(1, "e0")] and joined.finalized
        closed = log.close_expired(25.0)
        assert [(r.learn_seq, r.event_id, r.reward) for r in closed] == [(2, "e1", 0.0), (3, "f0", 0.0)]
        assert log.close_expired(25.0) == [] and log.max_learn_seq() == 3
        assert log.quarantine(2, "e1", 30.0, "bad \x00 row \udcff") is True
        assert log.quarantine(2, "e1", 31.0, "again") is False and log.quarantined() == {2: "e1"}
        log.record_snapshot(40.0, "policy-2.json", 2, 7)
        log.record_snapshot(41.0, "policy-3.json", 3, 8)
        assert log.snapshots() == [("policy-3.json", 3, 8), ("policy-2.json", 2, 7)]
        log.set_meta("projection", "{}")
        log.set_meta("projection", '{"v":2}')
        assert log.get_meta("projection") == '{"v":2}' and log.get_meta("missing") is None
        assert [r.reward for r in log.records()] == [0.5, 0.0, None, 0.0]
        assert log.counts()["quarantined"] == 1
    finally:
        log.close()
    again = open_event_log(events_spec)  # reopening changes nothing
    try:
        assert learn_seqs(again) == [1, 2, 3] and again.counts()["decisions"] == 4
    finally:
        again.close()


# -- PostgreSQL: its own schema, errors and outages ---------------------------------------------------------


def test_postgres_tables_are_sqlites_tables(tmp_path: Path, pg_url: str) -> None:
    EventLog(tmp_path / "x.events.db").close()
    open_event_log(pg_url).close()
    lite = sqlite3.connect(tmp_path / "x.events.db")
    with psycopg.connect(pg_url) as pg:
        for table in ("requests", "featuresets", "decisions", "feedback", "sessions", "artwork_stats", "corrections",
                      "quarantine", "snapshots", "meta"):
            pg_cols = [r[0] for r in pg.execute("SELECT column_name FROM information_schema.columns WHERE "
                                                "table_name = %s ORDER BY ordinal_position", (table,))]
            assert pg_cols == [r[1] for r in lite.execute(f"PRAGMA table_info({table})")], table
        types = dict(pg.execute("SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_name = 'decisions'").fetchall())
        assert types["time"] == types["deadline"] == "double precision"  # not 4-byte REAL: times keep their digits
    lite.close()


def test_postgres_refuses_a_newer_schema(pg_url: str) -> None:
    open_event_log(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(EventLogError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this build's"):
        open_event_log(pg_url)


def test_bad_urls_and_an_unreachable_server_name_the_url_without_its_password(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://artwork:{SECRET}@127.0.0.1:{port}/events"
    with pytest.raises(EventLogUnavailable) as err:
        open_event_log(url)
    msg = str(err.value)
    assert f"postgresql://artwork:***@127.0.0.1:{port}/events" in msg and SECRET not in msg
    assert "expected a running PostgreSQL server" in msg and isinstance(err.value, sqlite3.OperationalError)
    for bad, why in ((f"mysql://root:{SECRET}@db/x", "unsupported event log URL mysql://root:***@db/x"),
                     (f"postgresql://u:{SECRET}@db:port/x", "port 'port' is not a number"),
                     (f"postgresql://u@db/x?password={SECRET}&sslmode=nope&bogus=1", "bad event log URL")):
        with pytest.raises(EventLogError, match="expected") as err:
            open_event_log(bad)
        assert why in str(err.value) and SECRET not in str(err.value)

    store = tmp_path / "c.db"
    build_catalog(store, n_titles=1)
    runner = CliRunner()
    res = runner.invoke(cli, ["--store", str(store), "serve", "--events", url, "--port", str(free_port())])
    assert res.exit_code == 1, res.output
    assert f"cannot serve {store}: cannot open the PostgreSQL event log postgresql://artwork:***@" in res.output
    assert SECRET not in res.output and "Traceback" not in res.output
    res = runner.invoke(cli, ["--store", str(store), "serve", "--events", f"mysql://root:{SECRET}@db/x"])
    assert res.exit_code == 2 and "Invalid value for '--events': unsupported event log URL" in res.output
    assert SECRET not in res.output
    with pytest.raises(EventLogUnavailable):  # the engine too; and it leaves no catalog open behind it
        Engine(store, EngineConfig(events=url))


def test_a_dropped_connection_is_a_store_error_then_reconnects(pg_url: str) -> None:
    log = open_event_log(pg_url)
    try:
        pid = log._query("SELECT pg_backend_pid()")[0][0]
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        time.sleep(0.2)
        # What the server answers with a 503 (sqlite3.Error): the caller retries, nothing half-written.
        with pytest.raises(EventLogUnavailable):
            log.log_page(1.0, "u", {}, [_fresh("x", "t", "a", {"a": 1.0}, policy="p")],
                         {"fs": "{}"}, 5.0, 9.0)
        log.log_page(1.0, "u", {}, [_fresh("x", "t", "a", {"a": 1.0}, policy="p")],
                     {"fs": "{}"}, 5.0, 9.0)
        assert log.counts()["decisions"] == 1 and log._query("SELECT pg_backend_pid()")[0][0] != pid
    finally:
        log.close()


def test_one_learner_per_log(pg_url: str) -> None:
    from bandit.events_pg import LearnerLockHeld, hold_learner_lock

    first = hold_learner_lock(pg_url)
    try:
        t0 = time.monotonic()
        with pytest.raises(LearnerLockHeld, match=r"already served by artwork serve pid \d+ on .*one learner per log"):
            hold_learner_lock(pg_url, wait_s=0.3)
        assert time.monotonic() - t0 < 5
    finally:
        first.close()
    hold_learner_lock(pg_url, wait_s=0.3).close()  # released with its connection


# -- PostgreSQL: several writers at once ------------------------------------------------------------------

WRITERS, PAGES = 4, 36
WEIGHTS = {"click": 0.5, "play": 1.0}


def _writer(k: int, url: str, start: multiprocessing.synchronize.Event, out: multiprocessing.Queue) -> None:
    """One chooser process: logs pages (some already past their window, some not activated), posts a
    click or a play for a page two back of every writer, activates the unrendered decisions of every
    writer, and closes due windows and purges expired sessions every third page."""
    log = open_event_log(url)
    acked: list[str] = []
    posts: list[tuple[str, str, str]] = []  # (event_id, "click" | "play", status)
    learned: list[tuple[int, str, bool]] = []
    activations: list[tuple[str, str]] = []
    start.wait()
    for i in range(PAGES):
        now = time.time()
        page = [_fresh(f"w{k}-{i}-{j}", f"t{j}", "abc"[(i + j + k) % 3], {x: 1 / 3 for x in "abc"},
                       active=not (i % 5 == 3 and j == 2))
                for j in range(3)]
        # Half the pages' sessions are expired already: the purges below delete rows pages rewrite.
        log.log_page(now, f"user{i % 4}", {"user_id": f"user{i % 4}"}, page, {"fs": "{}"},
                     now - 1 if i % 4 == 0 else now + 120, now + 600 if i % 2 else now - 1)
        acked += [d.event_id for d in page]  # log_page returned: acknowledged
        if i >= 2 and (i - 2) % 5 == 3:  # every writer renders the others' unrendered decisions at once
            for other in range(WRITERS):
                eid = f"w{other}-{i - 2}-2"
                activations.append((eid, log.activate(eid, time.time() + 120)[0]))
        if i >= 2:
            for other in range(WRITERS):
                for j in range(3):
                    if (i + j + other) % 2:
                        continue
                    flag = "play" if (k + j) % 3 == 0 else "click"
                    eid = f"w{other}-{i - 2}-{j}"
                    res = log.join_feedback(eid, WEIGHTS[flag], time.time(), **{flag: True}, weights=WEIGHTS)
                    posts.append((eid, flag, res.status))
                    learned += [(int(r.learn_seq), r.event_id, r.is_correction) for r in res.learn]
        if i % 3 == 0:
            learned += [(int(r.learn_seq), r.event_id, False) for r in log.close_expired(time.time())]
            log.purge_sessions(time.time())
    log.close()
    out.put((acked, posts, learned, activations))


def test_concurrent_writers_keep_every_acknowledged_write_once_and_learn_seq_gap_free(pg_url: str) -> None:
    # Forked before this process opens any connection (a child must not share its socket); the
    # writers also create the tables at the same time, which must work too.
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(k, pg_url, start, out)) for k in range(WRITERS)]
    for p in procs:
        p.start()
    log = open_event_log(pg_url)
    seen: list[int] = []
    tail_errors: list[str] = []
    done = threading.Event()

    def tail() -> None:  # a reader following the log never sees a learn_seq before the ones below it
        reader = open_event_log(pg_url)
        try:
            while not done.is_set():
                for r in reader.finalized_after(seen[-1] if seen else 0):
                    if int(r.learn_seq) != len(seen) + 1:
                        tail_errors.append(f"saw learn_seq {r.learn_seq} after {len(seen)}")
                        return
                    seen.append(int(r.learn_seq))
                time.sleep(0.01)
        finally:
            reader.close()

    tailer = threading.Thread(target=tail)
    tailer.start()
    t0 = time.monotonic()
    start.set()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    elapsed = time.monotonic() - t0
    learned = [x for _, _, lr, _ in results for x in lr]
    learned += [(int(r.learn_seq), r.event_id, False) for r in log.close_expired(time.time() + 1000)]
    done.set()
    tailer.join(timeout=60)
    try:
        assert not tail_errors, tail_errors
        acked = [e for a, _, _, _ in results for e in a]
        stored = [r[0] for r in log._query("SELECT event_id FROM decisions")]
        assert len(acked) == WRITERS * PAGES * 3 and sorted(stored) == sorted(acked)  # each exactly once

        events = list(log.finalized_after(0))
        n = log.max_learn_seq()
        assert [int(r.learn_seq) for r in events] == list(range(1, n + 1))  # gap-free, no duplicates
        # Every learn event was handed to exactly one live caller: each window closed (or joined) once,
        # each correction written once, and what the callers learned is what a replay learns.
        assert sorted(learned) == [(int(r.learn_seq), r.event_id, r.is_correction) for r in events]
        firsts = [r.event_id for r in events if not r.is_correction]
        assert len(firsts) == len(set(firsts))
        counts = log.counts()
        assert len(firsts) == counts["joined"] + counts["closed"] == counts["decisions"] - counts["open"] - counts["inactive"]

        posts = [p for _, ps, _, _ in results for p in ps]
        by_event: dict[str, list[tuple[str, str]]] = {}
        for eid, flag, status in posts:
            if status != "not_found":
                by_event.setdefault(eid, []).append((flag, status))
        assert len(by_event) > 100 and sum(len(v) > 1 for v in by_event.values()) > 50  # posts really raced
        feedback = dict(log._query("SELECT event_id, reward FROM feedback"))
        assert set(feedback) == set(by_event)  # every acknowledged post's event has its one feedback row
        for eid, got in by_event.items():
            statuses = [s for _, s in got]
            assert sum(s in ("joined", "late") for s in statuses) == 1, (eid, got)  # one first post
            assert set(statuses) <= {"joined", "late", "upgraded", "duplicate"}, (eid, got)
            assert feedback[eid] == max(WEIGHTS[f] for f, _ in got), (eid, got)  # the ladder's top
        assert counts["upgrades"] == sum(s == "upgraded" for _, _, s in posts)
        assert counts["late"] == sum(s == "late" for _, _, s in posts) > 0
        imp, closed, clicks, reward_sum = log._query(
            "SELECT SUM(impressions), SUM(closed), SUM(clicks), SUM(reward_sum) FROM artwork_stats")[0]
        assert (imp, closed) == (counts["decisions"] - counts["inactive"], len(firsts))  # one impression each
        live = log.active_sessions(time.time())  # one per (user, title), each a logged decision
        assert len({(r.user_id, r.title_id) for r in live}) == len(live) and {r.event_id for r in live} <= set(acked)
        activated = [e for _, _, _, acts in results for e, status in acts if status == "activated"]
        assert len(activated) == len(set(activated)) and counts["inactive"] == 0  # raced, each activated once
        assert clicks == len(feedback) and reward_sum == pytest.approx(sum(feedback.values()))
        print(f"\n{WRITERS} writers: {len(acked)} decisions, {len(posts)} feedback posts, {n} learn events "
              f"in {elapsed:.1f} s")
    finally:
        log.close()


# -- `artwork serve --events postgresql://...` over HTTP ---------------------------------------------------------


class CliServer(LiveServer):
    """`artwork serve` (the console command, rather than `python -m bandit.server`) as a subprocess."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bandit.cli", "--store", str(self.store), "serve", "--port", str(self.port),
                *self.args]


def test_serve_on_postgres_over_http_restarts_to_the_identical_policy(tmp_path: Path, pg_cluster: PgCluster) -> None:
    store = tmp_path / "c.db"
    titles = build_catalog(store, n_titles=4)
    url = pg_cluster.database(password=SECRET)  # trust auth ignores it; it must never show
    args = ("--events", url, "--feedback-window", "1", "--close-interval", "0.2", "--snapshot-interval", "600",
            "--session-ttl", "600", "--click-reward", "0.5", "--play-reward", "1.0")
    probe = {"user_id": "probe", "titles": titles, "taste": {"genre:crime": 0.8}}
    server = CliServer(store, *args).start(timeout=60.0)
    try:
        with server.client() as c:
            health = c.get("/health").json()
            assert health["event_log"] == "postgresql" and health["event_log_location"].startswith("postgresql://postgres:***@/")
            assert SECRET not in json.dumps(health)
            # A second learner on the same log, on any machine, is refused like a second one on a file.
            second = subprocess.run([sys.executable, "-m", "bandit.cli", "--store", str(store), "serve", "--port",
                                     str(free_port()), "--events", url], cwd=ROOT, capture_output=True, text=True,
                                    timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
            assert second.returncode == 1 and "already served by artwork serve pid" in second.stderr, second.stderr
            assert SECRET not in second.stderr and "Traceback" not in second.stderr

            acked: dict[str, str] = {}
            for i in range(12):
                page = c.post("/v1/choose", json={"user_id": f"u{i % 5}", "titles": titles[:3],
                                                  "taste": {"genre:crime": (i % 3) / 3}}).json()["results"]
                acked.update({r["event_id"]: r["artwork_id"] for r in page})
                for k, r in enumerate(page):
                    if (i + k) % 2 == 0:
                        body = {"event_id": r["event_id"], ("play" if k == 0 else "click"): True}
                        status = c.post("/v1/feedback", json=body).json()["status"]
                        assert status in ("joined", "duplicate", "late"), status
            first = c.post("/v1/choose", json={"user_id": "late", "titles": titles[3:]}).json()["results"][0]
            time.sleep(1.6)  # windows pass; the timer closes them at reward 0
            late = c.post("/v1/feedback", json={"event_id": first["event_id"], "click": True}).json()
            assert late["status"] == "late"
            up = c.post("/v1/feedback", json={"event_id": first["event_id"], "play": True}).json()
            assert (up["status"], up["reward"]) == ("upgraded", 1.0)
            before = c.post("/v1/policy/distribution", json=probe).json()["titles"]
            seq = c.get("/health").json()["learned_seq"]
            assert seq > 10 and seq == c.get("/health").json()["policy_version"]
    finally:
        server.kill()  # SIGKILL: no final snapshot, the restart replays everything from PostgreSQL
    server = CliServer(store, *args).start(timeout=60.0)
    try:
        with server.client() as c:
            assert c.get("/health").json()["learned_seq"] == seq
            assert c.post("/v1/policy/distribution", json=probe).json()["titles"] == before
            again = c.post("/v1/choose", json={"user_id": "late", "titles": titles[3:]}).json()["results"][0]
            assert (again["event_id"], again["repeat"]) == (first["event_id"], True)  # sessions live in the log
    finally:
        server.stop()
    log = open_event_log(url)
    try:
        assert {r.event_id for r in log.records()} >= set(acked) and learn_seqs(log) == list(range(1, seq + 1))
        counts = log.counts()
        assert counts["upgrades"] >= 1 and counts["late"] >= 1 and counts["open"] == 0
    finally:
        log.close()
