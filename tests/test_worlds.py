"""The family of simulated worlds and the online evaluation loop: seeded, small, a few seconds."""

from __future__ import annotations

import functools
import math
import time

import numpy as np
import pytest

from bandit.baselines import FixedPolicy, UniformPolicy
from bandit.features import Candidate, UserContext
from bandit.policy import BasePolicy
from bandit.simulator import COUNTRIES, DEVICES
from bandit.worlds import WORLDS, Page, World, WorldRun, context_ceiling, make_world, run_world

N_USERS = 600
PAGES = 300
# The linear world calibrates today's simulator on a visit sample; a smaller one keeps tests quick.
EXTRA = {"linear": {"n_eval": 1500}}
EXPECTED_SIGNAL = {
    "appeal": False, "clusters": True, "linear": True, "threshold": True, "rare": True, "frequent": True,
    "position": True, "cold": True, "delayed": True, "window": True, "newart": True, "drift": False, "misleading": False,
    "actors": True, "daily": True,
}


@functools.lru_cache(maxsize=None)
def world(name: str, seed: int = 1, **kw) -> World:
    """Worlds are deterministic and read-only once built: share them between tests."""
    return WORLDS[name](seed, n_users=N_USERS, **EXTRA.get(name, {}), **kw)


def pages(w: World, n: int, seed: int = 7) -> list[tuple[int, Page]]:
    rng = np.random.default_rng(seed)
    return [(i, w.page(rng, i)) for i in range(n)]


def mean_probs(w: World, n_pages: int, key=lambda page: 0, start: int = 0) -> dict[tuple[str, int], np.ndarray]:
    """Mean click probabilities per (title, key(page)) over ``n_pages`` pages from ``start``."""
    sums: dict[tuple[str, int], list[np.ndarray]] = {}
    rng = np.random.default_rng(3)
    for i in range(start, start + n_pages):
        pg = w.page(rng, i)
        for t in pg.title_ids:
            sums.setdefault((t, key(pg)), []).append(w.click_probs(pg, t, i))
    return {k: np.mean(v, axis=0) for k, v in sums.items()}


class OraclePolicy(BasePolicy):
    """Cheats: asks the world for the true click probabilities and shows the best artwork."""

    kind = "oracle"

    def __init__(self, w: World) -> None:
        super().__init__(0)
        self.name = "oracle"
        self.world = w

    def _distribution(self, user: UserContext, title_id: str, allowed: list[Candidate]) -> list[float]:
        page = Page(user, ["-"] * user.row + [title_id], int(user.user_id[1:]))
        p = self.world.click_probs(page, title_id, 0)
        best = int(np.argmax(p))
        return [1.0 if i == best else 0.0 for i in range(len(allowed))]

    def learn_one(self, *args) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# Every world
# ---------------------------------------------------------------------------------------------


def test_registry_holds_the_worlds_with_their_signal_flags() -> None:
    assert set(EXPECTED_SIGNAL) <= set(WORLDS)
    for name, cls in WORLDS.items():
        assert issubclass(cls, World) and cls.name == name
        assert isinstance(cls.description, str) and cls.description and "\n" not in cls.description
        assert cls.signal is EXPECTED_SIGNAL.get(name, cls.signal)
    assert make_world("appeal", 2, n_users=50).seed == 2
    with pytest.raises(KeyError, match="unknown world"):
        make_world("nope")
    with pytest.raises(TypeError, match="unknown parameter"):
        WORLDS["clusters"](0, n_users=50, gian=2.0)


