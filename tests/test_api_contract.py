"""The OpenAPI document is the contract, checked against the wire.

Every status each operation declares is caused on a live server on loopback (bad bodies, unknown
ids, a missing key, a body over the limit, an expired event, a contradicting reward, the
connection limit), and every response is checked against the OpenAPI entry for its status and
media type: the status must be declared, the media type listed, and a JSON body must validate
against the declared schema with every object closed (a field the schema does not name is an
error, so undocumented fields cannot creep in). At the end, every declared (operation, status)
must have been seen. Two statuses cannot be caused from outside and are caused in-process: a
full disk (SQLite capped with max_page_count: a 503 problem, and /health degraded) and an
unexpected exception (500).
"""

from __future__ import annotations

import copy
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from servekit import InProcessServer, LiveServer, build_catalog

KEY = "contract-key"
MAX_BODY = 4000
WINDOW = 1.0
PROBLEM = "application/problem+json"


def closed(schema: Any) -> Any:
    """The schema with every object that lists its properties closed to others (unless it says
    otherwise, as a dict of scores does with additionalProperties: {type: number})."""
    if isinstance(schema, dict):
        out = {k: closed(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(v) for v in schema]
    return schema


class Contract:
    """Checks responses against one server's OpenAPI document and records what was seen."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.components = closed(copy.deepcopy(spec["components"]))
        self.seen: set[tuple[str, str, int, str]] = set()

    def declared(self) -> set[tuple[str, str, int]]:
        return {(m.upper(), p, int(c)) for p, ops in self.spec["paths"].items() for m, op in ops.items()
                for c in op["responses"]}

    def check(self, method: str, template: str, r: httpx.Response, expect: int) -> dict[str, Any] | None:
        assert r.status_code == expect, (method, template, r.status_code, r.text[:400])
        op = self.spec["paths"][template][method.lower()]
        declared = op["responses"].get(str(r.status_code))
        assert declared is not None, f"{method} {template} sent an undeclared {r.status_code}: {r.text[:300]}"
        rid = r.headers.get("x-request-id")
        assert rid, "every response carries X-Request-ID"
        content = declared.get("content", {})
        media = r.headers.get("content-type", "").split(";")[0].strip()
        self.seen.add((method, template, r.status_code, media))
        if not content:
            assert r.content == b"", (method, template, r.status_code)
            return None
        assert media in content, f"{method} {template} {r.status_code}: sent {media}, declared {sorted(content)}"
        if not media.endswith("json"):
            return None
        body = r.json()
        schema = {**content[media]["schema"], "components": self.components}
        errors = sorted(Draft202012Validator(schema).iter_errors(body), key=str)
        assert not errors, f"{method} {template} {r.status_code}: {errors[0].message} at {list(errors[0].path)}"
        if media == PROBLEM:
            assert body["status"] == r.status_code and body["request_id"] == rid, body
            assert body["type"] == f"/problems/{body['error']}" and body["instance"] == r.request.url.raw_path.decode(
                "ascii").split("?")[0], body
        return body


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("contract")
    store = d / "catalog.db"
    build_catalog(store, n_titles=3)
    s = LiveServer(store, "--feedback-window", str(WINDOW), "--close-interval", "0.2",
                   "--max-body-bytes", str(MAX_BODY), api_key=KEY).start()
    yield s
    s.stop()


def test_every_declared_status_is_sent_as_declared(server: LiveServer) -> None:
    with server.client() as c, httpx.Client(base_url=server.url, timeout=30) as anon:
        spec = c.get("/openapi.json").json()
        ct = Contract(spec)

        def call(method: str, template: str, expect: int, path: str | None = None, client: httpx.Client = c,
                 **kw: Any) -> dict[str, Any] | None:
            return ct.check(method, template, client.request(method, path or template, **kw), expect)

        # -- 200 (and 304) --------------------------------------------------------------------------
        page = call("POST", "/v1/choose", 200, json={"user_id": "c1", "titles": ["t00", "t01", "t02", "nope"]})
        eids = [x["event_id"] for x in page["results"][:3]]
        assert page["results"][3]["error"] == "unknown_title"
        call("POST", "/v1/policy/distribution", 200, json={"user_id": "c1", "titles": ["t00", "nope"]})
        assert call("POST", "/v1/feedback", 200, json={"event_id": eids[0], "reward": 0.5})["status"] == "joined"
        batch = call("POST", "/v1/feedback/batch", 200, json={"events": [{"event_id": eids[1], "click": True},
                                                                         {"event_id": "ghost", "click": True}]})
        assert [x["status"] for x in batch["results"]] == ["joined", "not_found"]
        later = call("POST", "/v1/choose", 200, json={"user_id": "c2", "titles": ["t00"], "activate": False})
        deferred = later["results"][0]["event_id"]
        call("POST", "/v1/events/{event_id}/activate", 200, f"/v1/events/{deferred}/activate")
        titles = call("GET", "/v1/titles", 200)
        assert [t["title_id"] for t in titles["titles"]] == ["t00", "t01", "t02"]
        arts = call("GET", "/v1/titles/{title_id}/artworks", 200, "/v1/titles/t00/artworks")["artworks"]
        other = call("GET", "/v1/titles/{title_id}/artworks", 200, "/v1/titles/t01/artworks")["artworks"][0]
        img = "/v1/artworks/{artwork_id}/image"
        r = c.get(arts[0]["image_url"])
        ct.check("GET", img, r, 200)
        ct.check("GET", img, c.get(arts[0]["image_url"], headers={"If-None-Match": r.headers["etag"]}), 304)
        call("POST", "/v1/titles/{title_id}/pin", 200, "/v1/titles/t00/pin", json={"artwork_id": arts[1]["artwork_id"]})
        call("DELETE", "/v1/titles/{title_id}/pin", 200, "/v1/titles/t00/pin")
        call("POST", "/v1/artworks/{artwork_id}/disable", 200, f"/v1/artworks/{arts[2]['artwork_id']}/disable")
        call("POST", "/v1/artworks/{artwork_id}/enable", 200, f"/v1/artworks/{arts[2]['artwork_id']}/enable")
        call("GET", "/v1/users/{user_id}/session", 200, "/v1/users/c1/session")
        call("GET", "/health", 200)
        call("GET", "/metrics", 200)
        call("GET", "/problems/{code}", 200, "/problems/validation")

        # -- 401: every operation that needs the key, called without it (or with a wrong one) ---------
        for (method, template, status) in sorted(ct.declared()):
            if status == 401:
                path = template.format(event_id=eids[2], title_id="t00", artwork_id=arts[0]["artwork_id"], user_id="c1")
                body = call(method, template, 401, path, client=anon, json={"user_id": "u", "titles": ["t00"]},
                            headers={"X-API-Key": "wrong"} if method == "GET" else {})
                assert body["error"] == "unauthorized"

        # -- 404 ------------------------------------------------------------------------------------------
        for method, template, path, kw in [
            ("POST", "/v1/feedback", None, {"json": {"event_id": "ghost", "click": True}}),
            ("POST", "/v1/events/{event_id}/activate", "/v1/events/ghost/activate", {}),
            ("GET", "/v1/titles/{title_id}/artworks", "/v1/titles/nope/artworks", {}),
            ("GET", img, "/v1/artworks/nope/image", {}),
            ("POST", "/v1/titles/{title_id}/pin", "/v1/titles/t00/pin", {"json": {"artwork_id": "nope"}}),
            ("DELETE", "/v1/titles/{title_id}/pin", "/v1/titles/nope/pin", {}),
            ("POST", "/v1/artworks/{artwork_id}/disable", "/v1/artworks/nope/disable", {}),
            ("POST", "/v1/artworks/{artwork_id}/enable", "/v1/artworks/nope/enable", {}),
            ("GET", "/v1/users/{user_id}/session", "/v1/users/never-seen/session", {}),
            ("GET", "/problems/{code}", "/problems/nope", {}),
        ]:
            assert call(method, template, 404, path, **kw)["error"] == "not_found"

        # -- 409, 410: the feedback problems carry the event, and the rewards for a conflict ------------
        conflict = call("POST", "/v1/feedback", 409, json={"event_id": eids[0], "reward": 0.7})
        assert (conflict["recorded"], conflict["posted"], conflict["changed"]) == (0.5, 0.7, False)
        time.sleep(WINDOW + 0.8)  # eids[2]'s window passes and the timer closes it at reward 0
        gone = call("POST", "/v1/feedback", 410, json={"event_id": eids[2], "click": False})
        assert (gone["error"], gone["event_id"], gone["reward"]) == ("expired", eids[2], 0.0)
        # A positive reward for the same event is still a late click, not a 410.
        assert call("POST", "/v1/feedback", 200, json={"event_id": eids[2], "click": True})["status"] == "late"

        # -- 413: every operation, a body over the limit, refused by its Content-Length ----------------
        for (method, template, status) in sorted(ct.declared()):
            if status == 413:
                path = template.format(event_id=eids[2], title_id="t00", artwork_id=arts[0]["artwork_id"],
                                       user_id="c1", code="validation")
                body = call(method, template, 413, path, content=b"x" * (MAX_BODY + 1),
                            headers={"content-type": "application/json"})
                assert str(MAX_BODY) in body["detail"]

        # -- 415 and 422: every operation with a body, and activate's path -----------------------------
        bad = {
            "/v1/choose": {"user_id": "u", "titles": ["t00"], "context": {"hour": 24}},
            "/v1/policy/distribution": {"user_id": "u", "titles": []},
            "/v1/feedback": {"event_id": eids[1], "reward": 2.0},
            "/v1/feedback/batch": {"events": []},
            "/v1/titles/{title_id}/pin": {"artwork_id": other["artwork_id"]},  # an artwork of another title
        }
        for template, body in bad.items():
            path = template.format(title_id="t00")
            r = call("POST", template, 415, path, content=b"user_id=u", headers={"content-type": "application/x-www-form-urlencoded"})
            assert r["error"] == "unsupported_media_type"
            r = call("POST", template, 422, path, json=body)
            assert r["errors"] and all(e["field"] and e["reason"] for e in r["errors"]), r
        r = call("POST", "/v1/events/{event_id}/activate", 422, "/v1/events/%01/activate")
        assert r["errors"][0]["field"] == "event_id"

        # -- every problem type a response named is documented at its type URI ----------------------
        for code in ("validation", "unauthorized", "not_found", "conflict", "expired", "body_too_large",
                     "unsupported_media_type", "store_unavailable", "overloaded", "internal", "method_not_allowed"):
            doc = call("GET", "/problems/{code}", 200, f"/problems/{code}")
            assert doc["type"] == f"/problems/{code}" and doc["description"]

        # -- outside any operation: the router's own answers are problems too ---------------------------
        components = ct.components
        for r, status in ((c.put("/health"), 405), (c.get("/no/such/path"), 404), (c.post("/v1/choose/", json={}), 404)):
            assert r.status_code == status and r.headers["content-type"] == PROBLEM, r.text
            schema = {"$ref": "#/components/schemas/Problem", "components": components}
            Draft202012Validator(schema).validate(r.json())
        assert c.put("/health").headers["allow"]

    # -- 503 on every operation: the connection limit, answered without running the app --------------
    overload_statuses(server, ct)

    missing = {d for d in ct.declared() if d[2] != 500} - {(m, t, s) for m, t, s, _ in ct.seen}
    assert not missing, f"declared but never caused: {sorted(missing)}"


def overload_statuses(server: LiveServer, ct: Contract) -> None:
    """A second server on the same store's copy with --max-connections 3: two stalled connections
    plus the client's own reach it, and every operation then gets the 503 problem."""
    store = server.store.parent / "overload.db"
    build_catalog(store, n_titles=1)
    s = LiveServer(store, "--max-connections", "3", "--read-timeout", "30", api_key=KEY).start()
    stalled = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(2)]
    try:
        with s.client() as c:
            time.sleep(0.2)  # both connections accepted by the server
            for (method, template, status) in sorted(ct.declared()):
                if status != 503 or (method, template, 503, PROBLEM) in ct.seen:
                    continue
                path = template.format(event_id="e", title_id="t00", artwork_id="a", user_id="u", code="validation")
                r = c.request(method, path, json={"user_id": "u", "titles": ["t00"]})
                body = ct.check(method, template, r, 503)
                assert body["error"] == "overloaded" and r.headers["retry-after"] == "1", body
                assert r.headers["connection"] == "close"
    finally:
        for sock in stalled:
            sock.close()
        s.stop()


