"""A family of simulated worlds behind one small interface, and the one online evaluation loop.

Our learned policy was tuned on one simulator (`bandit.simulator`). Here every world is its own
generative model of who looks at a page, which artworks a title has and who clicks what, so a
policy is measured on every world x seed, including worlds built to make a personalised policy
fail (nothing to personalise, misleading context, drift, late feedback, new artworks).

Interface (adding a world = one class in `WORLDS`):

    class World:
        name: ClassVar[str]; description: ClassVar[str]; signal: ClassVar[bool]
        def __init__(self, seed=0, *, n_titles=12, n_users=3000, **params)
        def catalog(self, page) -> dict[str, list[Candidate]]
        def page(self, rng, page) -> Page
        def click_probs(self, page, title_id, page_index) -> np.ndarray
        def delay(self, rng, reward) -> int

`signal` is True when the context the policy sees carries information about which artwork is
best for this user. Worlds are deterministic given their seed; `page(rng, ...)` draws only from
the generator it is given, so the evaluation loop controls the visit stream.

`run_world(world, policy, n_pages, seed)` plays a policy online: per page and per title,
`policy.choose` on the user context with `row` set to the title's position, the world's true
click probabilities, one click draw from a stream seeded by ``seed`` alone (common random
numbers: two policies run with the same seed see the same users, pages and coin flips), and the
`learn_one` call queued until `world.delay()` pages have passed. `WorldRun.summary()` compares
the policy's expected click rate (mean true probability of what it showed, no click noise) with
the oracle (per-decision best), the best single artwork per title in hindsight and uniform.

Most worlds share one generative core (`_TableWorld`): users in latent taste clusters whose
observed taste dict is a noisy view (15% cold users by default: empty taste and history), titles
with 3-8 artworks tagged like our engine tags them ("genre:<g>", "mood:<m>" scores in 0..1 and a
16-dimensional PCA-like embedding "emb:0".."emb:15"), and a click logit that is a sum of
precomputed tables (per artwork appeal, per user, per device x hour x row, optionally per device x
user), so `click_probs` is a few array lookups. Each world fills the tables its own way.
"""

from __future__ import annotations

import copy
import math
import time
import zlib
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from artwork.records import Artwork, FaceSummary, Tags
from bandit.features import Candidate, UserContext, candidate_from_artwork, taste_from_history
from bandit.learning import LearningCurve
from bandit.pending import Pending
from bandit.policy import Policy
from bandit.simulator import COUNTRIES, DEVICES, GENRE_MOODS, GENRES, MOODS, Simulator

__all__ = [
    "Page",
    "World",
    "WorldRun",
    "WORLDS",
    "run_world",
    "context_ceiling",
    "make_world",
    "AppealWorld",
    "ClustersWorld",
    "LinearWorld",
    "ThresholdWorld",
    "RareWorld",
    "FrequentWorld",
    "PositionWorld",
    "ColdWorld",
    "DelayedWorld",
    "WindowWorld",
    "NewArtWorld",
    "DriftWorld",
    "MisleadingWorld",
    "ActorsWorld",
]

N_EMB = 16  # embedding-projection components per candidate, as the engine's PCA produces
MIN_TITLES_PER_PAGE = 6
MAX_TITLES_PER_PAGE = 12
MAX_ROWS = MAX_TITLES_PER_PAGE
N_HOURS = 24
# Evening-heavy traffic, as in bandit.simulator.
_HOUR_W = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.3, 0.5, 0.8, 1, 1, 1, 1.2, 1.4, 1.3, 1.2, 1.2, 1.4, 1.8, 2.4,
                    3.0, 3.4, 3.2, 2.6, 1.6])
_HOUR_CDF = np.cumsum(_HOUR_W / _HOUR_W.sum())
_DEVICE_INDEX = {d: i for i, d in enumerate(DEVICES)}
_TV = _DEVICE_INDEX["tv"]
_DEVICE_P = np.array([0.5, 0.35, 0.15])  # tv, mobile, web
# Hour buckets: night 0-5, morning 6-11, afternoon 12-17, evening 18-23.
_HOUR_BUCKET = np.arange(N_HOURS) // 6
_EMB_SD = np.linspace(1.0, 0.5, N_EMB)  # PCA-like: variance falls with the component index
_GENRE_IDX = {g: i for i, g in enumerate(GENRES)}
_MOOD_IDX = {m: i for i, m in enumerate(MOODS)}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _with_row(user: UserContext, row: int) -> UserContext:
    """A copy of ``user`` with ``row`` set, without re-running validation (the base is valid).

    The copy shares the base's taste dict and history list: the loop never mutates them.
    """
    try:
        u = object.__new__(UserContext)
        u.__dict__.update(user.__dict__)
    except AttributeError:  # a slotted UserContext: slower, still no validation
        u = copy.copy(user)
    u.row = row
    return u


# =============================================================================================
# Interface
# =============================================================================================


@dataclass
class Page:
    """One page view: who is looking and which titles are shown, top row first."""

    user: UserContext  # what the policy sees; `row` is set per title by the loop
    title_ids: list[str]  # 6-12 titles in display order; row position = index in this list
    user_index: int  # hidden: the world's index of the user


class World:
    """A generative model of pages, catalogs and clicks. Subclass and register in `WORLDS`.

    Constructor parameters beyond ``seed``, ``n_titles`` and ``n_users`` are the keys of the
    class's `defaults`; an unknown one is a TypeError (a typo must not silently run the default).
    """

    name: ClassVar[str] = "world"
    description: ClassVar[str] = ""
    signal: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}
    #: Worlds that are another world plus one change (delayed, rare, frequent) draw from that
    #: world's random streams, so for one seed they share its users, catalog and taste structure.
    stream: ClassVar[str | None] = None

    def __init__(self, seed: int = 0, *, n_titles: int = 12, n_users: int = 3000, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise TypeError(f"world {self.name!r}: unknown parameter(s) {unknown}; known: {sorted(self.defaults)}")
        if n_titles < 1 or n_users < 1:
            raise ValueError("n_titles and n_users must be >= 1")
        self.seed = int(seed)
        self.n_titles = int(n_titles)
        self.n_users = int(n_users)
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.title_ids: list[str] = []

    def _rng(self, purpose: int) -> np.random.Generator:
        """A generator seeded by (seed, world stream, purpose): one independent stream per use."""
        return np.random.default_rng([self.seed, zlib.crc32((self.stream or self.name).encode()), purpose])

    def catalog(self, page: int) -> dict[str, list[Candidate]]:
        """title_id -> candidates available at this page index (same objects while unchanged)."""
        raise NotImplementedError

    def page(self, rng: np.random.Generator, page: int) -> Page:
        """Draw one page view from ``rng``."""
        raise NotImplementedError

    def click_probs(self, page: Page, title_id: str, page_index: int) -> np.ndarray:
        """True click probability of every candidate of ``catalog(page_index)[title_id]``, aligned."""
        raise NotImplementedError

    def delay(self, rng: np.random.Generator, reward: float = 1.0) -> int:
        """Pages until a decision's outcome (``reward``) reaches the learner (0 = before the next page).

        One draw from ``rng`` per call whatever the reward, so the delay stream stays common to
        every policy.
        """
        return 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed}, n_titles={self.n_titles}, n_users={self.n_users})"


WORLDS: dict[str, type[World]] = {}


def _register(cls: type[World]) -> type[World]:
    if cls.name in WORLDS:
        raise ValueError(f"world name {cls.name!r} registered twice")
    WORLDS[cls.name] = cls
    return cls


def make_world(name: str, seed: int = 0, **kwargs: Any) -> World:
    """Build a registered world by name."""
    try:
        cls = WORLDS[name]
    except KeyError:
        raise KeyError(f"unknown world {name!r}; known: {sorted(WORLDS)}") from None
    return cls(seed, **kwargs)


# =============================================================================================
# Audience: users, their context and the page sampler, shared by every world below
# =============================================================================================


class _AudienceWorld(World):
    """Page sampling over a fixed user population (subclasses fill the per-user arrays).

    Needs: title_ids, _title_w (popularity > 0), _act_cdf (user activity CDF), _own_device,
    _user_ids, _taste (observed dicts), _history (lists), _country_name (per user).
    """

    _title_w: np.ndarray
    _act_cdf: np.ndarray
    _own_device: np.ndarray
    _user_ids: list[str]
    _taste: list[dict[str, float]]
    _history: list[list[str]]
    _country_name: list[str]

    def _draw(self, rng: np.random.Generator) -> tuple[int, int, int, np.ndarray]:
        """(user, device, hour, title indices in display order) of one page view."""
        nt = len(self.title_ids)
        r = rng.random(5 + nt)
        u = min(int(np.searchsorted(self._act_cdf, r[0], side="right")), self.n_users - 1)
        dev = int(self._own_device[u]) if r[1] < 0.8 else min(int(r[2] * len(DEVICES)), len(DEVICES) - 1)
        hour = min(int(np.searchsorted(_HOUR_CDF, r[3], side="right")), N_HOURS - 1)
        k = min(nt, MIN_TITLES_PER_PAGE + int(r[4] * (MAX_TITLES_PER_PAGE - MIN_TITLES_PER_PAGE + 1)))
        # Weighted sampling without replacement (Efraimidis-Spirakis): popular titles are shown
        # more often and tend to sit in the top rows.
        with np.errstate(divide="ignore"):
            keys = np.log(r[5:]) / self._title_w
        order = np.argsort(-keys, kind="stable")[:k]
        return u, dev, hour, order

    def page(self, rng: np.random.Generator, page: int) -> Page:
        u, dev, hour, order = self._draw(rng)
        user = UserContext(
            user_id=self._user_ids[u],
            taste=self._taste[u],
            history=self._history[u],
            device=DEVICES[dev],
            hour=hour,
            country=self._country_name[u],
        )
        return Page(user, [self.title_ids[i] for i in order], u)


