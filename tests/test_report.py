"""HTML evaluation report: numbers come from the log, files are relative, and Chromium renders it."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artwork.ingest import Ingestor
from artwork.store import Catalog
from bandit.baselines import ThompsonPolicy
from bandit.decisions import DecisionRecord
from bandit.features import UserContext
from bandit.learning import LearningCurve
from bandit.replay import Estimate
from bandit.report import (
    ArtworkStats,
    CandidateView,
    Comparison,
    ComparisonRow,
    ReportData,
    TitleView,
    artwork_stats,
    best_artwork,
    best_policies,
    candidates_by_title,
    format_comparison,
    log_summary,
    report_data_from,
    section_id,
    wilson_interval,
    write_report,
)
from tests.conftest import encode, scene

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium); browser checks skipped")

TITLES = {  # title id -> (name, number of images); the name tests escaping
    "heist": ('The <Heist> & "Friends"', 3),
    "romcom": ("Love, Actually Not", 2),
    "space": ("Deep Space", 4),
}


# --------------------------------------------------------------------------------------------
# Fixtures: a real catalog with the tiny encoder, a synthetic log, a written report
# --------------------------------------------------------------------------------------------


def _record(i: int, title_id: str, cands: list, chosen: str, reward: float | None, user: str) -> DecisionRecord:
    p = 1.0 / len(cands)
    return DecisionRecord(
        event_id=f"e{i}", time=1_700_000_000.0 + 60 * i, user_id=user, title_id=title_id,
        context=UserContext(user, taste={"genre:crime": 0.8}).to_dict(),
        candidates=[c.artwork_id for c in cands], candidate_features=[dict(c.features) for c in cands],
        chosen=chosen, probability=p, policy="uniform", version=0, reward=reward,
        distribution={c.artwork_id: p for c in cands})


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny):
    """(catalog, records, candidates by title): 3 titles, 9 artworks, 300 logged decisions."""
    root = tmp_path_factory.mktemp("report-world")
    seed = 100
    with Catalog(root / "catalog.db") as catalog:
        ingestor = Ingestor(catalog, tiny)
        for title_id, (name, n) in TITLES.items():
            paths = []
            for k in range(n):
                seed += 1
                p = root / "src" / title_id / f"{k}.jpg"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(encode(scene(seed), "JPEG"))
                paths.append(p)
            report = ingestor.upload_files(title_id, paths, title_name=name, progress=False)
            assert report.ok, report
        cands = candidates_by_title(catalog)
        rng = np.random.default_rng(7)
        records = []
        for i in range(300):
            title_id = list(TITLES)[i % len(TITLES)]
            cs = cands[title_id]
            chosen = cs[int(rng.integers(len(cs)))].artwork_id
            # Artwork order sets the click rate; every 10th decision has no feedback yet.
            rank = [c.artwork_id for c in cs].index(chosen)
            reward = None if i % 10 == 9 else float(rng.random() < 0.1 + 0.15 * rank)
            records.append(_record(i, title_id, cs, chosen, reward, user=f"u{i % 17}"))
        yield catalog, records, cands


def _curves() -> dict[str, LearningCurve]:
    x = np.arange(1, 11) * 100
    rise = 0.08 + 0.1 * (1 - np.exp(-np.arange(10) / 3))
    return {
        "vw": LearningCurve("vw", x, rise, rise, 100),
        "uniform": LearningCurve("uniform", x, np.full(10, 0.09), np.full(10, 0.09), 100),
    }


def _estimates() -> dict[str, list[Estimate]]:
    return {
        "uniform": [Estimate("ips", 0.101, 0.08, 0.12, 300), Estimate("dr", 0.1, 0.085, 0.116, 300)],
        "thompson": [Estimate("ips", 0.16, 0.12, 0.2, 300), Estimate("dr", 0.155, 0.13, 0.18, 300)],
    }


@pytest.fixture(scope="module")
def report(world, tmp_path_factory):
    """(ReportData, path of index.html) written from the world."""
    catalog, records, _ = world
    policy = ThompsonPolicy(n_draws=500, seed=3)
    policy.learn_many(records)
    segments = {
        "crime fans": UserContext("seg-crime", taste={"genre:crime": 1.0, "mood:dark": 0.6}),
        "romance <fans>": UserContext("seg-romance", taste={"genre:romance": 1.0}),
    }
    data = report_data_from(
        catalog, records, title="Report <test> & friends", policy=policy, segments=segments,
        segment_shares={"crime fans": 0.6, "romance <fans>": 0.4}, curves=_curves(), oracle=0.2,
        best_fixed=0.15, estimates=_estimates(), notes=["Synthetic log for the tests."])
    out = tmp_path_factory.mktemp("report-out") / "report"
    return data, write_report(data, out)


class _Page(HTMLParser):
    """Collects ids, img srcs, per-artwork stats rows and the text of elements with an id."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: dict[str, str] = {}  # id -> tag
        self.imgs: list[dict[str, str]] = []
        self.rows: dict[str, list[str]] = {}  # data-artwork -> cell texts
        self.text_of: dict[str, str] = {}
        self._row: str | None = None
        self._cell: list[str] | None = None
        self._open_id: list[tuple[str, str]] = []  # (tag, id) of open elements with an id
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids[a["id"]] = tag
            if tag != "img":
                self._open_id.append((tag, a["id"]))
                self.text_of[a["id"]] = ""
        if tag == "img":
            self.imgs.append(a)
        if tag == "tr" and "data-artwork" in a:
            self._row = a["data-artwork"]
            self.rows[self._row] = []
        if tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None and self._row is not None:
            self.rows[self._row].append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr":
            self._row = None
        if self._open_id and self._open_id[-1][0] == tag:
            self._open_id.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        for _, i in self._open_id:
            self.text_of[i] += data


