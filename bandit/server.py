"""HTTP service over `bandit.engine.Engine`: `create_app(config)` and the `artwork serve` command.

One process, one engine: the policy lives in memory and learns from every joined event, so the
service runs as a single uvicorn worker (pages are ~ms of work; scale out by sharding users).
Handlers are plain `def`: Starlette runs them in its thread pool, so SQLite commits never stall
the event loop, and the engine's locks keep decisions and learning ordered.

Run it: `artwork --store catalog.db serve --port 8000` or `python -m bandit.server --store catalog.db`.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import hmac
import socket
import sqlite3
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Optional

import click
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from artwork.store import StoreError
from bandit.policy import EXPLORATIONS
from bandit.features import (MAX_EXCLUDE, MAX_HISTORY, MAX_ID_CHARS, MAX_LABEL_CHARS, MAX_TASTE_KEY_CHARS, MAX_TASTE_KEYS,
                             MAX_USER_ID_CHARS, text_problem)
from bandit.engine import POLICY_KINDS, Engine, EngineConfig, FeedbackOutcome, NotFoundError, RequestError, context_from_request

__all__ = ["ServeConfig", "create_app", "free_port", "serve_command", "main"]

log = logging.getLogger("artwork.server")

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
    engine: EngineConfig = field(default_factory=EngineConfig)


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
                    f'of at most {MAX_TASTE_KEY_CHARS} characters', examples=[{"genre:crime": 0.8}]
    )
    history: Optional[list[Id]] = Field(
        None, max_length=MAX_HISTORY,
        description=f"watched title ids (at most {MAX_HISTORY}); builds a taste profile when taste is absent")
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


class ChooseResponse(BaseModel):
    """The page's choices, in request order."""

    user_id: str
    results: list[TitleResult]


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
    learned as a correction); duplicate (the same or a weaker outcome: nothing changed); conflict
    (409: a positive reward contradicting the one on record, both given: nothing changed);
    not_found; or expired (the window closed and the post carried no positive reward: nothing changed)."""

    event_id: str
    status: str
    changed: bool
    reward: Optional[float] = None
    message: str = ""
    recorded: Optional[float] = Field(None, description="conflict only: the reward on record")
    posted: Optional[float] = Field(None, description="conflict only: the refused reward")


class ConflictOut(FeedbackOut):
    """409 body: the event already has a different positive reward; nothing changed."""

    error: str = "conflict"


class ActivateOut(BaseModel):
    """activated (the window starts now) or already_active (nothing changed: idempotent)."""

    event_id: str
    status: str
    changed: bool
    decision_status: str = Field(..., description="open | joined | closed")
    deadline: float = Field(..., description="end of the feedback window (unix seconds)")


class FeedbackBatchOut(BaseModel):
    results: list[FeedbackOut]


class PinIn(_In):
    artwork_id: Id = Field(..., min_length=1, max_length=MAX_ID_CHARS)


class DistributionRequest(ChooseRequest):
    """Same body as /v1/choose; answers with the policy's distributions and logs nothing."""


# -- middleware ------------------------------------------------------------------------------------


