"""Deploying a policy trained offline: `serve --policy PATH`, lineage on /health and in sidecars,
`artwork policy list|promote|rollback`, and what each restart starts from.

The loop is run for real: an engine serves and learns (late clicks included) into a real SQLite
event log, `artwork export-log` and `artwork train` make a policy file from it, and `python -m
bandit.server` serves that file on loopback while the log grows. The counts the tests expect are
computed from the event log and the exported Parquet, not from the code under test.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from bandit.cli import cli
from bandit.decisions import read_parquet
from bandit.engine import Engine, EngineConfig
from bandit.events import EventLog
from bandit.features import UserContext
from bandit.lineage import SET_ASIDE, SIDECAR, keep_names, snapshot_infos
from servekit import ROOT, LiveServer, build_catalog

WINDOW = 10.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def serve_pages(eng: Engine, clock: Clock, titles: list[str], users: range, late: int) -> None:
    """Pages for `users`, a click on every third choice, every window closed at reward 0 after it,
    then `late` late clicks on closed decisions (corrections, learned with relearn)."""
    closed = []
    for i in users:
        for k, c in enumerate(eng.choose(UserContext(f"u{i}", taste={"genre:crime": (i % 5) / 5}, device="tv"),
                                         titles)):
            if (i + k) % 3 == 0:
                assert eng.feedback(c.event_id, click=True).status == "joined"
            else:
                closed.append(c.event_id)
        clock.t += 1.0
    clock.t += WINDOW + 1
    eng.close_expired()
    for eid in closed[:late]:
        assert eng.feedback(eid, click=True).status == "late"


def learn_events(events: Path) -> list:
    log = EventLog(events)
    try:
        return list(log.finalized_after(0))
    finally:
        log.close()


def not_trained(events: list, trained: dict[str, float]) -> list:
    """The learn events a policy trained on `trained` (event id -> the reward it learned) still has
    to learn: every event of other rows, and corrections that raised a row above its trained reward."""
    return [e for e in events if e.event_id not in trained
            or (e.old_reward is not None and e.reward > trained[e.event_id])]


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


def drive(c: httpx.Client, prefix: str, n: int, titles: list[str]) -> None:
    """n pages over HTTP, a click on every second choice (joined at once: learned live)."""
    for i in range(n):
        res = c.post("/v1/choose", json={"user_id": f"{prefix}{i}", "titles": titles}).json()["results"]
        for k, r in enumerate(res):
            if (i + k) % 2 == 0:
                assert c.post("/v1/feedback", json={"event_id": r["event_id"], "click": True}).status_code == 200


def settled(c: httpx.Client, events: Path, timeout: float = 15.0) -> dict:
    """/health once the server has closed every window and learned every learn event of the log."""
    deadline = time.monotonic() + timeout
    while True:
        h = c.get("/health").json()
        log = EventLog(events)
        try:
            counts, top = log.counts(), log.max_learn_seq()
        finally:
            log.close()
        if counts["open"] == 0 and h["learned_seq"] == top:
            return h
        assert time.monotonic() < deadline, (h, counts, top)
        time.sleep(0.2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store served in-process (default bayes, late clicks), its log exported and a VW policy
    trained on it; then more traffic after the export, late clicks on trained rows included."""
    tmp = tmp_path_factory.mktemp("deploy")
    store = tmp / "c.db"
    titles = build_catalog(store, n_titles=3)
    clock = Clock(time.time() - 100_000)
    cfg = EngineConfig(feedback_window_s=WINDOW, seed=1)
    with Engine(store, cfg, clock=clock, start_timer=False) as eng:
        serve_pages(eng, clock, titles, range(0, 40), late=6)
    res = run("--store", store, "export-log", tmp / "log.parquet")
    assert res.exit_code == 0, res.output
    res = run("train", tmp / "log.parquet", tmp / "warm.vwz")
    assert res.exit_code == 0, res.output
    res = run("train", tmp / "log.parquet", tmp / "warm.bayes", "--policy", "bayes")
    assert res.exit_code == 0, res.output
    # After the export: new pages, and late clicks on rows the file learned at reward 0.
    with Engine(store, cfg, clock=clock, start_timer=False) as eng:
        serve_pages(eng, clock, titles, range(40, 50), late=0)
        before_export = {r.event_id for r in read_parquet(tmp / "log.parquet")}
        trained_at_zero = [r.event_id for r in read_parquet(tmp / "log.parquet") if r.reward == 0.0]
        for eid in trained_at_zero[:4]:
            assert eng.feedback(eid, click=True).status == "late"
        assert before_export
    trained = {r.event_id: r.reward for r in read_parquet(tmp / "log.parquet") if r.reward is not None}
    return {"tmp": tmp, "store": store, "titles": titles, "events": Path(f"{store}.events.db"),
            "snapshots": Path(f"{store}.snapshots"), "trained": trained}


