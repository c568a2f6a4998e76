"""Open decisions (bandit.pending): counted in when logged, out when learned, reset from the log;
the default policy counts them as impressions when choosing and never when learning."""

from __future__ import annotations

import heapq
from pathlib import Path

import numpy as np

from bandit.bayes import BayesPolicy
from bandit.engine import Engine, EngineConfig
from bandit.features import Candidate, UserContext
from bandit.pending import Pending
from servekit import build_catalog


def test_counts_go_up_and_down_and_never_below_zero():
    p = Pending()
    p.add("t1", "a")
    p.add("t1", "a")
    p.add("t1", "b", 3)
    assert p.of("t1") == {"a": 2, "b": 3} and p.total == 5
    p.resolve("t1", "a")
    p.resolve("t2", "x")  # never counted here (a replayed or self-activated decision): no change
    assert p.of("t1") == {"a": 1, "b": 3} and p.total == 4
    p.resolve("t1", "a")
    p.resolve("t1", "a")
    assert p.of("t1") == {"b": 3} and p.total == 3
    snapshot = p.of("t1")
    p.add("t1", "b")
    assert snapshot == {"b": 3}  # `of` hands out a copy
    p.reset([("t3", "c", 2), ("t3", "d", 0)])
    assert p.of("t1") == {} and p.of("t3") == {"c": 2} and p.total == 2


def _cands(k: int = 4) -> list[Candidate]:
    return [Candidate(f"a{i}", {"genre:drama": 0.2 * i}) for i in range(k)]


def test_the_default_policy_counts_open_decisions_when_choosing_and_never_when_learning():
    c = _cands()
    u = UserContext("u", {"genre:drama": 0.5}, device="tv")
    rng = np.random.default_rng(0)
    outcomes = [(f"a{rng.integers(4)}", float(rng.random() < 0.3)) for _ in range(200)]
    plain, watched = BayesPolicy(seed=0), BayesPolicy(seed=0)
    open_ = Pending()
    watched.attach_pending(open_)
    for i, (a, r) in enumerate(outcomes):
        open_.add("t1", f"a{i % 4}", 3)  # whatever is open, learning must not see it
        plain.learn_one(u, "t1", c, a, 0.25, r)
        watched.learn_one(u, "t1", c, a, 0.25, r)
    assert watched.counts == plain.counts and watched.evidence == plain.evidence
    assert np.array_equal(watched.match_mean, plain.match_mean)
    before = plain.distribution(u, "t1", c)
    open_.reset([("t1", "a0", 300)])  # a0 was shown 300 times and none of those has come back
    after = watched.distribution(u, "t1", c)
    assert after["a0"] < before["a0"] - 0.05  # read as 300 more impressions without a click
    watched.attach_pending(None)
    assert watched.distribution(u, "t1", c) == before


def _launch(pol: BayesPolicy, seed: int, open_: Pending | None, n: int = 300, window: int = 150) -> float:
    """A new title: one artwork at 35%, three at 3%; a click is learned after one decision, a miss
    only when its window of `window` decisions closes. Returns the mean click rate shown."""
    rates = {"a0": 0.35, "a1": 0.03, "a2": 0.03, "a3": 0.03}
    c = [Candidate(a, {}) for a in rates]
    pol.attach_pending(open_)
    draws = np.random.default_rng(seed).random(n)
    due: list[tuple[int, int, tuple]] = []
    total = 0.0
    for i in range(n):
        while due and due[0][0] <= i:
            args = heapq.heappop(due)[2]
            if open_ is not None:
                open_.resolve("t1", args[3])
            pol.learn_one(*args)
        u = UserContext(f"u{i}")
        d = pol.choose(u, "t1", c)
        r = float(draws[i] < rates[d.chosen])
        if open_ is not None:
            open_.add("t1", d.chosen)
        heapq.heappush(due, (i + 1 if r else i + window, i, (u, "t1", c, d.chosen, d.probability, r)))
        total += rates[d.chosen]
    return total / n


