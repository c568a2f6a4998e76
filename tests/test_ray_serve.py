"""Chooser replicas and one learner over one event log: the engine roles, then `serve --ray` on Ray Serve.

- Roles without Ray (SQLite and PostgreSQL): two chooser engines and a learner engine in one process
  on one log. Decisions from both choosers and feedback posted to either are learned by the learner
  exactly once (learn_seq gap-free); a chooser converges to the learner's snapshot; a user sees the
  same artwork from the other chooser within the session TTL; a learner restarted from snapshot + log
  holds exactly the policy of one that learned everything in one go.
- On Ray Serve (a real local Ray, 2 CPUs; SQLite and PostgreSQL): 2 replicas + the learner actor under HTTP load; one
  replica and the learner are SIGKILLed; afterwards every acknowledged decision and feedback is in
  the log once, learn_seq is gap-free, and the restarted learner's policy equals a fresh replay.

PostgreSQL is a throwaway server (tests/pgkit.py); those cases skip when its binaries are absent.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from bandit.engine import Engine, EngineConfig
from bandit.events import BaseEventLog, open_event_log
from bandit.features import UserContext
from bandit.learner import new_policy
from bandit.server import ServeConfig, free_port
from bandit.storelock import StoreLocked, lock_store, unlock_store
from pgkit import pg_cluster, pg_url, events_spec  # noqa: F401 - fixtures
from servekit import build_catalog

WINDOW = 10.0


class Clock:
    def __init__(self, t: float = 5_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t




def engine(store: Path, clock: Clock, events: str, role: str, **cfg) -> Engine:
    cfg.setdefault("feedback_window_s", WINDOW)
    cfg.setdefault("session_ttl_s", 3600.0)
    return Engine(store, EngineConfig(events=events, role=role, **cfg), clock=clock, start_timer=False).start()


def kill(eng: Engine) -> None:
    """Close without the shutdown snapshot: what a SIGKILL leaves (the store lock goes too)."""
    eng.started = False
    eng.close()


def learn_seqs(log: BaseEventLog) -> list[int]:
    return [int(r.learn_seq) for r in log.finalized_after(0)]


def policy_state(pol, sampling: bool = True) -> dict:
    """A saved policy's content without the zip timestamps: meta.json and every array
    (`sampling=False`: without the sampling stream, which a chooser replica reseeds as its own)."""
    path = Path(f"/tmp/artwork-policy-{os.getpid()}-{id(pol)}")
    try:
        pol.save(path)
        state = state_of_bytes(path.read_bytes())
        if not sampling:
            state["meta.json"].pop("rng_state")
        return state
    finally:
        path.unlink(missing_ok=True)


def state_of_bytes(data: bytes) -> dict:
    out = {}
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for name in z.namelist():
            raw = z.read(name)
            if name.endswith(".npz"):
                with np.load(io.BytesIO(raw)) as npz:
                    out.update({f"{name}:{k}": npz[k].tobytes() for k in npz.files})
            else:
                out[name] = json.loads(raw)
    return out


def replayed_from_scratch(store: Path, events: str, upto: int | None = None):
    """A new policy that learned the whole log in one go, through the engine's one learn path."""
    eng = Engine(store, EngineConfig(events=events), start_timer=False)  # never started: writes nothing
    try:
        learner = eng.learner
        assert learner is not None
        learner.policy, learner.learned_seq = new_policy(eng.config), 0
        rows = eng.events.finalized_after(0)
        learner._learn(r for r in rows if upto is None or int(r.learn_seq) <= upto)
        return learner.policy, learner.learned_seq
    finally:
        eng.events.close()
        eng.catalog_view.close()
        eng.catalog.close()


USERS = [UserContext(f"u{i}", {"genre:crime": 0.9} if i % 2 else {"genre:romance": 0.9}) for i in range(8)]


def traffic(choosers: list[Engine], clock: Clock, rng: np.random.Generator, titles: list[str], pages: int,
            acked: dict[str, float]) -> None:
    """Pages from alternating choosers, feedback posted to a chooser picked at random (often the
    other one), duplicates included; `acked` gets the event ids answered and their clicks."""
    for i in range(pages):
        user = USERS[int(rng.integers(len(USERS)))]
        page = list(rng.choice(titles, size=3, replace=False))
        got = choosers[i % 2].choose(user, page)
        for c in got:
            assert c.error is None and c.event_id and c.policy
            if not c.repeat:
                acked[c.event_id] = 0.0
        for c in got:
            if rng.random() < 0.4:
                other = choosers[int(rng.integers(2))]
                res = other.feedback(c.event_id, click=True)
                assert res.status in ("joined", "duplicate", "late"), res
                acked[c.event_id] = 1.0
                if rng.random() < 0.3:  # a retry to the other chooser: idempotent
                    assert choosers[1 - choosers.index(other)].feedback(c.event_id, click=True).status == "duplicate"
        clock.t += 0.2  # 30 pages stay within one feedback window


