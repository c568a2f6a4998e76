"""A self-contained HTML evaluation report: one folder with index.html, thumbnails and plots.

The page shows, per title, the candidate artworks as a thumbnail grid with their top tags and
their running stats from the decision log (impressions, clicks, take rate); per taste segment,
the artwork the policy now prefers for each title; the learning curves; the off-policy value
estimates with their intervals; and a summary of the log. Everything is static HTML with inline
CSS and relative links (``img/...jpg``, ``*.png``), so the folder can be zipped and sent.

Two steps:

- `report_data_from(catalog, records, ...)` gathers a `ReportData`; every count in it comes
  from the decision records (impressions = times chosen, clicks = reward > 0).
- `write_report(data, out_dir)` writes ``out_dir/index.html`` and returns its path.

Counting rules (the same for every number on the page):

- impressions: records whose ``chosen`` is the artwork;
- judged: those of them with feedback joined (``reward`` is not None);
- clicks: judged impressions with ``reward > 0``;
- take rate: clicks / judged (None while nothing is judged);
- log click rate: all clicks / all judged records.

"Best" badges are claims, so they need evidence: an artwork is marked best for its title only when
its take rate's 95% Wilson interval lies entirely above every other servable candidate's (a
candidate with no feedback has the interval [0, 1], so it blocks the claim); otherwise the leader
is marked "leading, not significant". A policy is marked best for an estimator only when its
interval's lower bound exceeds every other policy's upper bound for that estimator.

A late click (positive feedback after the decision's window closed at reward 0) is in the records
as the decision's final reward, so it counts as a click like any other. How many clicks came late,
and how much feedback was refused as expired, the records cannot tell: pass the event log's
``EventLog.counts()`` as ``feedback_counts`` to show those two numbers.
"""

from __future__ import annotations

import hashlib
import html
import io
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from artwork.store import Catalog
    from bandit.decisions import DecisionRecord
    from bandit.features import Candidate, EmbeddingProjection, UserContext
    from bandit.learning import LearningCurve
    from bandit.policy import Policy, PolicyState
    from bandit.replay import Estimate

__all__ = [
    "ArtworkStats",
    "CandidateView",
    "CatalogCoverage",
    "Comparison",
    "ComparisonRow",
    "LogSummary",
    "ReportData",
    "SegmentPick",
    "SegmentView",
    "TitleView",
    "artwork_stats",
    "best_artwork",
    "best_policies",
    "candidates_by_title",
    "catalog_coverage",
    "format_comparison",
    "is_test_encoder",
    "log_summary",
    "report_data_from",
    "section_id",
    "segment_views",
    "thumbnail_name",
    "titles_from_catalog",
    "wilson_interval",
    "write_report",
]

TEST_ENCODER_PREFIX = "tiny-random-clip/"
TEST_ENCODER_BANNER = (
    "Tags come from an untrained test encoder (tiny random CLIP): moods, genres and actors "
    "shown here are not meaningful."
)
#: The banner when actors were recognised by face: the face model is real, only CLIP is not.
TEST_ENCODER_BANNER_FACES = (
    "Mood and genre tags come from an untrained test encoder (tiny random CLIP) and are not "
    "meaningful. Actor tags do not use it: they come from the pretrained face model ({model}: "
    "dlib face descriptors compared with each title's cast photos)."
)
FACE_METHOD_PREFIX = "face:"
THUMB_SIZE = (320, 240)  # bounding box of a thumbnail, in pixels
CURVES_PNG = "learning-curves.png"
ESTIMATES_PNG = "estimates.png"


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtworkStats:
    """Running stats of one artwork, counted from the decision log."""

    impressions: int = 0  # times chosen
    judged: int = 0  # impressions with feedback joined
    clicks: int = 0  # judged impressions with reward > 0

    @property
    def pending(self) -> int:
        """Impressions still waiting for feedback."""
        return self.impressions - self.judged

    @property
    def take_rate(self) -> float | None:
        """clicks / judged impressions; None while nothing is judged."""
        return self.clicks / self.judged if self.judged else None

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Wilson score interval of the take rate; (0, 1) while nothing is judged."""
        return wilson_interval(self.clicks, self.judged, level)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when ``n`` is 0.

    Unlike the normal interval it stays inside [0, 1] and does not collapse to a point at 0 or n
    successes, so "0 clicks in 30" still gets an upper bound above 0.
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n], got {successes} of {n}")
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 or n successes one bound is exactly 0 or 1 (the formula gives it up to rounding).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass
class CandidateView:
    """One candidate artwork as the report shows it.

    ``image`` is the encoded image (bytes) or a path to an image file; None shows a placeholder.
    Tag lists are (label, score) pairs, best first.
    """

    artwork_id: str
    image: bytes | str | PathLike[str] | None = None
    moods: list[tuple[str, float]] = field(default_factory=list)
    genres: list[tuple[str, float]] = field(default_factory=list)
    actors: list[tuple[str, float]] = field(default_factory=list)
    faces: str = ""  # e.g. "1 face, 14% of the frame, lead"; "" when not scanned
    source: str = ""
    stats: ArtworkStats = field(default_factory=ArtworkStats)
    disabled: bool = False
    pinned: bool = False
    in_catalog: bool = True  # False: the log names it but the catalog no longer holds it


@dataclass
class TitleView:
    """A title and its candidates, in catalog order."""

    title_id: str
    name: str
    candidates: list[CandidateView] = field(default_factory=list)

    @property
    def stats(self) -> ArtworkStats:
        """The title's totals over its candidates."""
        return ArtworkStats(
            impressions=sum(c.stats.impressions for c in self.candidates),
            judged=sum(c.stats.judged for c in self.candidates),
            clicks=sum(c.stats.clicks for c in self.candidates),
        )


