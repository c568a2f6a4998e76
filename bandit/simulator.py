"""Seeded audience simulator: synthetic users clicking on candidate artworks.

The simulator is the ground truth the bandit is measured against.  Users belong
to taste segments (crime fans, romance fans, ...); each user's latent taste is
the segment centre plus noise.  Every candidate artwork carries a feature dict
over the same tag keys the image side produces ("genre:crime", "mood:dark",
...) plus a few embedding-projection dims ("emb:0", ...).  The click model is

    p(click) = sigmoid(base + title appeal + taste match with the title
                       + gain * latent_taste . W . z(artwork)
                       + universal appeal(z) + device/late-night effects(z)
                       + idiosyncratic noise(user, artwork))

where ``z`` is the artwork's feature vector *relative to the other candidates
of the same title*.  Only within-title differences decide which image wins,
so the click model can be laid over a real catalog whose candidates of one
title look alike: their differences are rescaled to a common size.

``base`` and ``gain`` are calibrated on a fixed seeded sample of visits so
that the average click rate under a uniformly random artwork is
``target_ctr`` and the best single artwork per title earns
``target_fixed_ratio`` of what the per-user oracle earns.  That makes
personalization worth something by construction, on any catalog.

What the policy sees (``UserContext.taste``) is a noisy estimate of the
latent taste over tag keys only; the preference over embedding dims stays
hidden, so the oracle is not fully reachable, as in production.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from bandit.features import Candidate, UserContext

GENRE_MOODS: dict[str, tuple[str, ...]] = {
    "crime": ("dark", "tense"),
    "romance": ("romantic", "warm"),
    "comedy": ("funny", "warm"),
    "horror": ("dark", "scary"),
    "action": ("epic", "tense"),
    "drama": ("emotional", "dark"),
    "scifi": ("epic", "mysterious"),
    "family": ("warm", "funny"),
}
GENRES: tuple[str, ...] = tuple(GENRE_MOODS)
MOODS: tuple[str, ...] = tuple(sorted({m for ms in GENRE_MOODS.values() for m in ms}))
DEVICES: tuple[str, ...] = ("tv", "mobile", "web")
COUNTRIES: tuple[str, ...] = ("US", "GB", "BR", "IN", "DE", "JP")
N_ROWS = 8  # page rows; UserContext.row is the 0-based row the title sits in
EMB_PREFIX = "emb:"

# A policy under evaluation: (user, title_id, candidates) -> probabilities.
# The result may be a mapping artwork_id -> p, a sequence aligned with the
# candidates, a sequence of (artwork_id, p) pairs, or an object with a
# ``distribution`` attribute holding one of those (e.g. a Decision).
DistributionFn = Callable[[UserContext, str, Sequence[Candidate]], Any]


def sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    """Numerically safe logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


def _splitmix(x: np.ndarray) -> np.ndarray:
    # splitmix64 finaliser: a cheap stateless hash, so per-(user, artwork)
    # noise needs no n_users x n_artworks table even on a large real catalog.
    x = (x + np.uint64(0x9E3779B97F4A7C15)).astype(np.uint64)
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)).astype(np.uint64)
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)).astype(np.uint64)
    return x ^ (x >> np.uint64(31))