def test_two_choosers_and_a_learner_learn_every_event_once(tmp_path: Path, events_spec: str) -> None:
    store = tmp_path / "c.db"
    titles = build_catalog(store, n_titles=6)
    clock = Clock()
    learner = engine(store, clock, events_spec, "learner")
    a, b = engine(store, clock, events_spec, "chooser"), engine(store, clock, events_spec, "chooser")
    try:
        with pytest.raises(StoreLocked):  # one learner per log
            engine(store, clock, events_spec, "learner")
        assert a.health()["role"] == "chooser" and a.learned_seq == 0
        acked: dict[str, float] = {}
        traffic([a, b], clock, np.random.default_rng(0), titles, 30, acked)
        assert a.counters["decisions"] > 0 and b.counters["decisions"] > 0
        # Choosers close nothing and learn nothing; their rows wait in the log for the learner.
        assert (a.close_expired(), a.counters["learned"], b.counters["learned"], a.learned_seq) == (0, 0, 0, 0)
        assert a.snapshot() is None
        joined = learner.events.counts()["joined"]
        assert joined > 0 and learner.learned_seq == 0
        learner.tick()  # the tail: every join the choosers wrote
        assert learner.learned_seq == joined == learner.counters["tail_learned"]
        clock.t += WINDOW + 1
        # A late click posted to a chooser: the chooser's transaction closes the window and writes the
        # correction; the learner's own close of the rest comes after it in learn_seq order.
        late = next(e for e, r in acked.items() if r == 0.0)
        assert b.feedback(late, click=True).status == "late"
        learner.tick()
        counts = learner.events.counts()
        assert counts["open"] == 0 and counts["decisions"] == len(acked)
        seqs = learn_seqs(learner.events)
        n = counts["joined"] + counts["closed"] + counts["corrections"]
        assert seqs == list(range(1, n + 1)) and learner.learned_seq == n  # gap-free, every one learned
        assert learner.counters["learned"] == n and learner.counters["corrections_learned"] == counts["corrections"]
        assert learner.counters["quarantined"] == 0
        mine, upto = replayed_from_scratch(store, events_spec)
        assert upto == n and policy_state(learner.policy) == policy_state(mine)

        # Convergence: the chooser serves the learner's snapshot after a reload, nothing newer before.
        assert not a.reload()
        learner.snapshot()
        assert a.reload() and not a.reload()
        assert a.learned_seq == n and a.policy.version == learner.policy.version
        assert policy_state(a.policy, sampling=False) == policy_state(learner.policy, sampling=False)
        rs = a.health()["replica"]
        assert rs["snapshot_learned_seq"] == n and rs["lag_learn_events"] == 0 and rs["snapshot_age_s"] < 60
        assert "artwork_snapshot_learned_seq %d" % n in a.metrics_text()
        fresh = a.choose(UserContext("zed"), titles[:2])
        assert all(c.policy_version == learner.policy.version and not c.repeat for c in fresh)

        # Sticky across replicas: B has never served zed, and still repeats A's choices.
        again = b.choose(UserContext("zed"), titles[:3])
        assert [(c.artwork_id, c.event_id, c.repeat) for c in again[:2]] == [
            (c.artwork_id, c.event_id, True) for c in fresh]
        assert not again[2].repeat
        assert b.user_session("zed")["titles"][titles[0]]["event_id"] == fresh[0].event_id
        assert [c.event_id for c in a.choose(UserContext("zed"), titles[:3])] == [c.event_id for c in again]
        clock.t += 3601  # past the TTL: a fresh choice
        assert not any(c.repeat for c in b.choose(UserContext("zed"), titles[:3]))
    finally:
        for e in (a, b, learner):
            e.close()