def test_full_disk_and_unexpected_errors_match_the_contract(tmp_path: Path) -> None:
    store = tmp_path / "catalog.db"
    build_catalog(store, n_titles=2)
    with InProcessServer(store) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        spec = c.get("/openapi.json").json()
        ct = Contract(spec)
        # Without a key nothing needs one, and the spec says so.
        assert "securitySchemes" not in spec["components"]
        assert not any("401" in op["responses"] or "security" in op for ops in spec["paths"].values() for op in ops.values())
        ct.check("POST", "/v1/choose", c.post("/v1/choose", json={"user_id": "u", "titles": ["t00"]}), 200)
        srv.max_pages(None)
        for i in range(200):  # the first pages may still fit in free space on the last page
            r = c.post("/v1/choose", json={"user_id": f"full{i}", "titles": ["t00", "t01"],
                                           "history": [f"h{j}-" + "x" * 100 for j in range(40)]})
            if r.status_code != 200:
                break
        body = ct.check("POST", "/v1/choose", r, 503)
        assert body["error"] == "store_unavailable" and "database or disk is full" in body["detail"]
        assert r.headers["retry-after"] == "30"
        health = ct.check("GET", "/health", c.get("/health"), 503)  # a health report, application/json
        assert health["status"] == "degraded" and health["failing_store"] == str(srv.engine.events_path)
        srv.max_pages(1_073_741_823)
        assert c.post("/v1/choose", json={"user_id": "after", "titles": ["t00"]}).status_code == 200

        def boom() -> str:
            raise RuntimeError("secret internal detail")

        srv.engine.metrics_text = boom  # type: ignore[method-assign]  # the one way to make a bug on purpose
        r = c.get("/metrics")
        body = ct.check("GET", "/metrics", r, 500)
        assert body["error"] == "internal" and "secret" not in r.text and "Traceback" not in r.text
    assert ("GET", "/health", 503, "application/json") in ct.seen


def test_two_apps_in_one_process_count_their_own_requests(tmp_path: Path) -> None:
    """Per-app metric registries: a second server in the same process neither fails to start
    (duplicate metric names) nor shares the first one's counts."""
    stores = []
    for name in ("a.db", "b.db"):
        stores.append(tmp_path / name)
        build_catalog(stores[-1], n_titles=1)
    count = 'artwork_http_request_duration_seconds_count{method="GET",route="/v1/titles",status="200"} '
    with InProcessServer(stores[0]) as a, InProcessServer(stores[1]) as b:
        with httpx.Client(base_url=a.url) as ca, httpx.Client(base_url=b.url) as cb:
            for _ in range(3):
                assert ca.get("/v1/titles").status_code == 200
            assert cb.get("/v1/titles").status_code == 200
            assert count + "3\n" in ca.get("/metrics").text
            assert count + "1\n" in cb.get("/metrics").text
