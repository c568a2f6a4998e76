"""Property-based fuzzing of every POST endpoint of a live server on loopback (hypothesis).

Bodies are generated valid-ish (the right shape with odd values) and hostile (wrong types, huge or
unicode strings, lone surrogates, control characters, deep nesting, missing and extra fields, raw
bytes that are not JSON or not UTF-8). For every response: no 5xx, no traceback in the body, a
status the route's OpenAPI entry declares, an X-Request-ID, and a 4xx is an RFC 9457 problem that
stored nothing (decision, feedback and correction counts in the event log are unchanged).

Bounded and deterministic: a fixed number of examples per endpoint, derandomized, no deadline,
no example database; the whole module takes a few seconds.
"""

from __future__ import annotations

import json
from collections import Counter
import sqlite3
from urllib.parse import quote
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servekit import LiveServer, build_catalog

KEY = "fuzz-key"
SEEN: Counter = Counter()  # status codes answered, so the last test can check the fuzz reached the handlers
MAX_BODY = 200_000
FUZZ = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("fuzz")
    store = d / "catalog.db"
    build_catalog(store, n_titles=3)
    s = LiveServer(store, "--max-body-bytes", str(MAX_BODY), "--close-interval", "0.5", api_key=KEY).start()
    with s.client() as c:  # some real events for feedback to find
        r = c.post("/v1/choose", json={"user_id": "seed", "titles": ["t00", "t01", "t02"]})
        assert r.status_code == 200
        s.event_ids = [x["event_id"] for x in r.json()["results"]]
        s.artwork_ids = [x["artwork_id"] for x in r.json()["results"]]
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server: LiveServer):
    with server.client() as c:
        yield c


def stored(server: LiveServer) -> tuple[int, int, int]:
    db = sqlite3.connect(f"file:{server.store}.events.db?mode=ro", uri=True)
    try:
        return tuple(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]  # type: ignore[return-value]
                     for t in ("decisions", "feedback", "corrections"))
    finally:
        db.close()


# -- strategies -------------------------------------------------------------------------------------

# Any code point, lone surrogates included (json.dumps sends them as "\ud800" escapes).
any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
hostile_text = st.one_of(
    st.text(any_char, max_size=40),
    st.text(any_char, min_size=100, max_size=600),
    st.sampled_from(["", " ", "\x00", "\ud800", "a\udfffb", "\u202e", "💥" * 50, "t00\n", "../../etc/passwd",
                     "' OR 1=1 --", "x" * 5000, "NaN", "null", "0"]),
)
ids = st.one_of(st.sampled_from(["t00", "t01", "t02", "unknown"]), hostile_text)
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70),
                    st.sampled_from([0, 1, 0.5, -1, 1e308]))
scalars = st.one_of(st.none(), st.booleans(), numbers, hostile_text)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                            st.dictionaries(hostile_text, inner, max_size=5)),
                           max_leaves=20)


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """The field's own values, anything JSON, or the field left out (None -> dropped)."""
    return st.one_of(st.none(), strategy, strategy, json_values)


@st.composite
def objects(draw, fields: dict[str, st.SearchStrategy]) -> dict:
    out = {}
    for name, strat in fields.items():
        v = draw(maybe(strat))
        if v is not None or draw(st.booleans()):
            out[name] = v
    if draw(st.integers(0, 9)) == 0:
        out.update(draw(st.dictionaries(hostile_text, json_values, min_size=1, max_size=3)))
    return out


context = objects({"device": st.sampled_from(["tv", "mobile"]) | hostile_text,
                   "hour": st.integers(-5, 30) | numbers, "country": st.sampled_from(["US", "FR"]) | hostile_text,
                   "row": st.integers(-3, 10**12) | numbers})
page = objects({
    "user_id": st.sampled_from(["u1", "u2"]) | hostile_text,
    "titles": st.lists(ids, max_size=8),
    "taste": st.dictionaries(st.sampled_from(["genre:crime", "mood:dark"]) | hostile_text, numbers, max_size=6),
    "history": st.lists(ids, max_size=10),
    "context": context,
    "exclude": st.lists(ids, max_size=5),
})


def feedback_items(server_ids: list[str]) -> st.SearchStrategy:
    return objects({"event_id": st.sampled_from(server_ids) | hostile_text, "reward": numbers,
                    "click": st.booleans() | scalars, "play": st.booleans() | scalars})


deep = st.integers(50, 100_000).map(lambda n: ("[" * n + "]" * n).encode())
raw_bodies = st.one_of(
    st.binary(max_size=300), deep, st.just(b""), st.just(b"{"), st.just(b'{"user_id": "\xff\xfe"}'),
    st.just(b"null"), st.just(b"[]"), st.just(b"\"\\ud800\""), st.just(b"{" * 10_000),
    st.just(b'{"user_id": "u", "titles": ["t00"], "user_id": 5}'),
    st.just(b"x" * (MAX_BODY + 1)),
)


