"""Batch jobs on Ray Data (bandit.distributed): `artwork replay LOG --ray` and `artwork reembed --ray`.

A real local Ray instance (2 CPUs, started once for the module), real Parquet logs written by
`write_parquet` (one file, and the same rows as a folder of three files), policies saved to files,
and the tiny seeded encoder. The point estimates must be the local path's to 1e-9; the intervals
come from a Poisson bootstrap and must be about as wide as the local bootstrap's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from click.testing import CliRunner

from artwork.encoder import build_tiny
from artwork.ingest import Ingestor, encoder_factory
from artwork.store import Catalog
from bandit.baselines import FixedPolicy, UniformPolicy
from bandit.cli import cli
from bandit.decisions import write_parquet
from bandit.distributed import (PolicySpec, RowSlice, log_files, poisson_weights, replay_on_ray,
                                row_keys)
from bandit.learning import run_online
from bandit.simulator import Simulator
from conftest import encode, scene

ROOT = Path(__file__).resolve().parents[1]
MODEL_FREE = ["replay", "ips", "snips"]


@pytest.fixture(scope="module", autouse=True)
def local_ray(tmp_path_factory):
    """One local Ray instance for the module: 2 CPUs, no dashboard, its files in a temp folder."""
    tmp = tmp_path_factory.mktemp("ray")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp), logging_level="ERROR",
             log_to_driver=False)
    yield
    ray.shutdown()


def _uniform_log(n: int, seed: int = 3):
    sim = Simulator(seed=seed, n_segments=2, n_titles=4, artworks_per_title=3)
    return sim, run_online(UniformPolicy(seed=seed), sim, n, seed=seed, log=True, learn=False).records


def _write(records, folder: Path, parts: int = 3) -> tuple[Path, Path]:
    """The records as one file and as `parts` files of a folder (the same rows)."""
    folder.mkdir(parents=True, exist_ok=True)
    one = folder / "log.parquet"
    write_parquet(records, one)
    split = folder / "parts"
    bounds = np.linspace(0, len(records), parts + 1).astype(int)
    for k in range(parts):
        write_parquet(records[bounds[k]:bounds[k + 1]], split / f"part-{k}.parquet")
    return one, split


@pytest.fixture(scope="module")
def uniform_log(tmp_path_factory):
    """3,000 uniform decisions: one file, a folder of three, and the best fixed policy saved as a file."""
    d = tmp_path_factory.mktemp("uniform")
    sim, records = _uniform_log(3000)
    one, split = _write(records, d)
    FixedPolicy(defaults=sim.best_fixed_artworks()).save(d / "best.json")
    return d, one, split


@pytest.fixture(scope="module")
def mixed_log(tmp_path_factory):
    """1,500 decisions, about 30% from uniform exploration pages, the rest from a fixed policy; distinct times."""
    d = tmp_path_factory.mktemp("mixed")
    sim, uniform = _uniform_log(1500, seed=4)
    served = run_online(FixedPolicy(), sim, 1500, seed=5, log=True, learn=False).records
    rng = np.random.default_rng(0)
    log = [u if rng.random() < 0.3 else s for u, s in zip(uniform, served)]
    for i, r in enumerate(log):
        r.time = float(i)
    one, split = _write(log, d)
    return d, one, split


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


def _results(res) -> dict[tuple[str, str, str, str], dict]:
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    return {(r["policy"], r["by"], r["segment"], r["estimator"]): r for r in doc["results"]}, doc


# ---------------------------------------------------------------------------------------------
# replay --ray: the local path's point estimates; intervals from a Poisson bootstrap
# ---------------------------------------------------------------------------------------------


def test_point_estimates_equal_the_local_path_and_intervals_are_as_wide(uniform_log):
    d, one, split = uniform_log
    common = ("--policy", "uniform", "--policy", str(d / "best.json"), "--by", "device", "--n-bootstrap", "1000",
              "--json", "--quiet")
    local, local_doc = _results(_run("replay", str(one), *common))
    on_ray, ray_doc = _results(_run("replay", str(split), "--ray", *common))
    assert ray_doc["engine"] == "ray" and ray_doc["files"] == 3 and ray_doc["rows"] == local_doc["rows"] == 3000
    assert ray_doc["on_description"] == local_doc["on_description"]
    assert ray_doc["logged_click_rate"] == pytest.approx(local_doc["logged_click_rate"], abs=1e-12)
    assert ray_doc["not_available"] == ["dm", "dr", "sndr", "switch-dr"]
    assert {k[3] for k in on_ray} == set(MODEL_FREE)  # the model-based ones are not computed on Ray
    devices = {k[2] for k in on_ray if k[1] == "device"}
    assert devices == {k[2] for k in local if k[1] == "device"} and len(devices) >= 2
    for key, r in on_ray.items():
        want = local[key]
        assert r["n"] == want["n"], key
        assert r["value"] == pytest.approx(want["value"], abs=1e-9), key
        # Poisson weights instead of resampled rows: a different interval, about as wide.
        ratio = (r["high"] - r["low"]) / (want["high"] - want["low"])
        assert 0.7 < ratio < 1.4, (key, ratio)
        assert r["low"] <= r["value"] <= r["high"], key
    best = on_ray[("best.json", "", "all", "snips")]["value"]
    assert best > on_ray[("uniform", "", "all", "snips")]["value"] + 0.1  # it really evaluated two policies


def test_holdout_and_thompson_fitted_outside_the_slice_match_the_local_path(mixed_log):
    d, one, split = mixed_log
    common = ("--policy", "thompson", "--policy", "fixed", "--on", "holdout", "--n-bootstrap", "100", "--json",
              "--quiet")
    local, local_doc = _results(_run("replay", str(split), *common))  # a folder without --ray: read in memory
    on_ray, ray_doc = _results(_run("replay", str(split), "--ray", *common))
    assert ray_doc["on_description"] == local_doc["on_description"] and ray_doc["rows"] == local_doc["rows"] == 300
    assert local_doc["log_rows"] == ray_doc["log_rows"] == 1500
    assert ("thompson (fit on 1,200 rows outside the slice)", "", "all", "snips") in on_ray
    assert on_ray.keys() == {k for k in local if k[3] in MODEL_FREE}
    for key, r in on_ray.items():
        assert r["value"] == pytest.approx(local[key]["value"], abs=1e-9), key


def test_a_tie_at_the_holdout_cut_is_split_by_event_id_and_said(tmp_path):
    _, records = _uniform_log(100, seed=1)
    for i, r in enumerate(records):
        r.time = float(i // 10)  # ten decisions per page
    records[79].time = records[80].time  # 11 rows at the time the last 20% (20 rows) begins
    tied = sorted((r for r in records if r.time == records[80].time), key=lambda r: r.event_id)
    for r in records:
        r.reward = 0.0
    tied[0].reward = 1.0  # the one tied row the holdout leaves out: any other choice changes the click rate
    for r in tied[1:4]:
        r.reward = 1.0
    write_parquet(records, tmp_path / "log.parquet")
    res = _run("replay", str(tmp_path / "log.parquet"), "--ray", "--policy", "uniform", "--on", "holdout",
               "--n-bootstrap", "50", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["rows"] == 20 and doc["logged_click_rate"] == pytest.approx(3 / 20)
    assert "11 rows share the holdout's first time (t=8); --ray keeps the 10 with the largest event ids" in res.stderr


def test_poisson_weights_are_poisson_1_and_a_pure_function_of_the_row():
    keys = row_keys([f"event-{i}" for i in range(2000)])
    w = poisson_weights(keys, 500, seed=0)
    assert w.shape == (500, 2000) and w.min() == 0 and np.all(w == np.round(w))
    assert abs(w.mean() - 1) < 0.01 and abs(w.var() - 1) < 0.02  # Poisson(1): mean = variance = 1
    assert abs(np.mean(w == 0) - np.exp(-1)) < 0.005
    np.testing.assert_array_equal(poisson_weights(keys[700:900], 500, seed=0), w[:, 700:900])  # no batch effect
    assert not np.array_equal(poisson_weights(keys, 500, seed=1), w)
    assert abs(np.corrcoef(w[:, 0], w[:, 1])[0, 1]) < 0.15  # rows drawn independently


def test_intervals_do_not_depend_on_how_the_log_is_split(uniform_log):
    d, one, split = uniform_log
    sl = RowSlice("all", "every row", 3000, 3000, 3000)
    specs = [PolicySpec.saved("best.json", d / "best.json")]
    a = replay_on_ray(log_files(one), sl, specs, n_bootstrap=300)
    b = replay_on_ray(log_files(split), sl, specs, n_bootstrap=300, batch_rows=333)
    assert b.batches > a.batches
    for ea, eb in zip(a.results["best.json"], b.results["best.json"], strict=True):
        assert ea.name == eb.name and ea.value == pytest.approx(eb.value, abs=1e-12)
        assert (ea.low, ea.high) == pytest.approx((eb.low, eb.high), abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Clear errors
# ---------------------------------------------------------------------------------------------


def test_unreachable_address_is_one_line_and_fast(uniform_log):
    _, one, _ = uniform_log
    start = time.monotonic()
    res = _run("replay", str(one), "--ray", "--address", "127.0.0.1:1", "--policy", "uniform")
    assert res.exit_code == 1 and time.monotonic() - start < 10
    assert "--address 127.0.0.1:1: no Ray cluster answers there" in res.output and "ray start --head" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    res = _run("replay", str(one), "--ray", "--address", "nonsense", "--policy", "uniform")
    assert res.exit_code == 1 and "expected HOST:PORT" in res.output and "Traceback" not in res.output
    res = _run("replay", str(one), "--address", "127.0.0.1:1", "--policy", "uniform")
    assert res.exit_code == 2 and "add --ray" in res.output


def test_ray_missing_or_a_bad_request_is_one_clear_line(uniform_log, monkeypatch):
    d, one, split = uniform_log
    res = _run("replay", str(split), "--ray", "--policy", "uniform", "--by", "taste-cluster")
    assert res.exit_code == 1 and "--by taste-cluster is not available with --ray" in res.output
    res = _run("replay", str(split), "--ray", "--policy", "nonsense")
    assert res.exit_code == 2 and "'nonsense' is neither uniform, fixed, thompson nor a saved policy" in res.output
    empty = d / "empty"
    empty.mkdir()
    res = _run("replay", str(empty), "--ray", "--policy", "uniform")
    assert res.exit_code == 1 and "a folder without *.parquet files" in res.output
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    res = _run("replay", str(one), "--ray", "--policy", "uniform")
    assert res.exit_code == 1 and "--ray needs Ray Data" in res.output and "pip install 'ray[data]" in res.output
    assert "Traceback" not in res.output


def test_a_bad_row_found_by_a_worker_is_one_line(uniform_log, tmp_path):
    _, one, _ = uniform_log
    from bandit.decisions import read_parquet

    records = read_parquet(one)[:300]
    records[123].chosen = "no-such-artwork"
    write_parquet(records, tmp_path / "bad.parquet")
    res = _run("replay", str(tmp_path / "bad.parquet"), "--ray", "--policy", "uniform", "--n-bootstrap", "20")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.strip().splitlines() == [f"Error: logged decision {records[123].event_id}: chosen artwork "
                                               f"'no-such-artwork' is not among its candidates "
                                               f"{records[123].candidates}"]


def test_the_cli_does_not_import_ray_until_asked():
    code = "import sys, bandit.cli, artwork.cli; print('ray' in sys.modules, 'bandit.distributed' in sys.modules)"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert got.stdout.split() == ["False", "False"], got.stderr


# ---------------------------------------------------------------------------------------------
# reembed --ray: the workers embed and tag, the driver writes
# ---------------------------------------------------------------------------------------------


def test_encoder_factory_ships_the_recipe_not_the_model():
    factory = encoder_factory(build_tiny(seed=7))
    assert factory.func is build_tiny and factory.keywords["seed"] == 7
    assert factory().encoder_id == "tiny-random-clip/seed7"


def test_reembed_command_on_ray_gives_the_local_embeddings_and_tags(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(24):
        (images / f"{i:02d}.jpg").write_bytes(encode(scene(100 + i)))
    db = tmp_path / "c.db"
    with Catalog(db) as cat:  # the local path with the tiny encoder (seed 0): what --ray must reproduce
        Ingestor(cat, build_tiny()).upload_files("t1", [images], progress=False)
        want = {a.sha256: a for a in cat.artworks("t1")}
        Ingestor(cat, build_tiny(seed=7), reembed=True).reembed_catalog(progress=False)  # away from it, locally
        assert cat.encoder_id == "tiny-random-clip/seed7"
    res = _run("--store", str(db), "reembed", "--model", "tiny", "--ray", "--address", "127.0.0.1:1", "--quiet")
    assert res.exit_code == 1 and "no Ray cluster answers there" in res.output and "Traceback" not in res.output
    res = _run("--store", str(db), "reembed", "--model", "tiny", "--workers", "2", "--quiet")
    assert res.exit_code == 2 and "add --ray" in res.output
    res = _run("--store", str(db), "reembed", "--model", "tiny", "--ray", "--quiet")  # ... and back, on Ray
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == "re-embedded 24 images: tiny-random-clip/seed7 -> tiny-random-clip/seed0"
    with Catalog(db) as cat:
        got = {a.sha256: a for a in cat.artworks("t1")}
        assert cat.encoder_id == "tiny-random-clip/seed0"
    assert got.keys() == want.keys()
    for sha, a in got.items():
        assert a.encoder_id == "tiny-random-clip/seed0"
        np.testing.assert_allclose(a.embedding, want[sha].embedding, atol=1e-6)
        for kind in ("moods", "genres"):
            mine, theirs = getattr(a.tags, kind), getattr(want[sha].tags, kind)
            assert mine.keys() == theirs.keys() and len(mine) >= 15
            np.testing.assert_allclose(list(mine.values()), list(theirs.values()), atol=1e-6)
