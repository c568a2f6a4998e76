"""Engine behaviour that needs no HTTP: the catalog's embedding projection over time."""

from __future__ import annotations

from bandit.engine import Engine, EngineConfig
from bandit.features import UserContext
from servekit import build_catalog


def test_projection_refits_while_nothing_is_learned_then_stays_fixed(tmp_path):
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=1, per_title=2)  # two artworks: a 1-component projection
    with Engine(store, EngineConfig(projection_dims=8), start_timer=False) as eng:
        assert eng.projection.n_components == 1
        build_catalog(store, n_titles=4, per_title=3, seed=1)  # the catalog grows before any traffic
        [choice] = eng.choose(UserContext("u1"), ["t00"])
        assert eng.projection.n_components == 8  # refitted: no reward was learned on the old one
        fitted = eng.projection
        eng.feedback(choice.event_id, click=True)
        build_catalog(store, n_titles=6, per_title=3, seed=2)
        eng.choose(UserContext("u2"), ["t00"])
        assert eng.projection is fitted  # learning has begun: the features stay what it learned on


def test_explore_share_serves_a_logged_uniform_slice_that_is_learned_from(tmp_path):
    store = tmp_path / "c.db"
    titles = build_catalog(store, n_titles=4, per_title=3)
    with Engine(store, EngineConfig(explore_share=0.3, seed=1), start_timer=False) as eng:
        for i in range(200):
            for c in eng.choose(UserContext(f"user{i}"), titles):
                eng.feedback(c.event_id, click=i % 3 == 0)
        records = eng.events.records()
        explored = [r for r in records if r.policy == "uniform"]
        assert 0.2 < len(explored) / len(records) < 0.4  # about the configured share (seeded)
        assert all(abs(r.probability - 1 / 3) < 1e-12 for r in explored)  # logged with their true propensity
        assert {r.policy for r in records} == {"uniform", eng.policy.name}
        # Whole pages explore together, and every decision, explored or not, was learned from.
        pages = {}
        for r in records:
            pages.setdefault(r.user_id, set()).add(r.policy)
        assert all(len(p) == 1 for p in pages.values())
        assert eng.learned_seq == len(records) == eng.policy.version