class BodyLimitMiddleware:
    """Refuse bodies over `limit` bytes with 413: by Content-Length before reading, else while streaming."""

    def __init__(self, app: Callable[..., Awaitable[None]], limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, send: Callable[..., Awaitable[None]]) -> None:
        body = json.dumps({"detail": f"request body larger than {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Callable[..., Awaitable[dict]], send: Callable[..., Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                if not v.isdigit() or int(v) > self.limit:
                    await self._refuse(send)
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
                        await self._refuse(send)
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
                body = json.dumps({"error": "unauthorized", "detail": _UNAUTHORIZED}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                        (b"www-authenticate", b"ApiKey")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


_UNAUTHORIZED = "missing or wrong API key (header X-API-Key)"


class _JsonRoute(APIRoute):
    """Parses a JSON body before FastAPI does, so that nesting too deep for the parser
    (RecursionError) or bytes that are not UTF-8 are a 422 naming the body, like every other
    malformed body, not FastAPI's generic 400. The parsed value is cached on the request
    (Starlette's `Request.json`), so the body is parsed once."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def parse_first(request: Request) -> Response:
            if request.method in ("POST", "PUT", "PATCH", "DELETE"):
                ctype = request.headers.get("content-type", "")
                if await request.body() and (not ctype or "json" in ctype.split(";", 1)[0].lower()):
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


def _safe(text: Any) -> str:
    """Text that can be encoded as UTF-8: a lone surrogate a client sent is echoed as \\udXXX."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def _field_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        out.append({"field": _safe(".".join(loc) or "body"), "reason": _safe(e.get("msg", "invalid")),
                    "type": e.get("type", "")})
    return out


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ContainErrorsMiddleware:
    """An unexpected exception becomes a 500 with the JSON error envelope, and stops here.

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
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:  # too late for a clean answer: let the server close the connection
                raise
            body = json.dumps({"error": "internal", "detail": "internal server error (see the server log)"}).encode()
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


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
        description="Personalised artwork selection: choose an artwork per title, post feedback, the policy learns online.",
        lifespan=lifespan,
        # No 307 to "/v1/choose" for "/v1/choose/": the redirect would be built from the Host header
        # a client sent. A trailing slash is simply an unknown path (404).
        redirect_slashes=False,
    )
    app.router.route_class = _JsonRoute
    app.add_middleware(ContainErrorsMiddleware)
    app.add_middleware(BodyLimitMiddleware, limit=config.max_body_bytes)
    if config.api_key is not None:  # outermost: the key is checked before the body is even looked at
        app.add_middleware(ApiKeyMiddleware, api_key=config.api_key)

    def eng() -> Engine:
        return state["engine"]

    def require_key(x_api_key: Optional[str] = Header(None, description="required when the server has an API key")) -> None:
        if config.api_key is None:
            return
        if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), config.api_key.encode()):
            raise _Unauthorized()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "validation", "detail": _field_errors(list(exc.errors()))}, status_code=422)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"error": "validation", "detail": [{"field": _safe(exc.field), "reason": _safe(exc.reason),
                                                                "type": "value_error"}]}, status_code=422)

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"error": "not_found", "detail": str(exc)}, status_code=404)

    # Disk full, I/O error, a locked or corrupt file: the request is refused with 503 and the error
    # envelope (never a 500 with a plain body), and /health says which store failed until a write
    # succeeds again. Designer controls write the catalog; everything else writes the event log.
    app.state.store_fault = {}

    @app.exception_handler(sqlite3.Error)
    async def _store_error(request: Request, exc: sqlite3.Error) -> JSONResponse:
        designer = request.url.path.rsplit("/", 1)[-1] in ("pin", "disable", "enable")
        e = state.get("engine")
        store = str(config.store if designer or e is None else e.events_path)
        # SQLite rolls a transaction back by itself on SQLITE_FULL / SQLITE_IOERR, so the caller's own
        # ROLLBACK then fails with "no transaction is active": report the error underneath it.
        cause: BaseException = exc
        while isinstance(cause.__context__, sqlite3.Error):
            cause = cause.__context__
        why = _safe(cause)
        log.error("store %s failed on %s %s: %s", store, request.method, request.url.path, why)
        app.state.store_fault.update(store=store, error=why, since=time.time())
        return JSONResponse({"error": "store_unavailable", "detail": f"{store}: {why}"}, status_code=503,
                            headers={"Retry-After": "30"})

    @app.exception_handler(_Unauthorized)
    async def _unauth(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "unauthorized", "detail": _UNAUTHORIZED},
                            status_code=401, headers={"WWW-Authenticate": "ApiKey"})

    writes = [Depends(require_key)]

    def _user(body: ChooseRequest) -> Any:
        ctx = body.context.model_dump() if body.context else {}
        return context_from_request({"user_id": body.user_id, "taste": body.taste or {}, "history": body.history or [], **ctx})

    @app.post("/v1/choose", response_model=ChooseResponse, dependencies=writes, tags=["decisions"])
    def choose(body: ChooseRequest) -> Response:
        """Choose an artwork per title; each decision is logged before the response is sent."""
        results = eng().choose(_user(body), body.titles, body.exclude, activate=body.activate)
        # Serialised by hand: FastAPI's response_model validation + jsonable_encoder cost more
        # than the 40 decisions themselves. response_model stays for the OpenAPI schema.
        return _json({"user_id": body.user_id, "results": [r.to_dict() for r in results]})

    @app.post("/v1/policy/distribution", dependencies=writes, tags=["debug"])
    def distribution(body: DistributionRequest) -> dict[str, Any]:
        """The policy's current probabilities per title (nothing logged, no sticky sessions)."""
        return {"user_id": body.user_id, "titles": eng().distribution(_user(body), body.titles, body.exclude)}

    def _outcome_response(o: FeedbackOutcome) -> Response:
        # A late click or an upgrade is a success (200, changed): it was stored and learned.
        if o.status == "conflict":
            return _json({"error": "conflict", **o.to_dict()}, 409)
        return _json(o.to_dict(), 404 if o.status in ("not_found", "expired") else 200)

    @app.post("/v1/feedback", response_model=FeedbackOut, dependencies=writes, tags=["feedback"],
              responses={404: {"description": "unknown event, or window closed and no positive reward (expired)"},
                         409: {"model": ConflictOut,
                               "description": "a positive reward contradicting the one on record (both given)"}})
    def feedback(body: FeedbackIn) -> Response:
        """Join an outcome to its decision; a positive reward after the window closed is learned as a
        correction (status late); a stronger outcome later raises the reward (status upgraded); the
        same or a weaker one changes nothing (status duplicate); a contradicting reward is a 409."""
        return _outcome_response(eng().feedback(body.event_id, reward=body.reward, click=body.click, play=body.play))

    @app.post("/v1/feedback/batch", response_model=FeedbackBatchOut, dependencies=writes, tags=["feedback"])
    def feedback_batch(body: FeedbackBatchIn) -> Response:
        """Many outcomes; each result has its own status (joined / late / upgraded / duplicate / conflict /
        not_found / expired); the batch itself answers 200."""
        out = eng().feedback_many([e.model_dump() for e in body.events])
        return _json({"results": [o.to_dict() for o in out]})

    @app.post("/v1/events/{event_id}/activate", response_model=ActivateOut, dependencies=writes, tags=["decisions"],
              responses={404: {"description": "unknown event id"}})
    def activate(event_id: str) -> Response:
        """Deferred activation: the decision (chosen with activate=false) was rendered; its feedback
        window starts now. Idempotent: an active decision answers already_active and keeps its window."""
        return _json(eng().activate(event_id))

    @app.get("/v1/titles/{title_id}/artworks", tags=["catalog"])
    def title_artworks(title_id: str) -> dict[str, Any]:
        """A title's candidates with tags, designer flags and running stats."""
        return {"title_id": title_id, "artworks": eng().title_artworks(title_id)}

    @app.get("/v1/artworks/{artwork_id}/image", tags=["catalog"],
             responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}, 304: {}})
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

    @app.post("/v1/titles/{title_id}/pin", dependencies=writes, tags=["designer"])
    def pin(title_id: str, body: PinIn) -> dict[str, Any]:
        """Pin an artwork for its title: everybody sees it from the next request on."""
        return eng().pin(title_id, body.artwork_id)

    @app.delete("/v1/titles/{title_id}/pin", dependencies=writes, tags=["designer"])
    def unpin(title_id: str) -> dict[str, Any]:
        """Remove a title's pin."""
        return eng().unpin(title_id)

    @app.post("/v1/artworks/{artwork_id}/disable", dependencies=writes, tags=["designer"])
    def disable(artwork_id: str) -> dict[str, Any]:
        """Never show this artwork again (until enabled)."""
        return eng().set_flags(artwork_id, disabled=True)

    @app.post("/v1/artworks/{artwork_id}/enable", dependencies=writes, tags=["designer"])
    def enable(artwork_id: str) -> dict[str, Any]:
        """Undo a disable."""
        return eng().set_flags(artwork_id, disabled=False)

    @app.get("/v1/users/{user_id}/session", dependencies=writes, tags=["decisions"],
             responses={401: {"description": "missing or wrong X-API-Key (when the server has an API key)"},
                        404: {"description": "the user has no decisions within the session TTL"}})
    def user_session(user_id: str) -> dict[str, Any]:
        """The user's sticky choices within the session TTL: per title the artwork shown, its event id
        and when the session expires. Needs X-API-Key when the server has one (event ids are enough
        to post feedback for the user). 404 for a user with none."""
        return eng().user_session(user_id)

    def _health() -> tuple[dict[str, Any], int]:
        out = eng().health()
        fault = dict(app.state.store_fault)
        if fault:  # the last write failed: degraded (503) until a write succeeds again
            out.update(status="degraded", failing_store=fault["store"], error=fault["error"],
                       failing_since=fault["since"])
            return out, 503
        return out, 200

    @app.get("/health", tags=["ops"], responses={503: {"description": "degraded: the last write to a store failed"}})
    def health() -> Response:
        """Liveness, policy version, encoder, catalog size; 503 with status degraded and the failing
        store while writes fail (disk full, I/O error), until a write succeeds again."""
        out, code = _health()
        return _json(out, code)

    @app.head("/health", include_in_schema=False)
    def health_head() -> Response:
        """Liveness for probes that send HEAD."""
        return Response(status_code=_health()[1], media_type="application/json")

    @app.get("/metrics", response_class=PlainTextResponse, tags=["ops"])
    def metrics() -> PlainTextResponse:
        """Prometheus text format."""
        return PlainTextResponse(eng().metrics_text(), media_type="text/plain; version=0.0.4")

    return app