def _int(s: str) -> int:
    return int(s.replace(",", ""))


# --------------------------------------------------------------------------------------------
# Counting
# --------------------------------------------------------------------------------------------


def test_stats_and_summary_are_counted_from_records(world):
    _, records, _ = world
    stats = artwork_stats(records)
    chosen = Counter(r.chosen for r in records)
    assert {a: s.impressions for a, s in stats.items()} == dict(chosen)
    for a, s in stats.items():
        mine = [r for r in records if r.chosen == a]
        assert s.judged == sum(r.reward is not None for r in mine)
        assert s.clicks == sum(r.reward is not None and r.reward > 0 for r in mine)
        assert s.pending == s.impressions - s.judged
        assert s.take_rate == pytest.approx(s.clicks / s.judged)
    summary = log_summary(records)
    judged = [r.reward for r in records if r.reward is not None]
    assert (summary.decisions, summary.judged, summary.pending) == (300, 270, 30)
    assert summary.clicks == sum(v > 0 for v in judged)
    assert summary.click_rate == pytest.approx(np.mean(judged))
    assert summary.policies == (("uniform", 300),)
    assert log_summary([]).click_rate is None


def test_log_only_artworks_and_titles_are_still_counted(world):
    catalog, records, cands = world
    extra = [_record(1000, "heist", cands["heist"], "gone-artwork", 1.0, "u1"),
             _record(1001, "deleted-title", cands["heist"], "gone-too", None, "u2")]
    data = report_data_from(catalog, [*records, *extra])
    views = {t.title_id: t for t in data.titles}
    gone = next(c for c in views["heist"].candidates if c.artwork_id == "gone-artwork")
    assert not gone.in_catalog and gone.image is None and gone.stats.clicks == 1
    assert [c.artwork_id for c in views["deleted-title"].candidates] == ["gone-too"]
    assert sum(t.stats.impressions for t in data.titles) == len(records) + 2


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------


