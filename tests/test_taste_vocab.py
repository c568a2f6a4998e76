"""The taste vocabulary (issue 15, item 4): what a request's taste keys and history titles can mean.

The service knows every taste key that can meet a candidate feature (the tagger's moods and
genres, the catalog's tags and cast, face features), rebuilt whenever the catalog changes. On a
live server on loopback: known inputs give no `warnings`; an unknown taste key or history title is
served, ignored (the policy's probabilities are exactly those without it) and listed; with
`--strict` it is a 422 problem naming each one and nothing is stored; the OpenAPI document
declares the field and the bodies validate against it.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from artwork.records import ActorMatch, Artwork, Tags
from artwork.store import Catalog
from artwork.tagging import load_vocabulary
from bandit.events import EventLog
from bandit.features import FACE_FEATURES, MAX_TASTE_KEY_CHARS, taste_vocabulary, unknown_inputs
from conftest import encode, scene
from servekit import LiveServer, build_catalog
from test_api_contract import Contract

TITLES = ["t00", "t01", "t02"]
ACTOR = "Jane Doe"
KNOWN = {"genre:crime": 0.9, "mood:dark": 0.4,  # the catalog's tags
         "genre:comedy": 0.3,  # the tagger's vocabulary only: no artwork of this catalog has it
         "face:one": 1.0, f"actor:{ACTOR}": 1.0}  # a face feature, a recognised cast member
PROBLEM = "application/problem+json"


def make_store(path: Path) -> Path:
    build_catalog(path, n_titles=len(TITLES))
    with Catalog(path) as c:  # one artwork shows a recognised cast member
        aid = c.artworks("t00")[0].artwork_id
        c.put_actor_scores({aid: {ACTOR: ActorMatch(0.9, True)}})
    return path


def stored(server: LiveServer) -> tuple[int, int]:
    """(decisions, sessions) in the server's event log."""
    db = sqlite3.connect(f"file:{server.store}.events.db?mode=ro", uri=True)
    try:
        return tuple(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # type: ignore[return-value]
                     for t in ("decisions", "sessions"))
    finally:
        db.close()


def logged_taste(server: LiveServer, user_id: str) -> list[dict[str, float]]:
    log = EventLog(Path(f"{server.store}.events.db"))
    try:
        return [r.context["taste"] for r in log.records() if r.user_id == user_id]
    finally:
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    s = LiveServer(make_store(tmp_path_factory.mktemp("vocab") / "catalog.db"), "--seed", "0").start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory):
    s = LiveServer(make_store(tmp_path_factory.mktemp("strict") / "catalog.db"), "--strict").start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def contract(server: LiveServer) -> Contract:
    with server.client() as c:
        return Contract(c.get("/openapi.json").json())


# -- the vocabulary ----------------------------------------------------------------------------------


def test_vocabulary_is_the_taggers_labels_the_catalogs_tags_cast_and_face_features() -> None:
    vocab = load_vocabulary()
    art = Artwork("a1", "t1", "0" * 64, "upload:a.jpg", 1, 1, 1, 0.0,
                  tags=Tags(moods={"brooding": 0.6}, genres={"heist": 0.7}, actors={"Ann Lee": 0.2, "": 0.5},
                            actors_present=["Bo Ray"]))
    keys = taste_vocabulary([art])
    assert {f"mood:{m}" for m in vocab.moods} | {f"genre:{g}" for g in vocab.genres} <= keys
    assert {"mood:brooding", "genre:heist", "actor:Ann Lee", "actor:Bo Ray", *FACE_FEATURES} <= keys
    assert not any(k.startswith("emb:") for k in keys) and "actor:" not in keys
    # Only what can be sent: a key over the limit never is.
    long = Artwork("a2", "t1", "1" * 64, "upload:b.jpg", 1, 1, 1, 0.0,
                   tags=Tags(genres={"g" * MAX_TASTE_KEY_CHARS: 1.0}))
    assert not any(len(k) > MAX_TASTE_KEY_CHARS for k in taste_vocabulary([long]))
    assert taste_vocabulary([], labels={}) == frozenset(FACE_FEATURES)