def test_at_a_launch_open_decisions_keep_early_clicks_from_blinding_the_counts():
    # Without them every learned outcome of the first window is a click: each artwork and the
    # title read near 100%, and the counts cannot tell the 35% artwork from the 3% ones.
    gains = [_launch(BayesPolicy(seed=s), s, Pending()) - _launch(BayesPolicy(seed=s), s, None) for s in range(8)]
    assert min(gains) > 0.0 and np.mean(gains) > 0.006


def test_the_engine_counts_what_the_log_holds_open(tmp_path: Path):
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=3)
    now = [1_000_000.0]
    cfg = EngineConfig(policy="bayes", feedback_window_s=10.0, session_ttl_s=3600.0)

    def open_of(eng: Engine) -> dict[tuple[str, str], int]:
        pend = eng.policy.pending
        assert pend is not None  # the served policy chooses with the process's count
        return {(t, a): n for t in ("t00", "t01", "t02") for a, n in pend.of(t).items()}

    def log_of(eng: Engine) -> dict[tuple[str, str], int]:
        return {(t, a): n for t, a, n in eng.events.open_counts()}

    eng = Engine(store, cfg, clock=lambda: now[0], start_timer=False).start()
    page = eng.choose(UserContext("ann"), ["t00", "t01", "t02"])
    assert sum(open_of(eng).values()) == 3 and open_of(eng) == log_of(eng)
    eng.feedback(page[0].event_id, click=True)  # learned: no longer open
    assert sum(open_of(eng).values()) == 2 and open_of(eng) == log_of(eng)
    later = eng.choose(UserContext("bo"), ["t00", "t01"], activate=False)  # not shown yet: not open
    assert sum(open_of(eng).values()) == 2
    eng.activate(later[1].event_id)
    assert sum(open_of(eng).values()) == 3 and open_of(eng) == log_of(eng)
    # A restart (the log as a SIGKILL leaves it) counts the open decisions again from the log.
    eng.started = False
    eng.close()
    eng = Engine(store, cfg, clock=lambda: now[0], start_timer=False).start()
    assert sum(open_of(eng).values()) == 3 and open_of(eng) == log_of(eng)
    now[0] += 11.0
    eng.close_expired()  # every window closed at reward 0 and learned
    assert open_of(eng) == {} and log_of(eng) == {}
    eng.close()


def test_run_world_counts_open_decisions_as_the_service_does(monkeypatch):
    from bandit.worlds import make_world, run_world

    def play(world: str, count: bool) -> np.ndarray:
        pol = BayesPolicy(seed=1)
        if not count:
            monkeypatch.setattr(pol, "attach_pending", lambda pending: None)
        run = run_world(make_world(world, seed=1), pol, 300, seed=1)
        assert pol.pending is None  # detached when the run ends
        return run.chosen
    # Outcomes learned before the next page: nothing is open when a page is chosen (a page's
    # decisions open together once it is out), so the run is the one without the count.
    assert np.array_equal(play("clusters", True), play("clusters", False))
    # Misses learned when a 200-page window closes: the count changes what is chosen.
    assert not np.array_equal(play("window", True), play("window", False))


def test_count_open_off_chooses_without_open_decisions(tmp_path: Path):
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=2)
    cfg = EngineConfig(policy="bayes", feedback_window_s=10.0, count_open=False)
    with Engine(store, cfg, clock=lambda: 1_000_000.0, start_timer=False).start() as eng:
        eng.choose(UserContext("ann"), ["t00", "t01"])
        assert eng.policy.pending is None  # `serve --no-count-open`: clients post their misses themselves


def test_the_arms_of_an_ab_split_choose_without_the_shared_count(tmp_path: Path):
    from bandit.split import SplitPolicy

    store = tmp_path / "c.db"
    build_catalog(store, n_titles=2)
    cfg = EngineConfig(policy="bayes", ab="bayes", ab_share=0.5, feedback_window_s=10.0)
    with Engine(store, cfg, clock=lambda: 1_000_000.0, start_timer=False).start() as eng:
        eng.choose(UserContext("ann"), ["t00", "t01"])
        assert isinstance(eng.policy, SplitPolicy)
        # One process's count holds both arms' users; each arm's counts hold only its own.
        assert eng.policy.a.pending is None and eng.policy.b.pending is None
