"""The Bayesian probit Thompson policy: a pure distribution, exact persistence, and what it learns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bandit.bayes import BayesConfig, BayesPolicy, art_features, user_features
from bandit.features import Candidate, UserContext
from bandit.policy import PolicyError
from bandit.registry import load_policy, make_policy

ROOT = Path(__file__).resolve().parent.parent


def cands(n: int = 3, title: str = "t1") -> list[Candidate]:
    return [Candidate(f"{title}-a{i}", {"mood:dark": 0.2 + 0.3 * i, f"emb:{i % 2}": 0.5 - i * 0.2}) for i in range(n)]


def user(uid: str = "u1", device: str = "tv", taste: dict | None = None) -> UserContext:
    return UserContext(uid, taste={"genre:crime": 0.7} if taste is None else taste, device=device, hour=20,
                       country="US", row=1)


def test_feature_blocks_have_unit_norm_for_warm_and_cold_users():
    for u in (user(), user(taste={}), UserContext("x")):
        vals = np.array([v for _, v in user_features(u)])
        assert np.isclose(np.sum(vals**2), 1.0)
    assert ("taste=none", pytest.approx(np.sqrt(0.5))) in [(k, v) for k, v in user_features(user(taste={}))]
    vals = np.array([v for _, v in art_features(cands()[1])])
    assert np.isclose(np.sum(vals**2), 1.0)


def test_distribution_is_pure_and_choose_samples_it():
    pol = BayesPolicy(seed=3)
    c = cands(4)
    d1 = pol.distribution(user(), "t1", c)
    assert set(d1) == {x.artwork_id for x in c} and np.isclose(sum(d1.values()), 1.0)
    state = pol._rng.bit_generator.state
    assert pol.distribution(user(), "t1", c) == d1  # asking twice changes nothing ...
    assert pol._rng.bit_generator.state == state  # ... and does not move the sampling stream
    dec = pol.choose(user(), "t1", c)
    assert dec.probability == d1[dec.chosen] and dec.distribution == d1


def test_learns_the_best_artwork_for_everyone():
    rng = np.random.default_rng(100)  # not the policy seed: its choice draws would equal the clicks
    pol = BayesPolicy(seed=0)
    c = cands(3)
    rates = {"t1-a0": 0.03, "t1-a1": 0.10, "t1-a2": 0.04}
    for i in range(3000):
        u = user(f"u{i % 200}", device=["tv", "mobile", "web"][i % 3])
        d = pol.choose(u, "t1", c)
        pol.learn_one(u, "t1", c, d.chosen, d.probability, float(rng.random() < rates[d.chosen]))
    dist = pol.distribution(user("new"), "t1", c)
    assert dist["t1-a1"] > 0.8
    p = pol.predict(user("new"), "t1", c)
    assert p[1] == max(p) and 0.05 < p[1] < 0.2


def test_learns_a_preference_that_depends_on_the_context():
    rng = np.random.default_rng(101)
    pol = BayesPolicy(seed=1)
    c = cands(2)
    # tv viewers click a0, mobile viewers a1; taste is the same for everybody.
    rate = {("tv", "t1-a0"): 0.12, ("tv", "t1-a1"): 0.03, ("mobile", "t1-a0"): 0.03, ("mobile", "t1-a1"): 0.12}
    for i in range(4000):
        dev = "tv" if i % 2 else "mobile"
        u = user(f"u{i}", device=dev)
        d = pol.choose(u, "t1", c)
        pol.learn_one(u, "t1", c, d.chosen, d.probability, float(rng.random() < rate[(dev, d.chosen)]))
    assert pol.distribution(user("x", device="tv"), "t1", c)["t1-a0"] > 0.8
    assert pol.distribution(user("y", device="mobile"), "t1", c)["t1-a1"] > 0.8


def test_forgetting_follows_an_artwork_whose_appeal_changes():
    c = cands(2)

    def share_of_new_best(forget: float, seed: int) -> float:
        rng = np.random.default_rng(200 + seed)
        pol = BayesPolicy(seed=seed, forget=forget, change_z=0.0)  # forgetting alone, no change detection
        picks = []
        for i in range(6000):
            best = "t1-a0" if i < 4500 else "t1-a1"
            u = user(f"u{i}")
            d = pol.choose(u, "t1", c)
            pol.learn_one(u, "t1", c, d.chosen, d.probability, float(rng.random() < (0.15 if d.chosen == best else 0.03)))
            picks.append(d.chosen == "t1-a1")
        return float(np.mean(picks[4500:]))

    gains = [share_of_new_best(2e-3, seed) - share_of_new_best(0.0, seed) for seed in range(3)]
    assert min(gains) > 0.0 and np.mean(gains) > 0.05


def _changing_title(pol: BayesPolicy, seed: int, before: int, after: int) -> tuple[list[str], list[int]]:
    """Play one title whose favourite (a0, 12%) falls to 4% after `before` outcomes while a2 (7%)
    rises to 14%; returns the artworks shown and `pol.restarts` after each outcome."""
    rng = np.random.default_rng(300 + seed)
    c = cands(3)
    shown, restarts = [], []
    for i in range(before + after):
        rates = {"t1-a0": 0.12, "t1-a1": 0.05, "t1-a2": 0.07} if i < before else {
            "t1-a0": 0.04, "t1-a1": 0.05, "t1-a2": 0.14}
        u = user(f"u{i % 300}", device=["tv", "mobile", "web"][i % 3])
        d = pol.choose(u, "t1", c)
        pol.learn_one(u, "t1", c, d.chosen, d.probability, float(rng.random() < rates[d.chosen]))
        shown.append(d.chosen)
        restarts.append(pol.restarts)
    return shown, restarts


@pytest.mark.parametrize("seed", [0, 1])
def test_a_title_restarts_when_its_favourite_stops_pulling_and_not_before(seed):
    before, after = 5000, 3000
    pol = BayesPolicy(seed=seed)
    shown, restarts = _changing_title(pol, seed, before, after)
    assert restarts[before - 1] == 0  # 5,000 stationary outcomes: no false alarm
    assert pol.restarts >= 1
    first = pol.last_restarts[0]
    assert first["artwork_id"] == "t1-a0" and first["z"] < 0 and first["version"] >= before
    assert restarts.index(1) < before + 1500  # found within half the changed stretch
    blind, _ = _changing_title(BayesPolicy(seed=seed, change_z=0.0), seed, before, after)
    new_best = [np.mean([s == "t1-a2" for s in run[before:]]) for run in (shown, blind)]
    assert new_best[0] > new_best[1] + 0.2  # the image that rose is found sooner than by counting on


def test_the_hour_of_the_day_is_not_taken_for_a_change(monkeypatch):
    """Every artwork clicks 1.65x more at prime time and 0.6x in the morning, on a clock whose day
    is 6,000 outcomes: an artwork's recent outcomes keep coming from one part of the day."""
    import bandit.bayes as bayes

    def play(seed: int) -> int:
        rng = np.random.default_rng(400 + seed)
        pol = BayesPolicy(seed=seed)
        c = cands(3)
        base = {"t1-a0": 0.10, "t1-a1": 0.05, "t1-a2": 0.07}
        for i in range(15_000):
            hour = 24 * (i % 6000) // 6000
            swing = np.exp(0.5 * np.cos(2 * np.pi * (hour - 21) / 24))
            u = UserContext(f"u{i % 300}", taste={"genre:crime": 0.7}, device="tv", hour=hour, country="US", row=1)
            d = pol.choose(u, "t1", c)
            pol.learn_one(u, "t1", c, d.chosen, d.probability, float(rng.random() < base[d.chosen] * swing))
        return pol.restarts

    assert [play(seed) for seed in (0, 1)] == [0, 0]
    # The same days with every hour in one slot (no scaling by hour): the cycle reads as changes.
    monkeypatch.setattr(bayes, "_hour_slot", lambda hour: 24)
    assert min(play(seed) for seed in (0, 1)) >= 1