def test_numbers_in_html_match_the_log(world, report):
    _, records, _ = world
    _, index = report
    page = _Page(index.read_text(encoding="utf-8"))
    chosen = Counter(r.chosen for r in records)
    judged = Counter(r.chosen for r in records if r.reward is not None)
    clicks = Counter(r.chosen for r in records if r.reward is not None and r.reward > 0)
    assert set(page.rows) == set(chosen)  # every artwork has a row; every logged one is there
    for aid, cells in page.rows.items():
        assert cells[0] == aid
        assert (_int(cells[1]), _int(cells[2]), _int(cells[3])) == (chosen[aid], judged[aid], clicks[aid]), aid
        assert cells[4] == f"{100 * clicks[aid] / judged[aid]:.1f}%"
    rate = np.mean([r.reward for r in records if r.reward is not None])
    assert page.text_of["log-click-rate"].strip() == f"{100 * rate:.2f}%"
    assert _int(page.text_of["log-decisions"]) == len(records)
    assert _int(page.text_of["log-judged"]) == sum(judged.values())
    assert _int(page.text_of["log-clicks"]) == sum(clicks.values())
    # Per-title totals in each section's lead add up to the log too.
    for title_id in TITLES:
        n = sum(r.title_id == title_id for r in records)
        assert f"{n:,} impressions" in page.text_of[section_id(title_id)], title_id


def test_every_title_section_and_sections_present(report):
    data, index = report
    page = _Page(index.read_text(encoding="utf-8"))
    for title_id in TITLES:
        assert page.ids.get(section_id(title_id)) == "section"
    assert page.ids.get("learning-curve") == "img"
    for i in ("estimates-plot", "segments", "estimates", "log-summary", "test-encoder-banner"):
        assert i in page.ids, i
    assert "untrained test encoder" in page.text_of["test-encoder-banner"]
    # Estimates table shows each value with its interval.
    text = page.text_of["estimates"]
    assert "95% interval" in text
    for ests in data.estimates.values():
        for e in ests:
            assert f"[{e.low:.4f}, {e.high:.4f}]" in text
    # Segments name each segment and a pick for every title with a probability.
    seg = page.text_of["segments"]
    assert "crime fans" in seg and "romance <fans>" in seg
    for s in data.segments:
        assert set(s.picks) == set(TITLES)
        for p in s.picks.values():
            assert p.artwork_id in seg and 0 < p.probability <= 1


def test_images_and_plots_are_relative_files(report, tmp_path):
    data, index = report
    page = _Page(index.read_text(encoding="utf-8"))
    srcs = {img["src"] for img in page.imgs}
    n_art = sum(len(t.candidates) for t in data.titles)
    thumbs = {s for s in srcs if s.startswith("img/")}
    assert len(thumbs) == n_art  # one thumbnail per artwork
    assert {"learning-curves.png", "estimates.png"} <= srcs
    # Relative links only: the folder still works after a move (as when zipped and sent).
    moved = tmp_path / "moved"
    shutil.copytree(index.parent, moved)
    for src in srcs:
        assert not src.startswith(("/", "file:", "http:", "https:")) and ".." not in src, src
        f = moved / src
        assert f.is_file(), src
        with Image.open(f) as im:
            im.verify()
    for src in thumbs:
        with Image.open(moved / src) as im:
            assert im.format == "JPEG" and max(im.size) <= 320


def test_text_is_escaped_and_no_script(report):
    _, index = report
    text = index.read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert "The &lt;Heist&gt; &amp; &quot;Friends&quot;" in text
    assert "Report &lt;test&gt; &amp; friends" in text
    assert "<Heist>" not in text and "<test>" not in text and "<fans>" not in text


def test_banner_only_for_test_encoder(tmp_path):
    plain = write_report(ReportData(title="x", encoder_label="open_clip/ViT-B-32/openai"), tmp_path / "a")
    assert "test-encoder-banner" not in plain.read_text()
    test = write_report(ReportData(title="x", encoder_label="tiny", encoder_is_test=True), tmp_path / "b")
    assert "untrained test encoder" in test.read_text()
    assert not (tmp_path / "a" / "learning-curves.png").exists()  # no curves, no plot