def test_chooser_replicas_draw_from_their_own_streams(tmp_path: Path) -> None:
    """Two replicas with one seed serving one snapshot must not explore and sample in step, while
    two single-process engines with one seed stay reproducible draw for draw."""
    store = tmp_path / "c.db"
    titles = build_catalog(store, n_titles=6)
    clock = Clock()
    learner = engine(store, clock, None, "learner")
    a, b = (engine(store, clock, None, "chooser", explore_share=0.5) for _ in range(2))
    try:
        assert a.reload() or a.learned_seq == 0
        b.reload()
        assert a.health()["replica"]["stream"] != b.health()["replica"]["stream"]

        def draws(eng: Engine, who: str) -> list[tuple[str, str, float]]:
            out = []
            for i in range(40):  # a new user each page: no sticky repeats, only the streams decide
                for c in eng.choose(UserContext(f"{who}{i}", {"genre:crime": 0.9}), titles):
                    out.append((c.policy, c.artwork_id, c.probability))
            return out

        da, db = draws(a, "a"), draws(b, "b")
        explore_a = [p == "uniform" for p, _, _ in da][::len(titles)]
        explore_b = [p == "uniform" for p, _, _ in db][::len(titles)]
        assert 5 < sum(explore_a) < 35 and 5 < sum(explore_b) < 35  # each explores about half its pages
        assert explore_a != explore_b  # not the same explore pages in step
        assert [x[1] for x in da] != [x[1] for x in db]
    finally:
        for e in (a, b, learner):
            e.close()
    # One process, one seed: the same pages draw for draw (the demo's and the tests' determinism).
    runs = []
    for k in range(2):
        other = tmp_path / f"all{k}.db"
        build_catalog(other, n_titles=6)
        with Engine(other, EngineConfig(explore_share=0.5), clock=Clock(), start_timer=False) as eng:
            runs.append([(c.policy, c.artwork_id) for i in range(20)
                         for c in eng.choose(UserContext(f"u{i}"), titles)])
    assert runs[0] == runs[1]


def test_a_restarted_learner_holds_the_policy_of_one_that_learned_everything(tmp_path: Path,
                                                                               events_spec: str) -> None:
    store = tmp_path / "c.db"
    titles = build_catalog(store, n_titles=6)
    clock = Clock()
    rng = np.random.default_rng(1)
    learner = engine(store, clock, events_spec, "learner")
    a, b = engine(store, clock, events_spec, "chooser"), engine(store, clock, events_spec, "chooser")
    acked: dict[str, float] = {}
    try:
        traffic([a, b], clock, rng, titles, 20, acked)
        learner.tick()
        learner.snapshot()
        mid = learner.learned_seq
        traffic([a, b], clock, rng, titles, 20, acked)
        clock.t += WINDOW + 1
        learner.tick()  # learned past its snapshot ...
        assert learner.learned_seq > mid
        kill(learner)  # ... and killed before the next one
        traffic([a, b], clock, rng, titles, 10, acked)  # the choosers go on meanwhile
        learner = engine(store, clock, events_spec, "learner")  # snapshot + replay of the log after it
        assert learner.lineage["learned_seq"] == learner.learned_seq  # and snapshotted for the choosers
        assert learner.counters["replayed"] == learner.learned_seq - mid > 0
        clock.t += WINDOW + 1
        learner.tick()
        n = learner.events.max_learn_seq()
        assert learn_seqs(learner.events) == list(range(1, n + 1)) and learner.learned_seq == n
        mine, _ = replayed_from_scratch(store, events_spec)
        assert policy_state(learner.policy) == policy_state(mine)
    finally:
        for e in (a, b, learner):
            e.close()


def test_roles_are_checked_and_serve_flags_need_ray(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="role must be one of"):
        EngineConfig(role="both")
    with pytest.raises(ValueError, match="reload_interval_s"):
        EngineConfig(reload_interval_s=0)
    from bandit.cli import cli

    store = tmp_path / "c.db"
    build_catalog(store, n_titles=2)
    res = CliRunner().invoke(cli, ["--store", str(store), "serve", "--replicas", "3"])
    assert res.exit_code == 2 and "--replicas is for serving on Ray: add --ray" in res.output
    res = CliRunner().invoke(cli, ["--store", str(store), "serve", "--max-replicas", "3"])
    assert res.exit_code == 2 and "--max-replicas is for serving on Ray: add --ray" in res.output
    res = CliRunner().invoke(cli, ["--store", str(store), "serve", "--ray", "--replicas", "3", "--max-replicas", "2"])
    assert res.exit_code == 2 and "--max-replicas 2 is below --replicas 3" in res.output
    # Checked before Ray starts, with the words plain `serve` uses: a bad policy file, a held store.
    notes = tmp_path / "notes.txt"
    notes.write_text("not a policy")
    res = CliRunner().invoke(cli, ["--store", str(store), "serve", "--ray", "--policy", str(notes)])
    assert res.exit_code == 1 and f"cannot serve {store}: policy {notes}: not a saved policy file" in res.output, res.output
    fd = lock_store(f"{store}.events.db")
    try:
        res = CliRunner().invoke(cli, ["--store", str(store), "serve", "--ray"])
        assert res.exit_code == 1 and f"store {store} is already served" in res.output, res.output
    finally:
        unlock_store(fd)


