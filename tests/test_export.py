"""`artwork export-log` to Open Bandit Pipeline arrays and VW decision-service JSON, and `report`
reading a log against its catalog (`--on`, a log from another catalog).

The log comes from the real Engine over a real catalog (bayes policy plus uniform exploration
pages, some decisions still waiting for feedback). The OBP file is checked the strongest way there
is: IPS and SNIPS computed from its arrays alone, with OBP's own formulas in plain numpy, equal our
estimators' values on the same log. The DSJSON file is parsed by Vowpal Wabbit itself.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import vowpal_wabbit_next as vw
from click.testing import CliRunner

from artwork.store import Catalog
from bandit.baselines import UniformPolicy
from bandit.cli import cli
from bandit.decisions import read_parquet, write_parquet
from bandit.engine import Engine, EngineConfig
from bandit.events import EventLog
from bandit.features import UserContext
from bandit.offline import evaluate_log, records_to_arrays
from bandit.replay import IPS, SNIPS, build_inputs
from servekit import build_catalog

PAGES = 150
PENDING = 10  # the last pages get no feedback: their decisions have no reward yet


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _serve(store: Path, seed: int = 0) -> None:
    with Engine(store, EngineConfig(seed=3, explore_share=0.3), start_timer=False) as eng:
        rng = np.random.default_rng(seed)
        for i in range(PAGES):
            taste = {"genre:crime": round(float(rng.uniform()), 3), "actor:Zoë Ça": 0.5} if i % 3 else {}
            user = UserContext(f"u{i}", taste=taste, device=("tv", "phone", None)[i % 3], hour=int(i % 24),
                               country=("FR", "US")[i % 2], row=int(i % 7))
            for choice in eng.choose(user, ["t00", "t01", "t02"]):
                if i < PAGES - PENDING:
                    eng.feedback(choice.event_id, click=bool(rng.uniform() < 0.2 + 0.3 * (i % 2)))


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("served") / "c.db"
    build_catalog(store, n_titles=3, per_title=3)
    _serve(store)
    return store


@pytest.fixture(scope="module")
def records(served):
    log = EventLog(f"{served}.events.db")
    try:
        return log.records()
    finally:
        log.close()


def _rewarded(records):
    return [r for r in records if r.reward is not None]


# -- OBP ---------------------------------------------------------------------------------------------------
def _obp_ips(fb, action_dist):
    """OBP's InverseProbabilityWeighting and SelfNormalizedIPW, written out: w = pi_e(a_i|x_i, pos_i) / pscore_i."""
    n = int(fb["n_rounds"])
    w = action_dist[np.arange(n), fb["action"], fb["position"]] / fb["pscore"]
    return float(np.mean(fb["reward"] * w)), float(np.sum(fb["reward"] * w) / np.sum(w))


def test_obp_arrays_give_our_ips_and_snips_for_uniform_and_logged_policies(served, records, tmp_path):
    out = tmp_path / "feedback.npz"
    res = run("--store", served, "export-log", out)  # the format comes from the suffix
    rewarded = _rewarded(records)
    assert res.exit_code == 0, res.output
    assert f"{len(rewarded)} decisions with a reward -> {out} (obp)" in res.stdout
    assert f"{3 * PENDING} decision(s)" in res.stderr and "no reward yet" in res.stderr

    with np.load(out, allow_pickle=False) as z:  # plain arrays: nothing needs pickle to load
        fb = {k: z[k] for k in z.files}
    n, n_actions = int(fb["n_rounds"]), int(fb["n_actions"])
    assert n == len(rewarded) and n_actions == 9
    assert fb["action"].shape == fb["position"].shape == fb["reward"].shape == fb["pscore"].shape == (n,)
    assert fb["context"].shape[0] == n and fb["action_context"].shape[0] == n_actions
    assert not fb["position"].any()
    ids = fb["action_ids"]
    for i, r in enumerate(rewarded):  # the global artwork index and the per-row candidate sets
        assert ids[fb["action"][i]] == r.chosen and fb["event_id"][i] == r.event_id
        assert fb["pscore"][i] == r.probability and fb["reward"][i] == r.reward
        assert set(ids[fb["action_mask"][i]]) == set(r.candidates)
        assert fb["pi_b"][i, fb["action"][i], 0] == r.probability
    assert np.allclose(fb["pi_b"].sum(axis=(1, 2)), 1.0) and not fb["pi_b"][~fb["action_mask"]].any()
    assert list(fb["action_title"]) == sorted(fb["action_title"])  # a title's artworks are contiguous
    # The context columns are the reward model's user encoding, named.
    names = list(fb["context_names"])
    tv = np.array([r.context["device"] == "tv" for r in rewarded])
    assert np.array_equal(fb["context"][:, names.index("device=tv")], tv.astype(float))
    assert np.all(fb["context"][:, names.index("const")] == 1.0)
    crime = np.array([r.context["taste"].get("genre:crime", 0.0) for r in rewarded])
    assert np.array_equal(fb["context"][:, names.index("taste:genre:crime")], crime)

    mask = fb["action_mask"]
    uniform = (mask / mask.sum(axis=1, keepdims=True))[:, :, None]
    obp_uniform = _obp_ips(fb, uniform)
    obp_logged = _obp_ips(fb, fb["pi_b"])

    ours = {e.name: e.value for e in evaluate_log(records, {"uniform": UniformPolicy()}, n_bootstrap=2)["uniform"]}
    assert obp_uniform == pytest.approx((ours["ips"], ours["snips"]), rel=1e-12, abs=1e-15)
    arrays = records_to_arrays(records, reward_model=False)
    logged = build_inputs(arrays.logged, arrays.action, arrays.reward, arrays.pscore)
    assert obp_logged == pytest.approx((IPS().estimate(logged), SNIPS().estimate(logged)), rel=1e-12)
    # The logged policy's IPS is the logged click rate (w = 1 on every row): the arrays line up.
    assert obp_logged[0] == pytest.approx(np.mean([r.reward for r in rewarded]), rel=1e-12)
    assert obp_uniform[0] != pytest.approx(obp_logged[0], rel=1e-6)  # two different policies