# --------------------------------------------------------------------------------------------
# "Best" only where an interval supports it; the side-by-side block
# --------------------------------------------------------------------------------------------


def test_wilson_interval_known_values():
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = wilson_interval(0, 10)
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)  # no clicks still has an upper bound
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def _cand(aid: str, clicks: int, judged: int, **kw) -> CandidateView:
    return CandidateView(aid, stats=ArtworkStats(impressions=judged, judged=judged, clicks=clicks), **kw)


def test_best_artwork_needs_an_interval_above_every_other():
    clear = [_cand("a", 60, 200), _cand("b", 10, 200), _cand("c", 12, 200)]
    assert best_artwork(clear) == ("a", True)
    overlapping = [_cand("a", 30, 100), _cand("b", 25, 100), _cand("c", 5, 100)]
    assert best_artwork(overlapping) == ("a", False)  # leads, but b's interval overlaps
    # An unexplored candidate (no feedback: interval [0, 1]) could be the best: no claim.
    assert best_artwork([*clear, _cand("new", 0, 0)]) == ("a", False)
    # A disabled candidate or one the catalog no longer holds cannot be served: not in the contest.
    assert best_artwork([*clear, _cand("off", 0, 0, disabled=True), _cand("gone", 0, 0, in_catalog=False)]) == ("a", True)
    assert best_artwork([_cand("only", 50, 100)]) == ("only", False)  # nothing to beat
    assert best_artwork([_cand("a", 0, 0), _cand("b", 0, 0)]) == (None, False)


def test_best_policy_needs_its_lower_bound_above_every_other_upper_bound():
    sep = {"served": [Estimate("ips", 0.20, 0.17, 0.23, 500), Estimate("dr", 0.19, 0.15, 0.23, 500)],
           "thompson": [Estimate("ips", 0.12, 0.10, 0.14, 500), Estimate("dr", 0.14, 0.12, 0.16, 500)],
           "uniform": [Estimate("ips", 0.10, 0.08, 0.12, 500), Estimate("dr", 0.10, 0.09, 0.11, 500)]}
    # ips: 0.17 > 0.14 and 0.12; dr: 0.15 is not above thompson's 0.16.
    assert best_policies(sep) == {"ips": "served"}
    overlap = {"served": [Estimate("ips", 0.20, 0.13, 0.27, 500)], "thompson": [Estimate("ips", 0.15, 0.10, 0.20, 500)]}
    assert best_policies(overlap) == {}
    assert best_policies({"alone": [Estimate("ips", 0.2, 0.1, 0.3, 10)]}) == {}  # nothing to beat


def test_badges_in_the_page_follow_the_intervals(tmp_path):
    titles = [
        TitleView("clear", "Clear winner", [_cand("c-win", 60, 200), _cand("c-b", 10, 200), _cand("c-c", 12, 200)]),
        TitleView("close", "Close race", [_cand("o-lead", 30, 100), _cand("o-b", 25, 100)]),
    ]
    ests = {"served": [Estimate("ips", 0.20, 0.17, 0.23, 500), Estimate("dr", 0.19, 0.15, 0.23, 500)],
            "thompson": [Estimate("ips", 0.12, 0.10, 0.14, 500), Estimate("dr", 0.14, 0.12, 0.16, 500)]}
    index = write_report(ReportData(title="badges", titles=titles, estimates=ests), tmp_path / "r")
    text = index.read_text(encoding="utf-8")
    page = _Page(text)
    assert "best take rate" in page.text_of["art-c-win"]
    for aid in ("c-b", "c-c", "o-lead", "o-b"):
        assert "best take rate" not in page.text_of[f"art-{aid}"], aid
    assert "leading, not significant" in page.text_of["art-o-lead"]
    assert "leading" not in page.text_of["art-c-win"] and "leading" not in page.text_of["art-o-b"]
    assert text.count('class="art leader"') == 1 and 'class="art leader" id="art-c-win"' in text
    # The stats table shows each candidate's interval next to its take rate.
    low, high = wilson_interval(60, 200)
    assert page.rows["c-win"][5] == f"{100 * low:.1f}–{100 * high:.1f}%"
    # Estimates: the badge only on the separated estimator's row of the separated policy.
    rows = re.findall(r'<tr data-policy="([^"]+)" data-estimator="([^"]+)">(.*?)</tr>', text)
    badged = {(p, e) for p, e, cells in rows if '"badge best"' in cells}
    assert badged == {("served", "ips")}