def test_change_statistic_reads_a_ratio_that_moved():
    from bandit.bayes import change_statistic

    # The same observed/predicted ratio in both parts: no change, whatever the ratio.
    assert change_statistic(10.0, 10.0, 9.0, 100.0, 100.0, 90.0) == 0.0
    assert abs(change_statistic(5.0, 10.0, 9.0, 50.0, 100.0, 90.0)) < 1e-9
    fell, rose = change_statistic(4.0, 20.0, 18.0, 200.0, 200.0, 180.0), change_statistic(36.0, 20.0, 18.0, 200.0, 200.0, 180.0)
    assert fell < -3.0 and rose > 3.0
    # A rare image's burst is read on the count scale: weaker than a normal approximation says.
    normal = (14.0 - 4.0) / np.sqrt(3.9)
    assert 3.0 < change_statistic(14.0, 4.0, 3.9, 1000.0, 1000.0, 975.0) < normal - 0.5
    # Sums decayed over fewer outcomes than they weigh (variance below the Poisson one) test stronger.
    assert abs(change_statistic(4.0, 20.0, 9.0, 200.0, 200.0, 180.0)) > abs(fell)
    assert change_statistic(0.0, 0.0, 0.0, 10.0, 10.0, 9.0) == 0.0  # nothing recent: nothing to say


