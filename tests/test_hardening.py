"""Hardening: bounded, well-formed client strings (HTTP and in-process), quarantine of learn events
that cannot be learned (live and at restart), the API key checked first and on the session read,
no slash redirects, HEAD /health, and deep JSON nesting as a 422."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bandit.engine import Engine, EngineConfig, RequestError
from bandit.events import EventLog
from bandit.features import (LIMITS, MAX_EXCLUDE, MAX_HISTORY, MAX_ID_CHARS, MAX_LABEL_CHARS, MAX_TASTE_KEY_CHARS,
                             MAX_TASTE_KEYS, MAX_USER_ID_CHARS, ContextError, UserContext)
from servekit import LiveServer, build_catalog

KEY = "s3cret"
SURROGATE = "\ud800"


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def kill(eng: Engine) -> None:
    """Close the files without the shutdown snapshot: what a SIGKILL leaves behind."""
    eng.started = False
    eng.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("harden")
    store = d / "catalog.db"
    build_catalog(store, n_titles=3)
    s = LiveServer(store, "--close-interval", "0.5", api_key=KEY).start()
    yield s
    s.stop()


@pytest.fixture
def client(server: LiveServer):
    with server.client() as c:
        yield c


def decisions(server: LiveServer) -> int:
    log = EventLog(Path(f"{server.store}.events.db"))
    try:
        return log.counts()["decisions"]
    finally:
        log.close()


def post_raw(client, path: str, body: str, **headers):
    """Post JSON text as written (json.dumps escapes a lone surrogate as \\ud800, as an attacker would)."""
    return client.post(path, content=body.encode(), headers={"content-type": "application/json", **headers})


def fields_of(r) -> list[str]:
    """The fields a validation problem names (RFC 9457 body, extension member `errors`)."""
    assert r.headers["content-type"] == "application/problem+json", r.headers
    return [d["field"] for d in r.json()["errors"]]


# -- client strings over HTTP ----------------------------------------------------------------------------

PAGE = {"user_id": "u1", "titles": ["t00"]}


@pytest.mark.parametrize("extra, field", [
    ({"taste": {SURROGATE: 1.0}}, "taste"),
    ({"user_id": "bad" + SURROGATE}, "user_id"),
    ({"history": ["t00", SURROGATE]}, "history"),
    ({"context": {"device": SURROGATE}}, "context.device"),
    ({"context": {"country": "U" + SURROGATE}}, "context.country"),
    ({"titles": ["t00", "t01" + SURROGATE]}, "titles"),
    ({"exclude": [SURROGATE]}, "exclude"),
    ({"user_id": "nul\x00byte"}, "user_id"),
    ({"taste": {"genre:\x1bcrime": 1.0}}, "taste"),
])
def test_lone_surrogates_and_control_characters_are_422_naming_the_field(server, client, extra, field) -> None:
    before = decisions(server)
    body = json.dumps({**PAGE, **extra})  # ensure_ascii: the surrogate travels as the escape \ud800
    r = post_raw(client, "/v1/choose", body)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "validation"
    assert any(f.startswith(field) for f in fields_of(r)), r.text
    assert decisions(server) == before
    # The server is not wedged: a clean page is served and logged.
    ok = client.post("/v1/choose", json=PAGE)
    assert ok.status_code == 200, ok.text


def test_event_ids_are_validated_too(client) -> None:
    r = post_raw(client, "/v1/feedback", json.dumps({"event_id": "e" + SURROGATE, "click": True}))
    assert r.status_code == 422 and fields_of(r) == ["event_id"], r.text
    r = post_raw(client, "/v1/feedback/batch", json.dumps({"events": [{"event_id": "x" * (MAX_ID_CHARS + 1), "click": True}]}))
    assert r.status_code == 422 and fields_of(r)[0].startswith("events.0.event_id"), r.text
    r = post_raw(client, "/v1/titles/t00/pin", json.dumps({"artwork_id": SURROGATE}))
    assert r.status_code == 422 and fields_of(r)[0].startswith("artwork_id"), r.text


@pytest.mark.parametrize("extra, field", [
    ({"taste": {f"genre:g{i}": 0.5 for i in range(MAX_TASTE_KEYS + 1)}}, "taste"),
    ({"taste": {"k" * (MAX_TASTE_KEY_CHARS + 1): 0.5}}, "taste"),
    ({"history": ["t00"] * (MAX_HISTORY + 1)}, "history"),
    ({"history": ["t" * (MAX_ID_CHARS + 1)]}, "history"),
    ({"user_id": "u" * (MAX_USER_ID_CHARS + 1)}, "user_id"),
    ({"context": {"device": "d" * (MAX_LABEL_CHARS + 1)}}, "context.device"),
    ({"titles": ["t" * (MAX_ID_CHARS + 1)]}, "titles"),
    ({"exclude": ["a"] * (MAX_EXCLUDE + 1)}, "exclude"),
])
def test_oversized_fields_are_422_and_nothing_is_stored(server, client, extra, field) -> None:
    before = decisions(server)
    r = client.post("/v1/choose", json={**PAGE, **extra})
    assert r.status_code == 422, r.text
    assert any(f.startswith(field) for f in fields_of(r)), r.text
    assert decisions(server) == before


def test_fields_at_the_limits_are_served(server, client) -> None:
    before = decisions(server)
    r = client.post("/v1/choose", json={
        "user_id": "u" * MAX_USER_ID_CHARS,
        "taste": {f"genre:{i:0{MAX_TASTE_KEY_CHARS - 6}d}": 0.5 for i in range(MAX_TASTE_KEYS)},
        "history": ["t00"] * MAX_HISTORY,
        "context": {"device": "d" * MAX_LABEL_CHARS, "country": "c" * MAX_LABEL_CHARS},
        "titles": ["t00", "t01"],
        "exclude": [f"a{i}" for i in range(MAX_EXCLUDE)],
    })
    assert r.status_code == 200, r.text
    assert decisions(server) == before + 2


# -- in-process: the same bounds in UserContext and the engine ----------------------------------------------


@pytest.mark.parametrize("kw", [
    {"taste": {SURROGATE: 1.0}},
    {"taste": {f"k{i}": 1.0 for i in range(MAX_TASTE_KEYS + 1)}},
    {"history": ["t"] * (MAX_HISTORY + 1)},
    {"history": ["x" * (MAX_ID_CHARS + 1)]},
    {"user_id": "u" * (MAX_USER_ID_CHARS + 1)},
    {"device": "tv\n"},
    {"country": "c" * (MAX_LABEL_CHARS + 1)},
])
def test_user_context_enforces_the_same_limits(kw) -> None:
    with pytest.raises(ContextError):
        UserContext(**{"user_id": "u", **kw})


def test_limits_table_is_the_one_source() -> None:
    assert LIMITS == {"user_id_chars": 256, "id_chars": 128, "taste_keys": 256, "taste_key_chars": 128,
                      "history_entries": 500, "label_chars": 64, "exclude_entries": 1000}


def test_engine_checks_titles_exclude_and_event_ids(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=2)
    with Engine(store, EngineConfig(), start_timer=False) as eng:
        u = UserContext("u")
        with pytest.raises(RequestError) as e:
            eng.choose(u, ["t00", "t01" + SURROGATE])
        assert e.value.field == "titles.1"
        with pytest.raises(RequestError) as e:
            eng.choose(u, ["t00"], exclude=["a"] * (MAX_EXCLUDE + 1))
        assert e.value.field == "exclude"
        with pytest.raises(RequestError) as e:
            eng.feedback("e" + SURROGATE, click=True)
        assert e.value.field == "event_id"
        assert eng.events.counts()["decisions"] == 0


# -- quarantine --------------------------------------------------------------------------------------------


def _three_open_decisions(tmp_path: Path) -> tuple[Path, Clock, EngineConfig, Engine]:
    """A started engine that has logged one page of three titles, their windows open for 10 s."""
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=3)
    clock = Clock()
    cfg = EngineConfig(feedback_window_s=10.0)
    eng = Engine(store, cfg, clock=clock, start_timer=False).start()
    eng.choose(UserContext("u"), ["t00", "t01", "t02"])
    return store, clock, cfg, eng


def test_a_row_the_policy_cannot_learn_is_quarantined_live_and_skipped_at_restart(tmp_path: Path) -> None:
    store, clock, cfg, eng = _three_open_decisions(tmp_path)
    learn_one = eng.policy.learn_one

    def flaky(user, title_id, *a, **kw):
        if title_id == "t01":
            raise TypeError("incompatible function arguments")  # what vowpal-wabbit-next raises
        return learn_one(user, title_id, *a, **kw)

    eng.policy.learn_one = flaky  # type: ignore[method-assign]
    clock.t += 60
    assert eng.close_expired() == 3  # no exception escapes the learn loop
    assert eng.learned_seq == 3
    assert eng.counters["quarantined"] == 1 and eng.metrics()["log_quarantined"] == 1
    assert "artwork_quarantined_total 1\n" in eng.metrics_text()
    poisoned = eng.events.quarantined()
    assert len(poisoned) == 1
    kill(eng)

    eng = Engine(store, cfg, clock=clock, start_timer=False).start()  # no snapshot: replays all three
    try:
        assert eng.learned_seq == 3 and eng.counters["replayed"] == 3
        assert eng.counters["quarantined"] == 0  # known: skipped, not retried
        assert eng.events.quarantined() == poisoned and eng.metrics()["log_quarantined"] == 1
        assert eng.policy.version == 2
    finally:
        eng.close()


def test_a_log_row_whose_json_does_not_decode_is_quarantined_not_a_wedge(tmp_path: Path) -> None:
    # The log decodes its JSON columns where it reads them; a column edited into garbage must cost
    # that one learn event, as it did when the engine decoded them, not every replay after it.
    store, clock, cfg, eng = _three_open_decisions(tmp_path)
    kill(eng)
    db = sqlite3.connect(f"{store}.events.db")
    with db:
        db.execute("UPDATE decisions SET candidates='[not json' WHERE title_id='t01'")
    db.close()
    eng = Engine(store, cfg, clock=clock, start_timer=False).start()
    try:
        clock.t += 60
        assert eng.close_expired() == 3 and eng.learned_seq == 3
        assert eng.counters["learned"] == 2 and eng.counters["quarantined"] == 1
        [eid] = eng.events.quarantined().values()
        assert eng.events.decision(eid).title_id == "t01"
    finally:
        eng.close()


def test_poisoned_row_in_the_log_does_not_block_a_restart_after_sigkill(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=3)
    clock = Clock()
    cfg = EngineConfig(policy="vw", feedback_window_s=10.0)
    eng = Engine(store, cfg, clock=clock, start_timer=False).start()
    for u in ("a", "b", "c"):
        eng.choose(UserContext(u, {"genre:crime": 0.5}), ["t00"])
    clock.t += 60
    assert eng.close_expired() == 3
    kill(eng)  # no snapshot: a restart replays learn_seq 1..3
    # What an unvalidated request once wrote: a taste key VW cannot take (a lone surrogate).
    db = sqlite3.connect(f"{store}.events.db")
    with db:
        db.execute("UPDATE requests SET context=? WHERE request_id=(SELECT request_id FROM decisions WHERE learn_seq=2)",
                   (json.dumps({"user_id": "b", "taste": {SURROGATE: 1.0}, "history": [], "device": None,
                                "hour": None, "country": None, "row": None}),))
    db.close()

    args = ("--policy", "vw", "--snapshot-interval", "600", "--close-interval", "0.5")
    server = LiveServer(store, *args).start()
    try:
        with server.client() as c:
            assert c.get("/health").json()["learned_seq"] == 3
            m = c.get("/metrics").text
            assert "artwork_quarantined_total 1\n" in m and "artwork_log_quarantined 1\n" in m, m
            assert c.post("/v1/choose", json={"user_id": "d", "titles": ["t00"]}).status_code == 200
    finally:
        server.kill()
    server = LiveServer(store, *args).start()  # and again after the SIGKILL
    try:
        with server.client() as c:
            assert c.get("/health").json()["learned_seq"] == 3
            m = c.get("/metrics").text
            assert "artwork_log_quarantined 1\n" in m, m
    finally:
        server.stop()


# -- the API key, redirects, HEAD, nesting -------------------------------------------------------------------


def test_session_endpoint_needs_the_key_and_is_documented(server, client) -> None:
    page = client.post("/v1/choose", json={"user_id": "sess", "titles": ["t00"]})
    assert page.status_code == 200
    with server.client() as c:
        c.headers.pop("X-API-Key")
        r = c.get("/v1/users/sess/session")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized" and r.json()["status"] == 401
        assert r.headers["www-authenticate"] == "ApiKey" and r.headers["content-type"] == "application/problem+json"
        assert c.get("/v1/users/sess/session", headers={"X-API-Key": "wrong"}).status_code == 401
    r = client.get("/v1/users/sess/session")
    assert r.status_code == 200 and r.json()["titles"]["t00"]["event_id"] == page.json()["results"][0]["event_id"]
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/users/{user_id}/session"]["get"]
    assert "X-API-Key" in op["description"] and "401" in op["responses"]
    # The key is a security scheme (Swagger's Authorize button), not a header parameter.
    assert op["security"] == [{"ApiKey": []}] and not any(p["in"] == "header" for p in op.get("parameters", []))
    scheme = spec["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    assert "security" not in spec["paths"]["/v1/titles/{title_id}/artworks"]["get"]  # reads need no key


def test_the_key_is_checked_before_the_body_is_parsed(server, client) -> None:
    with server.client() as c:
        c.headers.pop("X-API-Key")
        for body in ("{not json", "[" * 50_000, json.dumps({"user_id": SURROGATE})):
            r = post_raw(c, "/v1/choose", body)
            assert r.status_code == 401, (body[:20], r.text)
    assert post_raw(client, "/v1/choose", "{not json").status_code == 422


def test_trailing_slash_is_not_redirected(client) -> None:
    r = client.post("/v1/choose/", json=PAGE, headers={"Host": "evil.example"}, follow_redirects=False)
    assert r.status_code == 404 and "location" not in r.headers
    assert client.get("/health/", follow_redirects=False).status_code == 404


def test_head_health_is_200(client) -> None:
    r = client.head("/health")
    assert r.status_code == 200 and r.content == b""


def test_deeply_nested_json_is_422(server, client) -> None:
    before = decisions(server)
    for body in ('{"user_id": "u", "titles": ' + "[" * 50_000 + "]" * 50_000 + "}", "[" * 100_000):
        r = post_raw(client, "/v1/choose", body)
        assert r.status_code == 422, r.text[:300]
        assert r.json()["error"] == "validation" and fields_of(r) == ["body"]
        assert r.json()["errors"][0]["type"] == "json_invalid" and "nested too deeply" in r.json()["detail"]
    r = client.post("/v1/choose", content=b'{"user_id": "\xff"}', headers={"content-type": "application/json"})
    assert r.status_code == 422 and fields_of(r) == ["body"] and "not valid UTF-8" in r.json()["detail"], r.text
    assert decisions(server) == before


def test_warm_start_skips_rows_it_cannot_learn():
    """A poisoned logged row (here a surrogate taste key) is skipped and named, not a traceback."""
    from bandit.decisions import DecisionRecord
    from bandit.registry import make_policy

    good = DecisionRecord("e1", 0.0, "u1", "t1", {"user_id": "u1", "taste": {"genre:crime": 0.5}},
                          ["a1", "a2"], [{"mood:dark": 0.3}, {"mood:dark": 0.7}], "a1", 0.5, "uniform", 0, 1.0)
    bad = DecisionRecord("e2", 0.0, "u2", "t1", {"user_id": "u2", "taste": {"\ud800": 0.5}},
                         ["a1", "a2"], [{"mood:dark": 0.3}, {"mood:dark": 0.7}], "a2", 0.5, "uniform", 0, 0.0)
    for kind in ("vw", "bayes", "thompson"):
        pol = make_policy(kind, seed=0)
        assert pol.learn_many([good, bad, good]) == 2
        assert [eid for eid, _ in pol.skipped] == ["e2"] and pol.version == 2


def test_policy_caches_are_bounded_by_the_taste_items_they_hold():
    """Distinct users with large tastes cannot grow a policy's example cache without bound."""
    from bandit.bayes import BayesPolicy
    from bandit.features import Candidate, UserContext
    from bandit.policy import VWPolicy

    cands = [Candidate("a1", {"mood:dark": 0.3}), Candidate("a2", {"mood:dark": 0.7})]
    vw, bayes = VWPolicy(), BayesPolicy()
    vw.shared_cache_items_limit = 1000
    bayes.cache_limit = 50  # items bound: 20 x 50 = 1000
    peak_vw = peak_bayes = 0
    for i in range(60):
        user = UserContext(f"u{i}", taste={f"genre:g{i}-{k}": 0.5 for k in range(200)})
        vw.distribution(user, "t1", cands)
        bayes.distribution(user, "t1", cands)
        peak_vw = max(peak_vw, sum(len(k[4]) + 1 for k in vw._shared_cache))
        peak_bayes = max(peak_bayes, sum(len(k[4]) + 1 for k in bayes._user_cache))
    assert 0 < peak_vw <= 1000
    assert 0 < peak_bayes <= 1000 + 201