def test_unknown_inputs_name_each_field_in_request_order() -> None:
    found = unknown_inputs(["genre:crime", "genre:x", "mood:y"], ["t1", "nope", "t1", "nope"],
                           {"genre:crime"}, {"t1"})
    assert [(w.field, w.value, w.type) for w in found] == [
        ("taste.genre:x", "genre:x", "unknown_taste_key"), ("taste.mood:y", "mood:y", "unknown_taste_key"),
        ("history.1", "nope", "unknown_title"), ("history.3", "nope", "unknown_title")]
    assert "'nope'" in found[2].reason and unknown_inputs(["genre:crime"], ["t1"], {"genre:crime"}, {"t1"}) == []


# -- served, with warnings -----------------------------------------------------------------------------


def test_known_taste_keys_and_titles_give_no_warnings(server, contract) -> None:
    with server.client() as c:
        for path, template in (("/v1/choose", "/v1/choose"), ("/v1/policy/distribution", "/v1/policy/distribution")):
            r = c.post(path, json={"user_id": "fan", "taste": KNOWN, "history": ["t00", "t01"], "titles": TITLES})
            body = contract.check("POST", template, r, 200)
            assert "warnings" not in body, body
        # A taste built from history has only known keys by construction.
        r = c.post("/v1/choose", json={"user_id": "watcher", "history": ["t00"], "titles": ["t01"]})
        assert r.status_code == 200 and "warnings" not in r.json()
    assert logged_taste(server, "fan") == [KNOWN] * len(TITLES)  # nothing known is dropped


def test_unknown_taste_keys_and_history_titles_are_served_ignored_and_listed(server, contract) -> None:
    before = stored(server)
    body = {"user_id": "typo", "taste": {"genre:crime": 0.9, "genre:scifi": 1.0, "mood:dark": 0.4, "vibe:cosy": 2.0},
            "history": ["t00", "no-such-title"], "titles": TITLES}
    with server.client() as c:
        out = contract.check("POST", "/v1/choose", c.post("/v1/choose", json=body), 200)
        dist = contract.check("POST", "/v1/policy/distribution", c.post("/v1/policy/distribution", json=body), 200)
    assert all(x["artwork_id"] for x in out["results"])
    assert [(w["field"], w["value"], w["type"]) for w in out["warnings"]] == [
        ("taste.genre:scifi", "genre:scifi", "unknown_taste_key"),
        ("taste.vibe:cosy", "vibe:cosy", "unknown_taste_key"),
        ("history.1", "no-such-title", "unknown_title")]
    assert all(w["reason"] and w["value"] in w["reason"] for w in out["warnings"])
    assert dist["warnings"] == out["warnings"]
    # Served and logged as sent: a warning, not a change to the request.
    assert stored(server)[0] == before[0] + len(TITLES)
    assert logged_taste(server, "typo") == [body["taste"]] * len(TITLES)


def test_taste_keys_outside_the_vocabulary_still_personalise(server) -> None:
    """A client's own segment keys match no artwork tag, yet they are what its users differ by:
    they are kept (with a warning), and the policy learns from them."""
    with server.client() as c:
        arts = {a["artwork_id"]: a for t in TITLES for a in c.get(f"/v1/titles/{t}/artworks").json()["artworks"]}
        for i in range(40):
            fan = "crime" if i % 2 == 0 else "romance"
            page = c.post("/v1/choose", json={"user_id": f"learn{i}", "taste": {f"segment:{fan}": 1.0},
                                              "titles": TITLES}).json()
            assert [w["value"] for w in page["warnings"]] == [f"segment:{fan}"]
            fb = [{"event_id": x["event_id"], "click": arts[x["artwork_id"]]["tags"]["genres"][fan] > 0.5}
                  for x in page["results"]]
            assert c.post("/v1/feedback/batch", json={"events": fb}).status_code == 200

        def dist(taste: dict[str, float]) -> dict:
            r = c.post("/v1/policy/distribution", json={"user_id": "probe", "taste": taste, "titles": TITLES})
            return {t: d["distribution"] for t, d in r.json()["titles"].items()}

        crime, romance = dist({"segment:crime": 1.0}), dist({"segment:romance": 1.0})
        # Per title, the crime-looking artwork gets more of the crime segment's mass.
        for t in TITLES:
            look = {a: arts[a]["tags"]["genres"]["crime"] > 0.5 for a in crime[t]}
            assert sum(p for a, p in crime[t].items() if look[a]) > sum(p for a, p in romance[t].items() if look[a]), t