# -- on Ray Serve ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.serve")
    tmp = tmp_path_factory.mktemp("ray")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp), logging_level="ERROR", log_to_driver=False)
    yield ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


class Load(threading.Thread):
    """Sequential pages + feedback over HTTP; remembers what the service acknowledged (200)."""

    def __init__(self, url: str, titles: list[str], seed: int) -> None:
        super().__init__(daemon=True)
        self.url, self.titles, self.rng = url, titles, np.random.default_rng(seed)
        self.decisions: set[str] = set()
        self.feedback: set[str] = set()
        self.failed = 0
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as c:
            i = 0
            while not self.halt.is_set():
                i += 1
                body = {"user_id": f"u{int(self.rng.integers(40))}",
                        "titles": list(self.rng.choice(self.titles, size=4, replace=False))}
                try:
                    r = c.post("/v1/choose", json=body)
                    if r.status_code != 200:
                        self.failed += 1
                        continue
                    events = [t["event_id"] for t in r.json()["results"]]
                    self.decisions.update(events)
                    ev = events[i % len(events)]
                    f = c.post("/v1/feedback", json={"event_id": ev, "click": True})
                    if f.status_code == 200:
                        self.feedback.add(ev)
                    else:
                        self.failed += 1
                except httpx.HTTPError:
                    self.failed += 1
                    time.sleep(0.05)


