"""The `artwork` command line for integrators and designers: `--store` anywhere with one meaning,
`--version`, start-up without the heavy libraries, `titles`, `remove`, `show` without cut ids,
and the decision-side commands' clear errors (report's store, train's folder, replay's CSV).

Real catalogs and event logs on disk; decisions are logged by the real Engine. Upload, manifest and
near-duplicate behaviour is in tests/test_upload.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import CliRunner

from artwork.store import Catalog
from bandit.cli import cli
from bandit.engine import Engine, EngineConfig
from bandit.features import UserContext
from servekit import build_catalog

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "open_clip", "dlib", "av", "matplotlib", "fastapi", "uvicorn")


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


@pytest.fixture
def store(tmp_path) -> Path:
    """Three titles of three artworks; t00 pinned one and disabled one."""
    path = tmp_path / "c.db"
    build_catalog(path, n_titles=3, per_title=3)
    with Catalog(path) as cat:
        arts = cat.artworks("t00")
        cat.set_flags(arts[0].artwork_id, pinned=True)
        cat.set_flags(arts[1].artwork_id, disabled=True)
    return path


@pytest.fixture
def served(tmp_path) -> Path:
    """A catalog whose title t00 was served (decisions with rewards in STORE.events.db); t01, t02 never."""
    path = tmp_path / "served.db"
    build_catalog(path, n_titles=3, per_title=3)
    with Engine(path, EngineConfig(seed=3), start_timer=False) as eng:
        for i in range(60):
            [choice] = eng.choose(UserContext(f"u{i}"), ["t00"])
            eng.feedback(choice.event_id, click=i % 4 == 0)
    return path


# -- start-up ---------------------------------------------------------------------------------------
def test_importing_the_cli_loads_none_of_the_heavy_libraries():
    res = python(f"import sys, bandit.cli; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_help_version_and_catalog_commands_run_without_the_heavy_libraries(store):
    code = ("import sys\nfrom bandit.cli import cli\n"
            f"for args in (['--help'], ['--version'], ['titles'], ['show', 't00', '--json'], ['cast', 'list', 't00']):\n"
            f"    try:\n        cli.main(['--store', {str(store)!r}, *args], standalone_mode=False)\n"
            "    except SystemExit:\n        pass\n"
            f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])")
    res = python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "LOADED []"
    assert '"artwork_id"' in res.stdout  # the commands really ran


def test_serve_is_listed_without_importing_it_and_its_help_matches():
    from bandit.cli import _serve

    listed = cli.lazy["serve"][1]
    assert _serve().help.strip().splitlines()[0] == listed  # the text --help shows is the command's own
    res = run("serve", "--help")
    assert res.exit_code == 0 and "--feedback-window" in res.stdout and "--store PATH" in res.stdout


def test_encoder_defaults_in_the_help_are_the_encoders_own():
    import artwork.cli
    import artwork.encoder

    for name in ("DEFAULT_MODEL", "DEFAULT_PRETRAINED", "TINY_NAME"):
        assert getattr(artwork.cli, name) == getattr(artwork.encoder, name)


def test_version():
    res = run("--version")
    assert res.exit_code == 0 and res.stdout == f"artwork {version('artwork-engine')}\n"


# -- --store anywhere ---------------------------------------------------------------------------------
def test_store_before_or_after_the_command_or_from_the_environment_means_the_same_catalog(store, tmp_path):
    s = str(store)
    expected = run("--store", s, "titles", "--json")
    assert expected.exit_code == 0, expected.output
    assert [t["title_id"] for t in json.loads(expected.stdout)["titles"]] == ["t00", "t01", "t02"]
    for args, env in ((["titles", "--store", s, "--json"], None),
                      (["titles", "--json", f"--store={s}"], None),
                      (["titles", "--json"], {"ARTWORK_STORE": s}),
                      (["titles", "--json", "--store", s], {"ARTWORK_STORE": str(tmp_path / "other.db")}),
                      (["--store", s, "titles", "--store", s, "--json"], None)):  # twice, the same: fine
        res = run(*args, env=env)
        assert res.exit_code == 0 and res.stdout == expected.stdout, (args, res.output)
    # nested commands take it too, at either level
    for args in (["cast", "list", "t00", "--store", s, "--json"], ["cast", "--store", s, "list", "t00", "--json"]):
        res = run(*args)
        assert res.exit_code == 0 and json.loads(res.stdout)["title_id"] == "t00", (args, res.output)


def test_two_different_stores_are_refused(store, tmp_path):
    res = run("--store", str(store), "titles", "--store", str(tmp_path / "b.db"))
    assert res.exit_code == 2
    assert f"--store given twice with different paths ({store} and {tmp_path / 'b.db'}); give it once" in res.stderr


def test_a_missing_store_is_named_and_not_created(tmp_path):
    typo = tmp_path / "typo.db"
    res = run("titles", "--store", str(typo))
    assert res.exit_code == 1 and f"catalog {typo} does not exist" in res.stderr and not typo.exists()


# -- titles ------------------------------------------------------------------------------------------
def test_titles_lists_counts_like_the_api(store, tmp_path):
    res = run("--store", str(store), "titles", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["titles"]
    with Engine(store, EngineConfig(events=str(tmp_path / "ev.db")), start_timer=False) as eng:
        assert rows == eng.titles()  # GET /v1/titles and `artwork titles` agree
    t00 = rows[0]
    assert (t00["artworks"], t00["disabled"], t00["name"]) == (3, 1, "Title 0") and t00["pinned"]
    table = run("--store", str(store), "titles")
    assert table.exit_code == 0
    assert t00["pinned"] in table.stdout and "Title 2" in table.stdout and table.stderr == ""


def test_titles_of_an_empty_catalog(tmp_path):
    Catalog(tmp_path / "e.db").close()
    res = run("--store", str(tmp_path / "e.db"), "titles")
    assert res.exit_code == 0 and "no titles yet" in res.stdout
    assert json.loads(run("--store", str(tmp_path / "e.db"), "titles", "--json").stdout) == {"titles": []}


# -- show --------------------------------------------------------------------------------------------
def test_show_never_cuts_artwork_ids_and_prints_file_names_as_they_are(store):
    with Catalog(store) as cat:
        arts = cat.artworks("t00")
        cat.ensure_title("t00", "A title whose name is long enough to crowd an eighty-column table " * 2)
    res = run("--store", str(store), "show", "t00")  # not a terminal: rich lays it out in 80 columns
    assert res.exit_code == 0, res.output
    assert max(len(line) for line in res.stdout.splitlines()) <= 80
    for a in arts:
        assert a.artwork_id in res.stdout  # whole, on one line
    assert "pinned" in res.stdout and "disabled" in res.stdout
    with Catalog(store) as cat:
        cat._db.execute("UPDATE artworks SET source='upload:poster[final].jpg' WHERE artwork_id=?",
                        (arts[2].artwork_id,))
    wide = run("--store", str(store), "show", "t00", env={"COLUMNS": "250"})
    assert "upload:poster[final].jpg" in wide.stdout  # not eaten as rich markup


# -- remove ------------------------------------------------------------------------------------------
def _log_snapshot(events: Path) -> list[tuple]:
    db = sqlite3.connect(events)
    try:
        return db.execute("SELECT event_id, chosen, candidates, reward FROM decisions ORDER BY seq").fetchall()
    finally:
        db.close()


def test_remove_refuses_an_artwork_with_logged_decisions_unless_forced(served, tmp_path):
    events = Path(f"{served}.events.db")
    with Catalog(served) as cat:
        offered = cat.artworks("t00")[0]
        untouched = cat.artworks("t01")[0]
    before = _log_snapshot(events)
    shown = sum(chosen == offered.artwork_id for _, chosen, _, _ in before)

    res = run("--store", str(served), "remove", offered.artwork_id)
    assert res.exit_code == 1
    assert f"artwork {offered.artwork_id} (t00, {offered.source}) is in 60 logged decision(s) ({shown} showed it)" \
        in res.stderr and "--force" in res.stderr
    with Catalog(served) as cat:
        assert cat.artwork(offered.artwork_id) is not None  # nothing removed

    res = run("remove", untouched.artwork_id, "--store", str(served))  # never offered: no --force needed
    assert res.exit_code == 0, res.output
    assert res.stdout == f"removed artwork {untouched.artwork_id} (upload:0.jpg) from t01; 2 candidate(s) left\n"

    res = run("--store", str(served), "remove", offered.artwork_id, "--force")
    assert res.exit_code == 0, res.output
    assert "60 logged decision(s) still name artwork" in res.stderr
    with Catalog(served) as cat:
        assert cat.artwork(offered.artwork_id) is None and len(cat.artworks("t00")) == 2
        assert cat._query("SELECT COUNT(*) FROM blobs WHERE sha256=?", (offered.sha256,))[0][0] == 0
        assert cat._query("SELECT COUNT(*) FROM embeddings WHERE sha256=?", (offered.sha256,))[0][0] == 0
    assert _log_snapshot(events) == before  # the event log is exactly as it was
    assert sqlite3.connect(events).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    log = tmp_path / "log.parquet"  # offline evaluation still reads every decision
    res = run("--store", str(served), "export-log", str(log))
    assert res.exit_code == 0 and "60 decisions" in res.stdout, res.output


def test_remove_keeps_bytes_another_title_still_shows(store):
    with Catalog(store) as cat:
        a = cat.artworks("t01")[0]
        data = cat.image_bytes(a.artwork_id)
        emb = a.embedding
        cat.add_artwork("t02", data, a.sha256, "upload:same.jpg", a.width, a.height, a.encoder_id, emb, {}, "v")
    res = run("--store", str(store), "remove", a.artwork_id)
    assert res.exit_code == 0, res.output
    with Catalog(store) as cat:
        [copy] = [x for x in cat.artworks("t02") if x.sha256 == a.sha256]
        assert cat.image_bytes(copy.artwork_id) == data and copy.embedding is not None


def test_remove_an_unknown_artwork(store):
    res = run("--store", str(store), "remove", "0123456789abcdef")
    assert res.exit_code == 1 and "unknown artwork id '0123456789abcdef'" in res.stderr
    assert "Traceback" not in res.output


# -- report, train, replay ------------------------------------------------------------------------------
def test_report_takes_the_store_like_every_command(served, tmp_path):
    res = run("report", "--store", str(served), "--out", str(tmp_path / "r1"), "--n-bootstrap", "20")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r1" / "index.html").is_file() and "deprecated" not in res.output
    res = run("report", str(served), "--out", str(tmp_path / "r2"), "--n-bootstrap", "20")  # the old form
    assert res.exit_code == 0, res.output
    assert f"`artwork report {served}` is deprecated; use `artwork --store {served} report`" in res.stderr
    assert (tmp_path / "r2" / "index.html").is_file()
    res = run("report", str(served), "--store", str(tmp_path / "other.db"), "--out", str(tmp_path / "r3"))
    assert res.exit_code == 2 and "two catalogs given" in res.stderr
    log = tmp_path / "log.parquet"
    assert run("--store", str(served), "export-log", str(log)).exit_code == 0
    res = run("report", str(log), "--store", str(served), "--out", str(tmp_path / "r4"), "--n-bootstrap", "20")
    assert res.exit_code == 0 and (tmp_path / "r4" / "index.html").is_file(), res.output


def test_train_to_a_missing_folder_is_an_error_and_creates_nothing(served, tmp_path):
    log = tmp_path / "log.parquet"
    assert run("--store", str(served), "export-log", str(log)).exit_code == 0
    target = tmp_path / "polcies" / "vw.vwz"  # a typo of an existing folder's name
    (tmp_path / "policies").mkdir()
    res = run("train", str(log), str(target))
    assert res.exit_code == 1
    assert f"{target}: folder {target.parent} does not exist; create it first" in res.stderr
    assert not target.parent.exists()


def test_replay_of_a_csv_without_obd_inputs_says_what_it_expected(tmp_path):
    csv = tmp_path / "random_all.csv"
    csv.write_text("timestamp,item_id,position,click,propensity_score\n2019-11-24,3,1,0,0.0125\n")
    res = run("replay", str(csv), "--policy", "uniform")
    assert res.exit_code == 1 and "Parquet magic bytes" not in res.output
    assert f"{csv} is a CSV file without --obd-inputs: replay reads a decision log in Parquet" in res.stderr
    other = tmp_path / "log.bin"
    other.write_bytes(b"not parquet at all")
    res = run("replay", str(other), "--policy", "uniform")
    assert res.exit_code == 1 and "not a decision log in Parquet format" in res.stderr
    assert "or an Open Bandit Dataset CSV together with --obd-inputs" in res.stderr


def test_remove_does_not_guess_about_an_event_log_it_cannot_read(store):
    with Catalog(store) as cat:
        aid = cat.artworks("t01")[0].artwork_id
    url = "postgresql://artwork@db.internal/events"
    res = run("--store", str(store), "remove", aid, "--events", url)
    assert res.exit_code == 1 and f"reads SQLite logs only, not {url}; pass --force" in res.stderr
    with Catalog(store) as cat:
        assert cat.artwork(aid) is not None
    assert run("--store", str(store), "remove", aid, "--events", url, "--force").exit_code == 0


def test_a_command_leaves_richs_default_console_as_it_found_it(store):
    import rich

    before = rich.get_console().stderr
    assert run("--store", str(store), "titles").exit_code == 0
    assert rich.get_console().stderr == before  # library progress bars (frames, demo) still go to stdout


# -- one flag vocabulary ---------------------------------------------------------------------------------
def test_commands_that_write_a_report_or_bootstrap_share_names_and_defaults():
    from bandit.cli import N_BOOTSTRAP

    for name in ("demo", "report"):
        res = run(name, "--help")
        assert res.exit_code == 0, res.output
        assert "--out DIRECTORY" in res.stdout and "[default: report]" in res.stdout
        assert "--report-dir" not in res.stdout  # the old name still works but is not advertised
    for name in ("replay", "compare", "report"):
        res = run(name, "--help")
        assert "--n-bootstrap" in res.stdout and f"[default: {N_BOOTSTRAP}; x>=2]" in res.stdout, name
    assert N_BOOTSTRAP == 1000


def test_report_dir_is_a_deprecated_alias_of_out(served, tmp_path):
    res = run("--store", str(served), "report", "--report-dir", str(tmp_path / "old"), "--n-bootstrap", "20")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "old" / "index.html").is_file() and not (Path.cwd() / "report" / "index.html").exists()
    notes = [ln for ln in res.stderr.splitlines() if "deprecated" in ln]
    assert notes == ["note: --report-dir is deprecated; use --out"]
    assert f"report: {tmp_path / 'old' / 'index.html'}" in res.stdout
    res = run("--store", str(served), "report", "--out", str(tmp_path / "new"), "--n-bootstrap", "20")
    assert res.exit_code == 0 and "deprecated" not in res.stderr, res.output
    # Both names for two different folders: refused before anything is written, whichever comes first.
    for args in (["--out", str(tmp_path / "a"), "--report-dir", str(tmp_path / "b")],
                 ["--report-dir", str(tmp_path / "b"), "--out", str(tmp_path / "a")]):
        res = run("--store", str(served), "report", *args)
        assert res.exit_code == 2 and "name two places; give --out only" in res.stderr, res.output
        assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_demo_takes_out_and_its_old_report_dir(tmp_path):
    # The conflict is a usage error before the demo builds anything (no catalog is created).
    res = run("--store", str(tmp_path / "d.db"), "demo", "--report-dir", str(tmp_path / "b"),
              "--out", str(tmp_path / "a"))
    assert res.exit_code == 2 and "name two places; give --out only" in res.stderr, res.output
    assert "note: --report-dir is deprecated; use --out" in res.stderr
    assert not (tmp_path / "d.db").exists()


def test_report_warns_that_the_deployed_policy_learned_the_rows_it_is_graded_on(served, tmp_path):
    """The deployed snapshot learned every outcome online: grading it on them is optimistic, and the
    report must say so (on stderr and in the page), like replay does for a trained file."""
    res = run("--store", str(served), "report", "--out", str(tmp_path / "r"), "--n-bootstrap", "20",
              "--on", "all", "--quiet", "--level", "0.8", "--seed", "4")
    assert res.exit_code == 0, res.output
    assert "WARNING the deployed policy learned online from the log's first 60 outcomes" in res.stderr
    assert "up to 60 of the 60 rows it is evaluated on" in res.stderr
    assert "optimistic" in (tmp_path / "r" / "index.html").read_text()
    # A Parquet log has no deployed snapshot: nothing to warn about.
    assert run("--store", str(served), "export-log", str(tmp_path / "log.parquet")).exit_code == 0
    res = run("--store", str(served), "report", str(tmp_path / "log.parquet"), "--out", str(tmp_path / "p"),
              "--n-bootstrap", "20", "--on", "all", "--quiet")
    assert res.exit_code == 0 and "deployed policy learned" not in res.stderr, res.output
