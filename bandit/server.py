"""HTTP service over `bandit.engine.Engine`: `create_app(config)` and the `artwork serve` command.

One process, one engine: the policy lives in memory and learns from every joined event, so the
service runs as a single uvicorn worker (pages are ~ms of work). `serve --ray` (bandit.rayserve) runs
the same app in N chooser replicas on Ray Serve with one learner actor over the shared event log.
Handlers are plain `def`: Starlette runs them in its thread pool, so SQLite commits never stall
the event loop, and the engine's locks keep decisions and learning ordered.

Every error is an RFC 9457 problem (`application/problem+json`: type, title, status, detail,
instance, plus `error`, `request_id` and per-problem members), whoever raises it: a handler, the
API-key or body-limit middleware, the router (unknown path, wrong method) or the connection limit.
Every response carries an `X-Request-ID`; the same id is in the access log line and the problem body.

Run it: `artwork --store catalog.db serve --port 8000` or `python -m bandit.server --store catalog.db`.
"""

from __future__ import annotations

import gc
import hmac
import http
import socket
import sqlite3
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Optional
from urllib.parse import quote

import click
from fastapi import Depends, FastAPI, Header, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, GCCollector, Histogram, PlatformCollector, ProcessCollector
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from artwork.paths import StorePaths
from artwork.store import StoreError
# The lock lives with the operator commands that take it too; re-exported here for callers of bandit.server.
from bandit.storelock import StoreLocked, lock_store, unlock_store  # noqa: F401
from bandit.policy import EXPLORATIONS
from bandit.features import (MAX_EXCLUDE, MAX_HISTORY, MAX_ID_CHARS, MAX_LABEL_CHARS, MAX_TASTE_KEY_CHARS, MAX_TASTE_KEYS,
                             MAX_USER_ID_CHARS, text_problem)
from bandit.engine import (POLICY_KINDS, Engine, EngineConfig, FeedbackOutcome, NotFoundError, RequestError,
                           context_from_request, prometheus_text)

__all__ = ["ServeConfig", "create_app", "free_port", "serve_command", "main", "PROBLEMS"]

log = logging.getLogger("artwork.server")
access_log = logging.getLogger("artwork.access")

STATIC_DIR = Path(__file__).resolve().parent / "static"

# StrictFloat takes ints but not bools or numeric strings; one type keeps error locations clean.
Number = StrictFloat


@dataclass
class ServeConfig:
    """Where the catalog is, how to listen, and the engine's settings."""

    store: str
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None  # when set, every POST/DELETE needs header X-API-Key
    max_body_bytes: int = 1_000_000  # larger bodies get 413 before they are read
    log_level: str = "warning"
    read_timeout: float = 30.0  # seconds to send a whole request (line, headers, body); see _read_timeout_protocol
    keep_alive: float = 5.0  # idle seconds between requests on a kept-alive connection
    max_connections: int = 512  # open connections + running requests before new requests get 503
    strict: bool = False  # unknown taste keys / history titles: a 422 (else served, listed in `warnings`)
    engine: EngineConfig = field(default_factory=EngineConfig)


# -- problems (RFC 9457) ---------------------------------------------------------------------------

# code -> (HTTP status, title, what it means). The code is the problem's `error` member and the
# last segment of its `type`, which `GET /problems/{code}` documents.
PROBLEMS: dict[str, tuple[int, str, str]] = {
    "validation": (422, "Invalid request",
                   "A field, the JSON body or a path parameter is invalid; `errors` lists each field (dotted "
                   "path) with the reason. Nothing was stored."),
    "unauthorized": (401, "Missing or wrong API key",
                     "The server has an API key: send it in the X-API-Key header. Checked before the body is read."),
    "not_found": (404, "Not found",
                  "The path, or the title, artwork, event or user session it names, does not exist."),
    "method_not_allowed": (405, "Method not allowed", "The path exists but not with this method; see the Allow header."),
    "conflict": (409, "Conflicting reward",
                 "The event already has a different positive reward (`recorded`); the posted one (`posted`) "
                 "was not stored."),
    "expired": (410, "Feedback window closed",
                "The event's feedback window has closed at reward 0 and the post carried no positive reward: "
                "nothing changed. A positive reward would have been recorded as a late click."),
    "body_too_large": (413, "Request body too large",
                       "The body is over the server's --max-body-bytes; it was refused before being read."),
    "unsupported_media_type": (415, "Unsupported media type",
                               "The body must be JSON: send Content-Type: application/json."),
    "internal": (500, "Internal server error", "An unexpected error; the server log has the details."),
    "store_unavailable": (503, "Store unavailable",
                          "A write to the catalog or the event log failed (disk full, I/O error, locked or "
                          "corrupt file); nothing was half-written. Retry after Retry-After seconds."),
    "overloaded": (503, "Too many connections",
                   "Open connections plus running requests reached --max-connections; retry shortly."),
}

PROBLEM_MEDIA_TYPE = "application/problem+json"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,128}")
_DETAIL_ERRORS = 3  # field errors spelled out in a validation problem's detail (all are in `errors`)


def _safe(text: Any) -> str:
    """Text that can be encoded as UTF-8: a lone surrogate a client sent is echoed as \\udXXX."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def request_id_of(scope: Mapping[str, Any]) -> str:
    """The id `RequestContextMiddleware` gave this request ("" outside it)."""
    return str(scope.get("state", {}).get("request_id", ""))


def _instance(scope: Mapping[str, Any]) -> str:
    """The request path as the client sent it: a URI reference, never a decoded (and so possibly
    control-character-bearing) string."""
    raw = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
    return quote(raw, safe="/%:@!$&'()*+,;=-._~")


def problem(scope: Mapping[str, Any], code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """An RFC 9457 problem body for `code` (a key of PROBLEMS)."""
    status, title, _ = PROBLEMS[code]
    return {"type": f"{scope.get('root_path', '')}/problems/{code}", "title": title, "status": status,
            "detail": _safe(detail), "instance": _instance(scope), "error": code,
            "request_id": request_id_of(scope), **extra}


def _problem_bytes(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _problem_response(request: Request, code: str, detail: str, headers: Mapping[str, str] | None = None,
                      **extra: Any) -> Response:
    body = problem(request.scope, code, detail, **extra)
    return Response(_problem_bytes(body), status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE,
                    headers=dict(headers or {}))


async def _send_problem(scope: Mapping[str, Any], send: Callable[..., Awaitable[None]], code: str, detail: str,
                        headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """A problem sent by plain ASGI code (middleware, the connection limit), outside FastAPI."""
    body = problem(scope, code, detail)
    data = _problem_bytes(body)
    await send({"type": "http.response.start", "status": body["status"],
                "headers": [(b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                            (b"content-length", str(len(data)).encode()), *headers]})
    await send({"type": "http.response.body", "body": data})


class ProblemError(Exception):
    """Raised by handlers and dependencies; answered as the problem `code`."""

    def __init__(self, code: str, detail: str, headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.code, self.detail, self.headers, self.extra = code, detail, headers, extra


# -- request / response models ---------------------------------------------------------------------
# extra="forbid" + strict types: a typo'd field or a "3" for an int is a 422 naming the field,
# not a silently different request.


def _text(max_chars: int) -> Callable[[str], str]:
    def check(v: str) -> str:
        why = text_problem(v, max_chars)
        if why is not None:
            raise ValueError(why)
        return v
    return check


# Client strings: non-empty, bounded (limits in bandit.features), UTF-8 encodable (no lone
# surrogates), no control characters. The same checks run in UserContext / Engine for in-process use.
UserId = Annotated[StrictStr, AfterValidator(_text(MAX_USER_ID_CHARS))]
Id = Annotated[StrictStr, AfterValidator(_text(MAX_ID_CHARS))]
TasteKey = Annotated[StrictStr, AfterValidator(_text(MAX_TASTE_KEY_CHARS))]
Label = Annotated[StrictStr, AfterValidator(_text(MAX_LABEL_CHARS))]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestContext(_In):
    """Where and when the page is shown."""

    device: Optional[Label] = Field(None, min_length=1, max_length=MAX_LABEL_CHARS, examples=["tv"])
    hour: Optional[StrictInt] = Field(None, ge=0, le=23, description="local hour 0..23")
    country: Optional[Label] = Field(None, min_length=1, max_length=MAX_LABEL_CHARS, examples=["US"])
    row: Optional[StrictInt] = Field(None, ge=0, description="0-based page row")


class ChooseRequest(_In):
    """A page: one artwork is chosen for each title."""

    user_id: UserId = Field(..., min_length=1, max_length=MAX_USER_ID_CHARS)
    taste: Optional[dict[TasteKey, Number]] = Field(
        None, max_length=MAX_TASTE_KEYS,
        description=f'affinities like {{"genre:crime": 0.8, "mood:dark": 0.4}}; at most {MAX_TASTE_KEYS} keys '
                    f'of at most {MAX_TASTE_KEY_CHARS} characters. A key outside the taste vocabulary (the '
                    f'tagger\'s moods and genres, the catalog\'s tags and cast, face:*) is ignored and listed in '
                    f'`warnings` (a 422 on a server run with --strict)', examples=[{"genre:crime": 0.8}]
    )
    history: Optional[list[Id]] = Field(
        None, max_length=MAX_HISTORY,
        description=f"watched title ids (at most {MAX_HISTORY}); builds a taste profile when taste is absent. "
                    f"A title the catalog lacks is ignored and listed in `warnings` (a 422 with --strict)")
    context: Optional[RequestContext] = None
    titles: list[Id] = Field(..., min_length=1, description="title ids (at most max_titles)")
    exclude: list[Id] = Field(default_factory=list, max_length=MAX_EXCLUDE,
                              description=f"artwork ids never to show in this request (at most {MAX_EXCLUDE})")
    activate: StrictBool = Field(
        True, description="false: deferred activation. The decisions are logged inactive (no feedback window, "
                          "never closed at reward 0 nor learned) until POST /v1/events/{event_id}/activate or their "
                          "first feedback; a repeat of an inactive decision on a page chosen with true activates it")


class TitleResult(BaseModel):
    """One title's choice, or its error (the rest of the page is still served)."""

    title_id: str
    artwork_id: Optional[str] = None
    image_url: Optional[str] = None
    event_id: Optional[str] = None
    probability: Optional[float] = None
    policy: Optional[str] = None
    policy_version: Optional[int] = None
    repeat: bool = False
    active: bool = Field(True, description="false (only then present): logged inactive, activate it when rendered")
    error: Optional[str] = Field(None, description="unknown_title | no_candidates | policy_error")
    message: Optional[str] = None