# =============================================================================================
# The shared generative core: clusters, a tagged catalog and a click logit made of tables
# =============================================================================================


class _TableWorld(_AudienceWorld):
    """Latent-cluster audience, an engine-like tagged catalog, and a logit built from tables.

    logit(u, t, k | device, hour, row, epoch) =
        base[t] + appeal[epoch][t][k] + U[t][u, k] + D[t][device, k] + H[t][hour, k] + R[t][row, k]
        (+ UD[t][device, u, k] when a world uses a device x user term)
    p = row_scale[row] * sigmoid(logit).

    `base[t]` is calibrated on a fixed sample of pages so that the title's best single artwork
    (at epoch 0) earns a target click rate drawn from ``ctr``. Subclasses implement `_model`.
    """

    defaults: ClassVar[dict[str, Any]] = {
        "n_clusters": 5,
        "cold_share": 0.15,  # users the policy knows nothing about: empty taste and history
        "obs_noise": 0.22,  # sd of the noise on the observed taste values
        "ctr": (0.04, 0.13),  # range of each title's best-artwork click rate
        "art_range": (3, 8),  # artworks per title
        "aim_share": 0.6,  # share of titles whose artworks are aimed at different clusters
    }
    _n_cal_pages = 3000

    def __init__(self, seed: int = 0, *, n_titles: int = 12, n_users: int = 3000, **params: Any) -> None:
        super().__init__(seed, n_titles=n_titles, n_users=n_users, **params)
        rng = self._rng(0x5EED)
        self._make_clusters(rng)
        self._make_catalog(rng)
        self._make_users(rng)
        # Defaults for the tables; `_model` overwrites what its world uses.
        nt = len(self.title_ids)
        self._K = [len(a) for a in self._all_arts]
        self._appeal: list[list[np.ndarray]] = [[np.zeros(k) for k in self._K]]
        self._U: list[np.ndarray | None] = [None] * nt
        self._UD: list[np.ndarray | None] | None = None
        self._D = [np.zeros((len(DEVICES), k)) for k in self._K]
        self._H = [np.zeros((N_HOURS, k)) for k in self._K]
        self._R = [np.zeros((MAX_ROWS, k)) for k in self._K]
        self._row_scale = np.ones(MAX_ROWS)
        self._model(self._rng(0x30DE1))
        self._calibrate(rng)
        self._finish()

    # ------------------------------------------------------------------ audience and catalog
    def _make_clusters(self, rng: np.random.Generator) -> None:
        c = int(self.params["n_clusters"])
        if not 1 <= c <= len(GENRES):
            raise ValueError(f"n_clusters must be 1..{len(GENRES)}")
        self.n_clusters = c
        self._loved = rng.permutation(len(GENRES))[:c]  # each cluster loves one genre
        v = rng.normal(0.0, 1.0, (c, N_EMB)) * _EMB_SD
        self._cluster_dir = v / np.linalg.norm(v, axis=1, keepdims=True) * math.sqrt(N_EMB) * 0.5
        self._cluster_share = rng.dirichlet(np.full(c, 6.0))

    def _extra_art_counts(self, rng: np.random.Generator) -> list[list[int]]:
        """Artworks added later, per title: counts per later epoch (none by default)."""
        return [[] for _ in range(self.n_titles)]

    def _make_catalog(self, rng: np.random.Generator) -> None:
        lo, hi = self.params["art_range"]
        nt = self.n_titles
        self.title_ids = [f"t{t:02d}" for t in range(nt)]
        self._title_aimed = rng.random(nt) < float(self.params["aim_share"])
        base_counts = rng.integers(int(lo), int(hi) + 1, nt)
        extra = self._extra_art_counts(rng)
        self._title_genres = np.zeros((nt, len(GENRES)))
        self._all_arts: list[list[Candidate]] = []
        self._aim: list[np.ndarray] = []  # cluster each artwork is aimed at, -1 for none
        self._angle: list[np.ndarray] = []  # genre each artwork plays up
        self._G: list[np.ndarray] = []  # full genre scores (K, n_genres)
        self._M: list[np.ndarray] = []  # full mood scores (K, n_moods)
        self._E: list[np.ndarray] = []  # embeddings (K, N_EMB)
        self._n_avail: list[list[int]] = [[int(b) for b in base_counts]]
        n_epochs = 1 + max((len(e) for e in extra), default=0)
        for e in range(1, n_epochs):
            self._n_avail.append([self._n_avail[-1][t] + (extra[t][e - 1] if e - 1 < len(extra[t]) else 0)
                                  for t in range(nt)])
        for t in range(nt):
            pair = rng.choice(len(GENRES), size=2, replace=False)
            profile = np.zeros(len(GENRES))
            profile[pair[0]], profile[pair[1]] = 0.6, 0.4
            self._title_genres[t] = profile
            title_emb = rng.normal(0.0, 0.5, N_EMB) * _EMB_SD  # frames of one film look alike
            k_total = self._n_avail[-1][t]
            aims = np.full(k_total, -1)
            if self._title_aimed[t]:
                order = rng.permutation(self.n_clusters)
                # One artwork per cluster first (in random order), further ones at random clusters.
                aims = np.array([order[k] if k < self.n_clusters else rng.integers(self.n_clusters)
                                 for k in range(k_total)])
            angles = np.empty(k_total, dtype=int)
            arts, G, M, E = [], [], [], []
            for k in range(k_total):
                # The artwork's tags reflect the cluster it is aimed at only partly: its angle is the
                # cluster's genre 60% of the time (else one of the title's), with a random strength.
                # Otherwise it plays up one of the title's two genres, or now and then another one
                # (a drama's poster playing up a comedic moment).
                if aims[k] >= 0 and rng.random() < 0.6:
                    angle = int(self._loved[aims[k]])
                elif rng.random() < 0.8:
                    angle = int(pair[0] if rng.random() < 0.6 else pair[1])
                else:
                    angle = int(rng.integers(len(GENRES)))
                angles[k] = angle
                strength = rng.uniform(0.2, 1.0)
                glog = 2.5 * strength * np.eye(len(GENRES))[angle] + 1.5 * profile + rng.normal(0.0, 0.5, len(GENRES))
                g = np.exp(glog - glog.max())
                g /= g.sum()
                on = np.array([m in GENRE_MOODS[GENRES[angle]] for m in MOODS], dtype=float)
                m = _sigmoid(-2.0 + 3.0 * strength * on + rng.normal(0.0, 0.7, len(MOODS)))
                emb = title_emb + rng.normal(0.0, 0.6, N_EMB) * _EMB_SD
                if aims[k] >= 0:
                    emb = emb + rng.uniform(0.0, 1.0) * self._cluster_dir[aims[k]] * 0.8
                feats: dict[str, float] = {}
                for i in np.argsort(-g, kind="stable")[:5]:  # the engine keeps the top 5 per kind
                    if g[i] >= 0.01:
                        feats[f"genre:{GENRES[i]}"] = round(float(g[i]), 4)
                for i in np.argsort(-m, kind="stable")[:5]:
                    if m[i] >= 0.01:
                        feats[f"mood:{MOODS[i]}"] = round(float(m[i]), 4)
                for j, v in enumerate(emb):
                    feats[f"emb:{j}"] = round(float(v), 4)
                arts.append(Candidate(f"{self.title_ids[t]}-a{k}", feats))
                G.append(g)
                M.append(m)
                E.append(emb)
            self._all_arts.append(arts)
            self._aim.append(aims)
            self._angle.append(angles)
            self._G.append(np.array(G))
            self._M.append(np.array(M))
            self._E.append(np.array(E))
        pop = 1.0 / np.arange(1, nt + 1) ** 0.7
        self._title_w = rng.permutation(pop / pop.sum())

    def _make_users(self, rng: np.random.Generator) -> None:
        n, c = self.n_users, self.n_clusters
        cl = rng.choice(c, size=n, p=self._cluster_share)
        self.user_cluster = cl  # hidden; for tests and reports
        lat_g = np.clip(0.12 + rng.normal(0.0, 0.08, (n, len(GENRES))), 0.0, 1.0)
        lat_g[np.arange(n), self._loved[cl]] = np.clip(0.7 + rng.normal(0.0, 0.12, n), 0.0, 1.0)
        second = rng.random(n) < 0.4  # some users like a second genre too
        sg = rng.integers(len(GENRES), size=n)
        lat_g[second, sg[second]] = np.maximum(lat_g[second, sg[second]], rng.uniform(0.3, 0.5, int(second.sum())))
        lat_m = np.clip(0.15 + rng.normal(0.0, 0.08, (n, len(MOODS))), 0.0, 1.0)
        for ci in range(c):
            for mood in GENRE_MOODS[GENRES[self._loved[ci]]]:
                lat_m[cl == ci, _MOOD_IDX[mood]] += 0.45
        lat_m = np.clip(lat_m, 0.0, 1.0)
        self._lat_g, self._lat_m = lat_g, lat_m
        self._pref_emb = self._cluster_dir[cl] + rng.normal(0.0, 0.5, (n, N_EMB))  # hidden
        country_p = rng.dirichlet(np.full(len(COUNTRIES), 0.6), size=c)  # countries lean by cluster
        dev_p = rng.dirichlet(10.0 * _DEVICE_P, size=c)
        self._country = _draw_rows(rng, country_p[cl])
        self._own_device = _draw_rows(rng, dev_p[cl])
        self._country_name = [COUNTRIES[i] for i in self._country]
        act = rng.lognormal(0.0, 0.8, n)
        self._act_cdf = np.cumsum(act / act.sum())
        self.cold = rng.random(n) < float(self.params["cold_share"])
        obs_noise = float(self.params["obs_noise"])
        og = np.clip(lat_g + rng.normal(0.0, obs_noise, lat_g.shape), 0.0, 1.0)
        om = np.clip(lat_m + rng.normal(0.0, obs_noise, lat_m.shape), 0.0, 1.0)
        # Watch history leans toward titles of the user's genres.
        match = lat_g @ self._title_genres.T
        hk = np.log(self._title_w)[None, :] + 4.0 * match - np.log(-np.log(rng.random(match.shape)))
        hlen = rng.integers(1, 7, n)
        horder = np.argsort(-hk, axis=1)
        self._user_ids = [f"u{i:05d}" for i in range(n)]
        self._taste, self._history = [], []
        for i in range(n):
            if self.cold[i]:
                self._taste.append({})
                self._history.append([])
                continue
            taste: dict[str, float] = {}
            for j in np.argsort(-og[i], kind="stable")[:5]:
                if og[i, j] >= 0.05:
                    taste[f"genre:{GENRES[j]}"] = round(float(og[i, j]), 3)
            for j in np.argsort(-om[i], kind="stable")[:5]:
                if om[i, j] >= 0.05:
                    taste[f"mood:{MOODS[j]}"] = round(float(om[i, j]), 3)
            self._taste.append(taste)
            self._history.append([self.title_ids[j] for j in horder[i, : min(int(hlen[i]), len(self.title_ids))]])

    # ------------------------------------------------------------------ building blocks for _model
    def _aim_term(self, t: int) -> np.ndarray:
        """(n_users, K): 1 where the artwork is aimed at the user's cluster."""
        return (self._aim[t][None, :] == self.user_cluster[:, None]).astype(float)

    def _taste_term(self, t: int) -> np.ndarray:
        """(n_users, K): latent taste x the artwork's tags (within-title deviations), sd 1."""
        g = self._G[t] - self._G[t].mean(axis=0)
        m = self._M[t] - self._M[t].mean(axis=0)
        x = 4.0 * (self._lat_g - self._lat_g.mean(axis=0)) @ g.T + (self._lat_m - self._lat_m.mean(axis=0)) @ m.T
        return _standardise(x)

    def _emb_term(self, t: int) -> np.ndarray:
        """(n_users, K): hidden embedding preference x the artwork's embedding deviation, sd 1."""
        e = self._E[t] - self._E[t].mean(axis=0)
        return _standardise(self._pref_emb @ e.T)

    def _noise(self, rng: np.random.Generator, t: int, sd: float) -> np.ndarray:
        """(n_users, K) idiosyncratic per-(user, artwork) taste nobody can learn from features."""
        return rng.normal(0.0, sd, (self.n_users, self._K[t]))

    def _model(self, rng: np.random.Generator) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ calibration and tables
    def _logits0(self, t: int, e: int, us: np.ndarray, devs: np.ndarray, hours: np.ndarray,
                 rows: np.ndarray) -> np.ndarray:
        """Logits without base, (len(us), n_avail) at epoch e."""
        n = self._n_avail[e][t]
        z = (self._appeal[e][t][None, :n] + self._D[t][devs, :n] + self._H[t][hours, :n] + self._R[t][rows, :n])
        if self._U[t] is not None:
            z = z + self._U[t][us, :n]
        if self._UD is not None and self._UD[t] is not None:
            z = z + self._UD[t][devs, us, :n]
        return z

    def _calibration_sample(self, rng: np.random.Generator) -> list[tuple[np.ndarray, ...]]:
        per: list[list[tuple[int, int, int, int]]] = [[] for _ in self.title_ids]
        for _ in range(self._n_cal_pages):
            u, dev, hour, order = self._draw(rng)
            for row, t in enumerate(order):
                per[int(t)].append((u, dev, hour, row))
        out = []
        for lst in per:
            a = np.array(lst if lst else [(0, 0, 20, 0)], dtype=int)
            out.append((a[:, 0], a[:, 1], a[:, 2], a[:, 3]))
        return out

    def _calibrate(self, rng: np.random.Generator) -> None:
        lo, hi = self.params["ctr"]
        targets = rng.uniform(float(lo), float(hi), len(self.title_ids))
        self.target_ctr = targets
        sample = self._calibration_sample(self._rng(0xCA1))
        self._base = np.zeros(len(self.title_ids))
        for t, (us, devs, hours, rows) in enumerate(sample):
            z0 = self._logits0(t, 0, us, devs, hours, rows)
            scale = self._row_scale[rows][:, None]

            def best_fixed(b: float) -> float:
                return float((scale * _sigmoid(z0 + b)).mean(axis=0).max())

            a, b = -25.0, 10.0
            for _ in range(50):
                mid = 0.5 * (a + b)
                if best_fixed(mid) < targets[t]:
                    a = mid
                else:
                    b = mid
            self._base[t] = 0.5 * (a + b)

    def _finish(self) -> None:
        self._tidx = {t: i for i, t in enumerate(self.title_ids)}
        n_epochs = len(self._n_avail)
        if len(self._appeal) < n_epochs:
            self._appeal += [self._appeal[-1]] * (n_epochs - len(self._appeal))
        self._epoch_starts: list[int] = getattr(self, "_epoch_starts", [0])[:n_epochs]
        # One (device, hour, row, K) table per epoch and title: base + appeal + D + H + R.
        self._ctx = [
            [
                (self._base[t] + self._appeal[e][t])[None, None, None, :]
                + self._D[t][:, None, None, :]
                + self._H[t][None, :, None, :]
                + self._R[t][None, None, :, :]
                for t in range(len(self.title_ids))
            ]
            for e in range(n_epochs)
        ]
        self._catalogs = [
            {tid: self._all_arts[t][: self._n_avail[e][t]] for t, tid in enumerate(self.title_ids)}
            for e in range(n_epochs)
        ]

    def _epoch(self, page: int) -> int:
        return bisect_right(self._epoch_starts, page) - 1 if len(self._epoch_starts) > 1 else 0

    # ------------------------------------------------------------------ interface
    def catalog(self, page: int) -> dict[str, list[Candidate]]:
        return self._catalogs[self._epoch(page)]

    def click_probs(self, page: Page, title_id: str, page_index: int) -> np.ndarray:
        t = self._tidx[title_id]
        e = self._epoch(page_index) if len(self._epoch_starts) > 1 else 0
        user = page.user
        dev = _DEVICE_INDEX[user.device]
        row = page.title_ids.index(title_id)
        u = page.user_index
        z = self._ctx[e][t][dev, user.hour, row]
        if self._U[t] is not None:
            z = z + self._U[t][u]
        if self._UD is not None and self._UD[t] is not None:
            z = z + self._UD[t][dev, u]
        p = self._row_scale[row] / (1.0 + np.exp(-z))
        n = self._n_avail[e][t]
        return p if n == p.shape[0] else p[:n]