@dataclass(frozen=True)
class SegmentPick:
    """The artwork a policy now prefers for one title, and its probability of being shown."""

    artwork_id: str
    probability: float


@dataclass
class SegmentView:
    """One taste segment: per title id, the policy's preferred artwork."""

    name: str
    picks: dict[str, SegmentPick] = field(default_factory=dict)
    share: float | None = None  # population share, when known
    description: str = ""  # e.g. the segment's taste, shown under its name


@dataclass(frozen=True)
class ComparisonRow:
    """One line of the side-by-side comparison: a policy or a reference, on the same visits.

    ``observed``: click rate it got online over the run (clicks / decisions); ``expected``: the
    mean true click probability of what it showed (the same without click noise);
    ``true_value``: the exact value of its final state on the simulator's evaluation sample.
    None: not applicable (the oracle has no clicks of its own, a reference has no final state).
    """

    name: str
    observed: float | None = None
    expected: float | None = None
    true_value: float | None = None
    note: str = ""


@dataclass
class Comparison:
    """The served policy next to per-title Thompson and the references, and the verdict."""

    decisions: int
    rows: list[ComparisonRow] = field(default_factory=list)
    verdict: str = ""
    notes: list[str] = field(default_factory=list)  # the report's fine print
    caption: str = ""  # one line under the table, in the report and in the text form


@dataclass(frozen=True)
class LogSummary:
    """Totals of a decision log."""

    decisions: int = 0
    judged: int = 0  # feedback joined
    clicks: int = 0
    policies: tuple[tuple[str, int], ...] = ()  # (policy name, decisions), most used first
    first_time: float | None = None  # unix seconds
    last_time: float | None = None
    late: int | None = None  # clicks learned after the window closed (corrections); None: unknown
    expired: int | None = None  # feedback refused: window closed, no positive reward; None: unknown

    @property
    def pending(self) -> int:
        return self.decisions - self.judged

    @property
    def click_rate(self) -> float | None:
        """clicks / decisions with feedback; None without feedback."""
        return self.clicks / self.judged if self.judged else None


@dataclass
class ReportData:
    """Everything `write_report` puts on the page; every section but the header is optional."""

    title: str = "Artwork selection report"
    encoder_label: str = "none"
    encoder_is_test: bool = False  # True: a banner warns that tags are not meaningful
    actor_tagger: str = ""  # what tagged the actors ("face:<model>"); "" for CLIP or unknown
    titles: list[TitleView] = field(default_factory=list)
    segments: list[SegmentView] = field(default_factory=list)
    segment_policy: str = ""  # name of the policy whose preferences `segments` show
    curves: dict[str, LearningCurve] = field(default_factory=dict)
    oracle: float | None = None
    best_fixed: float | None = None
    estimates: dict[str, list[Estimate]] = field(default_factory=dict)
    log: LogSummary = field(default_factory=LogSummary)
    notes: list[str] = field(default_factory=list)  # free text paragraphs, shown in the header
    comparison: Comparison | None = None  # side by side, near the top
    generated: float | None = None  # unix seconds; None: the time of writing
    evaluated_on: str = ""  # which rows the estimates come from (`bandit.offline.Slice.description`)
    ab_test: str = ""  # an online A/B test's table (`bandit.offline.format_online`), when the log has one
    policy_state: PolicyState | None = None  # the served or deployed policy's `describe()`


# --------------------------------------------------------------------------------------------
# Gathering from a catalog and a log
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogCoverage:
    """How much of what a log names a catalog still holds."""

    artworks: int  # distinct artwork ids the log offered or chose
    missing_artworks: tuple[str, ...]  # of them, not in the catalog (sorted)
    titles: int
    missing_titles: tuple[str, ...]

    #: More than this share of the log's artworks missing: the log is from another catalog. Fewer
    #: are artworks removed since (`artwork remove --force`), which the report lists without images.
    MISMATCH_SHARE = 0.5

    @property
    def mismatch(self) -> bool:
        """Whether the log and the catalog are unrelated (most of the log's artworks unknown)."""
        return self.artworks > 0 and len(self.missing_artworks) > self.MISMATCH_SHARE * self.artworks


def catalog_coverage(records: Iterable[DecisionRecord], artwork_ids: Iterable[str],
                     title_ids: Iterable[str]) -> CatalogCoverage:
    """Which of the artworks and titles in ``records`` are not among the catalog's ids."""
    arts: set[str] = set()
    titles: set[str] = set()
    for r in records:
        arts.update(r.candidates)
        arts.add(r.chosen)
        titles.add(r.title_id)
    known_arts, known_titles = set(artwork_ids), set(title_ids)
    return CatalogCoverage(len(arts), tuple(sorted(arts - known_arts)), len(titles),
                           tuple(sorted(titles - known_titles)))


def is_test_encoder(encoder_id: str | None) -> bool:
    """Whether an encoder id names the tiny random test encoder."""
    return bool(encoder_id) and str(encoder_id).startswith(TEST_ENCODER_PREFIX)


def artwork_stats(records: Iterable[DecisionRecord]) -> dict[str, ArtworkStats]:
    """Per chosen artwork id: impressions, judged impressions and clicks."""
    imp: Counter[str] = Counter()
    judged: Counter[str] = Counter()
    clicks: Counter[str] = Counter()
    for r in records:
        imp[r.chosen] += 1
        if r.reward is not None:
            judged[r.chosen] += 1
            if r.reward > 0:
                clicks[r.chosen] += 1
    return {a: ArtworkStats(imp[a], judged[a], clicks[a]) for a in imp}