class InputWarning(BaseModel):
    """A request input the service does not know and ignored (a 422 on a server run with --strict)."""

    field: str = Field(..., description='dotted path in the request, e.g. "taste.genre:nonsense" or "history.2"')
    value: str = Field(..., description="the taste key or title id as sent")
    type: str = Field(..., description="unknown_taste_key (no candidate feature can match it: not a mood or "
                                       "genre of the tagger, nor a tag, cast member or face feature of the "
                                       "catalog) | unknown_title (not in the catalog)")
    reason: str


_WARNINGS = ("the request's unknown taste keys and history titles, which were ignored; absent when "
             "everything is known")


class ChooseResponse(BaseModel):
    """The page's choices, in request order."""

    user_id: str
    results: list[TitleResult]
    warnings: list[InputWarning] = Field(default_factory=list, description=_WARNINGS)


class TitleDistribution(BaseModel):
    """A title's current distribution over its allowed artworks, or its error."""

    distribution: Optional[dict[str, float]] = Field(None, description="artwork id -> probability")
    policy: Optional[str] = None
    policy_version: Optional[int] = None
    error: Optional[str] = Field(None, description="unknown_title | no_candidates | policy_error")
    message: Optional[str] = None


class DistributionResponse(BaseModel):
    user_id: str
    titles: dict[str, TitleDistribution]
    warnings: list[InputWarning] = Field(default_factory=list, description=_WARNINGS)


class FeedbackIn(_In):
    """An outcome for one decision: reward, or click/play flags."""

    event_id: Id = Field(..., min_length=1, max_length=MAX_ID_CHARS)
    reward: Optional[Number] = Field(None, description="in the configured range (default 0..1)")
    click: Optional[StrictBool] = None
    play: Optional[StrictBool] = None


class FeedbackBatchIn(_In):
    """Many outcomes at once; validated as a whole before anything is stored."""

    events: list[FeedbackIn] = Field(..., min_length=1)


class FeedbackOut(BaseModel):
    """What the post did: joined; late (the window had closed at reward 0: this positive reward was
    recorded and learned as a correction); upgraded (a stronger outcome for an event that had its
    feedback: click -> play, click:false -> click:true, reward 0 -> positive; a raised reward is
    learned as a correction); duplicate (the same or a weaker outcome: nothing changed). In a batch,
    an item can also be conflict, not_found or expired (a single post answers those with a problem:
    409, 404, 410)."""

    event_id: str
    status: str = Field(..., description="joined | late | upgraded | duplicate (batch items: also conflict | "
                                         "not_found | expired)")
    changed: bool
    reward: Optional[float] = None
    message: str = ""
    recorded: Optional[float] = Field(None, description="conflict only: the reward on record")
    posted: Optional[float] = Field(None, description="conflict only: the refused reward")


class FeedbackBatchOut(BaseModel):
    results: list[FeedbackOut]


class ActivateOut(BaseModel):
    """activated (the window starts now) or already_active (nothing changed: idempotent)."""

    event_id: str
    status: str = Field(..., description="activated | already_active")
    changed: bool
    decision_status: str = Field(..., description="open | joined | closed")
    deadline: float = Field(..., description="end of the feedback window (unix seconds)")


class TitleSummary(BaseModel):
    title_id: str
    name: str
    artworks: int = Field(..., description="candidates, disabled ones included")
    disabled: int = Field(..., description="candidates a designer disabled")
    pinned: Optional[str] = Field(None, description="the pinned artwork id, if any")


class TitlesOut(BaseModel):
    titles: list[TitleSummary]


class ArtworkTags(BaseModel):
    moods: dict[str, float]
    genres: dict[str, float]
    actors: dict[str, float]
    actors_present: list[str]


class RecognisedActor(BaseModel):
    """A cast member recognised by face in the artwork (artwork/tagging.py, FaceGallery)."""

    name: str
    confidence: float = Field(..., description="0..1: 1 / (1 + exp((distance - threshold) / 0.05)), 0.5 at the "
                                               "cast member's threshold")
    distance: Optional[float] = Field(..., description="Euclidean distance between the face's 128-d descriptor and "
                                                       "the actor's nearest reference face (dlib: under 0.6 is the "
                                                       "same person)")
    lead: bool = Field(..., description="the title's lead")


class ArtworkFaces(BaseModel):
    """Faces found in the image (dlib HOG detector) and the cast members recognised in them."""

    count: int = Field(..., description="faces found (frontal faces of at least ~1/8 of the image's longest side)")
    largest_share: float = Field(..., description="the largest face's box area / the image's area")
    largest_x: Optional[float] = Field(..., description="horizontal centre of the largest face, 0 (left) .. 1 "
                                                        "(right); null without a face")
    lead: Optional[str] = Field(..., description="the title's lead cast member; null when the title has no cast")
    lead_visible: bool = Field(..., description="the lead was recognised in this image")
    actors: list[RecognisedActor] = Field(..., description="cast members recognised, most confident first")


class ArtworkStats(BaseModel):
    impressions: int
    outcomes: int = Field(..., description="impressions whose reward is known (joined or window closed)")
    clicks: int
    reward_sum: float
    take_rate: Optional[float] = Field(..., description="clicks per outcome; null before the first outcome")
    take_rate_smoothed: float = Field(..., description="Beta(1,1) posterior mean: (clicks+1)/(outcomes+2)")


class ArtworkOut(BaseModel):
    artwork_id: str
    image_url: str
    sha256: str
    width: int
    height: int
    source: str
    disabled: bool
    pinned: bool
    tags: ArtworkTags
    faces: Optional[ArtworkFaces] = Field(..., description="null: the image has not been scanned for faces yet")
    stats: ArtworkStats


class TitleArtworksOut(BaseModel):
    title_id: str
    artworks: list[ArtworkOut]


class FlagsOut(BaseModel):
    artwork_id: str
    title_id: str
    pinned: bool
    disabled: bool


class UnpinOut(BaseModel):
    title_id: str
    pinned: None = None


class SessionTitle(BaseModel):
    artwork_id: str
    event_id: str
    expires: float = Field(..., description="unix seconds")


class SessionOut(BaseModel):
    user_id: str
    titles: dict[str, SessionTitle]


