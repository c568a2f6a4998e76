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