def test_deploy_promote_and_rollback_across_restarts(world) -> None:
    tmp, store, titles, events, snaps = (world[k] for k in ("tmp", "store", "titles", "events", "snapshots"))
    trained = world["trained"]
    vwz = tmp / "warm.vwz"
    sha = hashlib.sha256(vwz.read_bytes()).hexdigest()
    all_events = learn_events(events)
    todo = not_trained(all_events, trained)
    corrections_after_export = [e for e in todo if e.event_id in trained]
    assert len(corrections_after_export) == 4  # the late clicks on rows trained at reward 0 ...
    assert any(e.old_reward is not None and e.event_id in trained and e not in todo for e in all_events)  # ... and
    # corrections the training already saw, which must be skipped

    # 1. Deploy the file: it learns the log less its training rows, and is snapshotted at once.
    server = LiveServer(store, "--policy", str(vwz), "--feedback-window", "1", "--close-interval", "0.2",
                        "--snapshot-interval", "600").start()
    try:
        with server.client() as c:
            h = c.get("/health").json()
            assert h["policy"].startswith("vw-") and h["learned_seq"] == len(all_events)
            assert h["policy_version"] == len(trained) + len(todo)  # trained rows not relearned
            lin = h["lineage"]
            assert lin["source"] == f"deployed from {vwz.resolve()} sha256={sha}"
            assert lin["deployment"]["sha256"] == sha and lin["deployment"]["file"] == str(vwz.resolve())
            assert lin["trained_rows"] == lin["deployment"]["trained_rows"] == len(trained)
            assert lin["snapshot"] and (snaps / lin["snapshot"]).is_file() and lin["kind"] == "vw"
            assert lin["parent"] is not None  # the bayes snapshot it replaced
            m = c.get("/metrics").text
            assert metric(m, "artwork_trained_skipped_total") == len(all_events) - len(todo)
            assert metric(m, "artwork_learned_total") == len(todo)
            sidecar = json.loads((snaps / (lin["snapshot"] + SIDECAR)).read_text())
            assert sidecar["source"] == lin["source"] and sidecar["learned_seq"] == len(all_events)
            # Later events are learned as they come.
            version = h["policy_version"]
            drive(c, "live", 8, titles)
            h = settled(c, events)
            new_events = h["learned_seq"] - len(all_events)
            assert new_events == 8 * len(titles) and h["policy_version"] == version + new_events
            deployed_version = h["policy_version"]
            # promote and rollback are refused while the server holds the store.
            res = run("--store", store, "policy", "promote", tmp / "warm.bayes")
            assert res.exit_code == 1 and "stop the server before `policy promote`" in res.output, res.output
            res = run("--store", store, "policy", "rollback")
            assert res.exit_code == 1 and "stop the server before `policy rollback`" in res.output, res.output
    finally:
        server.stop()

    # 2. A restart with the same file restores the snapshot (same sha256): nothing replayed twice.
    server = LiveServer(store, "--policy", str(vwz), "--snapshot-interval", "600").start()
    try:
        with server.client() as c:
            h = c.get("/health").json()
            assert h["policy_version"] == deployed_version
            assert h["lineage"]["deployment"]["sha256"] == sha and h["lineage"]["source"] == "learned online"
            assert metric(c.get("/metrics").text, "artwork_trained_skipped_total") == 0
    finally:
        server.stop()
    vw_deployment = h["lineage"]["deployment"]["id"]

    # 3. Promote a bayes file trained offline: the next start (no flags) restores it.
    res = run("--store", store, "policy", "promote", tmp / "warm.bayes")
    assert res.exit_code == 0, res.output
    assert "the next `artwork serve` restores it" in res.stdout
    res = run("--store", store, "policy", "list", "--json")
    assert res.exit_code == 0, res.output
    listed = json.loads(res.stdout)
    top = listed["snapshots"][0]
    assert top["current"] and top["learned_seq"] == 0 and top["kind"] == "bayes"
    assert top["source"].startswith(f"promoted from {(tmp / 'warm.bayes').resolve()} sha256=")
    # The report grades the promoted file on the log it was trained on: it must say so.
    res = run("--store", store, "report", "--out", tmp / "report", "--on", "all", "--n-bootstrap", "20", "--quiet")
    assert res.exit_code == 0, res.output
    assert "the deployed policy was trained offline on" in res.stderr and "optimistic" in res.stderr
    server = LiveServer(store, "--feedback-window", "1", "--close-interval", "0.2", "--snapshot-interval", "0.3").start()
    try:
        with server.client() as c:
            h = c.get("/health").json()
            lin = h["lineage"]
            assert h["policy"] == "bayes-ts" and lin["kind"] == "bayes"
            assert lin["deployment"]["source"].startswith("promoted from") and lin["parent"] == top["name"]
            log = EventLog(events)
            head = log.max_learn_seq()
            log.close()
            todo = not_trained(learn_events(events), trained)
            assert h["learned_seq"] == head and h["policy_version"] == len(trained) + len(todo)
            drive(c, "promoted", 5, titles)  # learned by the bayes deployment, then rolled back
            settled(c, events)
            time.sleep(1.0)  # periodic snapshots of the promoted deployment
    finally:
        server.stop()
    infos = [i for i in snapshot_infos(EventLog(events), snaps) if i.state == "live"]
    assert infos[0].lineage["kind"] == "bayes"
    # Pruning kept the newest snapshot of the earlier (vw) deployment: what rollback goes back to.
    vw_snap = next(i for i in infos if i.deployment == vw_deployment)
    assert vw_snap.path.is_file()

    # 4. Roll back: the bayes snapshots are set aside, the vw deployment's newest is current again.
    res = run("--store", store, "policy", "rollback")
    assert res.exit_code == 0, res.output
    assert f"rolled back to {vw_snap.name}" in res.stdout
    aside = sorted(p.name for p in (snaps / SET_ASIDE).iterdir() if not p.name.endswith(SIDECAR))
    assert aside and all(p.endswith(".bayes") for p in aside)
    res = run("--store", store, "policy", "list")
    assert res.exit_code == 0 and "set aside" in res.stdout and "rolled back to" in res.stdout, res.output
    server = LiveServer(store, "--snapshot-interval", "600").start()
    try:
        with server.client() as c:
            h = c.get("/health").json()
            lin = h["lineage"]
            assert lin["kind"] == "vw" and lin["source"].startswith(f"rolled back to {vw_snap.name}")
            assert lin["deployment"]["id"] == vw_deployment and lin["deployment"]["sha256"] == sha
            # The vw snapshot plus every learn event since it (the bayes deployment's pages too).
            head = h["learned_seq"]
            assert head > vw_snap.learned_seq
            assert h["policy_version"] == vw_snap.version + (head - vw_snap.learned_seq)
    finally:
        server.stop()
    # Nothing was deleted: the set-aside files are still there after the engine's own pruning.
    assert sorted(p.name for p in (snaps / SET_ASIDE).iterdir() if not p.name.endswith(SIDECAR)) == aside

    # 5. Rolling back again goes to the deployment before vw (the first bayes run).
    res = run("--store", store, "policy", "rollback")
    assert res.exit_code == 0, res.output
    res = run("--store", store, "policy", "list", "--json")
    assert json.loads(res.stdout)["snapshots"][0]["kind"] == "bayes"


