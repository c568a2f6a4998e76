"""Tests for bandit.features: context validation, taste profiles, candidates, embedding projection."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from artwork.records import Artwork, Tags
from bandit.features import (
    Candidate,
    ContextError,
    EmbeddingProjection,
    UserContext,
    candidate_from_artwork,
    candidates_from_artworks,
    tag_features,
    taste_from_history,
)


def _art(aid: str, title: str = "t1", tags: Tags | None = None, emb: np.ndarray | None = None, enc: str | None = "clip-a") -> Artwork:
    return Artwork(aid, title, "0" * 64, "upload:x.png", 100, 100, 10, 0.0, encoder_id=enc, embedding=emb, tags=tags or Tags())


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- UserContext ---------------------------------------------------------------------------------


def test_user_context_defaults_cold_start() -> None:
    u = UserContext("u1")
    assert u.taste == {} and u.history == [] and u.is_cold
    assert u.device is None and u.hour is None and u.country is None and u.row is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"hour": 24}, "hour"),
        ({"hour": -1}, "hour"),
        ({"hour": "7"}, "hour"),
        ({"hour": True}, "hour"),
        ({"row": -1}, "row"),
        ({"row": 1.5}, "row"),
        ({"taste": {"genre:crime": float("nan")}}, "taste"),
        ({"taste": {"genre:crime": "high"}}, "taste"),
        ({"taste": {"": 1.0}}, "taste"),
        ({"taste": [("genre:crime", 1.0)]}, "taste"),
        ({"history": "t1"}, "history"),
        ({"history": ["t1", 3]}, "history"),
        ({"device": ""}, "device"),
        ({"country": 7}, "country"),
    ],
)
def test_user_context_rejects_malformed_fields(kwargs: dict, field: str) -> None:
    with pytest.raises(ContextError, match=field):
        UserContext("u1", **kwargs)


def test_user_context_requires_user_id() -> None:
    with pytest.raises(ContextError, match="user_id"):
        UserContext("")
    with pytest.raises(ContextError, match="user_id"):
        UserContext.from_dict({"hour": 3})


def test_user_context_from_dict_round_trip_and_unknown_keys() -> None:
    u = UserContext("u1", taste={"genre:crime": 0.8, "actor:Jane Doe": 1}, history=["t1"], device="tv", hour=21, country="FR", row=2)
    d = u.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert UserContext.from_dict(d) == u
    assert isinstance(UserContext.from_dict(d).taste["actor:Jane Doe"], float)
    with pytest.raises(ContextError, match="hours"):
        UserContext.from_dict({"user_id": "u1", "hours": 3})


def test_user_context_accepts_numpy_ints() -> None:
    u = UserContext("u1", hour=np.int64(5), taste={"mood:dark": np.float32(0.5)})
    assert u.hour == 5 and type(u.hour) is int and u.taste == {"mood:dark": 0.5}


# -- tags, taste, candidates -----------------------------------------------------------------------


def test_tag_features_top_k_and_actor_presence() -> None:
    tags = Tags(
        moods={"dark": 0.7, "tense": 0.2, "happy": 0.001, "calm": 0.05},
        genres={"crime": 0.9},
        actors={"Jane Doe": 0.31, "John Roe": 0.12},
        actors_present=["Jane Doe"],
    )
    f = tag_features(tags, top_k=2)
    assert f == {"mood:dark": 0.7, "mood:tense": 0.2, "genre:crime": 0.9, "actor:Jane Doe": 0.31}
    # without actors_present the raw similarities are used
    f2 = tag_features(Tags(actors={"A": 0.3}), top_k=2)
    assert f2 == {"actor:A": 0.3}


def test_taste_from_history_averages_per_title_and_ignores_unknown() -> None:
    by_title = {
        "t1": [_art("a1", "t1", Tags(genres={"crime": 1.0}, moods={"dark": 0.8})), _art("a2", "t1", Tags(genres={"crime": 0.6}))],
        "t2": [_art("b1", "t2", Tags(genres={"comedy": 1.0}))],
    }
    taste = taste_from_history(["t1", "t2", "unknown"], by_title)
    assert taste == pytest.approx({"genre:crime": 0.4, "mood:dark": 0.2, "genre:comedy": 0.5})
    assert taste_from_history([], by_title) == {}
    assert taste_from_history(["nope"], by_title) == {}
    # usable as a context
    UserContext("u", taste=taste)


def test_candidate_from_artwork_with_projection() -> None:
    rng = np.random.default_rng(0)
    embs = _unit(rng, 40, 64)
    proj = EmbeddingProjection.fit(embs, n_components=24, encoder_id="clip-a")
    a = _art("a1", tags=Tags(moods={"dark": 0.9}), emb=embs[3])
    c = candidate_from_artwork(a, proj)
    assert c.artwork_id == "a1" and c.features["mood:dark"] == 0.9
    emb_keys = [k for k in c.features if k.startswith("emb:")]
    assert len(emb_keys) == 24
    z = proj.transform(embs[3])
    assert c.features["emb:0"] == pytest.approx(float(z[0]), abs=1e-4)


def test_candidate_degrades_gracefully() -> None:
    rng = np.random.default_rng(1)
    proj = EmbeddingProjection.fit(_unit(rng, 10, 16), encoder_id="clip-a")
    bare = _art("bare", emb=None)
    assert candidate_from_artwork(bare, proj) == Candidate("bare", {})
    assert candidate_from_artwork(bare, None) == Candidate("bare", {})
    other_encoder = _art("x", emb=_unit(rng, 1, 16)[0], enc="clip-b")
    assert candidate_from_artwork(other_encoder, proj).features == {}
    wrong_dim = _art("y", emb=_unit(rng, 1, 8)[0])
    assert candidate_from_artwork(wrong_dim, proj).features == {}


def test_candidates_from_artworks_skips_disabled() -> None:
    arts = [_art("a1"), _art("a2"), _art("a3")]
    arts[1].disabled = True
    assert [c.artwork_id for c in candidates_from_artworks(arts)] == ["a1", "a3"]
    assert len(candidates_from_artworks(arts, include_disabled=True)) == 3


def test_candidate_validation() -> None:
    with pytest.raises(ContextError, match="artwork_id"):
        Candidate("", {})
    with pytest.raises(ContextError, match="mood:dark"):
        Candidate("a", {"mood:dark": math.inf})


# -- EmbeddingProjection -----------------------------------------------------------------------------


def test_projection_dims_and_variance_order() -> None:
    rng = np.random.default_rng(2)
    embs = _unit(rng, 100, 64)
    p = EmbeddingProjection.fit(embs, n_components=24, encoder_id="clip-a")
    assert (p.dim, p.n_components, p.encoder_id) == (64, 24, "clip-a")
    z = p.transform(embs)
    assert z.shape == (100, 24) and z.dtype == np.float32
    var = z.var(axis=0)
    assert np.all(np.diff(var) <= 1e-6)  # principal components come in decreasing variance
    # components are orthonormal
    np.testing.assert_allclose(p.components @ p.components.T, np.eye(24), atol=1e-5)


def test_projection_fewer_artworks_than_dims() -> None:
    rng = np.random.default_rng(3)
    assert EmbeddingProjection.fit(_unit(rng, 5, 32), n_components=24).n_components == 4
    one = EmbeddingProjection.fit(_unit(rng, 1, 32))
    assert one.n_components == 0 and one.transform(_unit(rng, 1, 32)[0]).shape == (0,)
    with pytest.raises(ValueError):
        EmbeddingProjection.fit(np.zeros((0, 32)))


def test_projection_dict_round_trip_is_exact_and_json_safe() -> None:
    rng = np.random.default_rng(4)
    embs = _unit(rng, 50, 48)
    p = EmbeddingProjection.fit(embs, n_components=16, encoder_id="ViT-B-32/openai")
    d = json.loads(json.dumps(p.to_dict()))
    q = EmbeddingProjection.from_dict(d)
    assert q == p
    np.testing.assert_array_equal(q.transform(embs[0]), p.transform(embs[0]))
    with pytest.raises(ValueError, match="dimension"):
        p.transform(np.zeros(47, dtype=np.float32))


def test_projection_fit_is_deterministic() -> None:
    rng = np.random.default_rng(5)
    embs = _unit(rng, 30, 32)
    assert EmbeddingProjection.fit(embs) == EmbeddingProjection.fit(embs.copy())