@pytest.mark.parametrize("name", sorted(WORLDS))
def test_catalog_pages_and_click_probabilities_are_well_formed(name: str) -> None:
    w = world(name)
    cat = w.catalog(0)
    assert len(cat) == 12 and w.catalog(0) is cat
    for t, cands in cat.items():
        assert 3 <= len(cands) <= 8 and all(isinstance(c, Candidate) for c in cands)
        assert len({c.artwork_id for c in cands}) == len(cands)
        assert w.catalog(1)[t][0] is cands[0]  # the same objects while unchanged
        for c in cands:
            tags = {k: v for k, v in c.features.items() if k.startswith(("genre:", "mood:"))}
            assert tags and all(0.0 <= v <= 1.0 for v in tags.values())
            emb = [k for k in c.features if k.startswith("emb:")]
            assert len(emb) == (4 if name == "linear" else 16)
    cold = 0
    for i, pg in pages(w, 60):
        assert isinstance(pg.user, UserContext) and pg.user.row is None
        assert pg.user.device in DEVICES and 0 <= pg.user.hour <= 23 and pg.user.country in COUNTRIES
        assert 0 <= pg.user_index < N_USERS and pg.user.user_id
        assert 6 <= len(pg.title_ids) <= 12 and len(set(pg.title_ids)) == len(pg.title_ids)
        cold += pg.user.is_cold
        for t in pg.title_ids:
            p = w.click_probs(pg, t, i)
            assert isinstance(p, np.ndarray) and p.shape == (len(w.catalog(i)[t]),)
            assert np.all(np.isfinite(p)) and np.all((p > 0.0) & (p < 1.0))
    assert 0 < cold < 60 * (0.85 if name == "cold" else 0.4)  # cold users everywhere, most in `cold`


@pytest.mark.parametrize("name", sorted(WORLDS))
def test_same_seed_same_world_other_seed_other_world(name: str) -> None:
    a, b = world(name, 1), WORLDS[name](1, n_users=N_USERS, **EXTRA.get(name, {}))
    other = world(name, 2)
    pa, pb, pc = pages(a, 20), pages(b, 20), pages(other, 20)
    differs = False
    for (i, x), (_, y), (_, z) in zip(pa, pb, pc):
        assert x == y
        for t in x.title_ids:
            assert np.array_equal(a.click_probs(x, t, i), b.click_probs(y, t, i))
        differs |= x.title_ids != z.title_ids or x.user != z.user
        differs |= any(not np.array_equal(a.click_probs(x, t, i), other.click_probs(x, t, i)) for t in x.title_ids)
    assert differs
    first = next(iter(a.catalog(0)))
    assert [c.features for c in a.catalog(0)[first]] == [c.features for c in b.catalog(0)[first]]
    assert [c.features for c in a.catalog(0)[first]] != [c.features for c in other.catalog(0)[first]]


# ---------------------------------------------------------------------------------------------
# What each world is about
# ---------------------------------------------------------------------------------------------


def test_appeal_one_best_artwork_per_title_for_everybody() -> None:
    w = world("appeal")
    best: dict[str, int] = {}
    for i, pg in pages(w, 150):
        for t in pg.title_ids:
            k = int(np.argmax(w.click_probs(pg, t, i)))
            assert best.setdefault(t, k) == k
    assert len(best) == 12


def test_clusters_best_artwork_differs_across_clusters_on_some_titles_only() -> None:
    w = world("clusters")
    m = mean_probs(w, 1500, key=lambda pg: int(w.user_cluster[pg.user_index]))
    bests = {t: {int(np.argmax(v)) for (tt, _), v in m.items() if tt == t} for t in w.title_ids}
    n_personal = sum(len(b) > 1 for b in bests.values())
    assert 1 <= n_personal < len(bests)  # some titles personal, some with one artwork best for all


def test_linear_is_todays_simulator_click_model() -> None:
    w = world("linear")
    for i, pg in pages(w, 10):
        for row, t in enumerate(pg.title_ids):
            user = UserContext(**{**pg.user.to_dict(), "row": row})
            ref = w.sim.click_probabilities(user, t)
            assert w.click_probs(pg, t, i) == pytest.approx([ref[c.artwork_id] for c in w.catalog(i)[t]], rel=1e-12)


@pytest.mark.parametrize("name, lo, hi", [("rare", 0.01, 0.03), ("frequent", 0.25, 0.45), ("clusters", 0.04, 0.13)])
def test_click_rates_are_in_the_worlds_range(name: str, lo: float, hi: float) -> None:
    w = world(name)
    m = mean_probs(w, 1500)
    best = np.array([v.max() for v in m.values()])
    assert np.all(best > lo * 0.8) and np.all(best < hi * 1.2), best
    assert lo <= best.mean() <= hi