def test_bad_policy_files_are_one_clear_line(world, tmp_path) -> None:
    store = world["store"]
    text = tmp_path / "notes.txt"
    text.write_text("not a policy\n")
    base = [sys.executable, "-m", "bandit.server", "--store", str(store), "--port", "1"]
    for arg, code, words in ((str(tmp_path / "missing.vwz"), 2, "there is no file"),
                             ("greedy", 2, "'greedy' is not one of 'bayes'"),
                             (str(text), 1, f"policy {text}: not a saved policy file")):
        for flag in ("--policy", "--ab"):
            proc = subprocess.run([*base, flag, arg], capture_output=True, text=True, cwd=ROOT, timeout=60)
            assert proc.returncode == code, (flag, arg, proc.stderr)
            assert (words if flag == "--policy" or code == 2 else f"A/B arm B {text}") in proc.stderr, proc.stderr
            assert "Traceback" not in proc.stderr
    res = run("--store", store, "policy", "promote", tmp_path / "missing.vwz")
    assert res.exit_code == 1 and "missing.vwz: no such file" in res.output
    res = run("--store", store, "policy", "promote", text)
    assert res.exit_code == 1 and "notes.txt: not a saved policy file" in res.output


def test_rollback_needs_an_earlier_deployment(tmp_path) -> None:
    store = tmp_path / "c.db"
    titles = build_catalog(store, n_titles=2)
    res = run("--store", store, "policy", "rollback")
    assert res.exit_code == 1 and "no event log" in res.output
    clock = Clock(time.time() - 10_000)
    eng = Engine(store, EngineConfig(feedback_window_s=WINDOW), clock=clock, start_timer=False).start()
    serve_pages(eng, clock, titles, range(3), late=0)
    eng.close()  # one snapshot
    res = run("--store", store, "policy", "rollback")
    assert res.exit_code == 1 and "only one snapshot" in res.output, res.output
    eng = Engine(store, EngineConfig(feedback_window_s=WINDOW), clock=clock, start_timer=False).start()
    serve_pages(eng, clock, titles, range(3, 6), late=0)
    eng.close()  # a second snapshot of the same deployment
    res = run("--store", store, "policy", "rollback")
    assert res.exit_code == 1 and "all 2 kept snapshots belong to the current deployment" in res.output, res.output
    # --to names any live snapshot; a rollback to it keeps the file it rolls back to through pruning.
    log = EventLog(Path(f"{store}.events.db"))
    older = snapshot_infos(log, Path(f"{store}.snapshots"))[1]
    log.close()
    res = run("--store", store, "policy", "rollback", "--to", older.name)
    assert res.exit_code == 0, res.output
    eng = Engine(store, EngineConfig(feedback_window_s=WINDOW, keep_snapshots=1), clock=clock,
                 start_timer=False).start()
    # Restored from the older snapshot, it learns what came after it (the set-aside run's events too).
    assert eng.lineage["source"].startswith(f"rolled back to {older.name}")
    assert eng.counters["replayed"] == eng.events.max_learn_seq() - older.learned_seq > 0
    serve_pages(eng, clock, titles, range(6, 8), late=0)
    eng.snapshot()
    infos = snapshot_infos(eng.events, eng.snapshot_dir)
    live = {i.name for i in infos if i.state == "live"}
    assert eng.lineage["snapshot"] in live  # what is served now is never pruned
    assert live == keep_names(infos, 1, eng.lineage["snapshot"])
    eng.close()