def test_change_detection_survives_save_load_and_a_malformed_snapshot_is_refused(tmp_path):
    import zipfile

    pol = BayesPolicy(seed=0)
    _changing_title(pol, 0, 5000, 1500)
    assert pol.restarts >= 1
    pol.save(tmp_path / "p.bayes")
    back = load_policy(tmp_path / "p.bayes")
    assert back.restarts == pol.restarts and back.last_restarts == pol.last_restarts
    assert back.describe() == pol.describe()  # what `artwork report` shows of a snapshot
    assert back.recent == pol.recent and back.counts == pol.counts
    assert back.distribution(user("q"), "t1", cands(3)) == pol.distribution(user("q"), "t1", cands(3))
    with zipfile.ZipFile(tmp_path / "p.bayes") as z:
        meta, weights = json.loads(z.read("meta.json")), z.read("weights.npz")
    for field, bad in (("recent", {"t1": {"t1-a0": [1.0, 2.0]}}), ("restarts", "many"), ("last_restarts", [{"z": 1}])):
        broken = {**meta, field: bad}
        with zipfile.ZipFile(tmp_path / "bad.bayes", "w") as z:
            z.writestr("meta.json", json.dumps(broken))
            z.writestr("weights.npz", weights)
        with pytest.raises(PolicyError, match="change detector"):
            load_policy(tmp_path / "bad.bayes")


def test_fractional_and_out_of_range_rewards():
    c = cands(2)
    a, b, half = BayesPolicy(seed=0), BayesPolicy(seed=0), BayesPolicy(seed=0)
    for pol, r in ((a, 1.0), (b, 0.0), (half, 0.5)):
        pol.learn_one(user(), "t1", c, "t1-a0", 0.5, r)
    assert a.predict(user(), "t1", c)[0] > half.predict(user(), "t1", c)[0] > b.predict(user(), "t1", c)[0]
    clipped = BayesPolicy(seed=0)
    clipped.learn_one(user(), "t1", c, "t1-a0", 0.5, 7.0)  # clipped to a click
    assert np.allclose(clipped.predict(user(), "t1", c), a.predict(user(), "t1", c))
    with pytest.raises(PolicyError, match="probability"):
        a.learn_one(user(), "t1", c, "t1-a0", 0.0, 1.0)
    with pytest.raises(PolicyError, match="not among"):
        a.learn_one(user(), "t1", c, "nope", 0.5, 1.0)


def test_save_load_is_exact(tmp_path):
    rng = np.random.default_rng(104)
    pol = make_policy("bayes", seed=5)
    c = cands(3)
    for i in range(200):
        d = pol.choose(user(f"u{i}"), "t1", c)
        pol.learn_one(user(f"u{i}"), "t1", c, d.chosen, d.probability, float(rng.random() < 0.2))
    path = tmp_path / "p.bayes"
    pol.save(path)
    back = load_policy(path)
    assert isinstance(back, BayesPolicy) and back.version == pol.version == 200
    assert back.distribution(user("q"), "t1", c) == pol.distribution(user("q"), "t1", c)
    assert [back.choose(user("q"), "t1", c).chosen for _ in range(20)] == [
        pol.choose(user("q"), "t1", c).chosen for _ in range(20)]
    (tmp_path / "bad").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(PolicyError):
        load_policy(tmp_path / "bad")


def test_hashing_is_stable_across_processes(tmp_path):
    # Python's str hash is salted per process; a restored policy must index the same weights.
    pol = BayesPolicy(seed=0)
    c = cands(3)
    for i in range(50):
        pol.learn_one(user(f"u{i}"), "t1", c, "t1-a2", 1.0 / 3, 1.0)
    path = tmp_path / "p.bayes"
    pol.save(path)
    code = (
        "import json,sys; sys.path.insert(0, sys.argv[2]);"
        "from bandit.registry import load_policy; from tests.test_bayes import cands, user;"
        "print(json.dumps(load_policy(sys.argv[1]).distribution(user(), 't1', cands(3))))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path), str(ROOT)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"}, check=True)
    assert json.loads(out.stdout) == pol.distribution(user(), "t1", c)