def test_threshold_boost_only_on_tv_above_the_taste_threshold() -> None:
    w = world("threshold")
    boost, threshold = w.params["boost"], w.params["threshold"]
    logit = lambda p: np.log(p / (1.0 - p))  # noqa: E731
    n_fans = n_others = 0
    for i, pg in pages(w, 100):
        as_device = {d: Page(UserContext(**{**pg.user.to_dict(), "device": d}), pg.title_ids, pg.user_index)
                     for d in ("tv", "mobile")}
        for t in pg.title_ids:
            ti = w.title_ids.index(t)
            gain = logit(w.click_probs(as_device["tv"], t, i)) - logit(w.click_probs(as_device["mobile"], t, i))
            # The user's latent (hidden) taste for the genre each artwork plays up.
            fan = w._lat_g[pg.user_index, w._angle[ti]] > threshold
            assert gain == pytest.approx(np.where(fan, boost, 0.0), abs=1e-9)
            n_fans += int(fan.sum())
            n_others += int((~fan).sum())
    assert n_fans > 100 and n_others > 100


def test_position_decays_down_the_page_and_flips_bold_and_detailed() -> None:
    w = world("position")
    by_row: dict[int, list[float]] = {}
    agree = total = 0
    for i, pg in pages(w, 300):
        for row, t in enumerate(pg.title_ids):
            p = w.click_probs(pg, t, i)
            ti = w.title_ids.index(t)
            by_row.setdefault(row, []).append(float(p.mean()))
            if row == 0 or row >= 7:  # detailed wins at the top, bold further down
                total += 1
                agree += bool(p[w.bold[ti]] > p[w.detailed[ti]]) == (row >= 7)
    means = [np.mean(by_row[r]) for r in range(10)]
    assert all(a > b for a, b in zip(means, means[1:]))
    assert means[0] > 2.5 * means[9]
    assert total > 400 and agree / total > 0.95


def test_cold_world_prefers_by_device_and_hour() -> None:
    w = world("cold")
    by_dev = mean_probs(w, 2000, key=lambda pg: DEVICES.index(pg.user.device))
    changes = sum(len({int(np.argmax(by_dev[(t, d)])) for d in range(3) if (t, d) in by_dev}) > 1 for t in w.title_ids)
    assert changes >= 3
    assert w.cold.mean() == pytest.approx(0.6, abs=0.06)


def test_newart_catalog_grows_at_one_and_two_thirds() -> None:
    w = world("newart", n_pages=300)
    for at in (100, 200):
        before, after = w.catalog(at - 1), w.catalog(at)
        assert w.catalog(at - 2) is before
        for t in before:
            added = len(after[t]) - len(before[t])
            assert 1 <= added <= 2
            assert all(x is y for x, y in zip(before[t], after[t]))  # old ones stay, same objects
    assert any(w.new_best)
    # Some of the new artworks become the title's best.
    late = mean_probs(w, 400, start=200)
    n0 = {t: len(w.catalog(0)[t]) for t in w.title_ids}
    assert any(int(np.argmax(late[(t, 0)])) >= n0[t] for t in w.title_ids if (t, 0) in late)


def test_drift_best_artwork_changes_after_the_midpoint() -> None:
    w = world("drift", n_pages=300)
    before = mean_probs(w, 100, start=50)
    after = mean_probs(w, 100, start=150)
    changed = {t for t in w.title_ids if int(np.argmax(before[(t, 0)])) != int(np.argmax(after[(t, 0)]))}
    assert changed == {w.title_ids[t] for t in w.drifted} and len(changed) == 6


def test_daily_hours_follow_the_clock_and_every_click_rate_swings_with_them() -> None:
    w = world("daily", day_pages=240)
    hours = [pg.user.hour for _, pg in pages(w, 480)]
    assert hours[:10] == [0] * 10 and hours[230:240] == [23] * 10 and hours[240] == 0 and hours == hours[240:] * 2
    for i, pg in pages(w, 20):
        at = {h: Page(UserContext(**{**pg.user.to_dict(), "hour": h}), pg.title_ids, pg.user_index) for h in (9, 21)}
        for t in pg.title_ids:
            # The same viewer: every artwork 2 x swing logits up at 21:00 against 09:00, and nothing else moves.
            logit = {h: np.log(p / (1 - p)) for h, p in ((h, w.click_probs(at[h], t, i)) for h in at)}
            assert logit[21] - logit[9] == pytest.approx(np.full(len(logit[9]), 2 * w.params["swing"]), abs=1e-9)
    # Apart from the hour it is `clusters`: the same users on the same pages.
    same = [(a.user.user_id, a.title_ids) for _, a in pages(world("clusters"), 50)]
    assert [(b.user.user_id, b.title_ids) for _, b in pages(w, 50)] == same