# -- DSJSON ------------------------------------------------------------------------------------------------
def test_dsjson_lines_parse_and_carry_the_logged_propensities(served, records, tmp_path):
    out = tmp_path / "log.dsjson"
    res = run("--store", served, "export-log", out, "--format", "dsjson")
    assert res.exit_code == 0, res.output
    rewarded = _rewarded(records)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(rewarded)
    parser = vw.DSJsonFormatParser(vw.Workspace(["--cb_explore_adf", "--quiet"]))
    for line, r in zip(lines, rewarded):
        ev = json.loads(line)
        k = r.candidates.index(r.chosen)
        assert ev["EventId"] == r.event_id and ev["o"][0]["v"] == r.reward and ev["_label_cost"] == -r.reward
        assert ev["_label_Action"] == k + 1 == ev["a"][0] and ev["_labelIndex"] == k
        assert sorted(ev["a"]) == list(range(1, len(r.candidates) + 1))  # 1-based, each action once
        assert ev["p"][0] == ev["_label_probability"] == r.probability
        assert sum(ev["p"]) == pytest.approx(1.0, abs=1e-9)
        assert [ev["p"][ev["a"].index(j + 1)] for j in range(len(r.candidates))] == [
            r.distribution[a] for a in r.candidates]
        assert [m["_tag"] for m in ev["c"]["_multi"]] == r.candidates
        stamp = datetime.strptime(ev["Timestamp"][:26], "%Y-%m-%dT%H:%M:%S.%f")
        assert abs(stamp.replace(tzinfo=timezone.utc).timestamp() - r.time) < 1e-5
        if r.context["taste"]:
            assert ev["c"]["Taste"]["genre=crime"] == r.context["taste"]["genre:crime"]
        else:
            assert ev["c"]["User"]["taste=none"] == 1.0
        # VW reads it: a shared example, then one per candidate, the label on the chosen one.
        examples = parser.parse_json(line)
        assert len(examples) == 1 + len(r.candidates)
        labelled = [j for j, ex in enumerate(examples[1:]) if ex.get_label().label is not None]
        assert labelled == [k]
        _, cost, prob = examples[1 + k].get_label().label
        assert cost == pytest.approx(-r.reward) and prob == pytest.approx(r.probability)


def test_dsjson_refuses_a_log_without_distributions_and_writes_nothing(records, tmp_path):
    log = tmp_path / "old.parquet"  # as a log from before distributions were recorded
    write_parquet([replace(r, distribution={}) for r in records[:20]], log)
    out = tmp_path / "old.dsjson"
    res = run("export-log", out, "--log", log)
    assert res.exit_code == 1 and "has no probability distribution" in res.stderr, res.output
    assert "Traceback" not in res.output and not out.exists() and list(tmp_path.iterdir()) == [log]