def test_the_vocabulary_follows_the_catalog(server) -> None:
    """A label, a cast member or a title added to the catalog is known from the next request on."""
    body = {"user_id": "early", "taste": {"genre:heist": 1.0, "actor:Ann Lee": 1.0}, "history": ["t09"],
            "titles": ["t00"]}
    with server.client() as c:
        assert len(c.post("/v1/choose", json=body).json()["warnings"]) == 3
        with Catalog(server.store) as cat:
            cat.ensure_title("t09", "Title 9")
            data = encode(scene(909, (64, 48)))
            emb = np.ones(32, dtype=np.float32) / np.sqrt(32)
            aid, _ = cat.add_artwork("t09", data, hashlib.sha256(data).hexdigest(), "upload:x.jpg", 64, 48,
                                     "test-encoder/seed0", emb, {"genres": {"heist": 0.8}, "moods": {}}, "test-vocab")
            cat.put_actor_scores({aid: {"Ann Lee": ActorMatch(0.8, True)}})
        r = c.post("/v1/choose", json={**body, "user_id": "later"})
        assert r.status_code == 200 and "warnings" not in r.json(), r.text
    assert logged_taste(server, "later") == [{"genre:heist": 1.0, "actor:Ann Lee": 1.0}]


# -- --strict ------------------------------------------------------------------------------------------


def test_strict_refuses_unknown_inputs_with_a_problem_and_stores_nothing(strict) -> None:
    body = {"user_id": "strict-user", "taste": {"genre:crime": 0.9, "genre:nonsense": 1.0},
            "history": ["t00", "ghost"], "titles": TITLES}
    with strict.client() as c:
        ct = Contract(c.get("/openapi.json").json())
        before = stored(strict)
        for path in ("/v1/choose", "/v1/policy/distribution"):
            r = c.post(path, json=body)
            p = ct.check("POST", path, r, 422)
            assert r.headers["content-type"] == PROBLEM and p["error"] == "validation"
            assert [(e["field"], e["type"]) for e in p["errors"]] == [
                ("taste.genre:nonsense", "unknown_taste_key"), ("history.1", "unknown_title")]
            assert "'genre:nonsense'" in p["errors"][0]["reason"] and "'ghost'" in p["errors"][1]["reason"]
            assert "2 invalid fields" in p["detail"] and "taste.genre:nonsense" in p["detail"]
        assert stored(strict) == before  # no decision, no sticky session
        assert c.get("/v1/users/strict-user/session").status_code == 404
        # Known inputs are served as usual.
        r = c.post("/v1/choose", json={**body, "taste": KNOWN, "history": ["t00"]})
        ok = ct.check("POST", "/v1/choose", r, 200)
        assert "warnings" not in ok and stored(strict)[0] == before[0] + len(TITLES)


def test_without_strict_the_same_request_is_served(server) -> None:
    with server.client() as c:
        r = c.post("/v1/choose", json={"user_id": "lenient", "taste": {"genre:nonsense": 1.0}, "titles": ["t00"]})
    assert r.status_code == 200 and r.json()["warnings"][0]["field"] == "taste.genre:nonsense"


# -- the contract -------------------------------------------------------------------------------------


def test_openapi_declares_the_warnings_and_the_strict_422(contract) -> None:
    schemas = contract.spec["components"]["schemas"]
    for name in ("ChooseResponse", "DistributionResponse"):
        prop = schemas[name]["properties"]["warnings"]
        assert prop["items"] == {"$ref": "#/components/schemas/InputWarning"} and "warnings" not in schemas[name].get(
            "required", [])
    assert set(schemas["InputWarning"]["required"]) == {"field", "value", "type", "reason"}
    for path in ("/v1/choose", "/v1/policy/distribution"):
        declared = contract.spec["paths"][path]["post"]["responses"]["422"]
        assert "--strict" in declared["description"]
        assert declared["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/ValidationProblem"}
    # A response with warnings that the schema did not name would fail the closed-schema check.
    bad = {"user_id": "u", "results": [], "warnings": [{"field": "taste.x", "value": "x", "type": "t", "reason": "r",
                                                          "extra": 1}]}
    from jsonschema import Draft202012Validator

    schema = {"$ref": "#/components/schemas/ChooseResponse", "components": contract.components}
    assert list(Draft202012Validator(schema).iter_errors(bad))


def test_serve_help_documents_strict() -> None:
    from click.testing import CliRunner

    from bandit.cli import cli

    res = CliRunner().invoke(cli, ["serve", "--help"])
    assert res.exit_code == 0 and "--strict" in res.output, res.output

