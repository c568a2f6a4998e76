"""The simulated worlds of `bandit.worlds`, played against the real HTTP service.

`bandit.worlds.run_world` plays a policy object in-process. Here the same world drives the
engine the way an outside audience would:

1. `catalog_for_world` turns the world's catalog into real image files (small PNGs, one look per
   artwork id) and uploads them through the ordinary ingest pipeline (`Ingestor.upload_files`).
   The engine embeds and tags them with its own encoder, so the service never sees the world's
   tags, embeddings or click model: only pictures and clicks.
2. `drive_world` plays the world's page views against a running service: ``POST /v1/choose`` per
   page, the world's true click probability of what was shown, one click draw, and the clicks
   posted with ``POST /v1/feedback/batch`` once the world's feedback delay has passed (silence
   becomes reward 0 when the service's feedback window closes, as in production).

Common random numbers with `run_world`: the visit, click and delay streams are the same
(`bandit.worlds.world_streams`), one click uniform per title
slot of a page and one delay draw per title slot. So for one seed the HTTP run and an in-process
run see the same users, pages and coin flips, and `HttpWorldRun` (a `WorldRun`) gives the same
`summary()` fields.

Differences from the in-process loop, by construction of the API:

- The service takes one context per request, a whole page: `row` is not sent (the world still
  uses each title's row in its click probabilities, so row effects are real but unseen).
- Within the service's session TTL a user gets the same artwork of a title again (`repeat`):
  nothing new was decided, so such results are not decisions here (counted in `repeats`). Run
  the service with a short ``--session-ttl`` to make every page view a decision, as in
  `run_world`.
- Worlds whose catalog grows (``newart``): build the catalog of the last page
  (``catalog_for_world(..., page=n_pages - 1)``); `drive_world` then excludes, per request, the
  artworks the world does not offer yet.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image, ImageDraw

from artwork.encoder import Encoder
from artwork.ingest import Ingestor
from artwork.store import Catalog
from bandit.features import Candidate
from bandit.worlds import ArtworkColumns, World, WorldRun, world_streams

__all__ = ["IMAGE_SIDE", "HttpWorldRun", "artwork_image", "catalog_for_world", "drive_world"]

IMAGE_SIDE = 96  # px; above the upload minimum (64)
FEEDBACK_BATCH = 500  # events per POST /v1/feedback/batch (the service's default limit is 1000)



# =============================================================================================
# Catalog: the world's artworks as real images, uploaded through the ingest pipeline
# =============================================================================================


def artwork_image(artwork_id: str, side: int = IMAGE_SIDE) -> bytes:
    """PNG bytes of a picture determined by ``artwork_id`` alone: a background, a few shapes and a
    bar code of the id's hash along the bottom (so two ids never give the same bytes)."""
    digest = hashlib.sha256(artwork_id.encode()).digest()
    rng = np.random.default_rng(list(digest[:16]))
    im = Image.new("RGB", (side, side), tuple(int(v) for v in rng.integers(0, 256, 3)))
    d = ImageDraw.Draw(im)
    for _ in range(6):
        x, y = (int(v) for v in rng.integers(0, side - 16, 2))
        s = int(rng.integers(12, side // 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)((x, y, x + s, y + s * 2 // 3), fill=colour)
    bar = max(1, side // 64)
    for i, bit in enumerate(np.unpackbits(np.frombuffer(digest[:8], dtype=np.uint8))):
        x = i * bar % side
        d.rectangle((x, side - 4, x + bar - 1, side - 1), fill=(255, 255, 255) if bit else (0, 0, 0))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def catalog_for_world(world: World, catalog: Catalog, encoder: Encoder, page: int = 0,
                      progress: bool = False) -> dict[str, dict[str, str]]:
    """Upload every artwork of ``world.catalog(page)`` as an image; {title: {world id: engine id}}.

    Titles keep the world's ids. Each artwork becomes a PNG made from its id (`artwork_image`),
    written to a temporary folder and uploaded with `Ingestor.upload_files`, so the engine
    computes its own embeddings and tags. Running it again on the same catalog adds nothing and
    returns the same mapping (same bytes, same ids). Raises ValueError when an image is rejected
    or two artworks of a title end up as one.
    """
    cat = world.catalog(page)
    ingestor = Ingestor(catalog, encoder)
    mapping: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix=f"world-{world.name}-") as tmp:
        for title_id, cands in cat.items():
            folder = Path(tmp) / title_id
            folder.mkdir()
            files: list[Path] = []
            shas: dict[str, str] = {}  # world artwork id -> sha256 of its image
            for k, c in enumerate(cands):
                data = artwork_image(c.artwork_id)
                f = folder / f"{k:03d}.png"
                f.write_bytes(data)
                files.append(f)
                shas[c.artwork_id] = hashlib.sha256(data).hexdigest()
            if len(set(shas.values())) != len(shas):
                raise ValueError(f"title {title_id!r}: two artworks got the same image bytes")
            report = ingestor.upload_files(title_id, files, title_name=f"{world.name} world, title {title_id}",
                                           progress=progress)
            bad = [o for o in report.outcomes if o.status == "rejected"]
            if bad:
                raise ValueError(f"title {title_id!r}: upload rejected {bad[0].name}: {bad[0].reason}")
            ids: dict[str, str] = {}
            for aid, sha in shas.items():
                engine_id = catalog.has_artwork(title_id, sha)
                if not engine_id:
                    raise ValueError(f"title {title_id!r}: artwork {aid!r} is not in the catalog after upload")
                ids[aid] = engine_id
            mapping[title_id] = ids
    return mapping


# =============================================================================================
# Driving the service
# =============================================================================================


@dataclass
class HttpWorldRun(WorldRun):
    """A `WorldRun` played over HTTP, plus what only the HTTP side has (one entry per decision)."""

    run_tag: str = ""  # user ids were sent as "<run_tag>:<world user id>"
    event_ids: list[str] = field(default_factory=list, repr=False)  # per decision
    # Per decision: the result's policy ("uniform" on the service's exploration pages).
    served_by: list[str] = field(default_factory=list, repr=False)
    # Per page: (world user id, title ids), the visit stream as run_world sees it.
    pages_seen: list[tuple[str, list[str]]] = field(default_factory=list, repr=False)
    repeats: int = 0  # results that were a sticky repeat (no new decision)
    clicks_posted: int = 0
    pending_dropped: int = 0  # clicks still waiting for their delay at the end (not posted; as run_world)
    feedback: dict[str, int] = field(default_factory=dict)  # the service's answers: status -> count

    def summary(self, last_share: float = 0.2) -> dict[str, Any]:
        """`WorldRun.summary` plus the HTTP counts."""
        out = super().summary(last_share)
        out.update(transport="http", repeats=self.repeats, clicks_posted=self.clicks_posted,
                   feedback=dict(self.feedback))
        return out


def _raise_for(resp: httpx.Response, what: str) -> None:
    if resp.status_code != 200:
        raise RuntimeError(f"{what}: HTTP {resp.status_code}: {resp.text[:500]}")


def drive_world(url: str, world: World, mapping: Mapping[str, Mapping[str, str]], n_pages: int, seed: int = 0, *,
                api_key: str | None = None, run_tag: str | None = None, flush: bool = False,
                timeout: float = 30.0) -> HttpWorldRun:
    """Play ``n_pages`` page views of ``world`` against the service at ``url``.

    ``mapping`` is `catalog_for_world`'s {title: {world artwork id: engine artwork id}}. Per page:
    one ``POST /v1/choose`` (user id prefixed by ``run_tag``, taste, history, device, hour,
    country; no row), each new result's true click probability from the world, a click drawn
    from the click stream, and the click queued for ``POST /v1/feedback/batch`` before page
    ``i + 1 + world.delay()``. Only clicks are posted; the service closes silent decisions at
    reward 0. With ``flush`` the clicks still queued at the end are posted; otherwise they are
    dropped, as `run_world` drops pending outcomes.

    Raises ValueError when a title of the world is missing from ``mapping``, when the service
    answers a title with an error, or shows an artwork that is not in ``mapping`` (or not offered
    by the world at that page). HTTP failures raise RuntimeError with the service's message.
    """
    if n_pages < 1:
        raise ValueError("n_pages must be >= 1")
    seed = int(seed)
    titles_needed = set(world.title_ids) or set(world.catalog(0))
    missing = sorted(titles_needed - set(mapping))
    if missing:
        raise ValueError(f"titles {missing} of world {world.name!r} are not in the mapping: "
                         "upload them with catalog_for_world first")
    inverse: dict[str, dict[str, str]] = {}
    for t, m in mapping.items():
        inverse[t] = {e: w for w, e in m.items()}
        if len(inverse[t]) != len(m):
            raise ValueError(f"title {t!r}: two world artworks map to one engine artwork")
    run_tag = run_tag or f"{world.name}-s{seed}-{uuid.uuid4().hex[:8]}"
    visit_rng, click_rng, delay_rng = world_streams(seed)

    # Per decision.
    pages: list[int] = []
    title_of: list[int] = []
    rows: list[int] = []
    chosen_col: list[int] = []
    propensity: list[float] = []
    rewards: list[float] = []
    prob_rows: list[tuple[np.ndarray, np.ndarray]] = []  # (columns, p)
    event_ids: list[str] = []
    served_by: list[str] = []
    pages_seen: list[tuple[str, list[str]]] = []
    # Columns per title, in order of first appearance (as run_world).
    book = ArtworkColumns()
    last_catalog: Mapping[str, list[Candidate]] | None = None
    info: dict[str, tuple[dict[str, int], np.ndarray]] = {}
    exclude: list[str] = []
    pending: dict[int, list[str]] = {}
    seen_events: set[str] = set()
    feedback: dict[str, int] = {}
    repeats = posted = 0
    headers = {"X-API-Key": api_key} if api_key else {}

    def post_clicks(client: httpx.Client, event_ids_: list[str]) -> None:
        nonlocal posted
        for s in range(0, len(event_ids_), FEEDBACK_BATCH):
            chunk = event_ids_[s:s + FEEDBACK_BATCH]
            resp = client.post("/v1/feedback/batch", json={"events": [{"event_id": e, "click": True} for e in chunk]})
            _raise_for(resp, "POST /v1/feedback/batch")
            for r in resp.json()["results"]:
                feedback[r["status"]] = feedback.get(r["status"], 0) + 1
            posted += len(chunk)

    start = time.perf_counter()
    with httpx.Client(base_url=url, headers=headers, timeout=timeout) as client:
        health = client.get("/health")
        _raise_for(health, "GET /health")
        policy_name = f"{health.json().get('policy', 'service')} over HTTP"
        for i in range(n_pages):
            due = pending.pop(i, None)
            if due:
                post_clicks(client, due)
            cat = world.catalog(i)
            if cat is not last_catalog:
                last_catalog, info = cat, {}
                offered = {t: {c.artwork_id for c in cands} for t, cands in cat.items()}
                exclude = sorted(e for t, m in mapping.items() for w, e in m.items() if w not in offered.get(t, ()))
            page = world.page(visit_rng, i)
            user = page.user
            u_click = click_rng.random(len(page.title_ids))
            # One per slot, as run_world; only clicks are posted (the service closes silence at its
            # window), so each is a click's delay.
            delays = [max(0, int(world.delay(delay_rng, 1.0))) for _ in page.title_ids]
            pages_seen.append((user.user_id, list(page.title_ids)))
            context = {k: v for k, v in (("device", user.device), ("hour", user.hour), ("country", user.country))
                       if v is not None}
            body: dict[str, Any] = {"user_id": f"{run_tag}:{user.user_id}",
                                    "taste": {k: float(v) for k, v in user.taste.items()},
                                    "history": list(user.history), "context": context,
                                    "titles": list(page.title_ids)}
            if exclude:
                body["exclude"] = exclude
            resp = client.post("/v1/choose", json=body)
            _raise_for(resp, f"POST /v1/choose (page {i})")
            results = resp.json()["results"]
            if [r.get("title_id") for r in results] != list(page.title_ids):
                raise ValueError(f"page {i}: the service answered titles {[r.get('title_id') for r in results]}, "
                                 f"asked for {page.title_ids}")
            for j, (t, r) in enumerate(zip(page.title_ids, results)):
                if r.get("error"):
                    raise ValueError(f"title {t!r}: the service answered {r['error']}: {r.get('message')}")
                eid = r["event_id"]
                if r.get("repeat") or eid in seen_events:
                    repeats += 1  # the same decision again: nothing new to record or click
                    continue
                seen_events.add(eid)
                entry = info.get(t)
                if entry is None:
                    cands = cat[t]
                    entry = info[t] = ({c.artwork_id: k for k, c in enumerate(cands)}, book.of(t, cands))
                idx, cols = entry
                world_id = inverse[t].get(r["artwork_id"])
                if world_id is None:
                    raise ValueError(f"title {t!r}: the service showed artwork {r['artwork_id']!r}, which is not in "
                                     f"the mapping (known: {sorted(inverse[t])})")
                k = idx.get(world_id)
                if k is None:
                    raise ValueError(f"title {t!r}: the service showed artwork {r['artwork_id']!r} (world "
                                     f"{world_id!r}), which the world does not offer at page {i}")
                p = np.asarray(world.click_probs(page, t, i), dtype=float)
                reward = 1.0 if u_click[j] < p[k] else 0.0
                pages.append(i)
                title_of.append(book.title_index[t])
                rows.append(j)
                chosen_col.append(int(cols[k]))
                propensity.append(float(r["probability"]))
                rewards.append(reward)
                prob_rows.append((cols, p))
                event_ids.append(eid)
                served_by.append(str(r.get("policy")))
                if reward:
                    pending.setdefault(i + 1 + delays[j], []).append(eid)
        dropped = sum(len(v) for v in pending.values())
        if flush and pending:
            post_clicks(client, [e for i in sorted(pending) for e in pending[i]])
            dropped = 0
    seconds = time.perf_counter() - start

    n = len(pages)
    probs = np.full((n, book.width), np.nan)
    for m, (cols, p) in enumerate(prob_rows):
        probs[m, cols] = p
    return HttpWorldRun(
        world=getattr(world, "name", type(world).__name__),
        policy=policy_name,
        seed=seed,
        n_pages=n_pages,
        page=np.array(pages, dtype=np.int64),
        title=np.array(title_of, dtype=np.int64),
        row=np.array(rows, dtype=np.int64),
        chosen=np.array(chosen_col, dtype=np.int64),
        probability=np.array(propensity, dtype=float),
        reward=np.array(rewards, dtype=float),
        probs=probs,
        title_ids=book.title_ids,
        columns=book.columns,
        seconds=seconds,
        run_tag=run_tag,
        event_ids=event_ids,
        served_by=served_by,
        pages_seen=pages_seen,
        repeats=repeats,
        clicks_posted=posted,
        pending_dropped=dropped,
        feedback=feedback,
    )