def test_delayed_world_delays_feedback() -> None:
    rng = np.random.default_rng(0)
    d = np.array([world("delayed").delay(rng) for _ in range(3000)])
    assert (d > 0).mean() > 0.9 and d.max() <= 300 and 30 < d.mean() < 70
    assert all(world(n).delay(rng) == 0 for n in ("clusters", "appeal", "linear"))


def test_window_world_reveals_clicks_early_and_misses_at_window_close() -> None:
    w = world("window")
    clicks = np.array([w.delay(np.random.default_rng(i), 1.0) for i in range(2000)])
    misses = np.array([w.delay(np.random.default_rng(i), 0.0) for i in range(2000)])
    assert (misses == 200).all() and 3 < clicks.mean() < 7 and clicks.max() <= 200
    # One draw per call whatever the outcome: the delay stream stays common to every policy.
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    w.delay(a, 1.0)
    w.delay(b, 0.0)
    assert a.random() == b.random()
    # In the loop: a click is learned before a miss decided earlier.
    seen: list[tuple[int, float]] = []

    class Recorder(UniformPolicy):
        def learn_one(self, user, title_id, candidates, chosen, probability, reward):  # noqa: ANN001
            seen.append((len(seen), float(reward)))

    run = run_world(w, Recorder(seed=1), 400, seed=0)
    order = [r for _, r in seen]
    first_miss = order.index(0.0)
    assert 1.0 in order[:first_miss] and first_miss > 0
    assert len(order) < run.n  # misses of the last 200 pages are still waiting when the run ends


def test_misleading_taste_does_not_predict_clicks() -> None:
    w = world("misleading")
    # Click probabilities do not depend on the user's cluster (what the taste dict reveals).
    by_cluster = mean_probs(w, 2000, key=lambda pg: int(w.user_cluster[pg.user_index]))
    for t in w.title_ids:
        bests = {int(np.argmax(v)) for (tt, _), v in by_cluster.items() if tt == t}
        assert len(bests) == 1


# ---------------------------------------------------------------------------------------------
# The evaluation loop
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def uniform_run(name: str = "clusters", seed: int = 0) -> WorldRun:
    return run_world(world(name), UniformPolicy(seed=5), PAGES, seed=seed)


def test_summary_values_and_their_ordering() -> None:
    run = uniform_run()
    s = run.summary()
    for key in ("policy", "oracle", "best_fixed", "uniform", "gap_closed", "regret", "clicks", "seconds"):
        assert key in s and isinstance(s[key], float)
    assert s["oracle"] >= s["best_fixed"] >= s["uniform"] > 0.0
    assert s["oracle"] > s["best_fixed"] + 0.005  # personalisation is worth something here
    assert s["policy"] == pytest.approx(s["uniform"], abs=0.01)  # a uniform policy earns the uniform value
    assert s["regret"] == pytest.approx(s["oracle"] - s["policy"])
    assert 0.0 < s["clicks"] < 0.3 and s["gap_closed"] < 0.0
    assert s["window_decisions"] == int((run.page >= PAGES - 60).sum())
    # Fixed default (first artwork) earns exactly the first column's mean.
    fixed = run_world(world("clusters"), FixedPolicy(), PAGES, seed=0).summary()
    window = run.page >= PAGES - 60
    assert fixed["policy"] == pytest.approx(float(run.probs[window, 0].mean()))
    assert fixed["policy"] <= fixed["best_fixed"] + 1e-12