def _wait(what: str, check, timeout: float = 60.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
            if got:
                return got
        except Exception:  # noqa: BLE001 - still coming back
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def test_replicas_and_learner_survive_sigkill_under_load(tmp_path: Path, local_ray, events_spec: str) -> None:
    """On SQLite (one machine) and on PostgreSQL (the many-machine mode)."""
    ray = local_ray
    from bandit.rayserve import start

    store = tmp_path / "c.db"
    titles = build_catalog(store, n_titles=8)
    events = events_spec
    cfg = ServeConfig(store=str(store), port=free_port(),
                      engine=EngineConfig(events=events, feedback_window_s=3.0, session_ttl_s=5.0))
    svc = start(cfg, replicas=2, reload_interval_s=0.5, learner_snapshot_s=1.0)
    load = None
    try:
        replicas = svc.replica_pids()
        assert len(replicas) == 2
        learner_pid = ray.get(svc.learner.pid.remote())
        assert learner_pid not in replicas and os.getpid() not in replicas
        load = Load(svc.url, titles, seed=3)
        load.start()
        _wait("traffic", lambda: len(load.feedback) >= 15, timeout=30)
        victim = min(replicas)
        os.kill(victim, signal.SIGKILL)
        os.kill(learner_pid, signal.SIGKILL)
        served = len(load.decisions)
        _wait("traffic after the kills", lambda: len(load.decisions) >= served + 40, timeout=60)
        load.halt.set()
        load.join(timeout=30)
        # Serve replaced the replica; Ray restarted the learner, which restored snapshot + log.
        back = _wait("two live replicas", lambda: (lambda p: p if len(p) == 2 and victim not in p else None)(
            svc.replica_pids(tries=50)), timeout=60)
        assert victim not in back
        status = _wait("the learner", lambda: ray.get(svc.learner.status.remote(), timeout=30), timeout=60)
        assert status["pid"] != learner_pid
        time.sleep(3.5)  # every window (3 s) has passed: the learner closes them all
        log = open_event_log(events)
        try:
            def settled():
                st = ray.get(svc.learner.learn_now.remote(), timeout=30)
                return st if log.counts()["open"] == 0 and st["learned_seq"] == log.max_learn_seq() else None

            st = _wait("the learner to learn everything", settled, timeout=30)
            counts = log.counts()
            n = counts["joined"] + counts["closed"] + counts["corrections"]
            assert learn_seqs(log) == list(range(1, n + 1)) and st["learned_seq"] == n  # gap-free, all learned
            # Every acknowledged decision and feedback is in the log, once.
            ids = sorted(load.decisions)
            rows = log._query("SELECT event_id, COUNT(*) FROM decisions GROUP BY event_id")
            in_log = dict(rows)
            assert all(in_log.get(e) == 1 for e in ids), [e for e in ids if in_log.get(e) != 1][:5]
            fb = dict(log._query("SELECT event_id, COUNT(*) FROM feedback GROUP BY event_id"))
            assert all(fb.get(e) == 1 for e in load.feedback)
            assert len(in_log) >= len(ids) and counts["decisions"] == len(in_log)
            # The restarted learner: exactly the policy of a fresh replay of the whole log.
            saved = tmp_path / "learner.bayes"
            seq = ray.get(svc.learner.save_policy.remote(str(saved)))
            mine, upto = replayed_from_scratch(store, events)
            assert seq == upto == n
            assert state_of_bytes(saved.read_bytes()) == policy_state(mine)
            # The replicas converge to the learner's newest snapshot.
            ray.get(svc.learner.close.remote())  # final snapshot (and the lock goes)
            with httpx.Client(base_url=svc.url, timeout=10.0) as c:
                _wait("replicas on the final snapshot",
                      lambda: all(c.get("/health").json()["replica"]["snapshot_learned_seq"] == n for _ in range(6)),
                      timeout=30)
                assert "artwork_snapshot_age_seconds" in c.get("/metrics").text
        finally:
            log.close()
        assert load.failed < len(load.decisions)  # the kills cost some requests, not the service
    finally:
        if load is not None:
            load.halt.set()
        svc.stop()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_the_serve_command_with_ray_serves_and_stops_on_ctrl_c(tmp_path: Path, local_ray, stop_signal) -> None:
    """`artwork serve --ray` as an operator runs it: joins the cluster, autoscales 1-2 replicas,
    serves pages from a chooser replica (role in /health), and on Ctrl-C stops the replicas and the
    learner, whose final snapshot holds what it learned."""
    import subprocess
    import sys

    store = tmp_path / "c.db"
    titles = build_catalog(store, n_titles=3)
    port = free_port()
    log = tmp_path / "serve.log"
    address = local_ray.get_runtime_context().gcs_address
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARTWORK_", "RAY_ADDRESS"))}
    cmd = [str(Path(sys.executable).parent / "artwork"), "--store", str(store), "serve", "--ray", "--address", address,
           "--replicas", "1", "--max-replicas", "2", "--port", str(port), "--feedback-window", "1", "--reload-interval", "0.5"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def up():
            if proc.poll() is not None:
                raise AssertionError(f"serve --ray exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            r = httpx.get(url + "/health", timeout=2.0)
            return r.json() if r.status_code == 200 else None

        health = _wait("serve --ray", up, timeout=90)
        assert health["role"] == "chooser" and health["replica"]["pid"] != proc.pid
        # The cluster's own record of live actors, not this process's Serve client: an earlier
        # `serve --ray` in this cluster shut its controller down, and the client would still
        # point at that one.
        named = local_ray.util.list_named_actors(all_namespaces=True)
        live = [a["name"] for a in named if a["namespace"] == "serve" and "chooser" in a["name"]]
        assert 1 <= len(live) <= 2, named
        with httpx.Client(base_url=url, timeout=10.0) as c:
            r = c.post("/v1/choose", json={"user_id": "u1", "titles": titles})
            assert r.status_code == 200, r.text
            first = r.json()["results"][0]
            assert c.post("/v1/feedback", json={"event_id": first["event_id"], "click": True}).status_code == 200
        time.sleep(1.5)  # the other decisions' 1 s windows pass; the learner's next ticks close them
        proc.send_signal(stop_signal)
        try:  # a loaded 2-core box can take a while to stop Serve; the log says where it stood
            code = proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve --ray still running 180 s after Ctrl-C:\n{log.read_text()[-3000:]}") from None
        assert code == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    out = log.read_text()
    assert "1-2 (autoscaling on requests in flight) chooser replicas on Ray Serve" in out and "stopping" in out, out[-3000:]
    # The learner's final snapshot (written on stop) holds the click it learned from the log.
    log_db = open_event_log(f"{store}.events.db")
    try:
        snaps = log_db.snapshots()
        assert snaps and snaps[0][1] >= 1, snaps
    finally:
        log_db.close()