def _draw_rows(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (n, k) probability matrix."""
    u = rng.random(p.shape[0])[:, None]
    return np.minimum((np.cumsum(p, axis=1) <= u).sum(axis=1), p.shape[1] - 1)


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = float(x.std())
    return x / sd if sd > 1e-12 else np.zeros_like(x)


def _winner_appeal(rng: np.random.Generator, k: int, lift: tuple[float, float], sd: float = 0.2) -> np.ndarray:
    """Appeal of k artworks: noise plus one clear winner (an artwork that is best for everyone)."""
    a = rng.normal(0.0, sd, k)
    a[int(rng.integers(k))] = a.max() + rng.uniform(*lift)
    return a


# =============================================================================================
# The worlds
# =============================================================================================


@_register
class AppealWorld(_TableWorld):
    """Each artwork has one appeal for everybody; user, device, hour and row change nothing."""

    name: ClassVar[str] = "appeal"
    description: ClassVar[str] = "per-artwork appeal only; one artwork per title best for all, context is pure noise"
    signal: ClassVar[bool] = False

    def _model(self, rng: np.random.Generator) -> None:
        self._appeal = [[_winner_appeal(rng, k, (0.2, 0.6), sd=0.3) for k in self._K]]


@_register
class ClustersWorld(_TableWorld):
    """Latent taste clusters seen through a noisy taste dict; some titles aim artworks at clusters.

    On an aimed title (``aim_share`` of titles) each artwork is aimed at a cluster; a user clicks it
    more when it is aimed at their cluster, when its tags match their latent taste and when its
    embedding points along their hidden preference. The artwork's visible features reveal its aim
    only partly (genre angle 60% of the time, random tag strength, random embedding alignment).
    Other titles have one artwork best for all. Per-(user, artwork) idiosyncratic noise, a small
    device effect and 15% cold users complete it: the outside tester's world, the hardest
    realistic one. Personalisation is worth something but not much: a policy that knew every
    user's cluster would earn 1.2-1.6x the best single artwork per title (seeds 0-2), and a policy must
    infer the cluster from a noisy taste dict (or country/device) and the aim from partial
    features.
    """

    name: ClassVar[str] = "clusters"
    description: ClassVar[str] = "latent taste clusters seen through a noisy taste dict; artworks aimed at clusters"
    signal: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {
        **_TableWorld.defaults,
        "aim_share": 0.5,
        "obs_noise": 0.25,
        "gain": (0.4, 0.8),  # personal strength (logit) on aimed titles
        "universal_gain": 0.3,  # personal strength on titles with one best artwork
        "w_aim": 1.0,
        "w_taste": 0.35,
        "w_emb": 0.35,
        "idio": 0.5,  # per-(user, artwork) taste no feature explains: in the oracle, out of reach
        "device_sd": 0.15,
    }

    def _model(self, rng: np.random.Generator) -> None:
        p = self.params
        appeal, U = [], []
        for t, k in enumerate(self._K):
            if self._title_aimed[t]:
                gain = rng.uniform(*p["gain"])
                appeal.append(rng.normal(0.0, 0.2, k))
            else:
                gain = float(p["universal_gain"])
                appeal.append(_winner_appeal(rng, k, (0.5, 0.9)))
            U.append(gain * (p["w_aim"] * self._aim_term(t) + p["w_taste"] * self._taste_term(t)
                             + p["w_emb"] * self._emb_term(t)) + self._noise(rng, t, float(p["idio"])))
            self._D[t] = rng.normal(0.0, float(p["device_sd"]), (len(DEVICES), k))
        self._appeal = [appeal]
        self._U = U


@_register
class LinearWorld(_AudienceWorld):
    """Today's `bandit.simulator.Simulator` click model, served as pages of titles.

    Its synthetic catalog (fixed artworks per title, 4 embedding dims) and its click
    probabilities are used as they are; the calibration targets a lower uniform click rate
    (``target_ctr``) so the best artworks land near the realistic range. 15% of users are shown
    to the policy cold (the click model still knows their taste).
    """

    name: ClassVar[str] = "linear"
    description: ClassVar[str] = "today's bandit/simulator.py click model (segment taste . W . artwork features)"
    signal: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {
        "n_segments": 4,
        "artworks_per_title": 4,
        "target_ctr": 0.07,
        "target_fixed_ratio": 0.70,
        "n_eval": 4000,
        "cold_share": 0.15,
    }

    def __init__(self, seed: int = 0, *, n_titles: int = 12, n_users: int = 3000, **params: Any) -> None:
        super().__init__(seed, n_titles=n_titles, n_users=n_users, **params)
        p = self.params
        sim = Simulator(seed=self.seed, n_segments=int(p["n_segments"]), n_titles=self.n_titles,
                        artworks_per_title=int(p["artworks_per_title"]), n_users=self.n_users,
                        target_ctr=float(p["target_ctr"]), target_fixed_ratio=float(p["target_fixed_ratio"]),
                        n_eval=int(p["n_eval"]))
        if sim.calibration["gain"] >= 31.9:
            _recalibrate(sim)  # its bracket search ran off to the largest gain: a degenerate model
        self.sim = sim
        self.title_ids = list(sim.title_ids)
        self._tidx = {t: i for i, t in enumerate(self.title_ids)}
        self._catalog = {t: sim.titles[t] for t in self.title_ids}
        self.user_cluster = np.asarray(sim._user_segment)
        # The click model depends on (user, artwork, device, late-night flag): tabulate it once.
        nd = len(DEVICES)
        self._P: list[np.ndarray] = []
        users = np.arange(self.n_users)
        for t in self.title_ids:
            start, stop = sim._title_slices[t]
            arts = np.arange(start, stop)
            uu, dd, ll, aa = np.meshgrid(users, np.arange(nd), np.array([0, 1]), arts, indexing="ij")
            hours = np.where(ll == 1, 22, 12)
            rest, personal = sim._logit_parts(uu.ravel(), sim._art_title[aa.ravel()], aa.ravel(), dd.ravel(),
                                              hours.ravel())
            prob = _sigmoid(sim.base + rest + sim.gain * personal)
            self._P.append(prob.reshape(self.n_users, nd, 2, stop - start))
        self._late = np.array([(h >= 21 or h < 2) for h in range(N_HOURS)], dtype=int)
        rng = self._rng(0x5EED)
        self.cold = rng.random(self.n_users) < float(p["cold_share"])
        self._user_ids = list(sim._user_ids)
        self._taste = [{} if self.cold[u] else {k: round(float(v), 4) for k, v in zip(sim.tag_keys, sim._observed[u])}
                       for u in range(self.n_users)]
        self._history = [[] if self.cold[u] else list(sim._history[u]) for u in range(self.n_users)]
        self._country_name = [COUNTRIES[int(c)] for c in sim._user_country]
        self._own_device = np.asarray(sim._user_device)
        self._act_cdf = np.cumsum(sim._activity / sim._activity.sum())
        self._title_w = np.asarray(sim._title_pop, dtype=float)

    def catalog(self, page: int) -> dict[str, list[Candidate]]:
        return self._catalog

    def click_probs(self, page: Page, title_id: str, page_index: int) -> np.ndarray:
        user = page.user
        return self._P[self._tidx[title_id]][page.user_index, _DEVICE_INDEX[user.device], self._late[user.hour]]


def _recalibrate(sim: Simulator) -> None:
    """Grid search for (base, gain) when `Simulator`'s own calibration failed.

    On a small catalog the best-fixed / oracle ratio need not fall monotonically with the gain, and
    the simulator's bisection then ends at its largest gain (logits in the hundreds). Here: for
    each gain on a grid, the base that gives the target uniform click rate; keep the gain whose
    ratio is closest to the target (ties: the smaller gain). Sets ``sim.base``/``sim.gain`` so
    ``sim.click_probabilities`` agrees with the world.
    """
    best: tuple[float, float, float] | None = None
    for gain in np.geomspace(0.02, 4.0, 32):
        lo, hi = -40.0, 10.0
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            p, _ = sim._eval_matrix(mid, gain)
            if np.nanmean(p, axis=1).mean() < sim.target_ctr:
                lo = mid
            else:
                hi = mid
        base = 0.5 * (lo + hi)
        _, fixed, oracle = sim._values(*sim._eval_matrix(base, gain))
        miss = abs(fixed / oracle - sim.target_fixed_ratio)
        if best is None or miss < best[0] - 1e-3:
            best = (miss, base, float(gain))
    assert best is not None
    sim.base, sim.gain = best[1], best[2]
    uniform, fixed, oracle = sim._values(*sim._eval_matrix())
    sim.calibration = {"gain": sim.gain, "base": sim.base, "uniform_value": uniform, "best_fixed_value": fixed,
                       "oracle_value": oracle, "fixed_ratio": fixed / oracle, "recalibrated": 1.0}


@_register
class ThresholdWorld(_TableWorld):
    """A non-linear interaction: an artwork gets a click boost only from users whose latent taste
    for the genre it plays up exceeds a threshold, and only on a TV.

    A model with pairwise taste x tag and device x tag interactions captures this only partly
    (it is a three-way AND through a threshold, seen through noisy taste and partial tags).
    """

    name: ClassVar[str] = "threshold"
    description: ClassVar[str] = "boost only when taste for the artwork's genre > threshold AND device is tv"
    signal: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {
        **_TableWorld.defaults,
        "aim_share": 1.0,
        "threshold": 0.5,
        "boost": 1.6,
        "idio": 0.25,
    }

    def _model(self, rng: np.random.Generator) -> None:
        p = self.params
        self._appeal = [[rng.normal(0.0, 0.25, k) for k in self._K]]
        self._U = [self._noise(rng, t, float(p["idio"])) for t in range(len(self._K))]
        self._UD = []
        for t, k in enumerate(self._K):
            ud = np.zeros((len(DEVICES), self.n_users, k))
            ud[_TV] = float(p["boost"]) * (self._lat_g[:, self._angle[t]] > float(p["threshold"]))
            self._UD.append(ud)


@_register
class RareWorld(ClustersWorld):
    """The clusters world at very low click rates: the best artwork of a title earns 1-3%."""

    name: ClassVar[str] = "rare"
    description: ClassVar[str] = "clusters world at very low click rates (best artwork per title 1-3%)"
    signal: ClassVar[bool] = True
    stream: ClassVar[str | None] = "clusters"
    defaults: ClassVar[dict[str, Any]] = {**ClustersWorld.defaults, "ctr": (0.01, 0.03)}


@_register
class FrequentWorld(ClustersWorld):
    """The clusters world at high click rates: the best artwork of a title earns 25-45%."""

    name: ClassVar[str] = "frequent"
    description: ClassVar[str] = "clusters world at high click rates (best artwork per title 25-45%)"
    signal: ClassVar[bool] = True
    stream: ClassVar[str | None] = "clusters"
    defaults: ClassVar[dict[str, Any]] = {**ClustersWorld.defaults, "ctr": (0.25, 0.45)}


@_register
class PositionWorld(_TableWorld):
    """Rows matter: click probability decays down the page, and per title a bold artwork beats a
    detailed one lower down while the detailed one wins in the top rows. Mild cluster taste too."""

    name: ClassVar[str] = "position"
    description: ClassVar[str] = "strong row decay; a bold artwork wins low on the page, a detailed one on top"
    signal: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {
        **_TableWorld.defaults,
        "decay": 0.85,  # click probability multiplier per row down
        "row_gain": 0.9,  # size of the bold/detailed row interaction (logit)
        "gain": 0.4,
        "idio": 0.25,
    }

    def _model(self, rng: np.random.Generator) -> None:
        p = self.params
        self._row_scale = float(p["decay"]) ** np.arange(MAX_ROWS)
        x = np.clip((np.arange(MAX_ROWS) - 3.0) / 4.0, -1.0, 1.0)  # -0.75 at the top, +1 from row 7
        appeal, U = [], []
        self.bold, self.detailed = [], []
        for t, k in enumerate(self._K):
            appeal.append(rng.normal(0.0, 0.15, k))
            bold, detailed = (int(i) for i in rng.choice(k, size=2, replace=False))
            self.bold.append(bold)
            self.detailed.append(detailed)
            self._R[t][:, bold] = float(p["row_gain"]) * x
            self._R[t][:, detailed] = -float(p["row_gain"]) * x
            U.append(float(p["gain"]) * (self._aim_term(t) + 0.5 * self._taste_term(t))
                     + self._noise(rng, t, float(p["idio"])))
        self._appeal = [appeal]
        self._U = U


@_register
class ColdWorld(_TableWorld):
    """60% of users are cold (no taste, no history); which artwork wins depends on device, hour
    bucket and country only, so those are the only way to personalise."""

    name: ClassVar[str] = "cold"
    description: ClassVar[str] = "60% cold users; artwork preference depends on device, hour and country only"
    signal: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {
        **_TableWorld.defaults,
        "cold_share": 0.6,
        "context_sd": 0.45,
        "idio": 0.25,
    }

    def _model(self, rng: np.random.Generator) -> None:
        p = self.params
        sd = float(p["context_sd"])
        appeal, U = [], []
        for t, k in enumerate(self._K):
            appeal.append(rng.normal(0.0, 0.25, k))
            by_country = rng.normal(0.0, sd, (len(COUNTRIES), k))
            U.append(by_country[self._country] + self._noise(rng, t, float(p["idio"])))
            self._D[t] = rng.normal(0.0, sd, (len(DEVICES), k))
            self._H[t] = rng.normal(0.0, sd, (4, k))[_HOUR_BUCKET]
        self._appeal = [appeal]
        self._U = U


@_register
class DelayedWorld(ClustersWorld):
    """The clusters world with late feedback: an outcome reaches the learner after a geometric
    delay (mean ``mean_delay`` pages, capped at ``max_delay``)."""

    name: ClassVar[str] = "delayed"
    description: ClassVar[str] = "clusters world; clicks revealed after a geometric delay of 0-300 pages"
    signal: ClassVar[bool] = True
    stream: ClassVar[str | None] = "clusters"
    defaults: ClassVar[dict[str, Any]] = {**ClustersWorld.defaults, "mean_delay": 50.0, "max_delay": 300}

    def delay(self, rng: np.random.Generator, reward: float = 1.0) -> int:
        d = int(rng.geometric(1.0 / (1.0 + float(self.params["mean_delay"])))) - 1  # 0, 1, 2, ...
        return min(int(self.params["max_delay"]), d)


@_register
class WindowWorld(ClustersWorld):
    """The clusters world with the service's feedback semantics: a click arrives after a short
    geometric delay (mean ``click_delay`` pages), a miss only when its feedback window of
    ``window`` pages closes. The learner sees clicks before the misses that preceded them, so a
    learner that depends on the order of its updates is measured here."""

    name: ClassVar[str] = "window"
    description: ClassVar[str] = "clusters world; clicks arrive after ~5 pages, misses when a 200-page window closes"
    signal: ClassVar[bool] = True
    stream: ClassVar[str | None] = "clusters"
    defaults: ClassVar[dict[str, Any]] = {**ClustersWorld.defaults, "click_delay": 5.0, "window": 200}

    def delay(self, rng: np.random.Generator, reward: float = 1.0) -> int:
        d = int(rng.geometric(1.0 / (1.0 + float(self.params["click_delay"])))) - 1
        return min(d, int(self.params["window"])) if reward > 0 else int(self.params["window"])


@_register
class DailyWorld(ClustersWorld):
    """The clusters world on a clock: the hour follows the page index (a day is ``day_pages``
    pages, so 3 days in 6,000) and every click rate swings with it, prime time (21:00) up and the
    small hours down by ``swing`` logits, the same for every artwork. Built against change
    detection: an artwork's recent click rate rises and falls every day although its appeal
    never changes; a detector must not take the day for a change. Real traffic has this cycle, at
    far more impressions per hour than here."""

    name: ClassVar[str] = "daily"
    description: ClassVar[str] = "clusters world on a clock: every click rate swings with the hour of a 2,000-page day"
    signal: ClassVar[bool] = True
    stream: ClassVar[str | None] = "clusters"
    defaults: ClassVar[dict[str, Any]] = {**ClustersWorld.defaults, "day_pages": 2000, "swing": 0.5}

    def _model(self, rng: np.random.Generator) -> None:
        super()._model(rng)
        cycle = float(self.params["swing"]) * np.cos(2.0 * np.pi * (np.arange(N_HOURS) - 21) / N_HOURS)
        for t in range(len(self._K)):
            self._H[t] = self._H[t] + cycle[:, None]

    def page(self, rng: np.random.Generator, page: int) -> Page:
        p = super().page(rng, page)  # the same draws as `clusters`: only the hour is the clock's
        day = int(self.params["day_pages"])
        p.user.hour = min(N_HOURS - 1, N_HOURS * (page % day) // day)
        return p


@_register
class NewArtWorld(ClustersWorld):
    """The clusters world with artworks added mid-run: at 1/3 and 2/3 of ``n_pages`` each title
    gets 1-2 new artworks (appended to its list); about a third of them get a clear appeal lift
    over everything before them, so they become the title's best."""

    name: ClassVar[str] = "newart"
    description: ClassVar[str] = "clusters world; 1-2 new artworks per title at 1/3 and 2/3 of the run, some best"
    signal: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {
        **ClustersWorld.defaults,
        "n_pages": 6000,
        "art_range": (3, 6),
        "new_best_share": 0.35,
    }

    def _extra_art_counts(self, rng: np.random.Generator) -> list[list[int]]:
        n = int(self.params["n_pages"])
        self._epoch_starts = [0, n // 3, 2 * n // 3]
        return [[int(rng.integers(1, 3)), int(rng.integers(1, 3))] for _ in range(self.n_titles)]

    def _model(self, rng: np.random.Generator) -> None:
        super()._model(rng)
        n0 = self._n_avail[0]
        self.new_best: list[list[int]] = []
        for t, a in enumerate(self._appeal[0]):
            made = []
            for k in range(n0[t], self._K[t]):
                if rng.random() < float(self.params["new_best_share"]):
                    a[k] = a[:k].max() + rng.uniform(0.25, 0.5)
                    made.append(k)
            self.new_best.append(made)


@_register
class DriftWorld(_TableWorld):
    """Nothing personal, but appeal drifts: at ``n_pages`` / 2 the best artwork of half the titles
    loses its appeal and another artwork of the title gains it."""

    name: ClassVar[str] = "drift"
    description: ClassVar[str] = "appeal only; at mid-run half the titles' best artwork loses appeal, another gains"
    signal: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {**_TableWorld.defaults, "n_pages": 6000}

    def _model(self, rng: np.random.Generator) -> None:
        before = [_winner_appeal(rng, k, (0.3, 0.7), sd=0.25) for k in self._K]
        after = [a.copy() for a in before]
        nt = len(self._K)
        self.drifted = sorted(int(t) for t in rng.permutation(nt)[: nt // 2])
        for t in self.drifted:
            a = after[t]
            old = int(np.argmax(a))
            new = int(rng.choice([k for k in range(len(a)) if k != old]))
            a[new] = a[old] + rng.uniform(0.1, 0.3)
            a[old] = a[old] - rng.uniform(0.7, 1.0)
        self._appeal = [before, after]
        self._n_avail = [self._n_avail[0], self._n_avail[0]]
        self._epoch_starts = [0, int(self.params["n_pages"]) // 2]


@_register
class MisleadingWorld(_TableWorld):
    """Spurious context: users' taste dicts are structured (clusters) and artworks are tagged along
    the same genres, but clicks depend only on each artwork's appeal plus per-(user, artwork)
    noise that is independent of everything the policy sees. The best artwork is per title."""

    name: ClassVar[str] = "misleading"
    description: ClassVar[str] = "taste dict observed but unrelated to clicks (spurious features); best is per title"
    signal: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {**_TableWorld.defaults, "aim_share": 1.0, "idio": 0.5}

    def _model(self, rng: np.random.Generator) -> None:
        self._appeal = [[_winner_appeal(rng, k, (0.3, 0.6)) for k in self._K]]
        self._U = [self._noise(rng, t, float(self.params["idio"])) for t in range(len(self._K))]


#: Stars a user may follow (fictional). Supporting actors are "Support NN".
_STAR_NAMES = ("Ada Stone", "Ben Okafor", "Chloe Marsh", "Dmitri Vale", "Esme Park", "Felix Hart", "Greta Lind",
               "Hugo Reyes", "Ines Duarte", "Jonah Pike")
_FACE_THRESHOLD = 0.6  # dlib's default Euclidean distance threshold, as the cast gallery uses it
_MIN_FACE_SHARE = 0.015  # HOG misses faces under ~1/8 of the frame's side: (1/8)^2 of its area


@_register
class ActorsWorld(_TableWorld):
    """Some users follow an actor, and click more on artworks that show that actor's face.

    Each title has a cast: 2-3 stars and 1-3 supporting actors, the first star its lead. Stars are
    spread evenly over titles, so each is in several of them: what is learned about a star's fans
    on one title can carry to another, which is what weights shared across titles (user feature x
    artwork feature) are for. A title's artworks are close-ups (every star of the cast gets one),
    two-shots, group shots, a stranger's face, or scenes without faces. They are tagged as the
    face pipeline tags them (`Tags.actors` scores every cast member, `actors_present` names the
    recognised ones, a `FaceSummary`) and become candidates through `candidate_from_artwork`, so
    they carry "actor:<name>" (its confidence) and the `FACE_FEATURES` the service would compute.
    Detection misses faces under ~1/8 of the frame's side and recognition misses some visible
    faces: clicks follow who is visible, the features only who was recognised.

    ``follow_share`` of users follow one star (popular stars more often). The service sees it the
    way it would in production: a user who sends a watch history gets `taste_from_history` of it
    (every cast member of a watched title at its share of the titles watched; a follower's history
    leans toward their star's titles, but someone who watched one title looks like a fan of its
    whole cast); the others send a taste dict (noisy genres and moods) in which a follower names
    their star only ``say_star`` of the time and a non-follower names some star ``false_star`` of
    the time; cold users show nothing.

    logit = base[title] + appeal[artwork] + device x artwork + gain[user] x visible(star, artwork)
            + per-(user, artwork) noise,
    where visible is the followed star's on-screen prominence in the artwork (1 for a close-up,
    less for a small face in a group) and 0 when the star is not in it.
    """

    name: ClassVar[str] = "actors"
    description: ClassVar[str] = ("40% of users follow a star seen in several titles (actor:<name> taste, noisy); "
                                  "their clicks rise when the star's face is on the artwork")
    signal: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {
        **_TableWorld.defaults,
        "aim_share": 0.0,  # no cluster-aimed artworks: the personal part of this world is actors only
        "ctr": (0.04, 0.12),
        "n_stars": 6,
        "n_support": 24,
        "follow_share": 0.4,
        "history_share": 0.6,  # non-cold users who send a history (the rest send a taste dict)
        "lean": 3.0,  # how far a follower's history leans toward their star's titles (Gumbel key)
        "say_star": 0.7,  # a follower's taste dict names their star
        "false_star": 0.1,  # a non-follower's taste dict names a star anyway
        "gain": (0.8, 1.4),  # a follower's logit boost for a close-up of their star
        "appeal_sd": 0.3,
        "device_sd": 0.1,
        "idio": 0.3,  # per-(user, artwork) taste no feature explains: in the oracle, out of reach
    }

    # ------------------------------------------------------------------ cast and faces
    def _make_catalog(self, rng: np.random.Generator) -> None:
        super()._make_catalog(rng)
        # Its own stream, so the genre/mood/embedding catalog is the one the base draws for this seed.
        self._cast_catalog(self._rng(0xCA57))

    def _cast_catalog(self, rng: np.random.Generator) -> None:
        p = self.params
        n_stars, n_support = int(p["n_stars"]), int(p["n_support"])
        if not 1 <= n_stars <= len(_STAR_NAMES):
            raise ValueError(f"n_stars must be 1..{len(_STAR_NAMES)}")
        self.stars = list(_STAR_NAMES[:n_stars])
        self.actor_names = self.stars + [f"Support {i:02d}" for i in range(n_support)]
        self.star_pop = rng.dirichlet(np.full(n_stars, 3.0))  # how often each star is followed
        n_act = len(self.actor_names)
        appearances = np.zeros(n_stars)
        self.cast: list[list[int]] = []
        self.lead: list[int] = []
        self.visible: list[list[dict[int, float]]] = []  # per title, per artwork: actor -> face share
        self._vis: list[np.ndarray] = []  # per title (K, n_actors): on-screen prominence
        self._artworks: dict[str, list[Artwork]] = {}
        for t, tid in enumerate(self.title_ids):
            n_in = min(n_stars, int(rng.integers(2, 4)))
            # The least-cast stars first (ties at random): every star ends up in several titles.
            order = np.lexsort((rng.random(n_stars), appearances))
            title_stars = [int(i) for i in order[:n_in]]
            appearances[title_stars] += 1
            support = [n_stars + int(i) for i in rng.choice(n_support, size=min(n_support, int(rng.integers(1, 4))),
                                                            replace=False)] if n_support else []
            cast = title_stars + support
            self.cast.append(cast)
            self.lead.append(cast[0])
            k_total = len(self._all_arts[t])
            kinds: list[tuple[str, Any]] = [("close", s) for s in title_stars][:k_total]
            while len(kinds) < k_total:
                kinds.append((str(rng.choice(["scene", "close", "two", "group", "stranger"],
                                             p=[0.3, 0.25, 0.2, 0.15, 0.1])), None))
            kinds = [kinds[i] for i in rng.permutation(k_total)]
            shows, vis, arts = [], np.zeros((k_total, n_act)), []
            for k, (kind, who) in enumerate(kinds):
                faces = self._faces(rng, kind, who, cast, title_stars)
                shows.append({a: s for a, s in faces if a >= 0})
                for a, s in faces:
                    if a >= 0:
                        vis[k, a] = max(vis[k, a], min(1.0, math.sqrt(s / 0.1)))
                art = self._artwork(rng, tid, self._all_arts[t][k], faces, cast)
                arts.append(art)
                old = self._all_arts[t][k].features
                feats = candidate_from_artwork(art).features
                feats.update({key: v for key, v in old.items() if key.startswith("emb:")})
                self._all_arts[t][k] = Candidate(art.artwork_id, feats)
            self.visible.append(shows)
            self._vis.append(vis)
            self._artworks[tid] = arts
        self._in_cast = np.zeros((self.n_titles, n_act), dtype=bool)
        for t, cast in enumerate(self.cast):
            self._in_cast[t, cast] = True

    @staticmethod
    def _faces(rng: np.random.Generator, kind: str, who: int | None, cast: list[int],
               stars: list[int]) -> list[tuple[int, float]]:
        """(actor index, face area / frame area) of the faces in one image; -1 for nobody in the cast."""
        if kind == "scene":
            return []
        if kind == "stranger":
            return [(-1, float(rng.uniform(0.05, 0.3)))]
        if kind == "close":
            if who is None:
                who = int(rng.choice(stars)) if rng.random() < 0.6 else int(rng.choice(cast))
            return [(who, float(rng.uniform(0.08, 0.35)))]
        if kind == "two":
            pair = rng.choice(cast, size=2, replace=False) if len(cast) >= 2 else [cast[0], -1]
            return [(int(a), float(rng.uniform(0.04, 0.2))) for a in pair]
        n = int(rng.integers(3, 6))  # a group: some of the cast and extras, small faces
        members = [int(a) for a in rng.choice(cast, size=min(len(cast), int(rng.integers(1, 4))), replace=False)]
        return [(a, float(rng.uniform(0.008, 0.08))) for a in members + [-1] * max(0, n - len(members))]

    def _artwork(self, rng: np.random.Generator, tid: str, base: Candidate, faces: list[tuple[int, float]],
                 cast: list[int]) -> Artwork:
        """The artwork as the catalog would store it after tagging and face scanning."""
        detected = [(a, s) for a, s in faces if s >= _MIN_FACE_SHARE]
        # Each detected cast face is recognised (distance under the threshold) most of the time; a
        # miss, like every cast member not in the image, scores a distance above the threshold.
        dist = {a: _FACE_THRESHOLD + float(rng.uniform(0.02, 0.35)) for a in cast}
        present = []
        for a, _s in detected:
            if a >= 0 and rng.random() < 0.9:
                dist[a] = _FACE_THRESHOLD - float(rng.uniform(0.01, 0.2))
                present.append(a)
        names = self.actor_names
        if detected:
            scores = {names[a]: round(1.0 / (1.0 + math.exp((d - _FACE_THRESHOLD) / 0.05)), 4) for a, d in dist.items()}
            distances = {names[a]: round(d, 4) for a, d in dist.items()}
        else:  # nothing to compare: every cast member scores 0
            scores, distances = {names[a]: 0.0 for a in cast}, {}
        largest = max(detected, key=lambda f: f[1]) if detected else None
        lead = names[cast[0]]
        summary = FaceSummary(
            n_faces=len(detected),
            largest_share=round(largest[1], 4) if largest else 0.0,
            largest_x=round(float(rng.uniform(0.15, 0.85)), 4) if largest else None,
            lead=lead,
            lead_visible=cast[0] in present,
        )
        tags = Tags(
            moods={k[5:]: v for k, v in base.features.items() if k.startswith("mood:")},
            genres={k[6:]: v for k, v in base.features.items() if k.startswith("genre:")},
            actors=scores,
            actors_present=[names[a] for a in sorted(set(present))],
            actor_distances=distances,
            faces=summary,
        )
        return Artwork(base.artwork_id, tid, base.artwork_id, f"world:{base.artwork_id}", 640, 360, 0, 0.0, tags=tags)

    # ------------------------------------------------------------------ followers and what the service sees
    def _make_users(self, rng: np.random.Generator) -> None:
        super()._make_users(rng)
        p = self.params
        r = self._rng(0xFA25)
        n, n_stars = self.n_users, len(self.stars)
        follows = np.full(n, -1)
        f = r.random(n) < float(p["follow_share"])
        follows[f] = r.choice(n_stars, size=int(f.sum()), p=self.star_pop)
        self.follows = follows  # hidden: index into `stars`, -1 for none
        # A follower's watch history leans toward their star's titles.
        match = self._lat_g @ self._title_genres.T
        gumbel = -np.log(-np.log(r.random((n, self.n_titles))))
        self.sends_history = (r.random(n) < float(p["history_share"])) & ~self.cold
        say, false = r.random(n), r.random(n)
        false_star = r.choice(n_stars, size=n, p=self.star_pop)
        for u in range(n):
            if self.cold[u]:
                continue
            if follows[u] >= 0:
                key = (np.log(self._title_w) + 4.0 * match[u] + float(p["lean"]) * self._in_cast[:, follows[u]]
                       + gumbel[u])
                self._history[u] = [self.title_ids[j] for j in np.argsort(-key)[: len(self._history[u])]]
            if self.sends_history[u]:
                self._taste[u] = taste_from_history(self._history[u], self._artworks)
            else:
                star = follows[u] if follows[u] >= 0 and say[u] < float(p["say_star"]) else (
                    false_star[u] if follows[u] < 0 and false[u] < float(p["false_star"]) else -1)
                if star >= 0:
                    self._taste[u] = {**self._taste[u], f"actor:{self.stars[star]}": 1.0}

    def fan_exposure(self, run: WorldRun, last_share: float = 0.2) -> dict[str, float]:
        """Whether a policy has learned who follows whom, over the last ``last_share`` of pages.

        Over the decisions for a follower on a title whose candidates include a close-up of their
        star: `star_shown`, the star's mean on-screen prominence in what was shown (1 = a close-up,
        0 = not in it); `fan_click`, the followers' expected click rate there; `fan_oracle`, the best
        they could have had. A policy that does not personalise shows every viewer the same mix,
        so its `star_shown` is what any viewer gets; one that has learned shows fans their star.
        The page's viewer comes from replaying the run's visit stream (same seed, same users).
        """
        if run.world != self.name:
            raise ValueError(f"a run of world {run.world!r}, not {self.name!r}")
        visit_rng, _, _ = world_streams(run.seed)
        users = np.array([self.page(visit_rng, i).user_index for i in range(run.n_pages)])
        star = self.follows[users[run.page]]
        keep = np.flatnonzero(run._window(last_share) & (star >= 0))
        index = {tid: t for t, tid in enumerate(self.title_ids)}
        position = [{a.artwork_id: k for k, a in enumerate(arts)} for arts in self._all_arts]
        shown, rows = [], []
        for i in keep:
            tid = run.title_ids[run.title[i]]
            t = index[tid]
            prominence = self._vis[t][:, star[i]]
            if prominence.max() < 0.85:  # no close-up of their star to show
                continue
            shown.append(prominence[position[t][run.columns[tid][run.chosen[i]]]])
            rows.append(i)
        return {"star_shown": float(np.mean(shown)) if shown else float("nan"),
                "fan_click": float(run.expected[rows].mean()) if rows else float("nan"),
                "fan_oracle": float(run.oracle[rows].mean()) if rows else float("nan"),
                "decisions": float(len(rows))}

    def _model(self, rng: np.random.Generator) -> None:
        p = self.params
        n = self.n_users
        fol = self.follows >= 0
        self.fan_gain = np.where(fol, rng.uniform(*p["gain"], n), 0.0)  # hidden
        appeal, U = [], []
        for t, k in enumerate(self._K):
            appeal.append(rng.normal(0.0, float(p["appeal_sd"]), k))
            fan = np.zeros((n, k))
            fan[fol] = self._vis[t][:, self.follows[fol]].T
            U.append(self.fan_gain[:, None] * fan + self._noise(rng, t, float(p["idio"])))
            self._D[t] = rng.normal(0.0, float(p["device_sd"]), (len(DEVICES), k))
        self._appeal = [appeal]
        self._U = U


# =============================================================================================
# The evaluation loop
# =============================================================================================


@dataclass
class WorldRun:
    """Everything one `run_world` produced, one entry per decision (in decision order)."""

    world: str
    policy: str
    seed: int
    n_pages: int
    page: np.ndarray  # page index
    title: np.ndarray  # index into `title_ids`
    row: np.ndarray  # the title's row on the page
    chosen: np.ndarray  # column (see `columns`) of the artwork shown
    probability: np.ndarray  # logged propensity of the artwork shown
    reward: np.ndarray  # observed click (0/1)
    probs: np.ndarray  # (n, n_columns) true click probabilities by column, NaN where not a candidate
    title_ids: list[str]
    columns: dict[str, list[str]]  # title_id -> artwork ids by column (order of first appearance)
    seconds: float = 0.0
    expected: np.ndarray = field(init=False, repr=False)  # p of the artwork shown
    oracle: np.ndarray = field(init=False, repr=False)  # max p of the decision

    def __post_init__(self) -> None:
        n = self.page.shape[0]
        self.expected = self.probs[np.arange(n), self.chosen] if n else np.zeros(0)
        self.oracle = np.nanmax(self.probs, axis=1) if n else np.zeros(0)

    @property
    def n(self) -> int:
        """Number of decisions."""
        return int(self.page.shape[0])

    def _window(self, last_share: float) -> np.ndarray:
        if not 0.0 < last_share <= 1.0:
            raise ValueError("last_share must be in (0, 1]")
        start = self.n_pages - max(1, int(round(last_share * self.n_pages)))
        return self.page >= start

    def _best_fixed_columns(self, mask: np.ndarray) -> tuple[dict[int, int], float]:
        """Per title, the column with the highest mean p over its window decisions; total p earned.

        An artwork absent from some of the title's decisions (added mid-window) is eligible only
        if no artwork was present throughout; an absent decision then counts the mean of the rest.
        """
        p, titles = self.probs[mask], self.title[mask]
        best: dict[int, int] = {}
        total = 0.0
        for t in np.unique(titles):
            rows = p[titles == t]
            avail = ~np.isnan(rows)
            present = avail.any(axis=0)
            full = avail.all(axis=0)
            filled = np.where(avail, rows, np.nanmean(rows, axis=1, keepdims=True))
            means = filled.mean(axis=0)
            eligible = full if full.any() else present
            k = int(np.argmax(np.where(eligible, means, -np.inf)))
            best[int(t)] = k
            total += float(filled[:, k].sum())
        return best, total

    def best_fixed_artworks(self, last_share: float = 0.2) -> dict[str, str]:
        """title_id -> the artwork with the highest mean p over the window, in hindsight."""
        best, _ = self._best_fixed_columns(self._window(last_share))
        return {self.title_ids[t]: self.columns[self.title_ids[t]][k] for t, k in best.items()}

    def summary(self, last_share: float = 0.2) -> dict[str, Any]:
        """Values over the last ``last_share`` of pages (expected click rates, no click noise)."""
        mask = self._window(last_share)
        n = int(mask.sum())
        if n == 0:
            raise ValueError("no decisions in the window")
        policy = float(self.expected[mask].mean())
        oracle = float(self.oracle[mask].mean())
        uniform = float(np.nanmean(self.probs[mask], axis=1).mean())
        _, total = self._best_fixed_columns(mask)
        best_fixed = total / n
        denom = oracle - best_fixed
        return {
            "world": self.world,
            "policy_name": self.policy,
            "seed": self.seed,
            "pages": self.n_pages,
            "decisions": self.n,
            "window_decisions": n,
            "policy": policy,
            "oracle": oracle,
            "best_fixed": best_fixed,
            "uniform": uniform,
            "gap_closed": (policy - best_fixed) / denom if denom >= 1e-9 else float("nan"),
            "regret": oracle - policy,
            "clicks": float(self.reward[mask].mean()),
            "seconds": self.seconds,
        }

    def curve(self, window_pages: int = 500) -> LearningCurve:
        """Mean expected reward (and observed click rate) per window of ``window_pages`` pages.

        `x` is the page count at each window's end; a trailing partial window is dropped.
        """
        if window_pages < 1:
            raise ValueError("window_pages must be >= 1")
        k = self.n_pages // window_pages
        if k == 0:
            raise ValueError(f"run has {self.n_pages} pages, fewer than one window of {window_pages}")
        keep = self.page < k * window_pages
        w = self.page[keep] // window_pages
        count = np.bincount(w, minlength=k).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = np.bincount(w, weights=self.expected[keep], minlength=k) / count
            rate = np.bincount(w, weights=self.reward[keep], minlength=k) / count
        return LearningCurve(self.policy, np.arange(1, k + 1) * window_pages, rate, expected, window_pages)


def world_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """The visit, click and delay streams of a run: seeded by ``seed`` alone (common random numbers).

    Every loop that plays a world (in-process here, over HTTP in `bandit.audience`) draws from
    these, so the same seed sees the same users, pages and coin flips whatever the transport.
    """
    seed = int(seed)
    return (np.random.default_rng([seed, 0x7151]), np.random.default_rng([seed, 0xC11C]),
            np.random.default_rng([seed, 0xDE1A]))


class ArtworkColumns:
    """Each title's artworks as columns, in order of first appearance (a catalog may grow mid-run).

    A run records every candidate's true click probability by column, so `WorldRun` can find the
    best single artwork per title in hindsight even when new artworks arrive.
    """

    def __init__(self) -> None:
        self.title_index: dict[str, int] = {}
        self.title_ids: list[str] = []
        self.columns: dict[str, list[str]] = {}
        self._col_of: dict[str, dict[str, int]] = {}

    def of(self, title_id: str, candidates: list[Candidate]) -> np.ndarray:
        """The column of each candidate (new artworks get the next free columns)."""
        if title_id not in self.title_index:
            self.title_index[title_id] = len(self.title_ids)
            self.title_ids.append(title_id)
            self.columns[title_id], self._col_of[title_id] = [], {}
        col_of, columns = self._col_of[title_id], self.columns[title_id]
        for c in candidates:
            if c.artwork_id not in col_of:
                col_of[c.artwork_id] = len(columns)
                columns.append(c.artwork_id)
        return np.array([col_of[c.artwork_id] for c in candidates], dtype=np.int64)

    @property
    def width(self) -> int:
        """The most columns any title has."""
        return max((len(c) for c in self.columns.values()), default=1)


def run_world(world: World, policy: Policy, n_pages: int, seed: int = 0, learn: bool = True) -> WorldRun:
    """Play ``policy`` online in ``world`` for ``n_pages`` page views.

    Per page: the world draws a page from the visit stream; per title in display order the policy
    chooses on the user context with ``row`` = the title's position, the world gives every
    candidate's true click probability, and one uniform from the click stream decides the click.
    Visit, click and delay streams are seeded by ``seed`` alone, never by the policy's choices
    (common random numbers). The `learn_one` call is queued and made before page
    ``i + 1 + world.delay()`` (outcomes still pending at the end are dropped).
    """
    if n_pages < 1:
        raise ValueError("n_pages must be >= 1")
    seed = int(seed)
    visit_rng, click_rng, delay_rng = world_streams(seed)
    cap = n_pages * MAX_TITLES_PER_PAGE
    pages = np.empty(cap, dtype=np.int64)
    titles = np.empty(cap, dtype=np.int64)
    rows = np.empty(cap, dtype=np.int64)
    chosen = np.empty(cap, dtype=np.int64)
    propensity = np.empty(cap)
    rewards = np.empty(cap)
    width = 16
    probs = np.full((cap, width), np.nan)
    book = ArtworkColumns()
    # Per catalog dict: title -> (candidates, artwork id -> index, columns or None when 0..n-1).
    last_catalog: Mapping[str, list[Candidate]] | None = None
    info: dict[str, tuple[list[Candidate], dict[str, int], np.ndarray | None, int]] = {}
    pending: dict[int, list[tuple[UserContext, str, list[Candidate], str, float, float]]] = {}
    # Decisions whose outcome is not learned yet, as the service counts them (bandit.pending).
    open_ = Pending()
    attach = getattr(policy, "attach_pending", None) if learn else None
    if attach is not None:
        attach(open_)
    m = 0
    start = time.perf_counter()
    for i in range(n_pages):
        due = pending.pop(i, None)
        if due:
            for args in due:
                open_.resolve(args[1], args[3])
                policy.learn_one(*args)
        cat = world.catalog(i)
        if cat is not last_catalog:
            last_catalog, info = cat, {}
        page = world.page(visit_rng, i)
        base_user = page.user
        u_click = click_rng.random(len(page.title_ids))
        shown: list[tuple[str, str]] = []
        for j, t in enumerate(page.title_ids):
            entry = info.get(t)
            if entry is None:
                cands = cat[t]
                cols = book.of(t, cands)
                if int(cols.max()) >= width:
                    grow = max(int(cols.max()) + 1, 2 * width)
                    probs = np.concatenate([probs, np.full((cap, grow - width), np.nan)], axis=1)
                    width = grow
                identity = bool(np.array_equal(cols, np.arange(len(cands))))
                entry = info[t] = (cands, {c.artwork_id: k for k, c in enumerate(cands)},
                                   None if identity else cols, book.title_index[t])
            cands, idx, cols, ti = entry
            user = _with_row(base_user, j)
            d = policy.choose(user, t, cands)
            p = world.click_probs(page, t, i)
            k = idx[d.chosen]
            reward = 1.0 if u_click[j] < p[k] else 0.0
            if cols is None:
                probs[m, : p.shape[0]] = p
                chosen[m] = k
            else:
                probs[m, cols] = p
                chosen[m] = cols[k]
            pages[m], titles[m], rows[m], propensity[m], rewards[m] = i, ti, j, d.probability, reward
            m += 1
            dl = world.delay(delay_rng, reward)
            if learn:
                shown.append((t, d.chosen))
                pending.setdefault(i + 1 + max(0, int(dl)), []).append(
                    (user, t, cands, d.chosen, d.probability, reward))
        # Open once the page is out, as the service logs a page chosen in one call: no title of a
        # page sees the page's other decisions as open.
        for t, a in shown:
            open_.add(t, a)
    seconds = time.perf_counter() - start
    if attach is not None:
        attach(None)
    return WorldRun(
        world=getattr(world, "name", type(world).__name__),
        policy=getattr(policy, "name", type(policy).__name__),
        seed=seed,
        n_pages=n_pages,
        page=pages[:m].copy(),
        title=titles[:m].copy(),
        row=rows[:m].copy(),
        chosen=chosen[:m].copy(),
        probability=propensity[:m].copy(),
        reward=rewards[:m].copy(),
        probs=probs[:m, : book.width].copy(),
        title_ids=book.title_ids,
        columns=book.columns,
        seconds=seconds,
    )


def context_ceiling(world: World, n_pages: int, seed: int = 0, last_share: float = 0.2, ridge: float = 1.0) -> float:
    """A reference between best-fixed and the oracle: what the context the service sees can buy.

    The oracle knows each user's true click probabilities, hidden traits included, so part of the
    best-fixed -> oracle gap is out of reach of any policy. This estimates the reachable part: per
    title and artwork, a ridge regression of the true click probability on the user's features
    (as `bandit.bayes.user_features` encodes the context: device, hour, country, row, taste) and
    their pairwise products, fitted with full information (every candidate's probability, no click
    noise) on the pages of the other parity, then the expected click rate of its best guesses over
    the last ``last_share`` of pages. Same visit stream as `run_world` with this seed, no policy.
    A bandit, which sees one noisy click per decision, should not be expected to reach it.
    """
    from bandit.bayes import user_features  # the policy's encoding of the context; imported late (bayes -> policy)

    visit_rng, _, _ = world_streams(seed)
    book = ArtworkColumns()
    vocab: dict[str, int] = {}
    feats: list[list[tuple[int, float]]] = []
    titles: list[int] = []
    pages: list[int] = []
    probs: list[tuple[np.ndarray, np.ndarray]] = []
    for i in range(n_pages):
        cat = world.catalog(i)
        page = world.page(visit_rng, i)
        for j, t in enumerate(page.title_ids):
            user = _with_row(page.user, j)
            cols = book.of(t, cat[t])
            probs.append((cols, world.click_probs(page, t, i)))
            feats.append([(vocab.setdefault(k, len(vocab)), v) for k, v in user_features(user)])
            titles.append(book.title_index[t])
            pages.append(i)
    n, d = len(feats), len(vocab)
    x = np.zeros((n, d))
    for r, fs in enumerate(feats):
        for c, v in fs:
            x[r, c] = v
    upper = np.triu_indices(d)
    design = np.hstack([np.ones((n, 1)), x, x[:, upper[0]] * x[:, upper[1]]])
    p = np.full((n, book.width), np.nan)
    for r, (cols, pr) in enumerate(probs):
        p[r, cols] = pr
    title, page_no = np.array(titles), np.array(pages)
    parity = page_no % 2
    start = n_pages - max(1, int(round(last_share * n_pages)))
    earned = np.zeros(n)
    eye = ridge * np.eye(design.shape[1])
    for t in np.unique(title):
        for fold in (0, 1):
            train, test = (title == t) & (parity != fold), (title == t) & (parity == fold) & (page_no >= start)
            if not test.any():
                continue
            a, y, at = design[train], p[train], design[test]
            seen, shown = ~np.isnan(y), ~np.isnan(p[test])
            pred = np.full(shown.shape, -np.inf)
            # Artworks present throughout share one Gram matrix; ones added mid-run get their own.
            always = np.flatnonzero(seen.all(axis=0) & shown.any(axis=0))
            if always.size:
                w = np.linalg.solve(a.T @ a + eye, a.T @ y[:, always])
                pred[:, always] = at @ w
            for k in np.flatnonzero(~seen.all(axis=0) & shown.any(axis=0)):
                rows = seen[:, k]
                if rows.sum() >= 2:
                    ak = a[rows]
                    pred[:, k] = at @ np.linalg.solve(ak.T @ ak + eye, ak.T @ y[rows, k])
            pred[~shown] = -np.inf
            earned[test] = p[test][np.arange(int(test.sum())), np.argmax(pred, axis=1)]
    window = page_no >= start
    return float(earned[window].mean())