def test_common_random_numbers_same_pages_for_every_policy() -> None:
    a = uniform_run()
    b = run_world(world("clusters"), FixedPolicy(), PAGES, seed=0)
    c = run_world(world("clusters"), UniformPolicy(seed=5), PAGES, seed=1)
    for field in ("page", "title", "row"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert np.array_equal(a.probs, b.probs, equal_nan=True) and np.array_equal(a.oracle, b.oracle)
    assert a.title_ids == b.title_ids
    assert a.n != c.n or not np.array_equal(a.probs, c.probs, equal_nan=True)
    # The same policy and seed twice: identical decisions and clicks.
    d = run_world(world("clusters"), UniformPolicy(seed=5), PAGES, seed=0)
    assert np.array_equal(a.chosen, d.chosen) and np.array_equal(a.reward, d.reward)


def test_hindsight_best_gets_gap_zero_and_the_oracle_gets_gap_one() -> None:
    w = world("clusters")
    best = uniform_run().best_fixed_artworks()
    s_fixed = run_world(w, FixedPolicy(best), PAGES, seed=0).summary()
    assert s_fixed["gap_closed"] == pytest.approx(0.0, abs=1e-9)
    assert s_fixed["policy"] == pytest.approx(s_fixed["best_fixed"], abs=1e-12)
    s_oracle = run_world(w, OraclePolicy(w), PAGES, seed=0).summary()
    assert s_oracle["gap_closed"] == pytest.approx(1.0, abs=1e-9)
    assert s_oracle["regret"] == pytest.approx(0.0, abs=1e-12)


def test_learning_is_queued_by_the_worlds_delay() -> None:
    class Counting(UniformPolicy):
        def __init__(self) -> None:
            super().__init__(seed=0)
            self.learned: list[int] = []
            self.chosen = 0

        def choose(self, *a, **k):
            self.chosen += 1
            return super().choose(*a, **k)

        def learn_one(self, user, title_id, candidates, chosen, probability, reward) -> None:
            super().learn_one(user, title_id, candidates, chosen, probability, reward)
            assert user.row is not None and 0.0 < probability <= 1.0 and reward in (0.0, 1.0)
            self.learned.append(self.chosen)

    now = Counting()
    r = run_world(world("appeal"), now, 100, seed=0)
    last_page = int((r.page == 99).sum())
    assert len(now.learned) == r.n - last_page  # all but the last page's outcomes, each one page later
    late = Counting()
    r = run_world(world("delayed"), late, 100, seed=0)
    assert 0 < len(late.learned) < r.n - 30 * 6
    frozen = Counting()
    run_world(world("appeal"), frozen, 20, seed=0, learn=False)
    assert frozen.learned == []


def test_rows_are_visible_to_the_policy() -> None:
    seen: list[tuple[str, int]] = []

    class Rows(UniformPolicy):
        def choose(self, user, title_id, candidates, *a, **k):
            seen.append((title_id, user.row))
            return super().choose(user, title_id, candidates, *a, **k)

    r = run_world(world("position"), Rows(), 30, seed=0)
    assert [row for _, row in seen] == r.row.tolist() and max(r.row) >= 5
    assert [t for t, _ in seen] == [r.title_ids[i] for i in r.title]


def test_new_artworks_mid_run_are_padded_and_best_fixed_stays_below_oracle() -> None:
    w = world("newart", n_pages=300)
    r = run_world(w, UniformPolicy(seed=1), 300, seed=0)
    assert r.probs.shape[1] == max(len(c) for c in w.catalog(299).values())
    first = r.page < 100
    assert np.isnan(r.probs[first]).sum(axis=1).mean() > np.isnan(r.probs[~first]).sum(axis=1).mean()
    for share in (0.2, 0.5, 1.0):  # windows that span the additions, too
        s = r.summary(share)
        assert s["oracle"] >= s["best_fixed"] >= s["uniform"]
        assert not math.isnan(s["gap_closed"])
    best = r.best_fixed_artworks(1.0)  # over the whole run: only artworks present throughout
    assert all(int(a.split("-a")[1]) < len(w.catalog(0)[t]) for t, a in best.items())


def test_curve_windows() -> None:
    r = uniform_run()
    c = r.curve(50)
    assert c.x.tolist() == [50, 100, 150, 200, 250, 300] and c.window == 50
    first = r.page < 50
    assert c.expected[0] == pytest.approx(float(r.expected[first].mean()))
    assert c.rate[0] == pytest.approx(float(r.reward[first].mean()))


def test_loop_overhead_is_small() -> None:
    w = world("clusters")
    run_world(w, UniformPolicy(), 20, seed=3)  # warm up
    t0 = time.perf_counter()
    r = run_world(w, UniformPolicy(), 400, seed=3)
    rate = r.n / (time.perf_counter() - t0)
    assert rate >= 5000, f"{rate:.0f} decisions/s"


@pytest.mark.parametrize("name", ["cold", "appeal"])
def test_context_ceiling_sits_between_best_fixed_and_the_oracle(name: str) -> None:
    """The ceiling buys what the visible context predicts: most of the gap in `cold` (device and hour
    decide), nothing in `appeal` (the context is noise), never more than the oracle."""
    pages = 1200
    w = world(name)
    s = run_world(w, UniformPolicy(seed=5), pages, seed=0).summary()
    ceiling = context_ceiling(w, pages, seed=0)
    assert ceiling <= s["oracle"] + 1e-12
    if name == "cold":
        assert ceiling > s["best_fixed"] + 0.5 * (s["oracle"] - s["best_fixed"])
    else:
        assert s["oracle"] == pytest.approx(s["best_fixed"], abs=1e-9)
        assert ceiling == pytest.approx(s["best_fixed"], abs=0.002)
    # The same seed sees the same visits: a pure function of (world, pages, seed).
    assert context_ceiling(w, pages, seed=0) == ceiling


# ---------------------------------------------------------------------------------------------
# Actors: some users follow a star, and click more when the artwork shows the star's face
# ---------------------------------------------------------------------------------------------


def _star_close_ups(w: World, title_index: int) -> dict[int, list[int]]:
    """star -> artworks of the title where that star's face is close-up sized (>= 8% of the frame)."""
    out: dict[int, list[int]] = {}
    for k, shown in enumerate(w.visible[title_index]):
        for a, share in shown.items():
            if a < len(w.stars) and share >= 0.08:
                out.setdefault(a, []).append(k)
    return out


def test_actors_world_is_deterministic_per_seed() -> None:
    a, b, other = world("actors", 1), WORLDS["actors"](1, n_users=N_USERS), world("actors", 2)
    assert np.array_equal(a.follows, b.follows) and a.cast == b.cast and a.visible == b.visible
    assert a._taste == b._taste and a._history == b._history
    for t in a.title_ids:
        assert [c.features for c in a.catalog(0)[t]] == [c.features for c in b.catalog(0)[t]]
    for i, pg in pages(a, 30):
        for t in pg.title_ids:
            assert np.array_equal(a.click_probs(pg, t, i), b.click_probs(pg, t, i))
    assert not np.array_equal(a.follows, other.follows) and a.cast != other.cast


def test_actors_artworks_and_tastes_have_the_face_pipelines_shape() -> None:
    """Candidates are what `candidate_from_artwork` makes of face-scanned artworks; history users'
    taste is `taste_from_history` of their history; the actor keys are noisy both ways (the bounds
    below hold on seeds 1-6: followers without their star's key 11-14%, others at 1.0 5.6-6.6%)."""
    from bandit.features import FACE_FEATURES, candidate_from_artwork, taste_from_history

    w = world("actors")
    kinds = {"scene": 0, "stranger": 0, "cast": 0}
    tagged_titles: dict[str, set[str]] = {}
    for ti, t in enumerate(w.title_ids):
        cast = {w.actor_names[a] for a in w.cast[ti]}
        for c, art in zip(w.catalog(0)[t], w._artworks[t]):
            feats = candidate_from_artwork(art).features
            assert {k: v for k, v in c.features.items() if not k.startswith("emb:")} == feats
            actors = {k[len("actor:"):]: v for k, v in feats.items() if k.startswith("actor:")}
            face = {k for k in feats if k.startswith("face:")}
            assert face <= set(FACE_FEATURES)
            assert set(actors) <= cast and all(0.5 < v < 1.0 for v in actors.values())  # recognised: above 0.5
            if not face:
                kinds["scene"] += 1
                assert not actors
                continue
            assert len(face & {"face:one", "face:two", "face:group"}) == 1 and 0.0 < feats["face:share"] <= 0.35
            assert ("face:cast" in face) == bool(actors)
            assert ("face:lead" in face) == (w.actor_names[w.lead[ti]] in actors)
            kinds["cast" if actors else "stranger"] += 1
            for name in actors:
                tagged_titles.setdefault(name, set()).add(t)
    assert all(n > 0 for n in kinds.values()), kinds
    # Every star is in several titles and recognised on artworks of several: learning about a
    # star's fans on one title can carry to the next.
    for s, star in enumerate(w.stars):
        assert int(w._in_cast[:, s].sum()) >= 3 and len(tagged_titles.get(star, ())) >= 3, star
    n_hist = 0
    shows = {True: [], False: []}  # follower? -> does the taste carry an actor key for the star
    for u in range(w.n_users):
        if w.sends_history[u]:
            n_hist += 1
            assert w._taste[u] == taste_from_history(w._history[u], w._artworks)
        if w.cold[u]:
            continue
        star = w.follows[u] if w.follows[u] >= 0 else None
        for s, name in enumerate(w.stars):
            shows[star == s].append(w._taste[u].get(f"actor:{name}", 0.0))
    assert 0.4 * N_USERS < n_hist < 0.7 * N_USERS
    fan, other = np.array(shows[True]), np.array(shows[False])
    assert 0.25 < len(fan) / (w.n_users - w.cold.sum()) < 0.55  # ~40% follow a star
    # Noise both ways: some followers show no key for their star, some others show one at 1.0.
    assert 0.05 < (fan == 0.0).mean() < 0.4 and (other == 1.0).mean() > 0.02
    assert fan.mean() > other.mean() + 0.4


def test_actors_followers_click_more_when_their_star_is_shown() -> None:
    """From the world's own probabilities: a star's close-up earns its followers >= 1.5x what it earns
    everybody else (the worst artwork 1.9-2.2x, seeds 1-5), and users whose visible taste names the
    star at >= 0.75 click it >= 1.3x as often as users whose taste does not name the star (what a
    policy can see; 1.47-1.64x, seeds 1-6)."""
    w = world("actors")
    close = [_star_close_ups(w, ti) for ti in range(len(w.title_ids))]
    fan: dict[tuple[int, int, int], list[float]] = {}
    other: dict[tuple[int, int, int], list[float]] = {}
    named, unnamed = [], []
    for i, pg in pages(w, 1500, seed=3):
        u, follows = pg.user_index, w.follows[pg.user_index]
        for t in pg.title_ids:
            ti = w.title_ids.index(t)
            p = w.click_probs(pg, t, i)
            for s, ks in close[ti].items():
                for k in ks:
                    (fan if follows == s else other).setdefault((ti, k, s), []).append(p[k])
                    seen = pg.user.taste.get(f"actor:{w.stars[s]}", 0.0)
                    if seen >= 0.75:
                        named.append(p[k])
                    elif seen == 0.0:
                        unnamed.append(p[k])
    keys = [key for key in fan if len(fan[key]) >= 10 and len(other.get(key, ())) >= 10]
    assert len(keys) >= 30
    ratios = np.array([np.mean(fan[key]) / np.mean(other[key]) for key in keys])
    assert ratios.min() > 1.5, ratios.min()
    assert len(named) > 500 and np.mean(named) > 1.3 * np.mean(unnamed)


@pytest.mark.parametrize("seed", [1, 2])
def test_actors_best_fixed_is_below_the_oracle_and_the_visible_context_buys_part_of_it(seed: int) -> None:
    """Something to personalise, and some of it visible: over the last 20% of 1,200 uniform pages the
    oracle beats the best fixed artwork by >= 0.012 and the context ceiling beats it by 0.0026-0.0068
    (seeds 1-6 checked); asserted with margins 0.008 and 0.002 on seeds 1 and 2."""
    w = world("actors", seed)
    s = run_world(w, UniformPolicy(seed=5), 1200, seed=0).summary()
    assert s["oracle"] > s["best_fixed"] + 0.008
    ceiling = context_ceiling(w, 1200, seed=0)
    assert s["best_fixed"] + 0.002 < ceiling < s["oracle"]


# Seeds 0-3 measured (6 titles, 1,500 pages, last third): star shown to fans 0.56-0.80 for bayes,
# 0.30-0.50 for Thompson; fans' expected click rate +0.020 to +0.033.
@pytest.mark.parametrize("seed", [0, 1])
def test_the_default_policy_learns_to_show_fans_their_star(seed) -> None:
    from bandit.registry import make_policy

    favourites = {"history_share": 0.0, "say_star": 0.9, "false_star": 0.05}  # fans name their star
    got = {}
    for name in ("bayes", "thompson"):
        w = WORLDS["actors"](seed=seed, n_titles=6, **favourites)
        got[name] = w.fan_exposure(run_world(w, make_policy(name, seed=seed), 1500, seed=seed), last_share=1 / 3)
    assert got["bayes"]["decisions"] == got["thompson"]["decisions"] > 300  # same visits, same fans
    # Thompson sampling cannot tell a fan from anyone else; the default policy shows fans their star.
    assert got["bayes"]["star_shown"] > got["thompson"]["star_shown"] + 0.15, got
    assert got["bayes"]["fan_click"] > got["thompson"]["fan_click"] + 0.01, got
    with pytest.raises(ValueError, match="world"):
        w.fan_exposure(run_world(world("clusters"), UniformPolicy(seed=0), 20, seed=0))
