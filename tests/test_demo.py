"""`artwork demo` end to end at a small size: the report's numbers come from the log, and it renders."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from bandit.cli import cli
from bandit.events import EventLog
from bandit.report import section_id
from test_report import ARTIFACTS, _chromium, _int, _Page, needs_chromium

TITLES = ("stellar-drift", "whiskers", "the-admiral", "night-shift")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    store, report_dir = d / "artwork.db", d / "report"
    res = CliRunner().invoke(cli, ["--store", str(store), "demo", "--visits", "120", "--segments", "2",
                                   "--report-dir", str(report_dir), "--quiet"])
    assert res.exit_code == 0, res.output
    return res.output, store, report_dir / "index.html"


def test_demo_says_which_encoder_and_where_the_report_is(demo_run):
    output, _, index = demo_run
    assert "TINY RANDOM TEST ENCODER" in output  # no pretrained weights here: said in one line
    assert f"report: {index}" in output and index.is_file()
    assert "untrained test encoder" in index.read_text()
    # The simulator calibrated itself on this small real catalog: a random image earns 10%.
    assert "uniform 0.100" in index.read_text()


def test_report_numbers_match_the_event_log(demo_run):
    _, store, index = demo_run
    events = EventLog(Path(f"{store}.events.db"))
    records = events.records()
    events.close()
    assert len(records) >= 300 and all(r.reward is not None for r in records)  # every window closed
    impressions = Counter(r.chosen for r in records)
    clicks = Counter(r.chosen for r in records if r.reward > 0)
    page = _Page(index.read_text())
    assert set(page.rows) == set(impressions) | {a for a in page.rows if a not in impressions}
    for artwork_id, cells in page.rows.items():
        if artwork_id == "total" or not cells:
            continue
        nums = [_int(c) for c in cells[1:4] if c.replace(",", "").isdigit()]
        assert nums[0] == impressions.get(artwork_id, 0), (artwork_id, cells)
        assert nums[-1] == clicks.get(artwork_id, 0), (artwork_id, cells)
    rate = sum(clicks.values()) / len(records)
    assert f"{100 * rate:.2f}%" in index.read_text()


def test_demo_catalog_has_uploads_video_frames_and_cast(demo_run):
    _, store, _ = demo_run
    from artwork.store import Catalog

    with Catalog(store) as cat:
        assert {t.title_id for t in cat.titles()} == set(TITLES)
        frames = cat.artworks("night-shift")
        assert frames and all(a.source.startswith("video:night-shift.mp4@") for a in frames)
        assert "Grace Hopper" in cat.cast("the-admiral")


@needs_chromium
def test_demo_report_renders_in_chromium_without_errors(demo_run):
    _, _, index = demo_run
    res = _chromium("--dump-dom", "--enable-logging=stderr", "--v=0", index.resolve().as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Failed to load resource" not in res.stderr and "Uncaught" not in res.stderr
    dom = _Page(res.stdout)
    for title_id in TITLES:
        assert section_id(title_id) in dom.ids, title_id
    assert dom.ids.get("learning-curve") == "img"
    for img in dom.imgs:
        assert (index.parent / img["src"]).is_file(), img["src"]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "demo-report.png"
    shot.unlink(missing_ok=True)
    res = _chromium(f"--screenshot={shot}", "--window-size=1280,2400", index.resolve().as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    with Image.open(shot) as im:
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 200


def test_report_and_replay_commands_on_the_demo_store(demo_run, tmp_path):
    _, store, _ = demo_run
    runner = CliRunner()
    res = runner.invoke(cli, ["report", str(store), "--out", str(tmp_path / "rep"), "--n-bootstrap", "100"])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "rep" / "index.html").read_text()
    for title_id in TITLES:
        assert f'id="{section_id(title_id)}"' in html
    assert "deployed policy (latest snapshot)" in html  # the server's final snapshot is evaluated
    log = tmp_path / "log.parquet"
    res = runner.invoke(cli, ["--store", str(store), "export-log", str(log)])
    assert res.exit_code == 0 and log.is_file(), res.output
    res = runner.invoke(cli, ["replay", str(log), "--policy", "uniform", "--plot", str(tmp_path / "r.png"),
                              "--n-bootstrap", "100"])
    assert res.exit_code == 0 and "snips" in res.output, res.output
    res = runner.invoke(cli, ["report", str(log), "--store", str(store), "--out", str(tmp_path / "rep2")])
    assert res.exit_code != 0  # --store is a group option: the report names it clearly
    res = runner.invoke(cli, ["--store", str(store), "report", str(log), "--out", str(tmp_path / "rep2"),
                              "--n-bootstrap", "100"])
    assert res.exit_code == 0 and (tmp_path / "rep2" / "index.html").is_file(), res.output