def log_summary(records: Sequence[DecisionRecord]) -> LogSummary:
    """Totals of a log: decisions, feedback joined, clicks, policies and time span."""
    judged = [r for r in records if r.reward is not None]
    times = [float(r.time) for r in records]
    return LogSummary(
        decisions=len(records),
        judged=len(judged),
        clicks=sum(1 for r in judged if r.reward > 0),
        policies=tuple(Counter(r.policy for r in records).most_common()),
        first_time=min(times) if times else None,
        last_time=max(times) if times else None,
    )


def titles_from_catalog(
    catalog: Catalog,
    records: Sequence[DecisionRecord] = (),
    top_k: int = 3,
    include_log_only: bool = True,
) -> list[TitleView]:
    """Every catalog title with its candidates' images, top tags and stats from ``records``.

    With ``include_log_only`` the titles and artworks that the log names but the catalog no
    longer holds are listed too (without images), so that every impression is accounted for.
    """
    stats = artwork_stats(records)
    views: list[TitleView] = []
    seen: set[str] = set()
    for t in catalog.titles():
        cands = []
        for a in catalog.artworks(t.title_id):
            seen.add(a.artwork_id)
            cands.append(CandidateView(
                artwork_id=a.artwork_id,
                image=catalog.image_bytes(a.artwork_id),
                moods=a.tags.top("moods", top_k),
                genres=a.tags.top("genres", top_k),
                actors=_actors_shown(a, top_k),
                faces=_faces_text(a),
                source=a.source,
                stats=stats.get(a.artwork_id, ArtworkStats()),
                disabled=a.disabled,
                pinned=a.pinned,
            ))
        views.append(TitleView(t.title_id, t.name, cands))
    if include_log_only:
        by_id = {v.title_id: v for v in views}
        for r in records:
            if r.chosen in seen:
                continue
            seen.add(r.chosen)
            view = by_id.get(r.title_id)
            if view is None:
                view = by_id[r.title_id] = TitleView(r.title_id, r.title_id)
                views.append(view)
            view.candidates.append(CandidateView(
                artwork_id=r.chosen, source="(in the log only)", stats=stats[r.chosen], in_catalog=False))
    return views


def _actors_shown(a: Any, top_k: int) -> list[tuple[str, float]]:
    """Recognised actors by confidence when faces tagged them; otherwise the top scores, as before."""
    if a.tags.actor_distances:
        return [(n, s) for n, s in a.tags.top("actors", len(a.tags.actors)) if n in a.tags.actors_present][:top_k]
    return a.tags.top("actors", top_k)


def _faces_text(a: Any) -> str:
    f = a.tags.faces
    if f is None:
        return ""
    if not f.n_faces:
        return "no face"
    return (f"{f.n_faces} face{'s' if f.n_faces > 1 else ''}, largest {f.largest_share:.0%} of the frame"
            + (", lead" if f.lead_visible else ""))


def actor_tagger(catalog: Catalog) -> str:
    """"face:<model>" when every stored actor score came from the face model, else ""."""
    methods = catalog.actor_methods()
    face = {m for m in methods if m.startswith(FACE_METHOD_PREFIX)}
    return next(iter(face)) if face and face == methods else ""


def candidates_by_title(
    catalog: Catalog, projection: EmbeddingProjection | None = None
) -> dict[str, list[Candidate]]:
    """Policy candidates (tag features, projected embedding) of every title, disabled ones left out."""
    from bandit.features import candidates_from_artworks

    return {t.title_id: candidates_from_artworks(catalog.artworks(t.title_id), projection)
            for t in catalog.titles()}


def segment_views(
    policy: Policy,
    segments: Mapping[str, UserContext],
    candidates: Mapping[str, Sequence[Candidate]],
    shares: Mapping[str, float] | None = None,
) -> list[SegmentView]:
    """For each segment (a representative user context) and title, the policy's most likely artwork."""
    views = []
    for name, user in segments.items():
        picks: dict[str, SegmentPick] = {}
        for title_id, cands in candidates.items():
            if not cands:
                continue
            dist = policy.distribution(user, title_id, list(cands))
            if not dist:
                continue
            best = max(dist.items(), key=lambda kv: kv[1])  # first of equals wins
            picks[title_id] = SegmentPick(best[0], float(best[1]))
        taste = ", ".join(f"{k} {v:g}" for k, v in sorted(user.taste.items(), key=lambda kv: -kv[1])[:4])
        views.append(SegmentView(name, picks, share=(shares or {}).get(name), description=taste))
    return views


def report_data_from(
    catalog: Catalog,
    records: Sequence[DecisionRecord],
    *,
    title: str = "Artwork selection report",
    encoder_label: str | None = None,
    encoder_is_test: bool | None = None,
    policy: Policy | None = None,
    policy_name: str | None = None,
    segments: Mapping[str, UserContext] | None = None,
    segment_shares: Mapping[str, float] | None = None,
    projection: EmbeddingProjection | None = None,
    curves: Mapping[str, LearningCurve] | None = None,
    oracle: float | None = None,
    best_fixed: float | None = None,
    estimates: Mapping[str, Sequence[Estimate]] | None = None,
    notes: Sequence[str] = (),
    top_k: int = 3,
    feedback_counts: Mapping[str, int] | None = None,
    comparison: Comparison | None = None,
    evaluated_on: str = "",
    policy_state: PolicyState | None = None,
) -> ReportData:
    """Gather a `ReportData`: titles and stats from ``catalog`` and ``records``, the rest as given.

    ``encoder_label`` and ``encoder_is_test`` default to the catalog's encoder id. Segment
    preferences are computed when both ``policy`` and ``segments`` (name -> a representative
    `UserContext`) are given, on candidates built with ``projection``. ``feedback_counts`` (the
    event log's ``EventLog.counts()``) adds the late clicks and expired feedback to the log summary.
    ``comparison`` is shown as a side-by-side table near the top; ``evaluated_on`` says which rows
    ``estimates`` come from (shown above them). ``policy_state`` (default: ``policy.describe()``)
    is the "Policy state" section: the learned state in a few facts and the change detector's restarts.
    """
    records = list(records)
    summary = log_summary(records)
    if feedback_counts is not None:
        summary = replace(summary, late=int(feedback_counts.get("late", 0)),
                          expired=int(feedback_counts.get("expired_feedback", 0)))
    enc = catalog.encoder_id
    data = ReportData(
        title=title,
        encoder_label=encoder_label if encoder_label is not None else (enc or "none yet"),
        encoder_is_test=is_test_encoder(enc) if encoder_is_test is None else bool(encoder_is_test),
        actor_tagger=actor_tagger(catalog),
        titles=titles_from_catalog(catalog, records, top_k=top_k),
        curves=dict(curves or {}),
        oracle=oracle,
        best_fixed=best_fixed,
        estimates={k: list(v) for k, v in (estimates or {}).items()},
        log=summary,
        notes=list(notes),
        comparison=comparison,
        evaluated_on=evaluated_on,
        policy_state=policy_state if policy_state is not None or policy is None else _describe(policy),
    )
    if policy is not None and segments:
        data.segments = segment_views(policy, segments, candidates_by_title(catalog, projection), segment_shares)
        data.segment_policy = policy_name or getattr(policy, "name", "") or type(policy).__name__
    return data