def _hash_normal(seed: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Deterministic standard-normal draws keyed by (seed, a, b) (Box-Muller)."""
    with np.errstate(over="ignore"):
        key = (
            np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x100000001B3)
            + np.asarray(a, dtype=np.uint64) * np.uint64(0x1000003)
            + np.asarray(b, dtype=np.uint64)
        )
        h1 = _splitmix(key)
        h2 = _splitmix(h1 ^ np.uint64(0xD1B54A32D192ED03))
    u1 = ((h1 >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    u2 = ((h2 >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _as_probabilities(result: Any, candidates: Sequence[Candidate]) -> np.ndarray:
    """Turn whatever a policy returns into a probability vector over ``candidates``."""
    if hasattr(result, "distribution") and not isinstance(result, Mapping):
        result = result.distribution
    ids = [c.artwork_id for c in candidates]
    if isinstance(result, Mapping):
        probs = np.array([float(result.get(i, 0.0)) for i in ids])
    else:
        items = list(result)
        if items and isinstance(items[0], (tuple, list)) and len(items[0]) == 2:
            lookup = {str(k): float(v) for k, v in items}
            probs = np.array([lookup.get(i, 0.0) for i in ids])
        else:
            probs = np.asarray(items, dtype=float)
            if probs.shape != (len(ids),):
                raise ValueError(f"distribution has {probs.shape} entries for {len(ids)} candidates")
    total = probs.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("distribution does not sum to a positive number")
    return probs / total


@dataclass
class Segment:
    """A taste segment: a named centre in latent taste space and its population share."""

    name: str
    centre: dict[str, float]
    share: float


@dataclass
class Visit:
    """One impression opportunity: a user (with its context) looking at a title."""

    user: UserContext
    title_id: str
    user_index: int = field(repr=False)


class Simulator:
    """Seeded synthetic audience over a synthetic or real catalog.

    Build a synthetic catalog with ``Simulator(seed, n_segments, n_titles,
    artworks_per_title)``, or lay the click model over a real catalog with
    ``Simulator.from_catalog(titles, seed=...)``.  Everything (users,
    segments, click model, evaluation sample) is a pure function of the
    constructor arguments.
    """

    def __init__(
        self,
        seed: int = 0,
        n_segments: int = 4,
        n_titles: int = 40,
        artworks_per_title: int = 4,
        *,
        titles: Mapping[str, Sequence[Candidate]] | None = None,
        n_users: int = 3000,
        taste_noise: float = 0.2,
        observation_noise: float = 0.12,
        idiosyncratic_noise: float = 0.3,
        context_strength: float = 0.3,
        title_appeal_sd: float = 0.5,
        target_ctr: float = 0.10,
        target_fixed_ratio: float = 0.70,
        n_eval: int = 8000,
        eval_seed: int | None = None,
    ) -> None:
        """Create the audience.

        Args:
            seed: master seed; same seed and arguments give the same simulator.
            n_segments: number of taste segments.
            n_titles, artworks_per_title: size of the synthetic catalog
                (ignored when ``titles`` is given).
            titles: a real catalog, title_id -> candidates (feature dicts).
            n_users: size of the fixed user population.
            taste_noise: spread of users around their segment centre.
            observation_noise: noise on the taste the policy gets to see.
            idiosyncratic_noise: sd of per-(user, artwork) logit noise nobody can learn.
            context_strength: size of device / late-night effects on the logit.
            title_appeal_sd: spread of per-title appeal (sets the range of click rates).
            target_ctr: mean click rate of a uniformly random artwork.
            target_fixed_ratio: best-fixed value / oracle value to calibrate to.
            n_eval: size of the seeded visit sample for exact policy values.
            eval_seed: seed of that sample (defaults to a function of ``seed``).
        """
        if n_segments < 1:
            raise ValueError("n_segments must be >= 1")
        self.seed = int(seed)
        self._rng = np.random.default_rng([self.seed, 0x5EED])
        rng = self._rng
        if titles is None:
            titles = self._synthetic_catalog(rng, n_titles, artworks_per_title)
            self.synthetic = True
        else:
            self.synthetic = False
        self.titles: dict[str, list[Candidate]] = {t: list(c) for t, c in titles.items() if len(c) > 0}
        if not self.titles:
            raise ValueError("catalog has no title with candidates")
        self.title_ids: list[str] = sorted(self.titles)
        self.taste_noise = taste_noise
        self.observation_noise = observation_noise
        self.idiosyncratic_noise = idiosyncratic_noise
        self.target_ctr = target_ctr
        self.target_fixed_ratio = target_fixed_ratio

        self._build_feature_space()
        self._build_segments(rng, n_segments)
        self._build_population(rng, n_users)
        self._build_click_model(rng, context_strength, title_appeal_sd)

        self._eval_seed = eval_seed if eval_seed is not None else self.seed * 7919 + 17
        self._eval = self._draw_visits(np.random.default_rng([self._eval_seed, 0xE7A1]), n_eval)
        self._eval_contexts: list[Visit] | None = None
        self._eval_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.calibration = self._calibrate()

    # ------------------------------------------------------------------ build
    @classmethod
    def from_catalog(
        cls, titles: Mapping[str, Sequence[Candidate]], seed: int = 0, n_segments: int = 4, **kwargs: Any
    ) -> "Simulator":
        """Lay the simulated audience over a real catalog (title_id -> candidates)."""
        return cls(seed=seed, n_segments=n_segments, titles=titles, **kwargs)

    @staticmethod
    def _synthetic_catalog(
        rng: np.random.Generator, n_titles: int, artworks_per_title: int
    ) -> dict[str, list[Candidate]]:
        # Titles mix two genres; each artwork sells the title from one "angle"
        # (one of its genres, sometimes another one, as when a drama's poster
        # plays up a comedic moment), like a real set of CLIP-tagged frames.
        genre_idx = {g: i for i, g in enumerate(GENRES)}
        catalog: dict[str, list[Candidate]] = {}
        for t in range(n_titles):
            pair = rng.choice(len(GENRES), size=2, replace=False)
            profile = np.zeros(len(GENRES))
            profile[pair[0]], profile[pair[1]] = 0.6, 0.4
            others = [g for g in range(len(GENRES)) if g not in pair]
            angles = list(pair) + list(rng.permutation(others))
            cands = []
            for k in range(artworks_per_title):
                angle = int(angles[k % len(angles)])
                glog = 2.5 * np.eye(len(GENRES))[angle] + 1.5 * profile + rng.normal(0, 0.5, len(GENRES))
                gp = np.exp(glog - glog.max())
                gp /= gp.sum()
                moods_on = set(GENRE_MOODS[GENRES[angle]])
                mlog = np.array([-2.0 + 3.0 * (m in moods_on) for m in MOODS]) + rng.normal(0, 0.7, len(MOODS))
                mp = sigmoid(mlog)
                feats = {f"genre:{g}": round(float(gp[genre_idx[g]]), 4) for g in GENRES}
                feats.update({f"mood:{m}": round(float(p), 4) for m, p in zip(MOODS, mp)})
                feats.update({f"{EMB_PREFIX}{j}": round(float(v), 4) for j, v in enumerate(rng.normal(0, 0.8, 4))})
                cands.append(Candidate(artwork_id=f"t{t:03d}-a{k}", features=feats))
            catalog[f"t{t:03d}"] = cands
        return catalog

    def _build_feature_space(self) -> None:
        keys = sorted({k for cands in self.titles.values() for c in cands for k in c.features})
        if not keys:
            raise ValueError("candidates carry no features")
        self.keys: list[str] = keys
        self.tag_keys: list[str] = [k for k in keys if not k.startswith(EMB_PREFIX)]
        self._key_index = {k: i for i, k in enumerate(keys)}
        self._tag_mask = np.array([not k.startswith(EMB_PREFIX) for k in keys])
        rows, self._art_title, self._art_ids = [], [], []
        self._title_slices: dict[str, tuple[int, int]] = {}
        self._art_index: dict[tuple[str, str], int] = {}
        for ti, t in enumerate(self.title_ids):
            start = len(rows)
            for c in self.titles[t]:
                self._art_index[(t, c.artwork_id)] = len(rows)
                rows.append([float(c.features.get(k, 0.0)) for k in keys])
                self._art_title.append(ti)
                self._art_ids.append(c.artwork_id)
            self._title_slices[t] = (start, len(rows))
        raw = np.array(rows, dtype=float)
        self._art_title = np.array(self._art_title)
        # Deviations from the title's mean candidate, rescaled per block (tags,
        # embedding dims) to unit RMS: keeps the relative size of keys, so a
        # key that barely varies stays unimportant, but makes look-alike real
        # candidates as distinguishable as synthetic ones.
        title_means = np.zeros((len(self.title_ids), len(keys)))
        np.add.at(title_means, self._art_title, raw)
        counts = np.bincount(self._art_title, minlength=len(self.title_ids))[:, None]
        title_means /= counts
        dev = raw - title_means[self._art_title]
        for mask in (self._tag_mask, ~self._tag_mask):
            if mask.any():
                rms = math.sqrt(float(np.mean(dev[:, mask] ** 2)))
                dev[:, mask] = dev[:, mask] / rms if rms > 1e-9 else 0.0
        self._z = dev
        # Title profile (mean candidate, centred over titles) for the taste
        # match that sets how much a user likes the title whatever the image.
        prof = title_means - title_means.mean(axis=0)
        scale = math.sqrt(float(np.mean(prof**2))) or 1.0
        self._title_profile = prof / scale

    def _build_segments(self, rng: np.random.Generator, n_segments: int) -> None:
        d = len(self.keys)
        genre_keys = [k for k in self.tag_keys if k.startswith("genre:")] or list(self.tag_keys)
        genre_keys = list(rng.permutation(genre_keys))
        segments = []
        centres = np.zeros((n_segments, d))
        for s in range(n_segments):
            # Each segment loves one genre (cycling; a second one once all are
            # taken) and the moods that go with it, dislikes the rest a little.
            centre = rng.normal(0.0, 0.15, d)
            centre[self._tag_mask] -= 0.15
            loved = [genre_keys[s % len(genre_keys)]]
            if s >= len(genre_keys):
                loved.append(genre_keys[(s * 3 + 1) % len(genre_keys)])
            for g in loved:
                centre[self._key_index[g]] = 0.8
                for m in GENRE_MOODS.get(g.split(":", 1)[-1], ()):
                    if f"mood:{m}" in self._key_index:
                        centre[self._key_index[f"mood:{m}"]] += 0.5
            centre[~self._tag_mask] = rng.normal(0.0, 0.5, int((~self._tag_mask).sum()))
            centres[s] = centre
            name = " + ".join(g.split(":", 1)[-1] for g in loved) + " fans"
            segments.append(Segment(name=name, centre={k: float(v) for k, v in zip(self.keys, centre)}, share=0.0))
        shares = rng.dirichlet(np.full(n_segments, 6.0))
        for seg, sh in zip(segments, shares):
            seg.share = float(sh)
        self.segments: list[Segment] = segments
        self._centres = centres
        self._shares = shares

    def _build_population(self, rng: np.random.Generator, n_users: int) -> None:
        d = len(self.keys)
        self.n_users = n_users
        self._user_segment = rng.choice(len(self.segments), size=n_users, p=self._shares)
        self._latent = self._centres[self._user_segment] + rng.normal(0.0, self.taste_noise, (n_users, d))
        tag_idx = np.flatnonzero(self._tag_mask)
        self._observed = self._latent[:, tag_idx] + rng.normal(0.0, self.observation_noise, (n_users, tag_idx.size))
        self._user_ids = [f"u{i:05d}" for i in range(n_users)]
        self._user_index = {u: i for i, u in enumerate(self._user_ids)}
        self._activity = rng.lognormal(0.0, 0.8, n_users)
        self._activity /= self._activity.sum()
        # Countries lean by segment so that context carries some signal too.
        country_pref = rng.dirichlet(np.full(len(COUNTRIES), 1.5), size=len(self.segments))
        self._user_country = np.array(
            [rng.choice(len(COUNTRIES), p=country_pref[s]) for s in self._user_segment]
        )
        self._user_device = rng.choice(len(DEVICES), size=n_users, p=[0.5, 0.35, 0.15])
        popularity = 1.0 / np.arange(1, len(self.title_ids) + 1) ** 0.7
        self._title_pop = rng.permutation(popularity / popularity.sum())
        # A short viewing history, drawn toward titles that match the taste.
        match = self._latent @ self._title_profile.T
        self._history: list[tuple[str, ...]] = []
        for i in range(n_users):
            w = self._title_pop * np.exp(0.5 * (match[i] - match[i].max()))
            k = min(len(self.title_ids), int(rng.integers(1, 6)))
            picks = rng.choice(len(self.title_ids), size=k, replace=False, p=w / w.sum())
            self._history.append(tuple(self.title_ids[j] for j in picks))

    def _build_click_model(self, rng: np.random.Generator, context_strength: float, title_appeal_sd: float) -> None:
        d = len(self.keys)
        # Taste . W . features: mostly "crime fans like crime-looking art",
        # with some cross-talk so the mapping is not the identity.
        self._W = np.eye(d) + rng.normal(0.0, 0.25 / math.sqrt(d), (d, d))
        self._wz = self._z @ self._W.T  # (n_artworks, d): personal term = latent . wz

        def direction(norm: float) -> np.ndarray:
            v = rng.normal(0.0, 1.0, d)
            return v * (norm / np.linalg.norm(v))

        self._universal = self._z @ direction(context_strength)  # some looks please everyone
        self._device_effect = np.stack([self._z @ direction(context_strength) for _ in DEVICES], axis=1)
        late = direction(context_strength)
        for m in ("mood:dark", "mood:scary", "mood:tense"):
            if m in self._key_index:
                late[self._key_index[m]] += context_strength
        self._late_effect = self._z @ late
        self._title_appeal = rng.normal(0.0, title_appeal_sd, len(self.title_ids))
        self._match_weight = 0.15
        self.base = 0.0
        self.gain = 1.0

    # ------------------------------------------------------------------ visits
    def _draw_visits(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        users = rng.choice(self.n_users, size=n, p=self._activity)
        titles = rng.choice(len(self.title_ids), size=n, p=self._title_pop)
        # Mostly the user's own device; evenings are busiest.
        own = rng.random(n) < 0.8
        device = np.where(own, self._user_device[users], rng.integers(0, len(DEVICES), n))
        hour_p = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.3, 0.5, 0.8, 1, 1, 1, 1.2, 1.4, 1.3, 1.2, 1.2, 1.4, 1.8, 2.4,
                           3.0, 3.4, 3.2, 2.6, 1.6])
        hour = rng.choice(24, size=n, p=hour_p / hour_p.sum())
        row = rng.integers(0, N_ROWS, n)
        return {"user": users, "title": titles, "device": device, "hour": hour, "row": row}

    def _context(self, u: int, device: int, hour: int, row: int) -> UserContext:
        taste = {k: round(float(v), 4) for k, v in zip(self.tag_keys, self._observed[u])}
        return UserContext(
            user_id=self._user_ids[u],
            taste=taste,
            history=list(self._history[u]),
            device=DEVICES[device],
            hour=int(hour),
            country=COUNTRIES[self._user_country[u]],
            row=int(row),
        )

    def sample_visit(self, rng: np.random.Generator) -> tuple[UserContext, str]:
        """Draw one visit: a user in context and the title whose artwork must be chosen."""
        return self.sample_visits(rng, 1)[0]

    def sample_visits(self, rng: np.random.Generator, n: int) -> list[tuple[UserContext, str]]:
        """Draw ``n`` visits at once (same distribution as ``sample_visit``, much faster)."""
        v = self._draw_visits(rng, n)
        return [
            (self._context(int(u), int(d), int(h), int(r)), self.title_ids[int(t)])
            for u, t, d, h, r in zip(v["user"], v["title"], v["device"], v["hour"], v["row"])
        ]

    def eval_visits(self) -> list[Visit]:
        """The fixed seeded visit sample that exact policy values average over."""
        if self._eval_contexts is None:
            e = self._eval
            self._eval_contexts = [
                Visit(self._context(int(u), int(d), int(h), int(r)), self.title_ids[int(t)], int(u))
                for u, t, d, h, r in zip(e["user"], e["title"], e["device"], e["hour"], e["row"])
            ]
        return self._eval_contexts

    # ------------------------------------------------------------------ click model
    def _logit_parts(self, users: np.ndarray, titles: np.ndarray, arts: np.ndarray, device: np.ndarray,
                     hour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The logit minus ``base`` split as (rest, personal): logit = base + rest + gain * personal."""
        late = ((hour >= 21) | (hour < 2)).astype(float)
        personal = np.einsum("ij,ij->i", self._latent[users], self._wz[arts])
        match = np.einsum("ij,ij->i", self._latent[users], self._title_profile[titles])
        noise = _hash_normal(self.seed, users, arts)
        rest = (
            self._title_appeal[titles]
            + self._match_weight * match
            + self._universal[arts]
            + self._device_effect[arts, device]
            + late * self._late_effect[arts]
            + self.idiosyncratic_noise * noise
        )
        return rest, personal

    def _lookup(self, user: UserContext, title_id: str, artwork_id: str) -> tuple[int, int, int]:
        try:
            u = self._user_index[user.user_id]
        except KeyError:
            raise KeyError(f"user {user.user_id!r} is not part of this simulated audience") from None
        try:
            a = self._art_index[(title_id, artwork_id)]
        except KeyError:
            raise KeyError(f"artwork {artwork_id!r} is not a candidate of title {title_id!r}") from None
        return u, int(self._art_title[a]), a

    def click_probability(self, user: UserContext, title_id: str, artwork_id: str) -> float:
        """True probability that ``user`` clicks ``title_id`` when shown ``artwork_id``."""
        u, t, a = self._lookup(user, title_id, artwork_id)
        dev = DEVICES.index(user.device) if user.device in DEVICES else 0
        hour = user.hour if user.hour is not None else 20
        rest, personal = self._logit_parts(np.array([u]), np.array([t]), np.array([a]), np.array([dev]),
                                           np.array([hour]))
        return float(sigmoid(self.base + rest[0] + self.gain * personal[0]))

    def click_probabilities(self, user: UserContext, title_id: str) -> dict[str, float]:
        """True click probability of every candidate of ``title_id`` for ``user``."""
        try:
            u = self._user_index[user.user_id]
        except KeyError:
            raise KeyError(f"user {user.user_id!r} is not part of this simulated audience") from None
        start, stop = self._title_slices[title_id]
        arts = np.arange(start, stop)
        n = arts.size
        dev = DEVICES.index(user.device) if user.device in DEVICES else 0
        hour = user.hour if user.hour is not None else 20
        rest, personal = self._logit_parts(np.full(n, u), self._art_title[arts], arts, np.full(n, dev),
                                           np.full(n, hour))
        p = sigmoid(self.base + rest + self.gain * personal)
        return {self._art_ids[a]: float(x) for a, x in zip(arts, p)}

    def click(self, rng: np.random.Generator, user: UserContext, title_id: str, artwork_id: str) -> float:
        """Draw a click (1.0) or no click (0.0) from the true click probability."""
        return float(rng.random() < self.click_probability(user, title_id, artwork_id))

    # ------------------------------------------------------------------ exact values
    def _eval_parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Logit parts on the eval sample, padded to (n_eval, max_k): rest, personal, mask, rows."""
        if self._eval_cache is None:
            e = self._eval
            bounds = np.array([self._title_slices[t] for t in self.title_ids])
            starts = bounds[e["title"], 0]
            sizes = bounds[e["title"], 1] - starts
            mask = np.arange(int(sizes.max()))[None, :] < sizes[:, None]
            rows, cols = np.nonzero(mask)
            rest_v, pers_v = self._logit_parts(e["user"][rows], e["title"][rows], starts[rows] + cols,
                                               e["device"][rows], e["hour"][rows])
            rest = np.zeros(mask.shape)
            pers = np.zeros(mask.shape)
            rest[rows, cols] = rest_v
            pers[rows, cols] = pers_v
            self._eval_cache = (rest, pers, mask)
        return self._eval_cache

    def _eval_matrix(self, base: float | None = None, gain: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Click probabilities on the eval sample, (n_eval, max_k) with NaN padding, and the mask."""
        rest, pers, mask = self._eval_parts()
        base = self.base if base is None else base
        gain = self.gain if gain is None else gain
        p = sigmoid(base + rest + gain * pers)
        return np.where(mask, p, np.nan), mask

    def _values(self, p: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
        uniform = float(np.nanmean(p, axis=1).mean())
        oracle = float(np.nanmax(p, axis=1).mean())
        # Best fixed: per title, the artwork with the highest total clicks over its visits.
        titles = self._eval["title"]
        sums = np.zeros((len(self.title_ids), p.shape[1]))
        np.add.at(sums, titles, np.where(mask, p, 0.0))
        padded = np.zeros_like(sums, dtype=bool)
        np.logical_or.at(padded, titles, ~mask)
        fixed_total = float(np.where(padded, -np.inf, sums).max(axis=1)[np.unique(titles)].sum())
        return uniform, fixed_total / len(titles), oracle

    def _calibrate(self) -> dict[str, float]:
        # Nested bisection: for a given gain, the base that gives target_ctr
        # under uniform choice; then the gain that gives the target
        # best-fixed/oracle ratio (the ratio falls as the gain grows).
        def base_for(gain: float) -> float:
            lo, hi = -200.0, 10.0  # wide: a strong taste gain needs a very negative base
            for _ in range(40):
                mid = 0.5 * (lo + hi)
                p, _ = self._eval_matrix(mid, gain)
                if np.nanmean(p, axis=1).mean() < self.target_ctr:
                    lo = mid
                else:
                    hi = mid
            return 0.5 * (lo + hi)

        def ratio_for(gain: float) -> tuple[float, float]:
            b = base_for(gain)
            _, fixed, oracle = self._values(*self._eval_matrix(b, gain))
            return fixed / oracle, b

        lo, hi = 0.0, 2.0
        r_hi, b_hi = ratio_for(hi)
        # Grow the bracket: catalogs whose segments' favourite looks are rare need a larger gain.
        while r_hi > self.target_fixed_ratio and hi < 32.0:
            lo, hi = hi, 2.0 * hi
            r_hi, b_hi = ratio_for(hi)
        if r_hi > self.target_fixed_ratio:
            # The catalog's candidates are too alike to reach the target: use
            # the strongest gain and report the ratio actually reached.
            self.gain, self.base = hi, b_hi
        else:
            for _ in range(24):
                mid = 0.5 * (lo + hi)
                r, _ = ratio_for(mid)
                if r > self.target_fixed_ratio:
                    lo = mid
                else:
                    hi = mid
            self.gain = hi
            self.base = base_for(hi)
        uniform, fixed, oracle = self._values(*self._eval_matrix())
        return {"gain": self.gain, "base": self.base, "uniform_value": uniform, "best_fixed_value": fixed,
                "oracle_value": oracle, "fixed_ratio": fixed / oracle}

    def uniform_value(self) -> float:
        """Expected click rate when a candidate is picked uniformly at random."""
        return self._values(*self._eval_matrix())[0]

    def best_fixed_value(self) -> float:
        """Expected click rate of showing every user the single best artwork of each title."""
        return self._values(*self._eval_matrix())[1]

    def oracle_value(self) -> float:
        """Expected click rate of showing each user, in context, their own best artwork."""
        return self._values(*self._eval_matrix())[2]

    def best_fixed_artworks(self) -> dict[str, str]:
        """The single best artwork of each title (over the eval sample's audience)."""
        p, _ = self._eval_matrix()
        titles = self._eval["title"]
        out = {}
        for t in np.unique(titles):
            k = int(np.nanargmax(np.nanmean(p[titles == t], axis=0)))
            tid = self.title_ids[int(t)]
            out[tid] = self.titles[tid][k].artwork_id
        return out

    def policy_value(self, distribution_fn: DistributionFn) -> float:
        """Exact expected click rate of a policy, averaged over the fixed eval sample.

        ``distribution_fn(user, title_id, candidates)`` returns the policy's
        probabilities over the candidates (mapping, aligned sequence, pairs,
        or a Decision-like object with ``.distribution``).  No clicks are
        drawn: the value is sum_a pi(a|x) p(click|x,a), so two policies can be
        compared without sampling noise from rewards.
        """
        p, _ = self._eval_matrix()
        total = 0.0
        for i, visit in enumerate(self.eval_visits()):
            cands = self.titles[visit.title_id]
            probs = _as_probabilities(distribution_fn(visit.user, visit.title_id, cands), cands)
            total += float(probs @ p[i, : len(cands)])
        return total / len(self._eval["user"])

    def expected_reward(self, user: UserContext, title_id: str, distribution: Any) -> float:
        """Expected click probability of one visit under a given distribution over candidates."""
        cands = self.titles[title_id]
        probs = _as_probabilities(distribution, cands)
        return float(sum(pr * self.click_probability(user, title_id, c.artwork_id) for pr, c in zip(probs, cands)))

    def segment_of(self, user: UserContext) -> str:
        """Name of the hidden segment a simulated user belongs to (for reports only)."""
        return self.segments[int(self._user_segment[self._user_index[user.user_id]])].name

    def summary(self) -> dict[str, Any]:
        """Catalog size, segments and calibration, for reports."""
        return {
            "seed": self.seed,
            "synthetic": self.synthetic,
            "n_titles": len(self.title_ids),
            "n_artworks": len(self._art_ids),
            "n_users": self.n_users,
            "n_eval": int(len(self._eval["user"])),
            "segments": [{"name": s.name, "share": round(s.share, 4)} for s in self.segments],
            "calibration": {k: round(float(v), 6) for k, v in self.calibration.items()},
        }