def body_for(draw_obj: st.SearchStrategy) -> st.SearchStrategy:
    """(bytes, content-type): a generated object, any JSON value, or raw bytes."""
    as_json = st.one_of(draw_obj, draw_obj, draw_obj, json_values).map(lambda o: json.dumps(o).encode())
    ctype = st.sampled_from(["application/json", "application/json", "text/plain", "application/json; charset=latin-1"])
    return st.tuples(st.one_of(as_json, as_json, raw_bodies), ctype)


# -- the property -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def declared(client) -> dict[tuple[str, str], set[int]]:
    """(method, path template) -> the statuses the server's OpenAPI declares for it."""
    spec = client.get("/openapi.json").json()
    return {(m.upper(), p): {int(c) for c in op["responses"]} for p, ops in spec["paths"].items() for m, op in ops.items()}


def check(server: LiveServer, client: httpx.Client, method: str, path: str, body: bytes, ctype: str,
          declared: dict[tuple[str, str], set[int]], template: str | None = None) -> httpx.Response:
    """One request; `template` (the route the path matches, when it does) defaults to the path."""
    before = stored(server)
    r = client.request(method, path, content=body, headers={"content-type": ctype})
    text = r.text
    SEEN[r.status_code] += 1
    assert r.status_code < 500, (path, body[:300], r.status_code, text[:500])
    assert "Traceback" not in text and 'File "' not in text, (path, body[:300], text[:500])
    assert r.headers.get("x-request-id"), r.headers
    if template is not None or path in {p for _, p in declared}:
        ops = declared[(method, template or path)]
        assert r.status_code in ops, (path, body[:300], r.status_code, sorted(ops), text[:300])
    if 400 <= r.status_code < 500:
        assert stored(server) == before, (path, body[:300], r.status_code, text[:300])
        # Every refusal is an RFC 9457 problem, whoever answers: a handler, the body limit, the router.
        assert r.headers.get("content-type") == "application/problem+json", text[:300]
        p = r.json()
        assert p["status"] == r.status_code and p["type"] == f"/problems/{p['error']}", p
        assert p["title"] and p["detail"] and p["request_id"] == r.headers["x-request-id"], p
    return r


def segment(text: str) -> str:
    """A path segment, percent-encoded as bytes (lone surrogates become invalid UTF-8 on the wire)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


@FUZZ
@given(data=st.data())
def test_fuzz_choose_and_distribution(server, client, declared, data) -> None:
    path = data.draw(st.sampled_from(["/v1/choose", "/v1/policy/distribution"]))
    body, ctype = data.draw(body_for(page))
    check(server, client, "POST", path, body, ctype, declared)


@FUZZ
@given(data=st.data())
def test_fuzz_feedback(server, client, declared, data) -> None:
    item = feedback_items(server.event_ids)
    if data.draw(st.booleans()):
        path, obj = "/v1/feedback", item
    else:
        path, obj = "/v1/feedback/batch", objects({"events": st.lists(item, max_size=6)})
    body, ctype = data.draw(body_for(obj))
    check(server, client, "POST", path, body, ctype, declared)


@FUZZ
@given(data=st.data())
def test_fuzz_designer_controls(server, client, declared, data) -> None:
    # Path segments are fuzzed too; a pin for an artwork of another title is a 4xx, and nothing
    # here writes the event log.
    raw = data.draw(st.sampled_from(["t00", "t01", "nope"]) | st.text(any_char, min_size=1, max_size=30))
    title = segment(raw)
    kind = data.draw(st.sampled_from(["pin", "unpin", "disable", "enable"]))
    if kind in ("pin", "unpin"):
        path, template = f"/v1/titles/{title}/pin", "/v1/titles/{title_id}/pin"
        body, ctype = data.draw(body_for(objects({"artwork_id": st.sampled_from(server.artwork_ids) | hostile_text})))
    else:
        artwork = data.draw(st.sampled_from(server.artwork_ids) | st.just(title))
        path, template = f"/v1/artworks/{artwork}/{kind}", f"/v1/artworks/{{artwork_id}}/{kind}"
        body, ctype = data.draw(body_for(objects({})))
    # A segment that decodes to a "/" (or is a dot segment the client resolves) makes another
    # path, answered by the router, not by this route.
    matches = "/" not in raw and raw not in (".", "..") or (kind in ("disable", "enable") and artwork != title)
    r = check(server, client, "DELETE" if kind == "unpin" else "POST", path, body, ctype, declared,
              template if matches else None)
    if r.status_code == 200 and kind in ("pin", "disable"):  # leave the catalog as the other tests expect it
        for a in server.artwork_ids:
            client.post(f"/v1/artworks/{a}/enable")
        for t in ("t00", "t01", "t02"):
            client.delete(f"/v1/titles/{t}/pin")


def test_the_server_is_still_healthy_and_serving(server, client) -> None:
    # The generated bodies were not all turned away at the door: some were served, some refused.
    assert SEEN[200] >= 20 and SEEN[422] >= 100 and SEEN[413] >= 1 and SEEN[415] >= 1, SEEN
    assert client.get("/health").json()["status"] == "ok"
    r = client.post("/v1/choose", json={"user_id": "after-fuzz", "titles": ["t00", "t01", "t02"]})
    assert r.status_code == 200 and all(x["artwork_id"] for x in r.json()["results"]), r.text