def test_config_is_validated():
    with pytest.raises(ValueError, match="art_strength"):
        BayesConfig(art_strength=0)
    with pytest.raises(ValueError, match="prior_rate"):
        BayesConfig(prior_rate=1.0)
    with pytest.raises(ValueError, match="forget"):
        BayesConfig(forget=1.5)
    for bad in (-1.0, 1.0, 60.0):
        with pytest.raises(ValueError, match="change_z"):
            BayesConfig(change_z=bad)
    with pytest.raises(ValueError, match="change_window"):
        BayesConfig(change_window=5.0)
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("nope")


# -- on small seeded worlds: what the guard and the residual buy --------------------------------


def _play(world_name: str, policy_name: str, seed: int, pages: int = 1500):
    from bandit.worlds import WORLDS, run_world

    pol = make_policy(policy_name, seed=seed)
    run = run_world(WORLDS[world_name](seed=seed, n_titles=6), pol, pages, seed=seed)
    return pol, run.summary(last_share=1 / 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_guard_keeps_the_residual_out_where_context_carries_nothing(seed):
    pol, bayes = _play("appeal", "bayes", seed)
    _, thompson = _play("appeal", "thompson", seed)
    assert pol.gate_weight() < 0.5  # personalising has not proven itself
    assert bayes["policy"] > thompson["policy"] - 0.005


@pytest.mark.parametrize("seed", [0, 1])
def test_personalises_where_context_carries_signal_and_beats_per_title_thompson(seed):
    pol, bayes = _play("linear", "bayes", seed)
    _, thompson = _play("linear", "thompson", seed)
    # Same users, same coin flips: the difference is the policies'.
    assert bayes["policy"] > thompson["policy"] + 0.005
    assert bayes["policy"] > bayes["best_fixed"]  # better than any single image per title
    # In this world a taste for a genre meets the artwork's look of it: the pooled weight learns so.
    assert pol.match_mean[pol.config.match_kinds.index("genre")] > 0.1


@pytest.mark.parametrize("seed", [0, 1])
def test_guard_opens_for_the_residual_where_it_pays(seed):
    from bandit.worlds import WORLDS, run_world

    # Without the match term the per-artwork residual carries the personal signal, and the guard
    # (which starts at Phi(-gate_shift)) must have found the evidence to let it in.
    pol = BayesPolicy(BayesConfig(seed=seed, match_kinds=()))
    run = run_world(WORLDS["linear"](seed=seed, n_titles=6), pol, 1500, seed=seed).summary(last_share=1 / 3)
    assert pol.gate_weight() > 0.5
    assert run["policy"] > run["best_fixed"]


# -- the personal term: exact statistics, order-free --------------------------------------------


def _outcomes(n: int = 300, seed: int = 7):
    rng = np.random.default_rng(seed)
    c = cands(3)
    out = []
    for i in range(n):
        u = user(f"u{i % 40}", device=["tv", "mobile"][i % 2], taste={"genre:crime": float(rng.random())})
        out.append((u, c[int(rng.integers(3))].artwork_id, float(rng.random() < 0.3)))
    return c, out


def _personal(pol: BayesPolicy, u: UserContext, c: list[Candidate]) -> np.ndarray:
    """The per-artwork linear part of the residual alone (shared weights at their prior mean)."""
    d = pol._design(u, "t1", c)
    _, _, rates = pol._offsets("t1", d["ids"])
    saved = pol.mean["shared"].copy()
    pol.mean["shared"][:] = 0.0
    try:
        return pol._residual(d, rates)
    finally:
        pol.mean["shared"][:] = saved


def test_personal_term_is_order_free_and_corrections_are_exact():
    c, outs = _outcomes()
    forward, backward, corrected = BayesPolicy(seed=0), BayesPolicy(seed=0), BayesPolicy(seed=0)
    # Clicks first, then misses: how the service learns when misses wait for their window to close.
    for pol, seq in ((forward, outs), (backward, sorted(outs, key=lambda o: -o[2]))):
        for u, chosen, r in seq:
            pol.learn_one(u, "t1", c, chosen, 0.5, r)
    # Every click first learned as a miss, then corrected (a late click): the same statistics.
    for u, chosen, r in outs:
        corrected.learn_one(u, "t1", c, chosen, 0.5, 0.0)
    for u, chosen, r in outs:
        if r:
            corrected.relearn(u, "t1", c, chosen, 0.5, 0.0, r)
    probe = user("probe", taste={"genre:crime": 0.9})
    ref = _personal(forward, probe, c)
    assert np.abs(ref).max() > 1e-3  # the probe is scored by something learned, not the prior
    for pol in (backward, corrected):
        assert np.allclose(_personal(pol, probe, c), ref, atol=1e-12)
        for a in ("t1-a0", "t1-a1", "t1-a2"):
            mine, theirs = pol.arms["t1"][a], forward.arms["t1"][a]
            assert mine.n == theirs.n and np.isclose(mine.sy, theirs.sy)
            assert np.allclose(mine.sxx, theirs.sxx) and np.allclose(mine.sxy, theirs.sxy)


def test_save_load_keeps_the_personal_statistics(tmp_path):
    c, outs = _outcomes()
    pol = BayesPolicy(seed=0, gate=False)
    for u, chosen, r in outs:
        pol.learn_one(u, "t1", c, chosen, 0.5, r)
    pol.save(tmp_path / "p.bayes")
    back = load_policy(tmp_path / "p.bayes")
    probe = user("probe", taste={"genre:crime": 0.1})
    assert np.array_equal(back.predict(probe, "t1", c), pol.predict(probe, "t1", c))
    assert not np.allclose(BayesPolicy(seed=0, gate=False).predict(probe, "t1", c), pol.predict(probe, "t1", c))
    # A snapshot of the earlier format is refused (the engine then replays the event log instead).
    import zipfile

    with zipfile.ZipFile(tmp_path / "p.bayes") as z:
        meta, weights = json.loads(z.read("meta.json")), z.read("weights.npz")
    meta["format"] = 1
    with zipfile.ZipFile(tmp_path / "old.bayes", "w") as z:
        z.writestr("meta.json", json.dumps(meta))
        z.writestr("weights.npz", weights)
    with pytest.raises(PolicyError, match="format"):
        load_policy(tmp_path / "old.bayes")


def test_a_page_in_one_call_is_the_same_as_title_by_title(tmp_path):
    """`choose_many` shares the user's work across a page; it must not change a single number:
    the same distributions, choices and generator state as one `choose` per title."""
    rng = np.random.default_rng(5)
    titles = {f"t{t}": [Candidate(f"t{t}-a{i}", {"mood:dark": float(rng.random()), "genre:crime": float(rng.random()),
                                                 f"emb:{i}": 0.3}) for i in range(2 + t % 4)] for t in range(12)}
    users = [user(f"u{i}", device=("tv", "web")[i % 2], taste={"genre:crime": float(rng.random()),
                                                                "mood:dark": float(rng.random())}) for i in range(30)]
    pol = BayesPolicy(seed=3)
    for i in range(600):  # enough outcomes that every artwork has a personal fit and the guard is open a little
        u, t = users[i % 30], f"t{i % 12}"
        d = pol.choose(u, t, titles[t])
        pol.learn_one(u, t, titles[t], d.chosen, d.probability, float(rng.random() < 0.2 + 0.5 * (u.device == "tv")))
    assert any(len(v) > 1 for v in pol.arms.values())
    pol.save(tmp_path / "p.bayes")
    one_by_one = BayesPolicy.load(tmp_path / "p.bayes")
    from bandit.policy import TitleRequest
    requests = [TitleRequest(t, c, pinned=("t3-a1" if t == "t3" else None), disabled=(["t5-a0"] if t == "t5" else []))
                for t, c in titles.items()]
    for u in users[:8]:
        page = pol.choose_many(u, requests, exclude=["t7-a1"])
        single = [one_by_one.choose(u, r.title_id, r.candidates, ["t7-a1"], pinned=r.pinned, disabled=r.disabled)
                  for r in requests]
        assert [(d.chosen, d.probability, d.distribution) for d in page] == \
            [(d.chosen, d.probability, d.distribution) for d in single]
    assert page[3].distribution == {c.artwork_id: float(c.artwork_id == "t3-a1") for c in titles["t3"]}
    assert "t5-a0" not in page[5].distribution and "t7-a1" not in page[7].distribution
    # A title that cannot be served takes its error's place; the rest of the page is served.
    bad = pol.choose_many(users[0], [requests[0], TitleRequest("t1", titles["t1"], disabled=[c.artwork_id for c in titles["t1"]])])
    assert bad[0].title_id == "t0" and isinstance(bad[1], PolicyError)


# -- taste segments -----------------------------------------------------------------------------


def _segment_users(n: int, rng: np.random.Generator) -> list[tuple[UserContext, int]]:
    """Two taste groups spread over many noisy keys (each user shows 3 of its group's 6 genres)."""
    out = []
    for i in range(n):
        g = int(rng.integers(2))
        keys = rng.choice(6, size=3, replace=False)
        taste = {f"genre:{'ab'[g]}{k}": round(float(0.5 + 0.4 * rng.random()), 3) for k in keys}
        out.append((UserContext(f"u{i}", taste=taste, device="tv", hour=20, country="US", row=1), g))
    return out


def test_segments_are_fitted_once_from_tastes_and_are_the_same_in_every_process(tmp_path):
    rng = np.random.default_rng(7)
    users = _segment_users(300, rng)
    c = cands(3)
    a = BayesPolicy(seed=4, segments=4, segment_after=120)
    b = BayesPolicy(seed=4, segments=4, segment_after=120)
    for i, (u, _) in enumerate(users[:119]):
        for pol in (a, b):
            pol.learn_one(u, "t1", c, c[i % 3].artwork_id, 1 / 3, 0.0)
    assert a.segment_centres.shape[0] == 0  # not yet: 119 outcomes
    assert a._design(users[0][0], "t1", c)["x"][a.config.personal_dims:].sum() == 0.0
    a.save(tmp_path / "before.bayes")  # the sample the segments will be fitted from travels too
    early = load_policy(tmp_path / "before.bayes")
    for pol in (a, b, early):
        pol.learn_one(users[119][0], "t1", c, c[0].artwork_id, 1 / 3, 0.0)
    assert a.segment_centres.shape[0] == 4 and a._segment_sample is None
    assert np.array_equal(a.segment_centres, b.segment_centres)
    assert np.array_equal(a.segment_centres, early.segment_centres) and a.segment_keys == early.segment_keys
    # Every user gets one segment, the nearest centre; the two taste groups do not share one.
    seg = {}
    for u, g in users:
        x = a._design(u, "t1", c)["x"][a.config.personal_dims:]
        assert np.count_nonzero(x) == 1 and x.max() == a.config.segment_weight
        seg.setdefault(g, set()).add(int(np.argmax(x)))
    assert not seg[0] & seg[1]
    # Later outcomes never refit them.
    centres = a.segment_centres.copy()
    for i, (u, _) in enumerate(users[120:]):
        a.learn_one(u, "t1", c, c[i % 3].artwork_id, 1 / 3, 1.0)
    assert np.array_equal(a.segment_centres, centres)
    a.save(tmp_path / "after.bayes")
    back = load_policy(tmp_path / "after.bayes")
    probe = users[3][0]
    assert np.array_equal(back.predict(probe, "t1", c), a.predict(probe, "t1", c))


def test_an_artwork_one_segment_clicks_is_ranked_first_for_that_segment():
    rng = np.random.default_rng(11)
    users = _segment_users(4000, rng)
    c = cands(2)
    pol = BayesPolicy(seed=0, gate=False, segments=4, segment_after=200)
    clicks = {0: {"t1-a0": 0.25, "t1-a1": 0.05}, 1: {"t1-a0": 0.05, "t1-a1": 0.25}}
    for i, (u, g) in enumerate(users[:3000]):
        chosen = c[i % 2].artwork_id  # uniformly logged
        pol.learn_one(u, "t1", c, chosen, 0.5, float(rng.random() < clicks[g][chosen]))
    right = [int(np.argmax(pol.predict(u, "t1", c))) == g for u, g in users[3000:]]
    assert np.mean(right) > 0.9


def test_a_snapshot_with_malformed_segments_is_refused(tmp_path):
    import zipfile

    pol = BayesPolicy(seed=0, segments=2, segment_after=50)
    for i, (u, _) in enumerate(_segment_users(60, np.random.default_rng(1))):
        pol.learn_one(u, "t1", cands(2), "t1-a0", 0.5, float(i % 2))
    pol.save(tmp_path / "p.bayes")
    with zipfile.ZipFile(tmp_path / "p.bayes") as z:
        meta, weights = json.loads(z.read("meta.json")), z.read("weights.npz")
    meta["segment_keys"] = meta["segment_keys"][:-1]  # one key fewer than the centres have
    with zipfile.ZipFile(tmp_path / "bad.bayes", "w") as z:
        z.writestr("meta.json", json.dumps(meta))
        z.writestr("weights.npz", weights)
    with pytest.raises(PolicyError, match="taste segments"):
        load_policy(tmp_path / "bad.bayes")
    with pytest.raises(ValueError, match="segment_after"):
        BayesConfig(segments=8, segment_after=10)


def test_the_segment_sample_keeps_a_users_strongest_tastes_only():
    pol = BayesPolicy(seed=0, segments=2, segment_after=50)
    taste = {f"genre:g{i}": round(0.01 * (i + 1), 2) for i in range(100)}
    pol.learn_one(UserContext("wide", taste=taste, device="tv"), "t1", cands(2), "t1-a0", 0.5, 1.0)
    kept = pol._segment_sample[0]
    assert len(kept) == 32 and set(kept) == {f"taste:genre:g{i}" for i in range(68, 100)}


# -- taste meets tag: one pooled weight per kind ------------------------------------------------


def _fan_titles(titles: list[str]) -> dict[str, list[Candidate]]:
    """Per title: a close-up of Ann (as the face pipeline tags it) and a scene without faces."""
    return {t: [Candidate(f"{t}-ann", {"actor:Ann": 0.95, "genre:drama": 0.8, "face:one": 1.0, "emb:0": 0.3}),
                Candidate(f"{t}-scene", {"genre:drama": 0.8, "emb:0": -0.3})] for t in titles}


def _learn_fans(pol: BayesPolicy, fan_gain: float, n: int = 3000, seed: int = 0) -> None:
    """Uniformly explored outcomes on three titles: Ann's fans click her close-up 30% of the time
    (or as often as the scene when fan_gain is 0), everyone else 10% whatever is shown."""
    rng = np.random.default_rng(seed)
    titles = _fan_titles(["t1", "t2", "t3"])
    for i in range(n):
        fan = rng.random() < 0.3
        taste = {"actor:Ann": 1.0, "genre:drama": 0.5} if fan else {"genre:drama": 0.5, "actor:Bo": 1.0 * (i % 2)}
        title = ["t1", "t2", "t3"][int(rng.integers(3))]
        k = int(rng.integers(2))
        p = 0.1 + (fan_gain if fan and k == 0 else 0.0)
        pol.learn_one(UserContext(f"u{i % 500}", taste=taste, device="tv"), title, titles[title],
                      titles[title][k].artwork_id, 0.5, float(rng.random() < p))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_match_weight_carries_a_favourite_actor_to_a_title_no_fan_has_seen(seed):
    pol = BayesPolicy(seed=seed, segments=0)
    _learn_fans(pol, fan_gain=0.2, seed=seed)
    assert pol.match_mean[pol.config.match_kinds.index("actor")] > 0.3
    new = _fan_titles(["t9"])["t9"]
    fan = UserContext("new-fan", taste={"actor:Ann": 1.0, "genre:drama": 0.5}, device="tv")
    other = UserContext("new-other", taste={"genre:drama": 0.5}, device="tv")
    with_match = {who: pol.predict(u, "t9", new) for who, u in (("fan", fan), ("other", other))}
    pol.match_mean[:] = 0.0  # the same policy without what the match weights learned
    without = {who: pol.predict(u, "t9", new) for who, u in (("fan", fan), ("other", other))}
    lift = {who: (with_match[who][0] - with_match[who][1]) - (without[who][0] - without[who][1]) for who in with_match}
    # The match term puts Ann's close-up ahead for her fan, and not for a viewer who is not one.
    assert lift["fan"] > 0.02 and lift["other"] < 0.005, lift


@pytest.mark.parametrize("seed", [0, 1])
def test_the_match_weight_stays_near_zero_where_tastes_predict_nothing(seed):
    pol = BayesPolicy(seed=seed, segments=0)
    _learn_fans(pol, fan_gain=0.0, seed=seed)
    assert np.all(np.abs(pol.match_mean) < 0.25), pol.match_mean  # its posterior sd is ~0.1 here
    off = BayesPolicy(seed=seed, segments=0, match_kinds=())
    _learn_fans(off, fan_gain=0.2, seed=seed)
    assert off.match_mean.shape == (0,)


def test_match_weights_survive_save_load_and_a_malformed_snapshot_is_refused(tmp_path):
    import zipfile

    pol = BayesPolicy(seed=0, segments=0)
    _learn_fans(pol, fan_gain=0.2, n=600)
    pol.save(tmp_path / "p.bayes")
    back = load_policy(tmp_path / "p.bayes")
    assert np.array_equal(back.match_mean, pol.match_mean) and np.array_equal(back.taste_mean, pol.taste_mean)
    new, fan = _fan_titles(["t9"])["t9"], UserContext("f", taste={"actor:Ann": 1.0}, device="tv")
    assert back.distribution(fan, "t9", new) == pol.distribution(fan, "t9", new)
    with zipfile.ZipFile(tmp_path / "p.bayes") as z:
        meta, weights = json.loads(z.read("meta.json")), z.read("weights.npz")
    meta["match_mean"] = meta["match_mean"][:-1]  # one kind's weight missing
    with zipfile.ZipFile(tmp_path / "bad.bayes", "w") as z:
        z.writestr("meta.json", json.dumps(meta))
        z.writestr("weights.npz", weights)
    with pytest.raises(PolicyError, match="match weights"):
        load_policy(tmp_path / "bad.bayes")
    for bad in ("actor", ["actor", "actor"], ["genre:crime"]):
        with pytest.raises(ValueError, match="match_kinds"):
            BayesConfig(match_kinds=bad)


def test_the_match_terms_client_controlled_inputs_are_bounded():
    # Taste values are read as affinities in [-1, 1]: a huge one counts as 1.
    pol = BayesPolicy(seed=0, segments=0)
    _learn_fans(pol, fan_gain=0.2, n=600)
    new = _fan_titles(["t9"])["t9"]
    loud = pol.predict(UserContext("a", taste={"actor:Ann": 1e6}, device="tv"), "t9", new)
    plain = pol.predict(UserContext("b", taste={"actor:Ann": 1.0}, device="tv"), "t9", new)
    assert np.allclose(loud, plain)
    # The audience's mean taste keeps at most _MATCH_KEYS keys however many distinct keys requests send.
    from bandit.bayes import _MATCH_KEYS
    from bandit.features import MAX_TASTE_KEYS

    c = cands(2)
    for r in range(_MATCH_KEYS // MAX_TASTE_KEYS + 2):
        taste = {f"genre:g{r}-{i}": 0.5 for i in range(MAX_TASTE_KEYS)}
        pol.learn_one(UserContext(f"w{r}", taste=taste, device="tv"), "t1", c, c[0].artwork_id, 0.5, 0.0)
    assert len(pol._taste_slots) == pol.taste_mean.size == _MATCH_KEYS


def test_describe_and_the_report_show_the_restarts_and_the_guard(tmp_path):
    from bandit.policy import Restart
    from bandit.report import ReportData, write_report

    pol = BayesPolicy(seed=0)
    fresh = pol.describe()
    assert fresh.restarts_total == 0 and fresh.restarts == () and fresh.version == 0
    assert dict((k, v) for k, v, _ in fresh.facts)["personalisation guard"] == "0.16"  # Phi(-1): no evidence yet
    _changing_title(pol, 0, 5000, 1500)
    st = pol.describe()
    assert st.restarts_total == pol.restarts >= 1 and st.version == pol.version
    first = pol.last_restarts[0]
    assert st.restarts[0] == Restart("t1", first["artwork_id"], first["z"], first["version"])
    facts = {k: v for k, v, _ in st.facts}
    assert facts["personalisation guard"] == f"{pol.gate_weight():.2f}"
    assert facts["match weights"].startswith("actor ") and "genre" in facts["match weights"]
    html = write_report(ReportData(policy_state=st), tmp_path / "r").read_text()
    assert 'id="policy-state"' in html and f'{pol.restarts:,} restart(s) all time' in html
    assert html.count("<td>t1</td>") == min(pol.restarts, 20) and f"{first['z']:+.2f}" in html
    # A kind without a change detector says nothing about restarts.
    from bandit.baselines import ThompsonPolicy

    html = write_report(ReportData(policy_state=ThompsonPolicy().describe()), tmp_path / "t").read_text()
    assert 'id="policy-state"' in html and "restart" not in html.split('id="policy-state"')[1]