def test_a_name_other_than_the_snapshots_kind_is_deployed_the_same_name_restores(tmp_path) -> None:
    store = tmp_path / "c.db"
    titles = build_catalog(store, n_titles=2)
    clock = Clock(time.time() - 10_000)

    def engine(**kw) -> Engine:
        return Engine(store, EngineConfig(feedback_window_s=WINDOW, **kw), clock=clock, start_timer=False).start()

    eng = engine()  # nothing to restore: a new bayes policy
    serve_pages(eng, clock, titles, range(10), late=2)
    total = eng.learned_seq
    eng.close()
    eng = engine(deploy="thompson")  # another kind: a new thompson learns the whole log, snapshotted at once
    try:
        assert eng.policy.kind == "thompson" and eng.policy.version == total and eng.counters["replayed"] == total
        assert eng.lineage["source"] == "deployed: a new thompson policy" and eng.lineage["learned_seq"] == total
        assert eng.lineage["snapshot"] == f"policy-{total:012d}.json"  # beside the bayes one at the same seq
        first = eng.lineage["snapshot"]
    finally:
        eng.close()
    for kw in ({"deploy": "thompson"}, {}):  # the same name, or none: the snapshot is restored
        eng = engine(**kw)
        try:
            assert eng.policy.kind == "thompson" and eng.counters["replayed"] == 0
            assert eng.lineage["snapshot"] == first and eng.lineage["deployment"]["id"] == first
        finally:
            eng.close()
    eng = engine(deploy="bayes")
    try:
        assert eng.policy.kind == "bayes" and eng.lineage["parent"] == first
        assert eng.lineage["deployment"]["id"] == eng.lineage["snapshot"] != first
    finally:
        eng.close()


def test_a_long_replay_reports_progress_in_the_log(tmp_path, caplog) -> None:
    from bandit.learner import _replay_progress

    with caplog.at_level("WARNING", logger="artwork.engine"):
        assert list(_replay_progress(iter(range(5)), 5, "deploying x", every_s=0.0)) == [0, 1, 2, 3, 4]
    lines = [r.getMessage() for r in caplog.records]
    assert "deploying x: 1 of 5 learn events replayed (20%" in lines[0] and "done, 5 learn events" in lines[-1]
    caplog.clear()
    with caplog.at_level("WARNING", logger="artwork.engine"):
        list(_replay_progress(iter(range(5)), 5, "quick"))  # a replay under every_s says nothing
    assert not caplog.records


def test_the_operator_commands_give_the_store_lock_back(tmp_path: Path) -> None:
    """`policy promote|rollback` take the serve lock and must release it when done (a PostgreSQL
    advisory lock would otherwise outlive the command in the same process)."""
    from bandit.storelock import StoreLocked, lock_store, unlock_store

    events = tmp_path / "s.db.events.db"
    fd = lock_store(events)
    with pytest.raises(StoreLocked):
        lock_store(events)
    unlock_store(fd)
    unlock_store(lock_store(events))  # free again, and again after