class DeploymentOut(BaseModel):
    id: Optional[str] = Field(..., description="the deployment's first snapshot (null until it is written)")
    source: str = Field(..., description='how it began: "deployed from FILE sha256=...", "promoted from FILE '
                        'sha256=...", "deployed: a new NAME policy", "A/B split: ...", "a new NAME policy ..."')
    file: Optional[str] = Field(..., description="the deployed or promoted policy file, if any")
    sha256: Optional[str] = Field(..., description="that file's sha256")
    trained_rows: Optional[int] = Field(..., description="decision-log rows the file learned offline (not relearned)")


class LineageOut(BaseModel):
    snapshot: Optional[str] = Field(..., description="the newest snapshot of the served policy (null: none yet)")
    kind: str = Field(..., description="policy kind: bayes | thompson | vw | uniform | fixed | split")
    policy: str
    version: int = Field(..., description="the policy's version when that snapshot was written")
    learned_seq: int = Field(..., description="the last learn event that snapshot includes")
    created: Optional[float] = Field(..., description="unix seconds the snapshot was written")
    source: str = Field(..., description='"learned online", "deployed from FILE sha256=...", "promoted from FILE '
                        'sha256=...", "rolled back to SNAPSHOT (set aside: ...)", ...')
    trained_rows: Optional[int] = Field(..., description="rows learned offline by the deployed file, if any")
    parent: Optional[str] = Field(..., description="the snapshot this one continues from")
    deployment: DeploymentOut


class ArmOut(BaseModel):
    policy: str = Field(..., description='the arm\'s name as its decisions log it ("A:bayes-ts", "B:thompson")')
    version: int


class AbOut(BaseModel):
    share_b: float = Field(..., description="share of users (by a hash of user_id) served by arm B")
    a: ArmOut
    b: ArmOut


class HealthOut(BaseModel):
    status: str = Field(..., description="ok | starting | degraded (503: the last write to a store failed)")
    policy: str
    policy_version: int
    learned_seq: int
    lineage: LineageOut = Field(..., description="where the served policy came from (README: Deploying a policy)")
    ab: Optional[AbOut] = Field(..., description="the arms of an online A/B test (serve --ab), else null")
    encoder: Optional[str]
    titles: int
    artworks: int
    event_log: str = Field(..., description="the event log's backend: sqlite | postgresql")
    event_log_location: str = Field(..., description="the SQLite file, or the PostgreSQL URL with its password "
                                    "masked")
    failing_store: Optional[str] = Field(None, description="degraded only: the store whose write failed")
    error: Optional[str] = Field(None, description="degraded only: the store's error")
    failing_since: Optional[float] = Field(None, description="degraded only: unix seconds")
    role: Optional[str] = Field(None, description="serve --ray only: chooser | learner (absent: one process does all)")
    replica: Optional[dict[str, Any]] = Field(None, description="serve --ray only: this replica's pid, the snapshot it "
                                              "serves, its age in seconds and the learn events the log holds beyond it")


class PinIn(_In):
    artwork_id: Id = Field(..., min_length=1, max_length=MAX_ID_CHARS)


class DistributionRequest(ChooseRequest):
    """Same body as /v1/choose; answers with the policy's distributions and logs nothing."""


class Problem(BaseModel):
    """RFC 9457 problem details (media type application/problem+json)."""

    type: str = Field(..., description="URI reference of the problem type; GET it for its description",
                      examples=["/problems/not_found"])
    title: str = Field(..., description="short summary of the problem type")
    status: int = Field(..., description="the HTTP status code")
    detail: str = Field(..., description="what went wrong with this request")
    instance: str = Field(..., description="the request path, as sent")
    error: str = Field(..., description="short code of the problem type (the last segment of type)")
    request_id: str = Field(..., description="the X-Request-ID of the response")


class FieldError(BaseModel):
    field: str = Field(..., description='dotted path of the field, e.g. "context.hour" or "events.1.reward"; '
                                        '"body" for the body as a whole')
    reason: str
    type: str = Field(..., description="machine-readable reason, e.g. missing, json_invalid, value_error")


class ValidationProblem(Problem):
    errors: list[FieldError]


class FeedbackProblem(Problem):
    """A single feedback post that changed nothing: unknown event (404) or expired (410)."""

    event_id: str
    changed: bool = False
    reward: Optional[float] = Field(None, description="the reward on record (0 for an expired event)")


class ConflictProblem(FeedbackProblem):
    """409: the event already has a different positive reward."""

    recorded: float = Field(..., description="the reward on record")
    posted: float = Field(..., description="the refused reward")


class ProblemType(BaseModel):
    type: str
    title: str
    status: int
    description: str


# -- middleware ------------------------------------------------------------------------------------