def test_existing_report_badges_agree_with_the_intervals(report):
    data, index = report
    page = _Page(index.read_text(encoding="utf-8"))
    for t in data.titles:
        leader, supported = best_artwork(t.candidates)
        for c in t.candidates:
            text = page.text_of[f"art-{c.artwork_id}"]
            assert ("best take rate" in text) == (c.artwork_id == leader and supported), c.artwork_id
    # The fixture's estimates: thompson's dr interval [0.13, 0.18] is above uniform's [0.085, 0.116];
    # their ips intervals touch at 0.12, so no claim there.
    assert best_policies(data.estimates) == {"dr": "thompson"}


def _comparison() -> Comparison:
    return Comparison(
        decisions=4000,
        rows=[ComparisonRow("served policy (bayes), over HTTP", 0.1728, 0.1746, 0.2493, "20% exploration"),
              ComparisonRow("per-title Thompson, same visits", 0.1618, 0.1597, 0.2132),
              ComparisonRow("oracle", None, 0.2742, 0.3013)],
        verdict="served policy (bayes) beat per-title Thompson by +0.0149 <really>",
        notes=["Same visits & draws."], caption="(both rows include exploration)")


def test_comparison_text_and_section(tmp_path):
    text = format_comparison(_comparison())
    lines = text.splitlines()
    assert "4,000 decisions" in lines[0]
    assert re.search(r"^served policy \(bayes\), over HTTP\s+0\.1728\s+0\.1746\s+0\.2493$", text, re.M)
    assert re.search(r"^oracle\s+–\s+0\.2742\s+0\.3013$", text, re.M)
    assert lines[-2:] == ["(both rows include exploration)",
                          "verdict: served policy (bayes) beat per-title Thompson by +0.0149 <really>"]
    index = write_report(ReportData(title="cmp", comparison=_comparison(), notes=["a note"]), tmp_path / "c")
    html = index.read_text(encoding="utf-8")
    page = _Page(html)
    assert page.ids.get("comparison") == "section" and "#comparison" in html
    assert html.index('id="comparison"') < html.index("a note") < html.index('id="log"')  # near the top
    assert "&lt;really&gt;" in html and "<really>" not in html
    for text in ("0.2493", "20% exploration", "(both rows include exploration)", "Same visits & draws."):
        assert text in page.text_of["comparison"], text
    assert 'id="comparison"' not in write_report(ReportData(title="none"), tmp_path / "n").read_text()


# --------------------------------------------------------------------------------------------
# Headless Chromium
# --------------------------------------------------------------------------------------------


def _chromium(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=timeout)


@needs_chromium
def test_chromium_renders_every_section(report):
    _, index = report
    res = _chromium("--dump-dom", index.resolve().as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    dom = _Page(res.stdout)
    for title_id in TITLES:
        assert section_id(title_id) in dom.ids, title_id
    assert dom.ids.get("learning-curve") == "img"
    for img in dom.imgs:  # every image the browser was asked for is a file in the folder
        assert (index.parent / img["src"]).is_file(), img["src"]


@needs_chromium
def test_chromium_screenshot_is_not_blank(report):
    _, index = report
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    res = _chromium(f"--screenshot={shot}", "--window-size=1280,2000", index.resolve().as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        rgb = im.convert("RGB")
        assert rgb.getcolors(maxcolors=1) is None  # more than one colour
        # Well beyond a blank page: many distinct colours (thumbnails, plots, text).
        assert len(rgb.getcolors(maxcolors=1 << 20) or []) > 200