_RESTARTS_SHOWN = 20  # restarts listed in "Policy state" (the snapshot keeps the latest 100)


def _slug(label: str) -> str:
    return re.sub(r"\W+", "-", label)


def _describe(policy: Policy) -> PolicyState | None:
    describe = getattr(policy, "describe", None)  # the `Policy` protocol does not require it
    return describe() if callable(describe) else None


# --------------------------------------------------------------------------------------------
# Claims: best artwork, best policy, the side-by-side table
# --------------------------------------------------------------------------------------------


def best_artwork(candidates: Sequence[CandidateView], level: float = 0.95) -> tuple[str | None, bool]:
    """(leader, supported): the servable candidate with the highest take rate, and whether its
    Wilson interval lies entirely above every other servable candidate's.

    Servable: in the catalog and not disabled. The leader is None when no servable candidate has
    feedback; with a single servable candidate there is nothing to beat, so it is never "best".
    """
    pool = [c for c in candidates if c.in_catalog and not c.disabled]
    rated = [c for c in pool if c.stats.take_rate is not None]
    if not rated:
        return None, False
    leader = max(rated, key=lambda c: (c.stats.take_rate, c.stats.judged))
    others = [c for c in pool if c is not leader]
    if not others:
        return leader.artwork_id, False
    low = leader.stats.interval(level)[0]
    return leader.artwork_id, all(low > c.stats.interval(level)[1] for c in others)


def best_policies(estimates: Mapping[str, Sequence[Estimate]]) -> dict[str, str]:
    """estimator name -> the policy whose interval lies above every other policy's (lower bound >
    every other upper bound) for that estimator; estimators with no such policy are left out."""
    by_estimator: dict[str, list[tuple[str, Estimate]]] = {}
    for policy, ests in estimates.items():
        for e in ests:
            by_estimator.setdefault(e.name, []).append((policy, e))
    out: dict[str, str] = {}
    for name, entries in by_estimator.items():
        finite = [(p, e) for p, e in entries if math.isfinite(e.low) and math.isfinite(e.high)]
        if len(finite) < 2 or len(finite) < len(entries):
            continue
        top_policy, top = max(finite, key=lambda pe: pe[1].value)
        if all(top.low > e.high for p, e in finite if p != top_policy):
            out[name] = top_policy
    return out


def format_comparison(comparison: Comparison) -> str:
    """Plain-text table of a `Comparison` and its verdict (what `artwork demo` prints last)."""
    header = ["", "online observed", "online expected", "true value (final)"]
    rows = [[r.name, _num(r.observed), _num(r.expected), _num(r.true_value)] for r in comparison.rows]
    widths = [max(len(row[k]) for row in [header, *rows]) for k in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths)))

    out = [f"side by side over this run's {comparison.decisions:,} decisions (online observed: click rate; "
           "expected: mean true click probability of what was shown; true value: the final policy's, exact):",
           line(header), *(line(r) for r in rows)]
    if comparison.caption:
        out.append(comparison.caption)
    if comparison.verdict:
        out.append(f"verdict: {comparison.verdict}")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def esc(value: Any) -> str:
    """HTML-escape any value's text (quotes too, so it is safe inside attributes)."""
    return html.escape(str(value), quote=True)


def section_id(title_id: str) -> str:
    """The HTML id of a title's section: ``title-<id>`` with whitespace replaced by '_'."""
    return "title-" + re.sub(r"\s", "_", title_id)


def thumbnail_name(artwork_id: str) -> str:
    """File name of an artwork's thumbnail under ``img/`` (safe characters, collision-free)."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", artwork_id)[:48] or "artwork"
    if safe != artwork_id:
        safe += "-" + hashlib.sha256(artwork_id.encode()).hexdigest()[:8]
    return f"{safe}.jpg"


def _write_thumbnail(image: bytes | str | PathLike[str], path: Path) -> bool:
    """Decode, shrink to `THUMB_SIZE` and save as JPEG; False when the image cannot be read."""
    from PIL import Image

    try:
        src = io.BytesIO(image) if isinstance(image, (bytes, bytearray)) else Path(image)
        with Image.open(src) as im:
            im.draft("RGB", THUMB_SIZE)  # fast JPEG downscale on decode
            im = im.convert("RGB")
            im.thumbnail(THUMB_SIZE)
            im.save(path, "JPEG", quality=85)
        return True
    except Exception:
        return False


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}%"


def _num(x: float | None, digits: int = 4) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _interval(stats: ArtworkStats) -> str:
    if not stats.judged:
        return "–"
    low, high = stats.interval()
    return f"{100 * low:.1f}–{100 * high:.1f}%"


def _tags_html(label: str, tags: Sequence[tuple[str, float]]) -> str:
    if not tags:
        return ""
    chips = "".join(f'<span class="chip" title="{esc(f"{s:.3f}")}">{esc(t)}</span>' for t, s in tags)
    return f'<div class="tags"><span class="tag-kind">{esc(label)}</span>{chips}</div>'


def _time(ts: float | None) -> str:
    if ts is None:
        return "–"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


_CSS = """
:root { --ink:#1d2430; --muted:#5b6577; --line:#e3e7ee; --bg:#f6f7fb; --card:#fff;
        --accent:#2f6fde; --good:#1f9d55; --warn-bg:#fff4d6; --warn-line:#e0a800; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
       color:var(--ink); background:var(--bg); }