class _Unauthorized(Exception):
    pass


# -- one learner per store, slow clients ------------------------------------------------------------


class StoreLocked(Exception):
    """Another process serves this store."""


def lock_store(events_path: str | os.PathLike[str]) -> int:
    """Take the store's exclusive lock (flock on EVENTS.lock, mode 0600) and write our pid in it.

    Returns the open descriptor: the lock lasts as long as it stays open (the process's lifetime;
    the kernel drops it when the process dies, even by SIGKILL, so a stale file never blocks).
    Raises StoreLocked naming the holder's pid when another process has it.
    """
    path = f"{events_path}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise StoreLocked(f"already served by pid {holder} (lock file {path})") from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _read_timeout_protocol(read_timeout: float) -> type:
    """uvicorn's httptools protocol with a deadline for reading each request.

    uvicorn (0.54) times out only idle kept-alive connections *after* a response; a client that
    opens a connection and sends nothing, or a partial request line or headers, or a body byte a
    minute, holds the connection forever. Here a connection must send a whole request (request
    line, headers and body) within `read_timeout` seconds of connecting or of starting that
    request, else it is closed. The clock stops once the request is read: slow handlers and slow
    response reads are not affected. Falls back to uvicorn's default protocol without httptools.
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


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--api-key", envvar="ARTWORK_API_KEY", default=None,
              help="require X-API-Key on writes and session reads; prefer setting $ARTWORK_API_KEY (a key "
                   "on the command line is visible to every user in `ps`)")
@click.option("--events", default=None, help="event log path [default: STORE.events.db]")
@click.option("--snapshot-dir", default=None, help="policy snapshots [default: STORE.snapshots/]")
@click.option("--policy", type=click.Choice(POLICY_KINDS), default=POLICY_KINDS[0], show_default=True,
              help="bayes: per-artwork counts + Bayesian personal residual, Thompson sampling (the default, "
                   "see scripts/bench_learning.py); thompson: per-title Beta; vw: Vowpal Wabbit cb_explore_adf")
@click.option("--exploration", default="squarecb", show_default=True, type=click.Choice(EXPLORATIONS),
              help="VW exploration (only with --policy vw)")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--max-titles", default=200, show_default=True, type=int)
@click.option("--max-body-bytes", default=1_000_000, show_default=True, type=int)
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
@click.option("--durable", is_flag=True, help="fsync every commit (survive power loss, slower)")
@click.option("--log-level", default="warning", show_default=True)
@click.pass_context
def serve_command(ctx: click.Context, host: str, port: int, api_key: str | None, events: str | None,
                  snapshot_dir: str | None, policy: str, exploration: str, seed: int, max_titles: int,
                  max_body_bytes: int, read_timeout: float, keep_alive: float, max_connections: int, session_ttl: float, feedback_window: float, snapshot_interval: float,
                  close_interval: float, reward_range: tuple[float, float], explore_share: float, durable: bool,
                  log_level: str, click_reward: float = 1.0, play_reward: float = 1.0) -> None:
    """Serve the decision API over HTTP (uvicorn; OpenAPI at /docs and /openapi.json)."""
    import uvicorn

    store = (ctx.obj or {}).get("store")
    if not store:
        raise click.UsageError("no catalog: pass --store")
    if not os.path.exists(store):
        raise click.UsageError(f"catalog {store} does not exist; upload artwork first")
    try:
        eng_cfg = EngineConfig(events=events, snapshot_dir=snapshot_dir, policy=policy, exploration=exploration, seed=seed,
                               max_titles=max_titles, session_ttl_s=session_ttl, feedback_window_s=feedback_window,
                               snapshot_interval_s=snapshot_interval, close_interval_s=close_interval,
                               reward_min=reward_range[0], reward_max=reward_range[1], explore_share=explore_share,
                               durable=durable, click_reward=click_reward, play_reward=play_reward)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    cfg = ServeConfig(store=store, host=host, port=port, api_key=api_key, max_body_bytes=max_body_bytes,
                      log_level=log_level, read_timeout=read_timeout, keep_alive=keep_alive,
                      max_connections=max_connections, engine=eng_cfg)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # One learner per store: a second server would log decisions the first never learns from.
    events_path = events or f"{store}.events.db"
    try:
        lock_fd = lock_store(events_path)  # held (open) until the process exits
    except StoreLocked as e:
        raise click.ClickException(f"store {store} is {e}") from None
    except OSError as e:
        raise click.ClickException(f"cannot lock {events_path}.lock: {e}") from None
    try:  # open the stores and build the policy now: a bad file is one clear line, not a traceback
        engine = Engine(store, eng_cfg)
    except (StoreError, sqlite3.DatabaseError, ValueError) as e:
        raise click.ClickException(f"cannot serve {store}: {e}") from None
    if not api_key:
        click.echo("warning: no API key (--api-key or $ARTWORK_API_KEY): anyone who can reach this port can "
                   "post choices, feedback and designer changes", err=True)
    click.echo(f"serving {store} on http://{host}:{port} (docs at /docs)", err=True)
    http = _read_timeout_protocol(read_timeout) or "auto"
    uvicorn.run(create_app(cfg, engine), host=host, port=port, log_level=log_level, access_log=False,
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
