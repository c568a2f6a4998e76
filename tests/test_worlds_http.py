"""A simulated world driving the real HTTP service (bandit.audience), checked against run_world."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from artwork.ingest import Ingestor
from artwork.store import Catalog
from bandit.audience import artwork_image, catalog_for_world, drive_world
from bandit.events import EventLog
from bandit.worlds import WORLDS, run_world, world_streams
from servekit import LiveServer

PAGES = 150
SEED = 3
WINDOW = 3.0  # feedback window (s): clicks are posted ms after their page; misses close soon after


@pytest.fixture(scope="module")
def world():
    return WORLDS["appeal"](seed=0, n_titles=4, n_users=300)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny, world):
    store = tmp_path_factory.mktemp("world-http") / "catalog.db"
    with Catalog(store) as c:
        mapping = catalog_for_world(world, c, tiny)
    return store, mapping


@pytest.fixture(scope="module")
def server(built):
    store, _ = built
    # A tiny session TTL: every page view is a new decision, as in run_world.
    s = LiveServer(store, "--feedback-window", str(WINDOW), "--close-interval", "0.2", "--session-ttl", "0.001",
                   "--seed", "0").start()
    yield s
    s.stop()


def test_catalog_for_world_uploads_images_the_engine_tags(built, world, tiny) -> None:
    store, mapping = built
    cat = world.catalog(0)
    assert set(mapping) == set(cat) == set(world.title_ids)
    with Catalog(store) as c:
        assert c.encoder_id == tiny.encoder_id
        for t, cands in cat.items():
            assert set(mapping[t]) == {a.artwork_id for a in cands}
            arts = {a.artwork_id: a for a in c.artworks(t)}
            assert set(arts) == set(mapping[t].values())  # one engine artwork per world artwork, nothing else
            for wid, eid in mapping[t].items():
                a = arts[eid]
                assert a.sha256 == hashlib.sha256(artwork_image(wid)).hexdigest()
                assert a.width == a.height == 96 and a.embedding is not None
                assert a.tags.genres and a.tags.moods  # the engine's own tags, not the world's
        # Idempotent: the same bytes give the same ids and nothing new.
        n_before = len(c.all_artworks())
        assert catalog_for_world(world, c, tiny) == mapping
        assert len(c.all_artworks()) == n_before
    shas = [hashlib.sha256(artwork_image(w)).hexdigest() for m in mapping.values() for w in m]
    assert len(set(shas)) == len(shas)


def test_drive_world_over_http(server, built, world) -> None:
    _, mapping = built
    t0 = time.perf_counter()
    run = drive_world(server.url, world, mapping, PAGES, seed=SEED, flush=True)
    assert time.perf_counter() - t0 < 40

    # Every page view was a decision per title (no sticky repeats with this TTL).
    assert run.repeats == 0
    assert len(run.pages_seen) == PAGES
    assert run.n == sum(len(titles) for _, titles in run.pages_seen) == len(run.event_ids)
    assert len(set(run.event_ids)) == run.n

    # Same seed, same users and pages as run_world's visit stream.
    rng = world_streams(SEED)[0]
    expect = [(pg.user.user_id, pg.title_ids) for pg in (world.page(rng, i) for i in range(PAGES))]
    assert run.pages_seen == expect

    # Clicks: every posted click joined within its window; the last page's were flushed.
    assert run.pending_dropped == 0
    assert run.clicks_posted == int(run.reward.sum()) > 0
    assert run.feedback == {"joined": run.clicks_posted}

    time.sleep(WINDOW + 1.0)  # let the silent decisions' windows close and be learned
    log = EventLog(Path(f"{server.store}.events.db"))
    try:
        ours = {r.event_id: r for r in log.records() if r.user_id.startswith(f"{run.run_tag}:")}
    finally:
        log.close()
    assert set(ours) == set(run.event_ids)
    by_event = dict(zip(run.event_ids, run.reward))
    assert all(ours[e].reward == by_event[e] for e in run.event_ids)  # clicks joined, misses closed at 0
    assert sum(r.reward for r in ours.values()) == run.clicks_posted
    for m, e in enumerate(run.event_ids):  # the log holds what was served, as served
        t = run.title_ids[run.title[m]]
        assert ours[e].title_id == t and ours[e].chosen == mapping[t][run.columns[t][run.chosen[m]]]
        assert ours[e].probability == pytest.approx(run.probability[m])
    with server.client() as c:
        health = c.get("/health").json()
        metrics = c.get("/metrics").text
    assert health["policy_version"] > 0 and health["learned_seq"] >= run.n
    joined = float(next(ln.split()[1] for ln in metrics.splitlines()
                        if ln.startswith("artwork_feedback_joined_total ")))
    assert joined == run.clicks_posted

    s = run.summary()
    assert s["decisions"] == run.n and s["world"] == "appeal" and s["policy_name"].endswith("over HTTP")
    assert s["oracle"] >= s["best_fixed"] >= 0 and 0 < s["policy"] < 1 and 0 < s["uniform"] < 1
    assert s["regret"] == pytest.approx(s["oracle"] - s["policy"])
    assert s["clicks_posted"] == run.clicks_posted and s["repeats"] == 0

    # Common random numbers with the in-process loop: replaying the served choices through
    # run_world gives the same decisions, true probabilities and click draws.
    served = iter(range(run.n))

    class Replay:
        name = "replay"

        def choose(self, user, title_id, candidates):
            m = next(served)
            assert run.title_ids[run.title[m]] == title_id
            return SimpleNamespace(chosen=run.columns[title_id][run.chosen[m]], probability=run.probability[m])

    ref = run_world(world, Replay(), PAGES, seed=SEED, learn=False)
    assert ref.n == run.n
    assert [ref.title_ids[t] for t in ref.title] == [run.title_ids[t] for t in run.title]
    np.testing.assert_array_equal(ref.page, run.page)
    np.testing.assert_array_equal(ref.row, run.row)
    np.testing.assert_array_equal(ref.reward, run.reward)
    for m in range(run.n):
        t = run.title_ids[run.title[m]]
        a = {aid: run.probs[m, k] for k, aid in enumerate(run.columns[t])}
        b = {aid: ref.probs[m, k] for k, aid in enumerate(ref.columns[t])}
        assert a == b
    rs = ref.summary()
    for key in ("policy", "oracle", "best_fixed", "uniform", "gap_closed", "regret", "clicks"):
        assert s[key] == pytest.approx(rs[key], nan_ok=True), key  # gap_closed: NaN where oracle == best fixed


def test_unmapped_artwork_and_missing_title_raise(server, built, world) -> None:
    _, mapping = built
    gone = dict(mapping)
    del gone["t01"]
    with pytest.raises(ValueError, match="t01"):  # before any request: the url is not even a server
        drive_world("http://127.0.0.1:9", world, gone, 5)
    blind = {**mapping, "t00": {}}  # every page shows t00 (4 titles, pages of 6+): its artwork is unknown
    with pytest.raises(ValueError, match=r"title 't00': the service showed artwork '[0-9a-f]{16}'.*not in the mapping"):
        drive_world(server.url, world, blind, 5, seed=SEED)


def test_artworks_the_world_does_not_offer_are_excluded(server, built, world, tiny, tmp_path) -> None:
    """Runs last: it adds an artwork to the shared catalog."""
    store, mapping = built
    # An extra engine artwork for t02 that the world does not have (as a later-epoch artwork would be).
    f = tmp_path / "extra.png"
    f.write_bytes(artwork_image("t02-extra"))
    with Catalog(store) as c:
        report = Ingestor(c, tiny).upload_files("t02", [f], progress=False)
    extra = report.artwork_ids[0]
    wider = {**mapping, "t02": {**mapping["t02"], "t02-extra": extra}}
    run = drive_world(server.url, world, wider, 25, seed=SEED + 1)
    t02 = run.title_ids.index("t02")
    assert (run.title == t02).sum() == 25  # t02 is on every page: 25 chances to show the extra one
    assert "t02-extra" not in run.columns["t02"]  # shown, it would have raised: the world does not offer it