header.top { background:#18213a; color:#fff; padding:28px 40px 22px; }
header.top h1 { margin:0 0 6px; font-size:26px; font-weight:650; }
header.top .sub { color:#b9c3da; font-size:14px; }
header.top .sub code { color:#fff; }
main { max-width:1200px; margin:0 auto; padding:24px 40px 60px; }
.banner { background:var(--warn-bg); border:1px solid var(--warn-line); border-left-width:6px;
          padding:12px 16px; border-radius:6px; margin:0 0 20px; font-weight:600; }
nav.toc { font-size:14px; margin:0 0 18px; color:var(--muted); }
nav.toc a { color:var(--accent); text-decoration:none; margin-right:14px; white-space:nowrap; }
.cards { display:grid; grid-template-columns:repeat(auto-fill,minmax(150px,1fr)); gap:12px; margin:0 0 28px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:14px 16px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:26px; font-weight:650; margin-top:2px; }
section { background:var(--card); border:1px solid var(--line); border-radius:12px;
          padding:20px 24px 24px; margin:0 0 24px; }
section h2 { margin:0 0 4px; font-size:20px; }
section h2 .id { color:var(--muted); font-weight:400; font-size:14px; margin-left:8px; }
section .lead { color:var(--muted); margin:0 0 16px; font-size:14px; }
.grid { display:grid; grid-template-columns:repeat(auto-fill,minmax(220px,1fr)); gap:16px; }
figure.art { margin:0; border:1px solid var(--line); border-radius:10px; overflow:hidden; background:#fff; }
figure.art.leader { border-color:var(--good); box-shadow:0 0 0 2px var(--good) inset; }
figure.art img, .noimg { display:block; width:100%; aspect-ratio:4/3; object-fit:cover; background:#eef1f6; }
.noimg { display:flex; align-items:center; justify-content:center; color:var(--muted); font-size:13px; }
figcaption { padding:10px 12px 12px; font-size:13px; }
.aid { font-family:ui-monospace,Menlo,Consolas,monospace; font-size:12px; color:var(--muted); word-break:break-all; }
.badge { display:inline-block; font-size:11px; font-weight:650; border-radius:999px; padding:1px 8px;
         margin-left:6px; background:#e6f4ec; color:var(--good); vertical-align:1px; }
.badge.off { background:#fde8e8; color:#b42318; } .badge.pin { background:#e8efff; color:var(--accent); }
.badge.lead { background:#f0f2f7; color:var(--muted); font-weight:500; }
p.verdict { font-weight:650; margin:12px 0 4px; }
.nums { display:grid; grid-template-columns:repeat(3,1fr); gap:6px; margin:6px 0 4px; }
.nums b { display:block; font-size:17px; line-height:1.2; }
.nums small { color:var(--muted); font-size:11px; }
.bar { height:6px; background:#eef1f6; border-radius:3px; overflow:hidden; margin:2px 0 8px; }
.bar span { display:block; height:100%; background:var(--accent); }
.tags { margin:3px 0; }
.tag-kind { color:var(--muted); font-size:11px; text-transform:uppercase; margin-right:6px; }
.chip { display:inline-block; background:#f0f2f7; border-radius:4px; padding:0 6px; margin:1px 3px 1px 0; }
.src { color:var(--muted); font-size:12px; margin-top:4px; word-break:break-all; }
.faces { color:var(--muted); font-size:12px; margin-top:4px; }
table { border-collapse:collapse; width:100%; font-size:14px; margin:8px 0 4px; }
th, td { text-align:left; padding:7px 10px; border-bottom:1px solid var(--line); vertical-align:middle; }
th { font-size:12px; text-transform:uppercase; letter-spacing:.03em; color:var(--muted); background:#fafbfd; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; }
img.plot { display:block; max-width:100%; height:auto; margin:8px auto; }
img.mini { width:72px; height:54px; object-fit:cover; border-radius:4px; vertical-align:middle; margin-right:8px; }
.pick { display:flex; align-items:center; }
.muted { color:var(--muted); }
footer { color:var(--muted); font-size:12px; text-align:center; padding:0 0 30px; }
"""


class _Writer:
    """Builds the page and its files in ``out``; one instance per `write_report` call."""

    def __init__(self, data: ReportData, out: Path) -> None:
        self.data = data
        self.out = out
        self.img_dir = out / "img"
        self.thumbs: dict[str, str | None] = {}  # artwork id -> relative src (None: unreadable)
        self.images: dict[str, bytes | str | PathLike[str] | None] = {
            c.artwork_id: c.image for t in data.titles for c in t.candidates
        }

    def thumb(self, artwork_id: str) -> str | None:
        if artwork_id not in self.thumbs:
            image = self.images.get(artwork_id)
            src = None
            if image is not None:
                name = thumbnail_name(artwork_id)
                self.img_dir.mkdir(parents=True, exist_ok=True)
                if _write_thumbnail(image, self.img_dir / name):
                    src = f"img/{name}"
            self.thumbs[artwork_id] = src
        return self.thumbs[artwork_id]

    # -- sections --------------------------------------------------------------------------
    def header(self) -> str:
        d = self.data
        when = d.generated if d.generated is not None else datetime.now(tz=timezone.utc).timestamp()
        return (
            f'<header class="top"><h1>{esc(d.title)}</h1>'
            f'<div class="sub">encoder <code id="encoder">{esc(d.encoder_label)}</code>'
            f' · generated {esc(_time(when))}</div></header>'
        )

    def cards(self) -> str:
        log = self.data.log
        n_art = sum(len(t.candidates) for t in self.data.titles)
        items = [
            ("decisions", f"{log.decisions:,}", "log-decisions"),
            ("feedback joined", f"{log.judged:,}", "log-judged"),
            ("clicks", f"{log.clicks:,}", "log-clicks"),
            ("click rate", _pct(log.click_rate, 2), "log-click-rate"),
            *([("late clicks", f"{log.late:,}", "log-late")] if log.late is not None else []),
            *([("expired feedback", f"{log.expired:,}", "log-expired")] if log.expired is not None else []),
            ("titles", f"{len(self.data.titles):,}", "n-titles"),
            ("artworks", f"{n_art:,}", "n-artworks"),
        ]
        body = "".join(
            f'<div class="card"><div class="k">{esc(k)}</div><div class="v" id="{esc(i)}">{esc(v)}</div></div>'
            for k, v, i in items
        )
        return f'<div class="cards" id="log-summary">{body}</div>'

    def log_details(self) -> str:
        log = self.data.log
        if not log.decisions:
            return '<p class="muted">The decision log is empty.</p>'
        pol = ", ".join(f"{esc(p)} ({n:,})" for p, n in log.policies)
        pending = f" · {log.pending:,} awaiting feedback" if log.pending else ""
        return (
            f'<p class="lead">Log from {esc(_time(log.first_time))} to {esc(_time(log.last_time))}'
            f"{pending} · policies: {pol}. Take rate = clicks / impressions with feedback.</p>"
        )

    def policy_section(self) -> str:
        st = self.data.policy_state
        if st is None:
            return ""
        rows = [("kind", st.kind, ""), ("name", st.name, ""), *st.facts]
        facts = "".join(f'<tr><th>{esc(k)}</th><td id="state-{esc(_slug(k))}">{esc(v)}</td>'
                        f'<td class="muted">{esc(why)}</td></tr>' for k, v, why in rows)
        restarts = ""
        if st.restarts_total is not None:
            shown = list(reversed(st.restarts))[:_RESTARTS_SHOWN]
            lead = (f'<p class="lead" id="restarts-total">{st.restarts_total:,} restart(s) all time. A restart '
                    "happens when one artwork's recent click rate parts from its older one, against what the "
                    "model predicted (z: how far; negative: it fell): the artwork keeps only its recent "
                    "outcomes and the title's other artworks are explored again."
                    + (f" The latest {len(shown)}, newest first:" if shown else "") + "</p>")
            body = "".join(f"<tr><td>{esc(r.title_id)}</td><td class=\"aid\">{esc(r.artwork_id)}</td>"
                           f'<td class="n">{r.z:+.2f}</td><td class="n">{r.version:,}</td></tr>' for r in shown)
            table = ('<table id="restarts"><tr><th>title</th><th>artwork</th><th class="n">z</th>'
                     f'<th class="n">at update</th></tr>{body}</table>' if shown else "")
            restarts = f"<h3>Restarts (change detection)</h3>{lead}{table}"
        return (f'<section id="policy-state"><h2>Policy state</h2><p class="lead">What the policy has learned, '
                f"as of its update {st.version:,}.</p><table>{facts}</table>{restarts}</section>")

    def title_section(self, t: TitleView) -> str:
        leader, supported = best_artwork(t.candidates)
        rated = [c for c in t.candidates if c.stats.take_rate is not None]
        top_rate = max((c.stats.take_rate for c in rated), default=0.0) or 1.0
        figs = []
        for c in t.candidates:
            src = self.thumb(c.artwork_id)
            img = (f'<img src="{esc(src)}" alt="{esc(c.artwork_id)}" loading="lazy">' if src
                   else f'<div class="noimg">{"no image" if c.in_catalog else "not in catalog"}</div>')
            badges = ""
            if c.artwork_id == leader and supported:
                badges += ('<span class="badge best" title="its 95% interval lies above every other '
                           'candidate\'s">best take rate</span>')
            elif c.artwork_id == leader and len(rated) > 1:
                badges += ('<span class="badge lead" title="highest take rate so far, but its 95% interval '
                           'overlaps another candidate\'s">leading, not significant</span>')
            if c.pinned:
                badges += '<span class="badge pin">pinned</span>'
            if c.disabled:
                badges += '<span class="badge off">disabled</span>'
            s = c.stats
            width = 0.0 if s.take_rate is None else 100.0 * s.take_rate / top_rate
            cls = "art leader" if c.artwork_id == leader and supported else "art"
            art_id = "art-" + re.sub(r"\s", "_", c.artwork_id)
            figs.append(
                f'<figure class="{cls}" id="{esc(art_id)}">{img}<figcaption>'
                f'<div class="aid">{esc(c.artwork_id)}{badges}</div>'
                f'<div class="nums"><div><b class="impressions">{s.impressions:,}</b><small>impressions</small></div>'
                f'<div><b class="clicks">{s.clicks:,}</b><small>clicks</small></div>'
                f'<div><b class="take-rate">{esc(_pct(s.take_rate))}</b><small>take rate</small></div></div>'
                f'<div class="bar"><span style="width:{width:.1f}%"></span></div>'
                f'{_tags_html("moods", c.moods)}{_tags_html("genres", c.genres)}{_tags_html("actors", c.actors)}'
                + (f'<div class="faces">{esc(c.faces)}</div>' if c.faces else "")
                + f'<div class="src">{esc(c.source)}</div></figcaption></figure>'
            )
        grid = "".join(figs) or '<p class="muted">No candidates.</p>'
        tot = t.stats
        rows = "".join(
            f'<tr data-artwork="{esc(c.artwork_id)}"><td class="aid">{esc(c.artwork_id)}</td>'
            f'<td class="n">{c.stats.impressions:,}</td><td class="n">{c.stats.judged:,}</td>'
            f'<td class="n">{c.stats.clicks:,}</td><td class="n">{esc(_pct(c.stats.take_rate))}</td>'
            f'<td class="n">{esc(_interval(c.stats))}</td></tr>'
            for c in t.candidates
        )
        table = (
            '<table class="stats"><thead><tr><th>artwork</th><th class="n">impressions</th>'
            '<th class="n">with feedback</th><th class="n">clicks</th><th class="n">take rate</th>'
            '<th class="n">95% interval</th>'
            f'</tr></thead><tbody>{rows}</tbody>'
            f'<tfoot><tr><th>total</th><th class="n">{tot.impressions:,}</th><th class="n">{tot.judged:,}</th>'
            f'<th class="n">{tot.clicks:,}</th><th class="n">{esc(_pct(tot.take_rate))}</th>'
            f'<th class="n">{esc(_interval(tot))}</th></tr></tfoot></table>'
        ) if t.candidates else ""
        name = f'{esc(t.name)}<span class="id">{esc(t.title_id)}</span>' if t.name != t.title_id else esc(t.title_id)
        return (
            f'<section class="title" id="{esc(section_id(t.title_id))}"><h2>{name}</h2>'
            f'<p class="lead">{len(t.candidates)} candidates · {tot.impressions:,} impressions · '
            f'{tot.clicks:,} clicks · take rate {esc(_pct(tot.take_rate))}</p>'
            f'<div class="grid">{grid}</div>{table}</section>'
        )

    def segments_section(self) -> str:
        d = self.data
        if not d.segments:
            return ""
        title_ids = [t.title_id for t in d.titles]
        for s in d.segments:
            title_ids += [tid for tid in s.picks if tid not in title_ids]
        names = {t.title_id: t.name for t in d.titles}
        head = "".join(f"<th>{esc(names.get(tid, tid))}</th>" for tid in title_ids)
        rows = []
        for s in d.segments:
            share = f' <span class="muted">({_pct(s.share, 0)})</span>' if s.share is not None else ""
            desc = f'<div class="muted" style="font-size:12px">{esc(s.description)}</div>' if s.description else ""
            cells = []
            for tid in title_ids:
                p = s.picks.get(tid)
                if p is None:
                    cells.append('<td class="muted">–</td>')
                    continue
                src = self.thumb(p.artwork_id)
                mini = f'<img class="mini" src="{esc(src)}" alt="{esc(p.artwork_id)}">' if src else ""
                cells.append(
                    f'<td><div class="pick">{mini}<div><div class="aid">{esc(p.artwork_id)}</div>'
                    f'<b>{esc(_pct(p.probability))}</b></div></div></td>'
                )
            rows.append(f'<tr><td><b>{esc(s.name)}</b>{share}{desc}</td>{"".join(cells)}</tr>')
        who = f" of <b>{esc(d.segment_policy)}</b>" if d.segment_policy else ""
        return (
            f'<section id="segments"><h2>What each taste segment sees</h2>'
            f'<p class="lead">The artwork the policy{who} now prefers per title, and the probability it '
            f'is shown, for a representative user of each segment.</p>'
            f'<table class="segments"><thead><tr><th>segment</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></section>'
        )

    def curves_section(self) -> str:
        d = self.data
        if not d.curves:
            return ""
        from bandit.learning import plot_learning_curves

        plot_learning_curves(d.curves, self.out / CURVES_PNG, oracle=d.oracle, best_fixed=d.best_fixed)
        refs = []
        if d.oracle is not None:
            refs.append(f"oracle {_num(d.oracle)}")
        if d.best_fixed is not None:
            refs.append(f"best fixed artwork {_num(d.best_fixed)}")
        rows = "".join(
            f'<tr><td>{esc(name)}</td><td class="n">{int(c.x[-1]) if len(c.x) else 0:,}</td>'
            f'<td class="n">{_num(float(c.rate[-1]) if len(c.rate) else None)}</td>'
            f'<td class="n">{_num(float(c.rate.mean()) if len(c.rate) else None)}</td></tr>'
            for name, c in d.curves.items()
        )
        lead = "Click rate per window of decisions" + (f" (reference lines: {', '.join(refs)})" if refs else "")
        return (
            f'<section id="learning"><h2>Learning curves</h2><p class="lead">{esc(lead)}.</p>'
            f'<img class="plot" id="learning-curve" src="{CURVES_PNG}" alt="learning curves">'
            '<table><thead><tr><th>policy</th><th class="n">decisions</th><th class="n">last window</th>'
            f'<th class="n">mean over windows</th></tr></thead><tbody>{rows}</tbody></table></section>'
        )

    def estimates_section(self) -> str:
        d = self.data
        ests = {k: v for k, v in d.estimates.items() if v}
        if not ests:
            return ""
        from bandit.replay import plot_estimates

        plot_estimates(ests, self.out / ESTIMATES_PNG)
        levels = {e.level for v in ests.values() for e in v}
        ci = f"{round(levels.pop() * 100):g}% interval" if len(levels) == 1 else "interval"
        best = best_policies(ests)
        rows = []
        for policy, lst in ests.items():
            for k, e in enumerate(lst):
                lead = f'<td rowspan="{len(lst)}"><b>{esc(policy)}</b></td>' if k == 0 else ""
                badge = ('<span class="badge best" title="lower bound above every other policy\'s upper '
                         'bound for this estimator">best</span>' if best.get(e.name) == policy else "")
                rows.append(
                    f'<tr data-policy="{esc(policy)}" data-estimator="{esc(e.name)}">{lead}<td>{esc(e.name)}{badge}</td>'
                    f'<td class="n">{_num(e.value)}</td>'
                    f'<td class="n">[{_num(e.low)}, {_num(e.high)}]</td><td class="n">{e.n:,}</td></tr>'
                )
        verdict = ("A policy is marked best for an estimator only when its interval lies above every other "
                   "policy's; " + (f"that holds for {len(best)} of {len({e.name for v in ests.values() for e in v})} "
                                   "estimators." if best else "no estimator separates the policies yet."))
        return (
            '<section id="estimates"><h2>Offline evaluation</h2>'
            '<p class="lead">Estimated click rate of each policy from the logged decisions, with '
            f'bootstrap intervals. {esc(verdict)}</p>'
            + (f'<p class="lead" id="evaluated-on">Evaluated on {esc(d.evaluated_on)}.</p>' if d.evaluated_on else '')
            + f'<img class="plot" id="estimates-plot" src="{ESTIMATES_PNG}" alt="off-policy estimates">'
            f'<table class="estimates"><thead><tr><th>policy</th><th>estimator</th><th class="n">value</th>'
            f'<th class="n">{esc(ci)}</th><th class="n">n</th></tr></thead><tbody>{"".join(rows)}</tbody>'
            '</table></section>'
        )

    def comparison_section(self) -> str:
        c = self.data.comparison
        if c is None:
            return ""
        rows = "".join(
            f'<tr data-row="{esc(r.name)}"><td><b>{esc(r.name)}</b>'
            + (f' <span class="muted">{esc(r.note)}</span>' if r.note else "")
            + f'</td><td class="n">{_num(r.observed)}</td><td class="n">{_num(r.expected)}</td>'
            f'<td class="n">{_num(r.true_value)}</td></tr>'
            for r in c.rows
        )
        notes = "".join(f'<p class="lead">{esc(n)}</p>' for n in c.notes)
        return (
            '<section id="comparison"><h2>Side by side</h2>'
            f'<p class="lead">Over this run\'s {c.decisions:,} decisions, on the same simulated visits and '
            'click draws. Online observed: click rate over the run; online expected: mean true click '
            'probability of what was shown (the same without click noise); true value: the exact click '
            'rate of the final policy on the simulator\'s evaluation sample.</p>'
            '<table class="comparison"><thead><tr><th>policy</th><th class="n">online observed</th>'
            '<th class="n">online expected</th><th class="n">true value (final)</th></tr></thead>'
            f'<tbody>{rows}</tbody></table>'
            + (f'<p class="lead">{esc(c.caption)}</p>' if c.caption else "")
            + (f'<p class="verdict" id="verdict">{esc(c.verdict)}</p>' if c.verdict else "")
            + f"{notes}</section>"
        )

    def page(self) -> str:
        d = self.data
        text = (TEST_ENCODER_BANNER_FACES.format(model=d.actor_tagger[len(FACE_METHOD_PREFIX):])
                if d.actor_tagger.startswith(FACE_METHOD_PREFIX) else TEST_ENCODER_BANNER)
        banner = (f'<div class="banner" id="test-encoder-banner">⚠ {esc(text)}</div>'
                  if d.encoder_is_test else "")
        notes = "".join(f'<p class="lead">{esc(n)}</p>' for n in d.notes)
        body = [
            self.policy_section(),
            self.segments_section(),
            *(self.title_section(t) for t in d.titles),
            self.curves_section(),
            self.estimates_section(),
            (f'<section id="ab-test"><h2>Online A/B test</h2><p class="lead">Each arm\'s click rate over '
             "its own decisions with a reward; B - A with an interval that resamples users (the unit the "
             "split randomises), beside the offline estimate of the same difference on the exploration "
             f"slice (`artwork compare-online` prints the same).</p><pre>{esc(d.ab_test)}</pre></section>"
             if d.ab_test else ""),
        ]
        toc = [("#comparison", "side by side")] if d.comparison is not None else []
        toc += [("#log", "log")]
        toc += [("#policy-state", "policy state")] if d.policy_state is not None else []
        toc += [("#segments", "segments")] if d.segments else []
        toc += [(f"#{section_id(t.title_id)}", t.name) for t in d.titles]
        toc += [("#learning", "learning curves")] if d.curves else []
        toc += [("#estimates", "offline evaluation")] if any(d.estimates.values()) else []
        toc += [("#ab-test", "A/B test")] if d.ab_test else []
        nav = "".join(f'<a href="{esc(h)}">{esc(label)}</a>' for h, label in toc)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(d.title)}</title><style>{_CSS}</style></head><body>"
            f"{self.header()}<main>{banner}<nav class=\"toc\">{nav}</nav>{self.comparison_section()}{notes}"
            f'<section id="log"><h2>Decision log</h2>{self.log_details()}{self.cards()}</section>'
            f'{"".join(body)}</main>'
            "<footer>Generated by bandit.report; numbers are counted from the decision log.</footer>"
            "</body></html>\n"
        )


def write_report(data: ReportData, out_dir: str | PathLike[str]) -> Path:
    """Write ``out_dir/index.html`` with ``img/*.jpg`` thumbnails and PNG plots; returns the page's path.

    All links are relative, so the folder can be moved, zipped and opened anywhere.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = _Writer(data, out).page()
    path = out / "index.html"
    tmp = out / ".index.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