class RequestContextMiddleware:
    """Outermost: gives every request an id (the client's X-Request-ID when it is sane, else a new
    one), sends it back on every response, times the request into the latency histogram under its
    route template and writes the access log line.

    Route templates, not raw paths, keep the histogram's label set bounded whatever paths clients
    invent (`/v1/titles/{title_id}/artworks`, "unmatched" for unknown paths).
    """

    def __init__(self, app: Callable[..., Awaitable[None]], latency: Histogram, routes: Any) -> None:
        self.app = app
        self.latency = latency
        self.routes = routes  # the app's router, for requests answered before routing (401, 413, 503)

    def _route(self, scope: dict) -> str:
        route = scope.get("route")
        if route is None:
            for r in self.routes.routes:
                match, _ = r.matches(scope)
                if match is not Match.NONE:
                    route = r
                    if match is Match.FULL:
                        break
        return getattr(route, "path", None) or "unmatched"

    async def __call__(self, scope: dict, receive: Callable[..., Awaitable[dict]], send: Callable[..., Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", ()) if k == b"x-request-id"), b"").decode("latin-1")
        rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        t0 = time.perf_counter()
        status = 500  # what the client sees if the app dies before answering (the server sends 500)

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            took = time.perf_counter() - t0
            method = scope.get("method", "")
            if method not in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
                method = "other"  # bounded label values, whatever method the parser let through
            self.latency.labels(method, self._route(scope), str(status)).observe(took)
            if access_log.isEnabledFor(logging.INFO):
                client = scope.get("client") or ("-", 0)
                target = _instance(scope) + ("?" + scope["query_string"].decode("latin-1")
                                             if scope.get("query_string") else "")
                access_log.info('%s:%s "%s %s HTTP/%s" %d %.1fms rid=%s', client[0], client[1], method,
                                target.encode("ascii", "backslashreplace").decode("ascii"),
                                scope.get("http_version", "1.1"), status, took * 1000, rid)


class BodyLimitMiddleware:
    """Refuse bodies over `limit` bytes with 413: by Content-Length before reading, else while streaming."""

    def __init__(self, app: Callable[..., Awaitable[None]], limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, scope: dict, send: Callable[..., Awaitable[None]]) -> None:
        await _send_problem(scope, send, "body_too_large", f"request body larger than {self.limit} bytes",
                            [(b"connection", b"close")])

    async def __call__(self, scope: dict, receive: Callable[..., Awaitable[dict]], send: Callable[..., Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                if not v.isdigit() or int(v) > self.limit:
                    await self._refuse(scope, send)
                    return
        seen = 0
        started = False
        refused = False

        async def limited_receive() -> dict:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:  # chunked upload without Content-Length
                    # Answer now and tell the app the client left: raising instead would be
                    # turned into a 400 by FastAPI's body parser.
                    refused = True
                    if not started:
                        await self._refuse(scope, send)
                    return {"type": "http.disconnect"}
            return msg

        async def tracking_send(msg: dict) -> None:
            nonlocal started
            if refused:
                return  # the 413 already went out; drop whatever the app answers
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        await self.app(scope, limited_receive, tracking_send)


def _protected(scope: dict) -> bool:
    """Requests that need the API key (when one is configured): every write, and the user session
    read (it returns a user's artworks and event ids, which are enough to post their feedback)."""
    if scope.get("method") not in ("GET", "HEAD", "OPTIONS"):
        return True
    path = scope.get("path", "")
    return path.startswith("/v1/users/") and path.endswith("/session")


class ApiKeyMiddleware:
    """Check X-API-Key before anything else reads the request: a caller without the key gets 401,
    never a validation error that tells them what a well-formed body looks like."""

    def __init__(self, app: Callable[..., Awaitable[None]], api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: dict, receive: Callable[..., Awaitable[dict]], send: Callable[..., Awaitable[None]]) -> None:
        if scope["type"] == "http" and _protected(scope):
            given = next((v for k, v in scope.get("headers", ()) if k == b"x-api-key"), None)
            if given is None or not hmac.compare_digest(given, self.key):
                await _send_problem(scope, send, "unauthorized", _UNAUTHORIZED, [(b"www-authenticate", b"ApiKey")])
                return
        await self.app(scope, receive, send)


_UNAUTHORIZED = "missing or wrong API key (header X-API-Key)"


def _is_json(ctype: str) -> bool:
    """application/json or application/*+json, parameters ignored (FastAPI's own rule)."""
    main = ctype.split(";", 1)[0].strip().lower()
    return main == "application/json" or (main.startswith("application/") and main.endswith("+json"))


class _JsonRoute(APIRoute):
    """Checks a body's media type (415 for anything but JSON) and parses a JSON body before
    FastAPI does, so that nesting too deep for the parser (RecursionError) or bytes that are not
    UTF-8 are a 422 naming the body, like every other malformed body, not FastAPI's generic 400.
    The parsed value is cached on the request (Starlette's `Request.json`), so the body is parsed once."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()
        takes_body = self.body_field is not None

        async def parse_first(request: Request) -> Response:
            # A route without a body (activate, unpin, disable, enable) ignores whatever is sent.
            if takes_body:
                ctype = request.headers.get("content-type", "")
                body = await request.body()
                if body and ctype and not _is_json(ctype):
                    # Without this, a form-encoded body (curl -d's default) is a confusing 422
                    # "Input should be a valid dictionary".
                    raise ProblemError("unsupported_media_type",
                                       f"the body must be JSON (Content-Type: application/json), got {ctype!r}")
                if body and (not ctype or _is_json(ctype)):
                    try:
                        await request.json()
                    except json.JSONDecodeError:
                        pass  # FastAPI reports it (422 json_invalid, with the position)
                    except (RecursionError, UnicodeDecodeError, ValueError) as e:
                        why = ("nested too deeply" if isinstance(e, RecursionError)
                               else "is not valid UTF-8 JSON")
                        raise RequestValidationError([{"loc": ("body",), "msg": f"JSON body {why}",
                                                       "type": "json_invalid"}]) from None
            response = await handler(request)
            if (response.status_code < 400 and request.method in ("POST", "DELETE")
                    and request.url.path != "/v1/policy/distribution"):
                # A write went through: the store that failed before (disk full...) works again.
                getattr(request.app.state, "store_fault", {}).clear()
            return response

        return parse_first


# -- app -------------------------------------------------------------------------------------------


def _json(obj: Any, status_code: int = 200) -> Response:
    return Response(json.dumps(obj, separators=(",", ":")), status_code=status_code, media_type="application/json")


def _field_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        out.append({"field": _safe(".".join(loc) or "body"), "reason": _safe(e.get("msg", "invalid")),
                    "type": _safe(e.get("type", "") or "invalid")})
    return out


def _validation_detail(errors: list[dict[str, Any]]) -> str:
    shown = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:_DETAIL_ERRORS])
    more = len(errors) - _DETAIL_ERRORS
    return f"{len(errors)} invalid field{'s' if len(errors) != 1 else ''}: {shown}" + (f" (and {more} more)" if more > 0 else "")


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ContainErrorsMiddleware:
    """An unexpected exception becomes a 500 problem, and stops here.

    Left to Starlette's outer error middleware, the exception is re-raised after the plain-text
    500 is sent, and uvicorn then drops the keep-alive connection: a client library would see a
    reset rather than an answer. The traceback goes to the server log, never into the body.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:  # noqa: BLE001 - the point: nothing unexpected escapes to the client
            log.exception("unhandled error in %s %s (request %s)", scope.get("method"), scope.get("path"),
                          request_id_of(scope))
            if started:  # too late for a clean answer: let the server close the connection
                raise
            await _send_problem(scope, send, "internal", "internal server error (see the server log)")


# -- OpenAPI ---------------------------------------------------------------------------------------

_WHY = {
    401: "missing or wrong X-API-Key",
    404: "not found",
    409: "a positive reward contradicting the one on record (both given); nothing changed",
    410: "the feedback window closed and the post carried no positive reward; nothing changed",
    413: "body over --max-body-bytes (refused before it is read)",
    415: "a body that is not JSON",
    422: "invalid field, path parameter or JSON body; errors names each field",
    500: "unexpected error (details in the server log)",
    503: "a store write failed (disk full, I/O error; Retry-After), or --max-connections reached",
}
_PROBLEM_SCHEMAS = ("Problem", "ValidationProblem", "FeedbackProblem", "ConflictProblem")


def _errors(*codes: int, why: Mapping[int, str] | None = None,
            models: Mapping[int, type[BaseModel]] | None = None) -> dict[int | str, dict[str, Any]]:
    """Declared error responses; every operation also gets 413, 500 and 503 (any request can hit
    the body limit, the connection limit or a bug). The schemas are moved under
    application/problem+json by `_finish_openapi`."""
    why, models = dict(why or {}), dict(models or {})
    out: dict[int | str, dict[str, Any]] = {}
    for code in sorted({*codes, 413, 500, 503}):
        model = models.get(code, ValidationProblem if code == 422 else Problem)
        out[code] = {"model": model, "description": why.get(code, _WHY[code])}
    return out


def _finish_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """Make the generated spec say what the wire says: problem schemas under
    application/problem+json, and no 422 that FastAPI adds by itself to every operation with a
    parameter (a GET with a plain string path parameter cannot fail validation)."""
    for ops in spec.get("paths", {}).values():
        for op in ops.values():
            responses = op.get("responses", {})
            for code, resp in list(responses.items()):
                content = resp.get("content", {})
                for media in list(content):
                    name = content[media].get("schema", {}).get("$ref", "").rsplit("/", 1)[-1]
                    if name == "HTTPValidationError":
                        del responses[code]
                        break
                    # FastAPI files every extra response under the route's own media type
                    # (application/json, text/plain for /metrics); a problem travels as problem+json.
                    if int(code) >= 400 and name in _PROBLEM_SCHEMAS and media != PROBLEM_MEDIA_TYPE:
                        content[PROBLEM_MEDIA_TYPE] = content.pop(media)
    schemas = spec.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return spec


# -- the app ---------------------------------------------------------------------------------------


def create_app(config: ServeConfig, engine: Engine | None = None) -> FastAPI:
    """The FastAPI app; the engine starts in the lifespan and is closed (snapshotted) on shutdown."""
    state: dict[str, Engine] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        eng = engine or Engine(config.store, config.engine)
        eng.start()
        # Everything loaded so far (modules, the model, the catalog view) lives as long as the
        # server: out of the cyclic GC's sight, full collections stop costing tens of ms.
        gc.collect()
        gc.freeze()
        state["engine"] = eng
        app.state.engine = eng
        try:
            yield
        finally:
            eng.close()

    app = FastAPI(
        title="artwork-engine",
        version="1",
        description="Personalised artwork selection: choose an artwork per title, post feedback, the policy learns "
                    "online. Errors are RFC 9457 problems (application/problem+json); every response has an "
                    "X-Request-ID header.",
        lifespan=lifespan,
        # No 307 to "/v1/choose" for "/v1/choose/": the redirect would be built from the Host header
        # a client sent. A trailing slash is simply an unknown path (404).
        redirect_slashes=False,
        # Served below from the packaged assets: the defaults load Swagger UI and ReDoc from a CDN,
        # which leaves /docs blank on a machine without internet.
        docs_url=None,
        redoc_url=None,
    )
    app.router.route_class = _JsonRoute

    # One registry per app, never prometheus_client's global one: several servers (tests, the
    # demo) run in one process, and each must count only its own requests.
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    latency = Histogram("artwork_http_request_duration_seconds",
                        "request latency by method, route template and status code",
                        ["method", "route", "status"], registry=registry,
                        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
    app.state.metrics_registry = registry

    app.add_middleware(ContainErrorsMiddleware)
    app.add_middleware(BodyLimitMiddleware, limit=config.max_body_bytes)
    if config.api_key is not None:  # the key is checked before the body is even looked at
        app.add_middleware(ApiKeyMiddleware, api_key=config.api_key)
    app.add_middleware(RequestContextMiddleware, latency=latency, routes=app.router)  # outermost

    async def _overloaded(scope: dict, receive: Any, send: Callable[..., Awaitable[None]]) -> None:
        await _send_problem(scope, send, "overloaded",
                            f"{config.max_connections} connections and requests already open (--max-connections)",
                            [(b"retry-after", b"1"), (b"connection", b"close")])

    # What the connection limit answers with (see _read_timeout_protocol): a problem with a
    # request id, counted and logged like any other answer, but without running the app.
    app.state.overloaded_app = RequestContextMiddleware(_overloaded, latency, app.router)

    def eng() -> Engine:
        return state["engine"]

    api_key_header = APIKeyHeader(name="X-API-Key", scheme_name="ApiKey", auto_error=False,
                                  description="the server's API key (artwork serve --api-key / $ARTWORK_API_KEY)")

    def require_key(x_api_key: Optional[str] = Security(api_key_header)) -> None:
        # ApiKeyMiddleware has already refused a wrong key; this is the OpenAPI security scheme
        # (Swagger's Authorize button) and a second check should the middleware order change.
        if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), config.api_key.encode()):  # type: ignore[union-attr]
            raise ProblemError("unauthorized", _UNAUTHORIZED, {"WWW-Authenticate": "ApiKey"})

    # Without a key nothing is protected, and the spec says so (no security, no 401).
    keyed = [Depends(require_key)] if config.api_key is not None else []
    auth = (401,) if config.api_key is not None else ()

    @app.exception_handler(ProblemError)
    async def _problem_error(request: Request, exc: ProblemError) -> Response:
        return _problem_response(request, exc.code, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = _field_errors(list(exc.errors()))
        return _problem_response(request, "validation", _validation_detail(errors), errors=errors)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> Response:
        errors = [{"field": _safe(exc.field), "reason": _safe(exc.reason), "type": "value_error"}]
        return _problem_response(request, "validation", _validation_detail(errors), errors=errors)

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> Response:
        return _problem_response(request, "not_found", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # The router's own answers (unknown path, wrong method) and anything else Starlette raises.
        target = f"{request.method} {_instance(request.scope)}"
        if exc.status_code == 404:
            return _problem_response(request, "not_found", f"no such endpoint or file: {target}", exc.headers)
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            return _problem_response(request, "method_not_allowed", f"{target}: allowed methods are {allowed}",
                                     exc.headers)
        # Nothing here raises other statuses today; should Starlette, the RFC's generic form
        # (type about:blank, the status phrase as title) still keeps the body a problem.
        try:
            phrase = http.HTTPStatus(exc.status_code).phrase
        except ValueError:
            phrase = "Error"
        body = {"type": "about:blank", "title": phrase, "status": exc.status_code, "detail": _safe(exc.detail),
                "instance": _instance(request.scope), "error": "http_error", "request_id": request_id_of(request.scope)}
        return Response(_problem_bytes(body), exc.status_code, headers=exc.headers, media_type=PROBLEM_MEDIA_TYPE)

    # Disk full, I/O error, a locked or corrupt file: the request is refused with 503 and a problem
    # (never a 500 with a plain body), and /health says which store failed until a write
    # succeeds again. Designer controls write the catalog; everything else writes the event log.
    app.state.store_fault = {}

    @app.exception_handler(sqlite3.Error)
    async def _store_error(request: Request, exc: sqlite3.Error) -> Response:
        designer = request.url.path.rsplit("/", 1)[-1] in ("pin", "disable", "enable")
        e = state.get("engine")
        store = str(config.store if designer or e is None else e.events_path)
        # SQLite rolls a transaction back by itself on SQLITE_FULL / SQLITE_IOERR, so the caller's own
        # ROLLBACK then fails with "no transaction is active": report the error underneath it.
        cause: BaseException = exc
        while isinstance(cause.__context__, sqlite3.Error):
            cause = cause.__context__
        why = _safe(cause)
        log.error("store %s failed on %s %s (request %s): %s", store, request.method, request.url.path,
                  request_id_of(request.scope), why)
        app.state.store_fault.update(store=store, error=why, since=time.time())
        return _problem_response(request, "store_unavailable", f"{store}: {why}", {"Retry-After": "30"})

    def _user(body: ChooseRequest) -> Any:
        ctx = body.context.model_dump() if body.context else {}
        return context_from_request({"user_id": body.user_id, "taste": body.taste or {}, "history": body.history or [], **ctx})

    def _checked_user(body: ChooseRequest) -> tuple[Any, list[dict[str, str]]]:
        """The request's user and its warnings (taste keys outside the vocabulary, history titles the
        catalog lacks); with --strict those are a 422 naming each, before anything is chosen or logged."""
        user = _user(body)
        found = eng().input_warnings(user) if body.taste or body.history else []
        if found and config.strict:
            errors = [{"field": _safe(w.field), "reason": _safe(w.reason), "type": w.type} for w in found]
            raise ProblemError("validation", _validation_detail(errors), errors=errors)
        return user, [w.to_dict() for w in found]

    unknown_422 = {422: _WHY[422] + "; with --strict also an unknown taste key or history title (type "
                              "unknown_taste_key | unknown_title), nothing logged"}

    # Handlers answer with _json (hand-serialised) rather than letting FastAPI validate and encode
    # through the response model: that costs more than the 40 decisions of a page. The models
    # stay for the OpenAPI schema, and tests/test_api_contract.py checks the bodies against it.

    @app.post("/v1/choose", response_model=ChooseResponse, dependencies=keyed, tags=["decisions"],
              responses=_errors(*auth, 415, 422, why=unknown_422))
    def choose(body: ChooseRequest) -> Response:
        """Choose an artwork per title; each decision is logged before the response is sent. Unknown
        taste keys and history titles are ignored and listed in `warnings` (--strict: a 422)."""
        user, warnings = _checked_user(body)
        results = eng().choose(user, body.titles, body.exclude, activate=body.activate)
        out: dict[str, Any] = {"user_id": body.user_id, "results": [r.to_dict() for r in results]}
        if warnings:
            out["warnings"] = warnings
        return _json(out)

    @app.post("/v1/policy/distribution", response_model=DistributionResponse, dependencies=keyed, tags=["debug"],
              responses=_errors(*auth, 415, 422, why=unknown_422))
    def distribution(body: DistributionRequest) -> Response:
        """The policy's current probabilities per title (nothing logged, no sticky sessions)."""
        user, warnings = _checked_user(body)
        out: dict[str, Any] = {"user_id": body.user_id, "titles": eng().distribution(user, body.titles, body.exclude)}
        if warnings:
            out["warnings"] = warnings
        return _json(out)

    def _outcome_response(request: Request, o: FeedbackOutcome) -> Response:
        # A late click or an upgrade is a success (200, changed): it was stored and learned.
        code = {"conflict": "conflict", "not_found": "not_found", "expired": "expired"}.get(o.status)
        if code is None:
            return _json(o.to_dict())
        extra: dict[str, Any] = {"event_id": o.event_id, "changed": False, "reward": o.reward}
        if code == "conflict":
            extra.update(recorded=o.recorded, posted=o.posted)
        return _problem_response(request, code, o.message, **extra)

    @app.post("/v1/feedback", response_model=FeedbackOut, dependencies=keyed, tags=["feedback"],
              responses=_errors(*auth, 404, 409, 410, 415, 422,
                                why={404: "unknown event id"},
                                models={404: FeedbackProblem, 409: ConflictProblem, 410: FeedbackProblem}))
    def feedback(body: FeedbackIn, request: Request) -> Response:
        """Join an outcome to its decision; a positive reward after the window closed is learned as a
        correction (status late); a stronger outcome later raises the reward (status upgraded); the
        same or a weaker one changes nothing (status duplicate). Problems: unknown event 404, a
        contradicting reward 409, a non-positive post after the window closed 410."""
        return _outcome_response(request, eng().feedback(body.event_id, reward=body.reward, click=body.click,
                                                         play=body.play))

    @app.post("/v1/feedback/batch", response_model=FeedbackBatchOut, dependencies=keyed, tags=["feedback"],
              responses=_errors(*auth, 415, 422))
    def feedback_batch(body: FeedbackBatchIn) -> Response:
        """Many outcomes; each result has its own status (joined / late / upgraded / duplicate / conflict /
        not_found / expired); the batch itself answers 200."""
        out = eng().feedback_many([e.model_dump() for e in body.events])
        return _json({"results": [o.to_dict() for o in out]})

    @app.post("/v1/events/{event_id}/activate", response_model=ActivateOut, dependencies=keyed, tags=["decisions"],
              responses=_errors(*auth, 404, 422, why={404: "unknown event id",
                                                      422: "an event id that is not valid text (control characters)"}))
    def activate(event_id: str) -> Response:
        """Deferred activation: the decision (chosen with activate=false) was rendered; its feedback
        window starts now. Idempotent: an active decision answers already_active and keeps its window."""
        return _json(eng().activate(event_id))

    @app.get("/v1/titles", response_model=TitlesOut, tags=["catalog"], responses=_errors())
    def titles() -> Response:
        """Every title of the catalog with its artwork counts (all, disabled) and its pinned artwork."""
        return _json({"titles": eng().titles()})

    @app.get("/v1/titles/{title_id}/artworks", response_model=TitleArtworksOut, tags=["catalog"],
             responses=_errors(404, why={404: "unknown title id"}))
    def title_artworks(title_id: str) -> Response:
        """A title's candidates with tags, designer flags and running stats."""
        return _json({"title_id": title_id, "artworks": eng().title_artworks(title_id)})

    @app.get("/v1/artworks/{artwork_id}/image", tags=["catalog"], response_class=Response,
             responses={200: {"description": "the image bytes",
                              "content": {t: {"schema": {"type": "string", "format": "binary"}}
                                          for t in ("image/jpeg", "image/png", "image/webp", "application/octet-stream")}},
                        304: {"description": "If-None-Match matched the ETag: no body"},
                        **_errors(404, why={404: "unknown artwork id"})})
    def image(artwork_id: str, if_none_match: Optional[str] = Header(None)) -> Response:
        """The image bytes; ETag is the sha256, immutable caching, 304 on a matching If-None-Match."""
        e = eng()
        etag = f'"{e.image_etag(artwork_id)}"'
        headers = {"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"}
        if if_none_match is not None:
            tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
            if etag in tags or "*" in tags:
                return Response(status_code=304, headers=headers)
        data, _, ctype = e.image(artwork_id)
        return Response(content=data, media_type=ctype, headers=headers)

    @app.post("/v1/titles/{title_id}/pin", response_model=FlagsOut, dependencies=keyed, tags=["designer"],
              responses=_errors(*auth, 404, 415, 422, why={404: "unknown artwork id",
                                                           422: "invalid body, or an artwork of another title"}))
    def pin(title_id: str, body: PinIn) -> Response:
        """Pin an artwork for its title: everybody sees it from the next request on."""
        return _json(eng().pin(title_id, body.artwork_id))

    @app.delete("/v1/titles/{title_id}/pin", response_model=UnpinOut, dependencies=keyed, tags=["designer"],
                responses=_errors(*auth, 404, why={404: "unknown title id"}))
    def unpin(title_id: str) -> Response:
        """Remove a title's pin."""
        return _json(eng().unpin(title_id))

    @app.post("/v1/artworks/{artwork_id}/disable", response_model=FlagsOut, dependencies=keyed, tags=["designer"],
              responses=_errors(*auth, 404, why={404: "unknown artwork id"}))
    def disable(artwork_id: str) -> Response:
        """Never show this artwork again (until enabled)."""
        return _json(eng().set_flags(artwork_id, disabled=True))

    @app.post("/v1/artworks/{artwork_id}/enable", response_model=FlagsOut, dependencies=keyed, tags=["designer"],
              responses=_errors(*auth, 404, why={404: "unknown artwork id"}))
    def enable(artwork_id: str) -> Response:
        """Undo a disable."""
        return _json(eng().set_flags(artwork_id, disabled=False))

    @app.get("/v1/users/{user_id}/session", response_model=SessionOut, dependencies=keyed, tags=["decisions"],
             responses=_errors(*auth, 404, why={404: "the user has no decisions within the session TTL"}))
    def user_session(user_id: str) -> Response:
        """The user's sticky choices within the session TTL: per title the artwork shown, its event id
        and when the session expires. Needs X-API-Key when the server has one (event ids are enough
        to post feedback for the user). 404 for a user with none."""
        return _json(eng().user_session(user_id))

    def _health() -> tuple[dict[str, Any], int]:
        out = eng().health()
        fault = dict(app.state.store_fault)
        if fault:  # the last write failed: degraded (503) until a write succeeds again
            out.update(status="degraded", failing_store=fault["store"], error=fault["error"],
                       failing_since=fault["since"])
            return out, 503
        return out, 200

    health_errors = _errors()
    # A degraded store is a health report (application/json), not a failed request; the
    # connection limit still answers with a problem.
    health_errors[503] = {"model": HealthOut, "description": "degraded: the last write to a store failed "
                          "(application/json); or --max-connections reached (a problem)",
                          "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}

    @app.get("/health", response_model=HealthOut, tags=["ops"], responses=health_errors)
    def health() -> Response:
        """Liveness, policy version, encoder, catalog size; 503 with status degraded and the failing
        store while writes fail (disk full, I/O error), until a write succeeds again."""
        out, code = _health()
        return _json(out, code)

    @app.head("/health", include_in_schema=False)
    def health_head() -> Response:
        """Liveness for probes that send HEAD."""
        return Response(status_code=_health()[1], media_type="application/json")

    @app.get("/metrics", response_class=PlainTextResponse, tags=["ops"],
             responses={200: {"description": "Prometheus text format 0.0.4",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}, **_errors()})
    def metrics() -> PlainTextResponse:
        """Prometheus text format: the engine's counters and gauges, request latency per route
        template, and the process's own metrics."""
        return PlainTextResponse(eng().metrics_text() + prometheus_text(registry),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/problems/{code}", response_model=ProblemType, tags=["ops"],
             responses=_errors(404, why={404: "unknown problem type"}))
    def problem_type(code: str, request: Request) -> Response:
        """What a problem type means: the documentation a problem's `type` points at."""
        if code not in PROBLEMS:
            raise ProblemError("not_found", f"unknown problem type {code!r}; known: {', '.join(sorted(PROBLEMS))}")
        status, title, what = PROBLEMS[code]
        return _json({"type": f"{request.scope.get('root_path', '')}/problems/{code}", "title": title,
                      "status": status, "description": what})

    # -- docs from packaged assets (bandit/static, see artwork/assets/LICENSES.md) ---------------------------
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    swagger_params = {"persistAuthorization": False, "validatorUrl": None}

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            swagger_js_url=f"{root}/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{root}/static/swagger-ui/favicon-32x32.png",
            swagger_ui_parameters=swagger_params)

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}/static/redoc/redoc.standalone.js",
                              redoc_favicon_url=f"{root}/static/swagger-ui/favicon-32x32.png",
                              with_google_fonts=False)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _finish_openapi(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


# -- slow clients (the one-learner-per-store lock: bandit.storelock) ----------------------------------


def _read_timeout_protocol(read_timeout: float, overloaded_app: Callable[..., Awaitable[None]] | None = None) -> type:
    """uvicorn's httptools protocol with a deadline for reading each request.

    uvicorn (0.54) times out only idle kept-alive connections *after* a response; a client that
    opens a connection and sends nothing, or a partial request line or headers, or a body byte a
    minute, holds the connection forever. Here a connection must send a whole request (request
    line, headers and body) within `read_timeout` seconds of connecting or of starting that
    request, else it is closed. The clock stops once the request is read: slow handlers and slow
    response reads are not affected. Falls back to uvicorn's default protocol without httptools.

    Past uvicorn's `limit_concurrency`, uvicorn answers a plain-text 503 of its own; with
    `overloaded_app` (the app's `state.overloaded_app`) that request is answered by it instead:
    a problem+json 503 with a request id, still without running the app.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
        log.warning("httptools is not installed: requests have no read deadline")
        return None  # type: ignore[return-value]

    class ReadTimeoutProtocol(HttpToolsProtocol):  # type: ignore[misc, valid-type]
        _read_timer: Any = None

        def _arm(self) -> None:
            if self._read_timer is None:
                self._read_timer = self.loop.call_later(read_timeout, self._read_timed_out)

        def _disarm(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _read_timed_out(self) -> None:
            self._read_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_headers_complete(self) -> None:
            limit = self.limit_concurrency
            if overloaded_app is None or limit is None or (len(self.connections) < limit and len(self.tasks) < limit):
                super().on_headers_complete()
                return
            # uvicorn picks the app to run in here; run ours, with its own check switched off.
            app = self.app
            self.app, self.limit_concurrency = overloaded_app, None
            try:
                super().on_headers_complete()
            finally:
                self.app, self.limit_concurrency = app, limit
            log.warning("connection limit (%d) reached: answered 503", limit)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return ReadTimeoutProtocol


# -- command line ----------------------------------------------------------------------------------


#: `serve` reads every option (but --api-key, which keeps $ARTWORK_API_KEY) from
#: $ARTWORK_SERVE_<OPTION>: upper case, '-' as '_' (ARTWORK_SERVE_PORT, ARTWORK_SERVE_EXPLORE_SHARE).
SERVE_ENV_PREFIX = "ARTWORK_SERVE"


class PolicySpec(click.ParamType):
    """A servable policy name, or the path of an existing file (whether it holds a policy is checked
    when the engine reads it, with the file named in the error)."""

    name = "policy"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        value = str(value)
        if value in POLICY_KINDS or os.path.isfile(value):
            return value
        looks_like_path = os.sep in value or "." in value
        self.fail(f"{value!r} is not one of {', '.join(map(repr, POLICY_KINDS))}"
                  + (f", and there is no file {value}" if looks_like_path else ", nor a saved policy file"), param, ctx)
# Keys a config file may not set, and why: the catalog is chosen the same way for every command.
_NOT_IN_CONFIG = {"store": "the catalog is given by --store or $ARTWORK_STORE, as for every command",
                  "config": "a config file cannot name another one"}


def _toml_kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _expected(param: click.Option, value: Any) -> str | None:
    """What `param` takes in a TOML file, or None when `value` is of that kind. Checked before
    click converts, which would take the string "8000" for a port: in a typed file that is a mistake."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if param.is_flag:
        return None if isinstance(value, bool) else "true or false"
    if param.nargs == 2:
        ok = isinstance(value, list) and len(value) == 2 and all(number(v) for v in value)
        return None if ok else "an array of 2 numbers, e.g. [0.0, 1.0]"
    if isinstance(param.type, click.types.IntParamType):
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if isinstance(param.type, click.types.FloatParamType):
        return None if number(value) else "a number"
    if isinstance(param.type, click.Choice):
        return None if isinstance(value, str) else f"one of {', '.join(map(repr, param.type.choices))}"
    return None if isinstance(value, str) else "a string"


def _check_serve_env(ctx: click.Context) -> None:
    """$ARTWORK_SERVE_* checked up front, so that a bad value names its variable (click's own
    message names only the option) and a misspelt one is an error rather than silently ignored."""
    import difflib

    known = {f"{SERVE_ENV_PREFIX}_{o.name.upper()}": o for o in ctx.command.params
             if isinstance(o, click.Option) and o.envvar is None and o.name != "store"}
    for var in sorted(v for v in os.environ if v.startswith(SERVE_ENV_PREFIX + "_")):
        opt, value = known.get(var), os.environ[var]
        if opt is None:
            elsewhere = {"STORE": "the catalog is $ARTWORK_STORE", "API_KEY": "the API key is $ARTWORK_API_KEY"}
            hint = elsewhere.get(var.removeprefix(SERVE_ENV_PREFIX + "_"))
            near = difflib.get_close_matches(var, known, n=1, cutoff=0.85)
            hint = hint or (f"did you mean {near[0]}?" if near else f"known: {', '.join(sorted(known))}")
            raise click.UsageError(f"environment variable {var} is not a serve setting; {hint}", ctx)
        if not value or opt.name == "config":
            continue  # click ignores an empty variable; --config reports its own file
        try:
            opt.type_cast_value(ctx, opt.type.split_envvar_value(value) if opt.nargs != 1 else value)
        except click.BadParameter as e:
            raise click.UsageError(f"environment variable {var}={value!r}: {e.message}", ctx) from None


def _load_serve_config(ctx: click.Context, param: click.Parameter, path: str | None) -> None:
    """--config FILE.toml: its keys become the defaults of serve's other options, so click's own
    order of precedence applies: command line, then environment, then the file, then the default."""
    import difflib

    _check_serve_env(ctx)
    if path is None:
        return
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI (a dependency there)
        import tomli as tomllib

    def bad(message: str) -> click.BadParameter:
        return click.BadParameter(f"{path}: {message}", ctx=ctx, param=param)

    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise bad(f"not valid TOML ({e})") from None
    except OSError as e:
        raise bad(f"cannot read it ({e.strerror})") from None
    options = {o.opts[0].removeprefix("--"): o for o in ctx.command.params
               if isinstance(o, click.Option) and o.opts[0].startswith("--") and o.name not in _NOT_IN_CONFIG}
    defaults: dict[str, Any] = {}
    for key, value in doc.items():
        if key in _NOT_IN_CONFIG:
            raise bad(f"key {key!r} is not allowed here: {_NOT_IN_CONFIG[key]}")
        opt = options.get(key)
        if opt is None:
            near = difflib.get_close_matches(key.replace("_", "-"), options, n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise bad(f"unknown key {key!r}; {hint}keys are serve's option names without '--': "
                      f"{', '.join(sorted(options))}")
        want = _expected(opt, value)
        if want is not None:
            raise bad(f"key {key!r}: expected {want}, got {_toml_kind(value)}")
        try:  # ranges and choices, with click's own wording
            opt.type_cast_value(ctx, tuple(value) if isinstance(value, list) else value)
        except click.BadParameter as e:
            raise bad(f"key {key!r}: {e.message}") from None
        defaults[opt.name] = tuple(value) if isinstance(value, list) else value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


@click.command("serve", context_settings={"auto_envvar_prefix": SERVE_ENV_PREFIX},
               epilog=f"Every option can also come from ${SERVE_ENV_PREFIX}_<OPTION> (e.g. {SERVE_ENV_PREFIX}_PORT, "
                      f"{SERVE_ENV_PREFIX}_EXPLORE_SHARE; --api-key: $ARTWORK_API_KEY) or a --config file. "
                      "Precedence: command line, environment, config file, default.")
@click.option("--config", type=click.Path(exists=True, dir_okay=False), default=None, is_eager=True,
              expose_value=False, callback=_load_serve_config, metavar="FILE.toml",
              help="TOML file of serve settings: keys are these options' names without '--' (port = 8080, "
                   "explore-share = 0.05); see docs/serve.example.toml [env: ARTWORK_SERVE_CONFIG]")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--api-key", envvar="ARTWORK_API_KEY", default=None,
              help="require X-API-Key on writes and session reads; prefer setting $ARTWORK_API_KEY (a key "
                   "on the command line is visible to every user in `ps`)")
@click.option("--events", default=None, help="event log path [default: STORE.events.db]")
@click.option("--snapshot-dir", default=None, help="policy snapshots [default: STORE.snapshots/]")
@click.option("--policy", type=PolicySpec(), default=None, metavar="NAME|PATH",
              help="bayes: per-artwork counts + Bayesian personal residual, Thompson sampling (what starts when "
                   "nothing is restored, see scripts/bench_learning.py); thompson: per-title Beta; vw: Vowpal "
                   "Wabbit cb_explore_adf; or PATH of a saved policy (artwork train, .vwz/.bayes/.json). Not given: "
                   "the newest snapshot, else bayes. Given: a PATH, or a name other than the snapshot's kind, is "
                   "deployed: it learns the whole log (less the rows its training recorded) and is snapshotted")
@click.option("--ab", type=PolicySpec(), default=None, metavar="NAME|PATH",
              help="online A/B test: arm B is this policy (a name or a saved PATH) on --ab-share of the users (by "
                   "a hash of user_id), arm A what would be served otherwise; decisions log 'A:...' / 'B:...'")
@click.option("--ab-share", default=0.5, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="share of users on arm B (with --ab)")
@click.option("--exploration", default="squarecb", show_default=True, type=click.Choice(EXPLORATIONS),
              help="VW exploration (only with --policy vw)")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--max-titles", default=200, show_default=True, type=int)
@click.option("--max-body-bytes", default=1_000_000, show_default=True, type=int)
@click.option("--strict", is_flag=True, help="a taste key outside the taste vocabulary or a history title the catalog lacks is a 422 naming it (default: ignored, listed in the response's `warnings`)")
@click.option("--read-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.1),
              help="seconds a connection has to send a whole request (line, headers, body), from connecting "
                   "or from its first byte; then it is closed")
@click.option("--keep-alive", default=5.0, show_default=True, type=click.FloatRange(min=0.1),
              help="seconds an idle kept-alive connection stays open between requests")
@click.option("--max-connections", default=512, show_default=True, type=click.IntRange(min=1),
              help="open connections + running requests; beyond it new requests get 503")
@click.option("--session-ttl", default=86400.0, show_default=True, type=float, help="seconds")
@click.option("--feedback-window", default=1800.0, show_default=True, type=float, help="seconds")
@click.option("--snapshot-interval", default=60.0, show_default=True, type=float, help="seconds")
@click.option("--close-interval", default=1.0, show_default=True, type=float, help="seconds")
@click.option("--reward-range", nargs=2, type=float, default=(0.0, 1.0), show_default=True)
@click.option("--click-reward", default=1.0, show_default=True, type=float,
              help="reward of {click: true} (within --reward-range)")
@click.option("--play-reward", default=1.0, show_default=True, type=float,
              help="reward of {play: true} (within --reward-range); an event's reward is the highest weight of its flags")
@click.option("--explore-share", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="share of pages served uniformly at random, for replay evaluation")
@click.option("--count-open/--no-count-open", default=True, show_default=True,
              help="choose with the decisions still waiting for feedback counted as impressions without a click "
                   "(misses arrive as silence when the window closes); turn off when clients post their misses "
                   "(reward 0) as promptly as their clicks")
@click.option("--durable", is_flag=True, help="fsync every commit (survive power loss, slower)")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"], case_sensitive=False),
              help="info adds the access log: one line per request with its status, latency and X-Request-ID")
@click.option("--ray", is_flag=True, help="serve on Ray Serve: --replicas chooser replicas (they choose and log) and "
              "one learner actor (it learns, closes windows, snapshots) over the same store and event log "
              "(README: Scaling out)")
@click.option("--address", default=None, help="with --ray: the Ray cluster to join (HOST:PORT, auto) "
              "[default: a local Ray on this machine]")
@click.option("--replicas", default=2, show_default=True, type=click.IntRange(min=1),
              help="with --ray: chooser replicas (the minimum, with --max-replicas)")
@click.option("--max-replicas", default=None, type=click.IntRange(min=1),
              help="with --ray: let Ray Serve autoscale the chooser replicas between --replicas and this many, "
                   "on requests in flight [default: a fixed --replicas]")
@click.option("--reload-interval", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="with --ray: seconds between a replica's checks for a newer policy snapshot; the learner "
                   "snapshots every 2 s unless --snapshot-interval is given")
@click.pass_context
def serve_command(ctx: click.Context, host: str, port: int, api_key: str | None, events: str | None,
                  snapshot_dir: str | None, policy: str | None, exploration: str, seed: int, max_titles: int,
                  max_body_bytes: int, read_timeout: float, keep_alive: float, max_connections: int, session_ttl: float, feedback_window: float, snapshot_interval: float,
                  close_interval: float, reward_range: tuple[float, float], explore_share: float, durable: bool,
                  log_level: str, click_reward: float = 1.0, play_reward: float = 1.0, strict: bool = False,
                  ab: str | None = None, ab_share: float = 0.5, ray: bool = False, address: str | None = None,
                  replicas: int = 2, reload_interval: float = 1.0, max_replicas: int | None = None,
                  count_open: bool = True) -> None:
    """Serve the decision API over HTTP (uvicorn; OpenAPI at /docs and /openapi.json)."""
    import uvicorn

    store = (ctx.obj or {}).get("store")
    if not store:
        raise click.UsageError("no catalog: pass --store")
    if not os.path.exists(store):
        raise click.UsageError(f"catalog {store} does not exist; upload artwork first")
    try:
        if ab is None and ctx.get_parameter_source("ab_share") == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("--ab-share needs --ab (the policy of arm B)")
        # By value, not by source: the example config file sets these to their defaults.
        given = [n for n, v, d in (("address", address, None), ("replicas", replicas, 2),
                                   ("reload_interval", reload_interval, 1.0), ("max_replicas", max_replicas, None))
                 if v != d]
        if given and not ray:
            raise click.UsageError(f"--{given[0].replace('_', '-')} is for serving on Ray: add --ray")
        if max_replicas is not None and max_replicas < replicas:
            raise click.UsageError(f"--max-replicas {max_replicas} is below --replicas {replicas} (the minimum)")
        eng_cfg = EngineConfig(events=events, snapshot_dir=snapshot_dir,
                               policy=policy if policy in POLICY_KINDS else POLICY_KINDS[0], deploy=policy,
                               ab=ab, ab_share=ab_share, exploration=exploration, seed=seed,
                               max_titles=max_titles, session_ttl_s=session_ttl, feedback_window_s=feedback_window,
                               snapshot_interval_s=snapshot_interval, close_interval_s=close_interval,
                               reward_min=reward_range[0], reward_max=reward_range[1], explore_share=explore_share,
                               durable=durable, click_reward=click_reward, play_reward=play_reward,
                               reload_interval_s=reload_interval, count_open=count_open)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    cfg = ServeConfig(store=store, host=host, port=port, api_key=api_key, max_body_bytes=max_body_bytes,
                      log_level=log_level, read_timeout=read_timeout, keep_alive=keep_alive,
                      max_connections=max_connections, strict=strict, engine=eng_cfg)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # One learner per store: a second server would log decisions the first never learns from.
    events_path = StorePaths.of(store, events).events
    from bandit.events import EventLogError, is_event_log_url

    if events and is_event_log_url(events):  # a malformed URL is a usage error, before anything opens
        from bandit.events_pg import check_url

        try:
            check_url(events)
        except EventLogError as e:
            raise click.BadParameter(str(e), param_hint="'--events'") from None
    try:
        # Held (open) until the process exits; with --ray only until the checks below have passed,
        # so a store another server holds, or a bad policy file, is one line before Ray starts.
        lock_fd = lock_store(events_path)
    except StoreLocked as e:
        raise click.ClickException(f"store {store} is {e}") from None
    except OSError as e:
        raise click.ClickException(f"cannot lock {events_path}.lock: {e}") from None
    except (ValueError, sqlite3.Error) as e:  # a bad or unreachable postgresql:// URL (its password masked)
        raise click.ClickException(f"cannot serve {store}: {e}") from None
    try:  # open the stores and read named policy files now: a bad file is one clear line, not a traceback
        engine = Engine(store, eng_cfg)
    except (StoreError, sqlite3.DatabaseError, ValueError) as e:
        unlock_store(lock_fd)
        raise click.ClickException(f"cannot serve {store}: {e}") from None
    if not api_key:
        click.echo("warning: no API key (--api-key or $ARTWORK_API_KEY): anyone who can reach this port can "
                   "post choices, feedback and designer changes", err=True)
    if ray:  # the learner actor takes the store lock, not this driver: checked above, given back here
        engine.close()
        unlock_store(lock_fd)
        import ray as ray_module
        from bandit.distributed import RayError

        try:
            from bandit.rayserve import LEARNER_SNAPSHOT_S, serve_on_ray
        except ImportError as e:
            raise click.ClickException(f"--ray needs Ray Serve, which is not importable here ({e}); install it with "
                                       "pip install 'ray[serve]>=2.9', or leave out --ray") from None
        snap_given = ctx.get_parameter_source("snapshot_interval") not in (None, click.core.ParameterSource.DEFAULT)
        try:
            serve_on_ray(cfg, replicas=replicas, max_replicas=max_replicas, address=address,
                         reload_interval_s=reload_interval,
                         learner_snapshot_s=snapshot_interval if snap_given else LEARNER_SNAPSHOT_S)
        except RayError as e:
            raise click.ClickException(str(e)) from None
        except ray_module.exceptions.RayError as e:  # the learner or a replica failed to start: its last line
            lines = [ln for ln in str(e).splitlines() if ln.strip()]
            raise click.ClickException(f"cannot serve {store} on Ray: {lines[-1] if lines else type(e).__name__}") from None
        return
    click.echo(f"serving {store} on http://{host}:{port} (docs at /docs)", err=True)
    app = create_app(cfg, engine)
    http = _read_timeout_protocol(read_timeout, app.state.overloaded_app) or "auto"
    # access_log=False: RequestContextMiddleware writes the access log (logger artwork.access, at
    # info), with the request id and the latency that uvicorn's line lacks.
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=10, http=http, timeout_keep_alive=keep_alive,
                limit_concurrency=max_connections)
    os.close(lock_fd)


def main(argv: list[str] | None = None) -> None:
    """`python -m bandit.server --store PATH [serve options]` without the `artwork` CLI group."""
    args = list(sys.argv[1:] if argv is None else argv)
    store = os.environ.get("ARTWORK_STORE", "artwork.db")
    for i, a in enumerate(args):
        if a == "--store" and i + 1 < len(args):
            store = args[i + 1]
            del args[i:i + 2]
            break
        if a.startswith("--store="):
            store = a.split("=", 1)[1]
            del args[i]
            break
    serve_command.main(args=args, obj={"store": store}, prog_name="python -m bandit.server")


if __name__ == "__main__":
    main()
