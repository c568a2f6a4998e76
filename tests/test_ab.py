"""Online A/B tests: `SplitPolicy` (stable per-user split, each arm serving and learning only its own
users, exact save/load), `serve --ab` on a real server, and `artwork compare-online`'s difference
with a user-resampled interval beside the offline estimate from the exploration slice."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from artwork.store import Catalog
from bandit.baselines import FixedPolicy, ThompsonPolicy
from bandit.cli import cli
from bandit.engine import Engine, EngineConfig
from bandit.events import EventLog
from bandit.features import Candidate, UserContext
from bandit.policy import PolicyError, TitleRequest
from bandit.registry import load_policy, make_policy
from bandit.split import SplitPolicy, arm_of
from servekit import LiveServer, build_catalog


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def cands(title: str, n: int = 3) -> list[Candidate]:
    return [Candidate(f"{title}-a{k}", {"mood:dark": k / n, "genre:crime": 1 - k / n}) for k in range(n)]


def test_the_split_is_stable_per_user_and_close_to_its_share() -> None:
    users = [f"user-{i}" for i in range(20_000)]
    for share in (0.1, 0.5, 0.8):
        arms = np.array([arm_of(u, share) for u in users])
        assert abs(arms.mean() - share) < 0.015, share  # 4+ standard errors
    # A function of the user id alone: the same in another split object, after save/load, and per page.
    one = SplitPolicy(ThompsonPolicy(), ThompsonPolicy(), 0.5)
    two = SplitPolicy(ThompsonPolicy(seed=9), FixedPolicy(), 0.5)
    assert all((one.arm_for(u) is one.b) == (two.arm_for(u) is two.b) == bool(arm_of(u, 0.5)) for u in users[:500])
    # A user on B at share 0.3 stays on B at any larger share (the hash is compared with the share).
    assert all(arm_of(u, 0.6) for u in users[:2000] if arm_of(u, 0.3))
    page = [TitleRequest(f"t{k}", cands(f"t{k}")) for k in range(5)]
    for u in users[:50]:
        names = {d.policy for d in one.choose_many(UserContext(u), page)}
        assert names == {"B:thompson" if arm_of(u, 0.5) else "A:thompson"}  # one arm per page, distinct names
    with pytest.raises(PolicyError, match="share_b"):
        SplitPolicy(ThompsonPolicy(), ThompsonPolicy(), 1.0)
    with pytest.raises(PolicyError, match="cannot itself be a split"):
        SplitPolicy(one, ThompsonPolicy())


def test_each_arm_learns_only_its_own_users() -> None:
    split = SplitPolicy(ThompsonPolicy(), ThompsonPolicy(), 0.5)
    rng = np.random.default_rng(0)
    per_arm = Counter()
    clicks = {"A": Counter(), "B": Counter()}
    for i in range(400):
        u = UserContext(f"u{i % 97}")
        arm = "B" if arm_of(u.user_id, 0.5) else "A"
        title = f"t{i % 4}"
        c = cands(title)
        chosen = c[int(rng.integers(3))].artwork_id
        r = float(rng.random() < 0.3)
        split.learn_one(u, title, c, chosen, 1 / 3, r)
        per_arm[arm] += 1
        clicks[arm][(title, chosen)] += r
        if r == 0.0 and i % 5 == 0:  # a late click corrects it, in the same arm
            split.relearn(u, title, c, chosen, 1 / 3, 0.0, 1.0)
            per_arm[arm] += 1
            clicks[arm][(title, chosen)] += 1.0
    assert split.a.version == per_arm["A"] and split.b.version == per_arm["B"] and min(per_arm.values()) > 100
    assert split.version == per_arm["A"] + per_arm["B"]
    for arm, pol in (("A", split.a), ("B", split.b)):
        got = {(t, a): s for t, arms in pol.counts.items() for a, (s, _f) in arms.items() if s}
        assert got == {k: v for k, v in clicks[arm].items() if v}


def test_save_and_load_round_trip_both_arms_exactly(tmp_path: Path) -> None:
    split = SplitPolicy(make_policy("bayes", seed=1), make_policy("vw", seed=2), 0.4)
    rng = np.random.default_rng(1)
    for i in range(300):
        u = UserContext(f"u{i % 41}", taste={"genre:crime": float(rng.random())}, device="tv")
        c = cands(f"t{i % 3}")
        split.learn_one(u, f"t{i % 3}", c, c[i % 3].artwork_id, 1 / 3, float(rng.random() < 0.4))
    split.save(tmp_path / "ab.split")
    back = load_policy(tmp_path / "ab.split")
    assert isinstance(back, SplitPolicy) and back.share_b == 0.4 and back.name == split.name
    assert (back.a.name, back.b.name) == ("A:bayes-ts", "B:vw-squarecb")
    assert (back.a.version, back.b.version) == (split.a.version, split.b.version)
    page = [TitleRequest(f"t{k}", cands(f"t{k}")) for k in range(3)]
    for i in range(30):
        u = UserContext(f"u{i}", taste={"genre:crime": i / 30}, device="tv")
        assert back.distributions(u, page) == split.distributions(u, page)  # exact floats
        assert [(d.chosen, d.probability, d.policy) for d in back.choose_many(u, page)] == \
               [(d.chosen, d.probability, d.policy) for d in split.choose_many(u, page)]  # same next samples
    (tmp_path / "bad.split").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(PolicyError, match="bad.split"):
        load_policy(tmp_path / "bad.split")


def test_a_server_with_ab_serves_both_arms_and_logs_their_names(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    titles = build_catalog(store, n_titles=3)
    events = Path(f"{store}.events.db")
    args = ("--ab", "thompson", "--ab-share", "0.5", "--feedback-window", "1", "--close-interval", "0.2",
            "--snapshot-interval", "600")
    server = LiveServer(store, *args).start()
    try:
        with server.client() as c:
            h = c.get("/health").json()
            assert h["ab"]["a"]["policy"] == "A:bayes-ts" and h["ab"]["b"]["policy"] == "B:thompson"
            assert h["ab"]["share_b"] == 0.5 and h["lineage"]["kind"] == "split"
            assert h["lineage"]["source"].startswith("A/B split: A = A:bayes-ts")
            for i in range(60):
                res = c.post("/v1/choose", json={"user_id": f"u{i}", "titles": titles}).json()["results"]
                want = "B:thompson" if arm_of(f"u{i}", 0.5) else "A:bayes-ts"
                assert {r["policy"] for r in res} == {want}
                for k, r in enumerate(res):
                    if (i + k) % 3 == 0:
                        c.post("/v1/feedback", json={"event_id": r["event_id"], "click": True})
                dist = c.post("/v1/policy/distribution", json={"user_id": f"u{i}", "titles": titles[:1]}).json()
                assert dist["titles"][titles[0]]["policy"] == want
            deadline = time.monotonic() + 15
            while c.get("/health").json()["learned_seq"] < 60 * len(titles):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            h = c.get("/health").json()
    finally:
        server.stop()
    log = EventLog(events)
    try:
        records = log.records()
        learned = Counter("B" if arm_of(r.user_id, 0.5) else "A" for r in log.finalized_after(0))
    finally:
        log.close()
    assert Counter(r.policy for r in records) == Counter(
        {"A:bayes-ts": sum(not arm_of(f"u{i}", 0.5) for i in range(60)) * 3,
         "B:thompson": sum(arm_of(f"u{i}", 0.5) for i in range(60)) * 3})
    # Each arm learned exactly its own users' outcomes.
    assert (h["ab"]["a"]["version"], h["ab"]["b"]["version"]) == (learned["A"], learned["B"])
    # Same flags: the split is restored, not started again.
    server = LiveServer(store, *args).start()
    try:
        with server.client() as c:
            again = c.get("/health").json()
            assert again["ab"] == h["ab"] and again["lineage"]["source"] == "learned online"
    finally:
        server.stop()
    # Another share: a new split, arm A carried on from the old split's arm A, arm B new on the whole log.
    server = LiveServer(store, "--ab", "thompson", "--ab-share", "0.3", "--snapshot-interval", "600").start()
    try:
        with server.client() as c:
            new = c.get("/health").json()
            assert new["ab"]["share_b"] == 0.3 and new["ab"]["a"]["version"] == h["ab"]["a"]["version"]
            assert new["ab"]["b"]["version"] == learned["A"] + learned["B"]
    finally:
        server.stop()


# -- the online comparison ----------------------------------------------------------------------------


def _ab_log(tmp_path: Path, b_file: str, seed: int) -> tuple[Path, Path]:
    """A store served in-process with arm A = the best artwork per title, arm B = `b_file` ("good" or
    "bad"), 20% uniform exploration pages, and seeded simulated clicks: 0.35 on a title's good
    artwork, 0.08 on its bad one, 0.2 on the third. Returns (store, exported Parquet log)."""
    store = tmp_path / "c.db"
    titles = build_catalog(store, n_titles=3)
    with Catalog(store) as cat:
        arts = {t: [a.artwork_id for a in cat.artworks(t)] for t in titles}
    good = {t: ids[0] for t, ids in arts.items()}
    bad = {t: ids[1] for t, ids in arts.items()}
    rate = {**{a: 0.35 for a in good.values()}, **{a: 0.08 for a in bad.values()},
            **{ids[2]: 0.2 for ids in arts.values()}}
    FixedPolicy(defaults=good).save(tmp_path / "good.json")
    FixedPolicy(defaults=bad).save(tmp_path / "bad.json")
    clock = type("Clock", (), {"t": time.time() - 100_000, "__call__": lambda self: self.t})()
    cfg = EngineConfig(deploy=str(tmp_path / "good.json"), ab=str(tmp_path / f"{b_file}.json"), ab_share=0.5,
                       explore_share=0.2, session_ttl_s=1.0, feedback_window_s=5.0, seed=seed)
    rng = np.random.default_rng(seed)
    with Engine(store, cfg, clock=clock, start_timer=False) as eng:
        for visit in range(4):
            for u in range(300):
                user = UserContext(f"u{u}", device="tv" if u % 2 else "phone")
                for ch in eng.choose(user, titles):
                    if rng.random() < rate[ch.artwork_id]:
                        eng.feedback(ch.event_id, click=True)
            clock.t += 10.0
            eng.close_expired()
    res = run("--store", store, "export-log", tmp_path / "log.parquet")
    assert res.exit_code == 0, res.output
    return store, tmp_path / "log.parquet"


def test_compare_online_finds_a_bad_arm_and_the_offline_estimate_agrees(tmp_path: Path) -> None:
    store, log = _ab_log(tmp_path, "bad", seed=3)
    res = run("--store", store, "compare-online", "--log", log, "--by", "device", "--n-bootstrap", "400", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["arms"] == {"A": ["A:fixed"], "B": ["B:fixed"]} and doc["split"].endswith(".split")
    overall = doc["results"][0]
    assert overall["segment"] == "all" and overall["better"] == "A"
    # (a user whose every page was an exploration page is in neither arm)
    assert 290 <= overall["a_users"] + overall["b_users"] <= 300 and min(overall["a_users"], overall["b_users"]) > 120
    assert -0.33 < overall["diff_low"] < overall["diff"] < overall["diff_high"] < -0.2  # truth: 0.08 - 0.35
    assert overall["a_low"] < overall["a_rate"] < overall["a_high"]
    # The same difference offline, from the exploration slice.
    assert overall["offline_estimator"] == "dr" and overall["offline_rows"] > 400
    assert -0.4 < overall["offline_low"] < overall["offline_diff"] < overall["offline_high"] < -0.15
    assert {r["segment"] for r in doc["results"][1:]} == {"tv", "phone"}
    assert all(r["better"] == "A" for r in doc["results"])
    res = run("--store", store, "compare-online", "--log", log, "--n-bootstrap", "200")
    assert res.exit_code == 0 and "B - A online (95% CI, users resampled)" in res.stdout, res.output
    assert "exploration slice" in res.stdout
    # The deployment's report shows the same test: its table on stdout and an "Online A/B test" section.
    res = run("--store", store, "report", "--out", tmp_path / "report", "--n-bootstrap", "200", "--quiet")
    assert res.exit_code == 0, res.output
    assert "online A/B test:" in res.stdout and "B - A online (95% CI, users resampled)" in res.stdout
    page = (tmp_path / "report" / "index.html").read_text()
    assert '<section id="ab-test">' in page and "users resampled" in page


def test_compare_online_sees_no_difference_between_identical_arms(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default --store (artwork.db) has no snapshots here
    store, log = _ab_log(tmp_path, "good", seed=5)
    res = run("compare-online", "--log", log, "--n-bootstrap", "400", "--json")
    assert res.exit_code == 0, res.output
    overall = json.loads(res.stdout)["results"][0]
    assert overall["diff_low"] < 0 < overall["diff_high"] and overall["better"] == "-"
    assert overall["diff_high"] - overall["diff_low"] < 0.12  # an informative interval, not a vacuous one
    assert overall["offline_diff"] is None  # no --split and no store snapshot here: online only


def test_compare_online_refuses_a_log_without_arms(tmp_path: Path) -> None:
    store = tmp_path / "c.db"
    titles = build_catalog(store, n_titles=2)
    with Engine(store, EngineConfig(), start_timer=False) as eng:
        for i in range(5):
            for ch in eng.choose(UserContext(f"u{i}"), titles):
                eng.feedback(ch.event_id, click=i % 2 == 0)
    assert run("--store", store, "export-log", tmp_path / "log.parquet").exit_code == 0
    res = run("compare-online", "--log", tmp_path / "log.parquet")
    assert res.exit_code == 1 and "no rewarded decision served by an A/B split" in res.output, res.output
    assert "bayes-ts" in res.output


def test_a_damaged_split_file_is_an_unusable_policy_not_a_crash(tmp_path: Path) -> None:
    """Restore falls back to an older snapshot only on PolicyError: a split file whose meta.json
    lost a field (or is not an object) must say so as one, not raise KeyError/AttributeError."""
    import zipfile

    SplitPolicy(make_policy("uniform"), make_policy("thompson"), 0.5).save(tmp_path / "ok.split")
    with zipfile.ZipFile(tmp_path / "ok.split") as z:
        members = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(members["meta.json"])
    for name, text in (("no-share", json.dumps({k: v for k, v in meta.items() if k != "share_b"})),
                       ("not-an-object", "[1, 2]")):
        with zipfile.ZipFile(tmp_path / f"{name}.split", "w") as z:
            for n, data in members.items():
                z.writestr(n, text if n == "meta.json" else data)
        with pytest.raises(PolicyError, match="not a"):
            load_policy(tmp_path / f"{name}.split")
