"""Tests for the decision log: record construction and exact Parquet round trip."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bandit.baselines import UniformPolicy
from bandit.decisions import SCHEMA, DecisionRecord, new_record, read_parquet, write_parquet
from bandit.features import Candidate, UserContext
from bandit.policy import Decision, VWConfig, VWPolicy

CANDS = [
    Candidate("a1", {"mood:dark": 0.123456789012345, "emb:0": -1e-7, "actor:Jane Doe": 1.0}),
    Candidate("a2", {}),
    Candidate("a3", {"genre:comédie": 0.5}),
]


def _records() -> list[DecisionRecord]:
    pol = VWPolicy(VWConfig(seed=0))
    users = [
        UserContext("u1", taste={"genre:crime": 0.8, "actor:Jane Doe": 0.1}, history=["t9", "t8"], device="tv", hour=21, country="FR", row=3),
        UserContext("u2"),
    ]
    out = []
    for i, u in enumerate(users):
        d = pol.choose(u, "t1", CANDS, exclude=["a2"] if i == 0 else ())
        out.append(new_record(u, "t1", CANDS, d, reward=1.0 if i == 0 else None, time=1_700_000_000.25 + i))
    return out


def test_new_record_fields() -> None:
    recs = _records()
    r = recs[0]
    uuid.UUID(r.event_id)  # a valid uuid
    assert r.event_id != recs[1].event_id
    assert (r.user_id, r.title_id, r.policy, r.version, r.reward) == ("u1", "t1", "vw-squarecb", 0, 1.0)
    # excluded a2 was not part of the action set, so it is not logged as a candidate
    assert r.candidates == ["a1", "a3"]
    assert r.candidate_features == [CANDS[0].features, CANDS[2].features]
    assert r.chosen in r.candidates and r.probability == r.distribution[r.chosen] == pytest.approx(0.5)
    assert r.context["hour"] == 21 and r.user_context() == UserContext.from_dict(r.context)
    assert [c.artwork_id for c in r.candidate_objects()] == ["a1", "a3"]
    assert recs[1].candidates == ["a1", "a2", "a3"] and recs[1].reward is None


def test_new_record_rejects_foreign_choice() -> None:
    d = Decision("t1", "zz", 1.0, {"zz": 1.0}, "x", 0)
    with pytest.raises(ValueError, match="zz"):
        new_record(UserContext("u"), "t1", CANDS, d)


def test_parquet_round_trip_exact(tmp_path: Path) -> None:
    recs = _records()
    path = tmp_path / "logs" / "decisions.parquet"
    write_parquet(recs, path)
    assert pq.read_schema(path).equals(SCHEMA)
    back = read_parquet(path)
    assert back == recs
    assert back[0].candidate_features[0]["mood:dark"] == 0.123456789012345
    assert back[1].reward is None
    assert [p.name for p in path.parent.iterdir()] == ["decisions.parquet"]  # no temp files


def test_parquet_empty_and_replay(tmp_path: Path) -> None:
    write_parquet([], tmp_path / "empty.parquet")
    assert read_parquet(tmp_path / "empty.parquet") == []
    # a read-back log can warm-start a policy
    logger = UniformPolicy(seed=0)
    u = UserContext("u", taste={"genre:crime": 1.0})
    recs = [new_record(u, "t1", CANDS, logger.choose(u, "t1", CANDS), reward=float(i % 2)) for i in range(20)]
    write_parquet(recs, tmp_path / "log.parquet")
    pol = VWPolicy(VWConfig(seed=0))
    assert pol.learn_many(read_parquet(tmp_path / "log.parquet")) == 20 and pol.version == 20


def test_parquet_refuses_nan(tmp_path: Path) -> None:
    recs = _records()
    recs[0].distribution = {"a1": float("nan")}
    with pytest.raises(ValueError):
        write_parquet(recs, tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()
