"""Layout versions of everything the project stores: the Parquet decision log (Arrow types, a
version in its key-value metadata, version 1 files still read, newer ones refused) and the two
SQLite files (the catalog and the event log: PRAGMA user_version, older files migrated in place in
one transaction, newer ones refused before anything in them changes).

Old files are made the way old builds made them: the Parquet log from version 1's schema and JSON
columns, the SQLite files by taking a file the current code wrote and removing what later
versions added (columns, tables, the version marks), so the data in them is real.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import artwork.store as store_mod
from artwork.store import Catalog, StoreError
from bandit.cli import cli
from bandit.decisions import (LEGACY_SCHEMA, LOG_SCHEMA_VERSION, SCHEMA, VERSION_KEY, DecisionLogError,
                              DecisionRecord, log_version, read_parquet, write_parquet)
from bandit.engine import Engine, EngineConfig
from bandit.events import SCHEMA_VERSION as EVENTS_VERSION
from bandit.events import EventLog, EventLogError
from bandit.features import UserContext
from servekit import build_catalog


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


# -- the Parquet decision log -----------------------------------------------------------------------------
def _awkward() -> list[DecisionRecord]:
    now = time.time()
    full = UserContext("ünï", taste={"genre:comédie": 0.1 + 0.2, "actor:李 小龍": 1e-300, "mood:x": -0.0},
                       history=["t9", "t 8"], device="tv", hour=23, country="JP", row=12).to_dict()
    return [
        DecisionRecord("e-full", now, "ünï", "t1", full, ["a1", "a2", "a3"],
                       [{"mood:dark": 0.123456789012345, "emb:0": -1e-7}, {}, {"genre:ñ": 5e-324}], "a2",
                       1 / 3, "bayes-ts", 7, 0.5, {"a1": 0.25, "a2": 1 / 3, "a3": 1 - 0.25 - 1 / 3}),
        # cold user, a single candidate, no reward yet, an empty distribution (a version 1 log's)
        DecisionRecord("e-cold", 1_700_000_000.25, "u2", "t2", UserContext("u2").to_dict(), ["b"], [{}], "b", 1.0,
                       "uniform", 0, None, {}),
        # a context the engine would refuse (unknown key, hour as text): kept as it was, not dropped
        DecisionRecord("e-odd", 0.1, "u3", "t2", {"user_id": "u3", "taste": {}, "history": [], "device": None,
                                                  "hour": "21", "country": None, "row": None, "mood": {"x": [1]}},
                       ["b", "c"], [{}, {"k": 2.0}], "c", 0.5, "p", 2 ** 40, 0.0, {"b": 0.5, "c": 0.5}),
    ]


def test_the_log_is_typed_arrow_and_round_trips_exactly(tmp_path: Path) -> None:
    recs = _awkward()
    path = tmp_path / "log.parquet"
    write_parquet(recs, path)
    schema = pq.read_schema(path)
    assert schema.equals(SCHEMA) and schema.metadata[VERSION_KEY] == str(LOG_SCHEMA_VERSION).encode()
    assert log_version(path) == LOG_SCHEMA_VERSION == 2
    assert pa.types.is_timestamp(schema.field("time").type) and schema.field("time").type.tz == "UTC"
    assert pa.types.is_struct(schema.field("context").type)
    assert pa.types.is_map(schema.field("distribution").type)
    assert pa.types.is_map(schema.field("candidate_features").type.value_type)
    back = read_parquet(path)
    assert back == recs
    assert back[0].time == recs[0].time  # a float epoch through nanoseconds, bit for bit
    assert back[0].context["taste"]["actor:李 小龍"] == 1e-300 and back[0].candidate_features[2]["genre:ñ"] == 5e-324
    assert list(back[0].context["taste"]) == list(recs[0].context["taste"])  # order kept too
    assert back[1].reward is None and back[1].distribution == {} and back[1].context["taste"] == {}
    assert back[2].context["hour"] == "21" and back[2].context["mood"] == {"x": [1]}
    # Written by another tool in many row groups (chunks): the same records.
    pq.write_table(pq.read_table(path), tmp_path / "chunks.parquet", row_group_size=1)
    assert read_parquet(tmp_path / "chunks.parquet") == recs
    # Other tools see real columns, not JSON: the context's fields and a timestamp.
    table = pq.read_table(path)
    assert table.column("context").combine_chunks().field("device").to_pylist() == ["tv", None, None]
    assert table.column("time").type == pa.timestamp("ns", tz="UTC")


def test_times_from_the_clock_come_back_bit_for_bit(tmp_path: Path) -> None:
    import numpy as np

    times = np.random.default_rng(0).uniform(1.0e9, 4.0e9, 20_000).tolist() + [time.time(), 0.0, 1.5, -3.25]
    recs = [DecisionRecord(f"e{i}", t, "u", "t", {"user_id": "u"}, ["a"], [{}], "a", 1.0, "p", 0)
            for i, t in enumerate(times)]
    write_parquet(recs, tmp_path / "t.parquet")
    assert [r.time for r in read_parquet(tmp_path / "t.parquet")] == times


def _write_v1(records: list[DecisionRecord], path: Path) -> None:
    """What write_parquet wrote before versions: JSON strings, float seconds, no metadata."""
    dumps = lambda o: json.dumps(o, allow_nan=False, separators=(",", ":"))  # noqa: E731
    cols = {
        "event_id": [r.event_id for r in records], "time": [r.time for r in records],
        "user_id": [r.user_id for r in records], "title_id": [r.title_id for r in records],
        "context": [dumps(r.context) for r in records], "candidates": [r.candidates for r in records],
        "candidate_features": [[dumps(f) for f in r.candidate_features] for r in records],
        "chosen": [r.chosen for r in records], "probability": [r.probability for r in records],
        "policy": [r.policy for r in records], "version": [r.version for r in records],
        "reward": [r.reward for r in records], "distribution": [dumps(r.distribution) for r in records],
    }
    pq.write_table(pa.Table.from_pydict(cols, schema=LEGACY_SCHEMA), path)


def test_a_version_1_log_is_still_read_and_converts(tmp_path: Path) -> None:
    recs = _awkward()
    old = tmp_path / "old.parquet"
    _write_v1(recs, old)
    assert pq.read_schema(old).metadata is None and log_version(old) == 1
    assert read_parquet(old) == recs
    new = tmp_path / "new.parquet"
    res = run("export-log", new, "--log", old)  # the upgrade path: read version 1, write version 2
    assert res.exit_code == 0, res.output
    assert log_version(new) == 2 and read_parquet(new) == recs


def test_a_log_from_a_newer_version_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "future.parquet"
    write_parquet(_awkward(), path)
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({VERSION_KEY: b"3"}), path)
    with pytest.raises(DecisionLogError, match=f"{path}: decision log version 3, but this build of artwork-engine "
                                               "reads versions 1 to 2; upgrade it"):
        read_parquet(path)
    pq.write_table(table.replace_schema_metadata({VERSION_KEY: b"two"}), path)
    with pytest.raises(DecisionLogError, match="is b'two', not a number"):
        read_parquet(path)
    pq.write_table(table.replace_schema_metadata({VERSION_KEY: b"3"}), path)
    res = run("--store", tmp_path / "c.db", "report", path)
    assert res.exit_code == 1 and "decision log version 3" in res.stderr and "Traceback" not in res.output


def test_bad_values_name_the_event_and_write_nothing(tmp_path: Path) -> None:
    cases = [("candidate_features", lambda r: r.candidate_features[0].update(x=float("inf")),
              "event e-full: candidate_features['x'] of artwork 'a1' is inf"),
             ("taste", lambda r: r.context["taste"].update(k=float("nan")), "event e-full: context.taste['k'] is nan"),
             ("distribution", lambda r: r.distribution.update(a1=float("-inf")), "distribution['a1'] is -inf"),
             ("reward", lambda r: setattr(r, "reward", float("nan")), "event e-full: reward is nan"),
             ("time", lambda r: setattr(r, "time", 1e12), "event e-full: time 1000000000000.0 is not unix seconds"),
             ("key", lambda r: r.distribution.update({3: 0.1}), "event e-full: distribution {")]
    for name, spoil, message in cases:
        recs = _awkward()
        spoil(recs[0])
        with pytest.raises(DecisionLogError, match=message.replace("[", r"\[").replace("{", r"\{")):
            write_parquet(recs, tmp_path / f"{name}.parquet")
        assert not list(tmp_path.iterdir()), name  # no file, no temp file


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"event_id": ["e"], "clicks": [1]}), path)
    with pytest.raises(DecisionLogError, match="no column\\(s\\) time, user_id, title_id"):
        read_parquet(path)


# -- the SQLite catalog --------------------------------------------------------------------------------------
def _header_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def _dump(path: Path, tables: list[str]) -> dict[str, list]:
    db = sqlite3.connect(path)
    try:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}
    finally:
        db.close()


def _make_v1_catalog(path: Path) -> dict[str, list]:
    """A real catalog, then made version 1: no face tables, none of the added columns, no version marks."""
    build_catalog(path, n_titles=2, per_title=3)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE faces")
    db.execute("DROP TABLE face_scans")
    for table, column, _ in store_mod.ADDED_COLUMNS:
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    db.execute("DELETE FROM meta WHERE key = 'schema_version'")
    db.execute("PRAGMA user_version = 0")
    db.commit()
    db.close()
    return _dump(path, ["titles", "artworks", "blobs", "embeddings", "image_tags"])


def test_an_old_catalog_is_migrated_in_place_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    before = _make_v1_catalog(path)
    assert _header_version(path) == 0
    with Catalog(path) as cat:
        assert cat.get_meta("schema_version") == "2"
        assert len(cat.all_artworks()) == 6 and cat.artworks("t00")[0].embedding is not None
    assert _header_version(path) == store_mod.SCHEMA_VERSION == 2
    after = _dump(path, ["titles", "artworks", "blobs", "embeddings", "image_tags"])
    assert after["blobs"] == before["blobs"] and after["embeddings"] == before["embeddings"]
    assert [row[:len(before["artworks"][0])] for row in after["artworks"]] == before["artworks"]
    with Catalog(path):  # opening a current catalog changes nothing
        pass
    assert _dump(path, ["titles", "artworks", "blobs"]) == {k: after[k] for k in ("titles", "artworks", "blobs")}


def test_a_failed_migration_leaves_the_old_catalog_as_it_was(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "v1.db"
    before = _make_v1_catalog(path)
    # The last step fails (as a full disk or a bug would): every earlier step must be undone with it.
    monkeypatch.setattr(store_mod, "ADDED_COLUMNS", (*store_mod.ADDED_COLUMNS, ("artworks", "broken", "NOT A TYPE (")))
    with pytest.raises(sqlite3.OperationalError):
        Catalog(path)
    db = sqlite3.connect(path)
    cols = {r[1] for r in db.execute("PRAGMA table_info(artworks)")}
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert "fingerprint" not in cols and "faces" not in tables and _header_version(path) == 0
    assert _dump(path, list(before)) == before


@pytest.mark.parametrize("mark", ["user_version", "meta"])
def test_a_catalog_from_a_newer_version_is_refused_untouched(tmp_path: Path, mark: str) -> None:
    path = tmp_path / "future.db"
    build_catalog(path, n_titles=1, per_title=2)
    db = sqlite3.connect(path)
    if mark == "user_version":
        db.execute("PRAGMA user_version = 3")
    else:  # a build from before user_version that wrote only the meta row
        db.execute("PRAGMA user_version = 0")
        db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    db.execute("CREATE TABLE from_the_future (x)")
    db.commit()
    db.close()
    before = _dump(path, ["meta", "titles", "artworks", "from_the_future"])
    with pytest.raises(StoreError, match=f"catalog {path} has schema version 3, newer than this build's 2: "
                                         "upgrade artwork-engine"):
        Catalog(path)
    assert _dump(path, ["meta", "titles", "artworks", "from_the_future"]) == before
    res = run("--store", path, "titles")
    assert res.exit_code == 1 and "schema version 3, newer than this build's 2" in res.stderr
    assert "Traceback" not in res.output


# -- the SQLite event log -----------------------------------------------------------------------------------
def _served(tmp_path: Path) -> Path:
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=2, per_title=3)
    with Engine(store, EngineConfig(seed=1), start_timer=False) as eng:
        for i in range(30):
            for choice in eng.choose(UserContext(f"u{i}", device="tv"), ["t00", "t01"]):
                if i < 25:
                    eng.feedback(choice.event_id, click=i % 3 == 0)
    return Path(f"{store}.events.db")


def test_an_old_event_log_is_migrated_in_place_with_its_decisions(tmp_path: Path) -> None:
    events = _served(tmp_path)
    log = EventLog(events)
    records, counts = log.records(), log.counts()
    log.close()
    # Made version 2 (before deferred activation and the feedback ladder), as such a build left it.
    db = sqlite3.connect(events)
    for table, column in (("decisions", "upgrade_seq"), ("decisions", "inactive"), ("corrections", "kind")):
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.execute("PRAGMA user_version = 0")
    db.commit()
    db.close()
    log = EventLog(events)
    try:
        assert log.records() == records and log.counts() == counts
        assert log.get_meta("schema_version") == str(EVENTS_VERSION)
    finally:
        log.close()
    assert _header_version(events) == EVENTS_VERSION == 3
    log = EventLog(events)  # a current log: opening it again migrates nothing
    try:
        assert log.records() == records and _header_version(events) == EVENTS_VERSION
    finally:
        log.close()


def test_an_event_log_from_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    events = _served(tmp_path)
    db = sqlite3.connect(events)
    db.execute(f"PRAGMA user_version = {EVENTS_VERSION + 1}")
    db.commit()
    before = db.execute("SELECT event_id, status, reward FROM decisions ORDER BY seq").fetchall()
    db.close()
    with pytest.raises(EventLogError, match=f"the event log {events} has schema version {EVENTS_VERSION + 1}, "
                                            f"newer than this build's {EVENTS_VERSION}"):
        EventLog(events)
    db = sqlite3.connect(events)
    assert db.execute("SELECT event_id, status, reward FROM decisions ORDER BY seq").fetchall() == before
    assert db.execute("PRAGMA user_version").fetchone()[0] == EVENTS_VERSION + 1
    db.close()
    store = events.with_name("c.db")
    res = run("--store", store, "export-log", events.with_name("out.parquet"))
    assert res.exit_code == 1 and f"schema version {EVENTS_VERSION + 1}, newer" in res.stderr
    assert "Traceback" not in res.output