# -- formats, conversion, errors ----------------------------------------------------------------------------
def test_format_from_suffix_conversion_and_contradictions(served, records, tmp_path):
    parquet = tmp_path / "log.parquet"
    res = run("--store", served, "export-log", parquet)
    assert res.exit_code == 0 and f"{len(records)} decisions" in res.stdout, res.output
    assert read_parquet(parquet) == records  # Parquet keeps every decision, pending ones too

    res = run("export-log", tmp_path / "again.npz", "--log", parquet)  # convert a Parquet log, no store needed
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "again.npz") as z:
        assert int(z["n_rounds"]) == len(_rewarded(records))

    res = run("export-log", tmp_path / "x.parquet", "--format", "obp", "--log", parquet)
    assert res.exit_code == 1 and "the suffix .parquet means --format parquet, but --format obp" in res.stderr
    assert not (tmp_path / "x.parquet").exists()

    for name in ("lines.json", "lines.jsonl"):
        assert run("export-log", tmp_path / name, "--log", parquet).exit_code == 0
        assert json.loads((tmp_path / name).read_text().splitlines()[0])["Version"] == "1"

    pending = tmp_path / "pending.parquet"
    write_parquet([r for r in records if r.reward is None], pending)
    res = run("export-log", tmp_path / "p.npz", "--log", pending)
    assert res.exit_code == 1 and "no decision with a reward yet" in res.stderr
    assert not (tmp_path / "p.npz").exists()

    res = run("--store", tmp_path / "never-served.db", "export-log", tmp_path / "y.npz")
    assert res.exit_code == 1 and "no event log at" in res.stderr


# -- report: which rows, and which catalog ------------------------------------------------------------------
def test_report_says_which_rows_it_evaluated(served, tmp_path):
    log = tmp_path / "log.parquet"
    assert run("--store", served, "export-log", log).exit_code == 0
    rewarded = _rewarded(read_parquet(log))
    explore = sum(r.policy == "uniform" for r in rewarded)
    assert 0 < explore < 200  # too few for the explore default: the honest default is the holdout

    res = run("--store", served, "report", log, "--out", tmp_path / "d", "--n-bootstrap", "20")
    assert res.exit_code == 0, res.output
    take = int(np.ceil(0.2 * len(rewarded)))
    default = f"the last {take:,} of {len(rewarded):,} rows by time"
    assert f"evaluating on {default}" in res.stderr
    page = (tmp_path / "d" / "index.html").read_text()
    assert 'id="evaluated-on"' in page and default in page and "rows come from exploration pages" in page
    assert f'<td class="n">{take:,}</td>' in page  # every estimate's n is the slice's size

    res = run("--store", served, "report", log, "--out", tmp_path / "e", "--n-bootstrap", "20", "--on", "explore")
    assert res.exit_code == 0, res.output
    page = (tmp_path / "e" / "index.html").read_text()
    assert f"{explore:,} rows from uniform exploration pages (--on explore)" in page
    assert f'<td class="n">{explore:,}</td>' in page and f'<td class="n">{take:,}</td>' not in page

    res = run("--store", served, "report", "--out", tmp_path / "a", "--n-bootstrap", "20", "--on", "all")
    assert res.exit_code == 0, res.output  # the store's own event log, every rewarded row
    assert f"all {len(rewarded):,} rows with a reward (--on all)" in (tmp_path / "a" / "index.html").read_text()


def test_report_refuses_a_log_from_another_catalog(served, tmp_path):
    log = tmp_path / "log.parquet"
    assert run("--store", served, "export-log", log).exit_code == 0
    other = tmp_path / "other.db"
    build_catalog(other, n_titles=3, per_title=3, seed=7)  # same title ids, other images: other artwork ids
    res = run("--store", other, "report", log, "--out", tmp_path / "r", "--n-bootstrap", "20")
    assert res.exit_code == 1, res.output
    assert f"{log} does not belong to the catalog {other}: 9 of the 9 artwork ids it logged (and 0 of its 3 " \
           "titles) are not in" in res.stderr
    assert "--store" in res.stderr and "Traceback" not in res.output and not (tmp_path / "r").exists()


def test_report_warns_about_a_few_artworks_removed_since(tmp_path):
    store = tmp_path / "c.db"
    build_catalog(store, n_titles=3, per_title=3)
    _serve(store)
    with Catalog(store) as cat:
        gone = cat.artworks("t01")[0].artwork_id
    assert run("--store", store, "remove", gone, "--force").exit_code == 0
    res = run("--store", store, "report", "--out", tmp_path / "r", "--n-bootstrap", "20")
    assert res.exit_code == 0, res.output
    assert f"1 of the 9 artwork ids in {store}.events.db are no longer in {store}" in res.stderr
    assert (tmp_path / "r" / "index.html").is_file()
