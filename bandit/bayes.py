"""The default personalised policy: per-artwork click counts plus a personal residual, chosen by
Thompson sampling.

Why not importance-weighted regression (VW `cb_explore_adf`)? On audiences we did not write, it
lost to per-title Thompson sampling: 1/p weights from tiny propensities swamp the model, and the
per-artwork main effect is learned slowly through the same weights as every personal term. Here
the model is hierarchical by construction, so it starts as a per-title bandit and personalises
only as far as the data supports it:

    score(user, title, artwork) =   offset(artwork)                   "which image wins for everyone"
                                  + match(user, artwork)              "Ann's fans click Ann's face"
                                  + personal(artwork, user)           per-artwork linear model of the user
                                  + user features x artwork features  "crime fans click dark images"
    p(click) = Phi(score / beta)

The offset is the artwork's own click rate, from exact counts (clicks, impressions) shrunk toward
its title's rate, which is shrunk toward the catalog's: a Beta posterior, mapped to the probit
scale with its variance (delta method). Counts are order-free sufficient statistics, so a run of
early misses cannot bury an artwork the way it can bury an online-learned intercept. When
choosing (never when learning), decisions still waiting for their outcome count as impressions
without a click (`bandit.pending`): a click is learned at once but a miss only when its window
closes, so without them the first window's counts hold clicks alone and read every artwork high.

The personal term is, per artwork, a ridge regression of its outcomes on the user's features with
its own intercept: from exact sufficient statistics (n, sum x, sum y, sum x x^T, sum x y), so it
is order-free like the counts (a click learned before the misses that preceded it gives the same
model) and a corrected reward moves it exactly. Its prediction at user x is the artwork's rate
plus slope . (x - the mean x of the users it was shown to), mapped to the probit scale. It
replaced an artwork x user-feature group learned by diagonal ADF, which ignored how user features
co-vary and learned 2-4x less of the reachable gap in the worlds (`scripts/bench_learning.py`).

The match term meets each taste key with the same tag key on the artwork: for each kind in
`match_kinds` (actor, genre, mood), the sum over keys of (the user's taste for "actor:Ann" - the
audience's mean taste for it) x the artwork's "actor:Ann" score. One weight per kind, learned by
assumed density filtering like the shared weights and pooled over every title and artwork: what
Ann's fans did on two titles carries to a third that no fan has been shown yet. It is outside the
guard below: three weights, each with its own posterior, stay near 0 where tastes do not predict
clicks and need no proof that personalising pays. In the `actors` world with fans who name their
star (`scripts/bench_fans.py`) it is what shows fans their star's close-up; without it the policy
does not learn that at all (README, "Fans").

Taste segments make the personal term learn faster. Its features are the user's (context one-hots and
taste) plus a one-hot of the user's taste segment: k-means (`segments`, 8) of the taste vectors of
the users of the first `segment_after` learned outcomes, fitted once without looking at clicks and
then fixed (a refit would change what every artwork's statistics mean). A segment is one feature
where the taste behind it is spread over many noisy keys, so an artwork learns "this segment
clicks me" from fewer outcomes than the same from each key. Learned from perfectly explored pages
(`scripts/bench_learnability.py` settings), it closed +4 to +9 points more of the gap in the
cluster worlds and cost 3-5 points where tastes carry nothing (`cold`, `actors`); online see the
README's learning table.

The shared weights (user features x artwork features) carry what an artwork's own data cannot
yet say (new artworks, rare users); they have independent Gaussian posteriors (mean, variance),
updated once per outcome by assumed density filtering on the probit likelihood with the offset
as a known baseline (as in Graepel et al. 2010, "Web-scale Bayesian click-through rate
prediction"). User and artwork feature vectors are normalised per block, so the prior variance is
the share of the score the group may explain a priori.
When an artwork's appeal changes, the counts would follow only as fast as new outcomes outweigh
old ones; a change detector (`_watch`) restarts the title instead: each outcome is compared with
what the model predicted when it learned it (scaled by the catalog's ratio at that hour, so the
day's cycle is not a change), and when an artwork's recent ratio of observed to predicted clicks
parts from its older one by `change_z`, the artwork keeps only its recent outcomes and the
title's other artworks lose confidence, so Thompson sampling looks at them again. (`forget` > 0 decays every count at a fixed rate instead; off by default: it cost more in
stationary worlds than it gained where appeal drifts.) User features are centred on the average learned-from user, and the residual enters
the scores only as far as it has out-earned the counts off-policy (`gate_weight`).

Choosing: Thompson sampling. The candidates' scores are jointly Gaussian (shared weights make
them correlated), so P(candidate k has the highest sampled score) is estimated from a fixed,
seeded bank of standard-normal draws: a pure function of the posterior, which `choose` then
samples from, so the logged propensity is exactly the probability the choice was made with.

Feature indices are hashed (crc32, stable across processes) into one table per group.
"""

from __future__ import annotations

import io
import json
import math
import os
import threading
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar
from statistics import NormalDist
from zlib import crc32

import numpy as np
from scipy.cluster.vq import kmeans2
from scipy.special import ndtri  # the probit, vectorised

from bandit.features import EMB_PREFIX, Candidate, UserContext
from bandit.pending import Pending
from bandit.policy import (BasePolicy, PolicyError, PolicyState, Restart, _check_learn_args, atomic_write_bytes,
                           hour_bucket)

__all__ = ["BayesConfig", "BayesPolicy", "user_features", "art_features"]

_FORMAT = 5  # 5: + change detection (4: + taste-meets-tag match weights (3: + taste segments; 2: per-artwork linear personal term; 1: hashed ADF group; replayed from the log)
_NORMAL = NormalDist()
_SEGMENT_KEYS = 32  # taste keys per sampled user that the segments are fitted from
_HOUR_PRIOR = 20.0  # predicted clicks at the all-day ratio in each hour's observed/predicted ratio (see `_watch`)
_RESTARTS_KEPT = 100  # restarts listed in a snapshot (all are counted)
_MATCH_KEYS = 4096  # taste keys whose audience mean the match term centres on (later keys: mean 0)
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_K1, _K2, _K3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9)

# Hashed weight groups learned by ADF: user features x artwork features.
_GROUPS = ("shared",)


@dataclass
class BayesConfig:
    """Priors and sizes; stored with the model so `load` rebuilds the same thing.

    Prior variances are in probit units of the score (a 5% -> 8% click rate is +0.24).
    """

    prior_rate: float = 0.05  # catalog click rate before any outcome
    title_strength: float = 20.0  # pseudo-impressions of the catalog rate in a title's rate
    art_strength: float = 20.0  # pseudo-impressions of the title rate in an artwork's rate
    ridge: float = 30.0  # pseudo-observations pulling each artwork's personal slope to 0
    personal_dims: int = 64  # user feature slots in the personal term (the first keys learned from)
    segments: int = 8  # taste segments in the personal term (k-means of learned-from users' tastes); 0 = none
    segment_weight: float = 0.5  # the segment one-hot's value among the personal features (its prior share)
    segment_after: int = 2000  # learned outcomes whose users' tastes the segments are fitted from, once
    prior_shared: float = 0.3  # user features x artwork features
    match_kinds: tuple[str, ...] = ("actor", "genre", "mood")  # taste "kind:x" meets tag "kind:x"; () = off
    prior_match: float = 0.5  # prior variance of each kind's match weight
    beta: float = 1.0  # probit noise: larger = each outcome moves the residual less
    forget: float = 0.0  # per update of a title, its counts decay by this share (0 = stationary)
    change_z: float = 3.5  # restart a title when an artwork's recent observed/predicted ratio parts from its older one this far (0 = never)
    change_window: float = 500.0  # the mean age, in the artwork's impressions, of the recent outcomes in that test
    n_draws: int = 1000  # Thompson draws per distribution estimate
    floor: float = 0.0  # mix in this share of uniform exploration (0: pure Thompson)
    gate: bool = True  # use the residual only as far as it has earned more than counts alone (`gate_weight`)
    gate_shift: float = 1.0  # the z a residual must reach to get half weight
    gate_clip: float = 20.0  # largest inverse propensity in that evidence
    bits: int = 18  # hash table size per group (2**bits weights)
    max_user_keys: int = 512  # distinct user feature keys the residual learns (later ones are ignored)
    seed: int = 0
    name: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.prior_rate < 1.0:
            raise ValueError(f"prior_rate must be in (0, 1), got {self.prior_rate}")
        for f in ("title_strength", "art_strength", "ridge", "prior_shared", "prior_match", "beta"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{f} must be a finite number > 0, got {v!r}")
        if not 0.0 <= self.forget < 1.0:
            raise ValueError(f"forget must be in [0, 1), got {self.forget}")
        if not (self.change_z == 0.0 or 3.0 <= self.change_z <= 50.0):
            raise ValueError(f"change_z must be 0 (off) or 3..50, got {self.change_z}")
        if not 10.0 <= self.change_window <= 100_000.0:
            raise ValueError(f"change_window must be 10..100000, got {self.change_window}")
        if not 0.0 <= self.floor < 1.0:
            raise ValueError(f"floor must be in [0, 1), got {self.floor}")
        if not 16 <= self.n_draws <= 100_000:
            raise ValueError(f"n_draws must be 16..100000, got {self.n_draws}")
        if not 1 <= self.personal_dims <= 256:
            raise ValueError(f"personal_dims must be 1..256, got {self.personal_dims}")
        if not 0 <= self.segments <= 32:
            raise ValueError(f"segments must be 0..32, got {self.segments}")
        if not (isinstance(self.segment_weight, (int, float)) and math.isfinite(self.segment_weight)
                and self.segment_weight > 0):
            raise ValueError(f"segment_weight must be a finite number > 0, got {self.segment_weight!r}")
        if not max(50, 4 * self.segments) <= self.segment_after <= 1_000_000:
            raise ValueError(f"segment_after must be {max(50, 4 * self.segments)}..1000000, got {self.segment_after}")
        if not 8 <= self.bits <= 24:
            raise ValueError(f"bits must be 8..24, got {self.bits}")
        if isinstance(self.match_kinds, str) or not isinstance(self.match_kinds, (list, tuple)):
            raise ValueError(f"match_kinds must be a list of tag kinds such as 'actor', got {self.match_kinds!r}")
        self.match_kinds = tuple(self.match_kinds)
        if (len(self.match_kinds) > 8 or len(set(self.match_kinds)) != len(self.match_kinds)
                or not all(isinstance(k, str) and k and ":" not in k for k in self.match_kinds)):
            raise ValueError(f"match_kinds must be up to 8 distinct tag kinds without ':', got {self.match_kinds!r}")

    def prior(self, group: str) -> float:
        return float(getattr(self, f"prior_{group}"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BayesConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ---------------------------------------------------------------------------------------------
# Features (pure functions: the same inputs give the same keys and values in every process)
# ---------------------------------------------------------------------------------------------


def _block(items: Sequence[tuple[str, float]], norm: float) -> list[tuple[str, float]]:
    total = math.sqrt(math.fsum(v * v for _, v in items))
    if total <= 0.0:
        return []
    return [(k, v * norm / total) for k, v in items]


def user_features(user: UserContext) -> list[tuple[str, float]]:
    """The user's feature vector: context one-hots and taste, each block scaled to norm 1/sqrt(2).

    Per-block norms keep a user with 40 taste keys and a cold user on the same scale, so the
    prior variance of a personal group means the same for both.
    """
    ctx = [("device=" + user.device, 1.0)] if user.device is not None else []
    if user.hour is not None:
        ctx.append(("hour=" + hour_bucket(user.hour), 1.0))
    if user.country is not None:
        ctx.append(("country=" + user.country, 1.0))
    if user.row is not None:
        ctx.append(("row=" + (str(user.row) if user.row < 5 else "5+"), 1.0))
    taste = [("taste:" + k, v) for k, v in user.taste.items() if v != 0.0] or [("taste=none", 1.0)]
    half = math.sqrt(0.5)
    return _block(ctx, half) + _block(taste, half if ctx else 1.0)


def art_features(c: Candidate) -> list[tuple[str, float]]:
    """The artwork's feature vector: tag scores and embedding dims, each block scaled to norm 1/sqrt(2)."""
    tags = [(k, v) for k, v in c.features.items() if v != 0.0 and not k.startswith(EMB_PREFIX)]
    emb = [(k, v) for k, v in c.features.items() if v != 0.0 and k.startswith(EMB_PREFIX)]
    if tags and emb:
        return _block(tags, math.sqrt(0.5)) + _block(emb, math.sqrt(0.5))
    return _block(tags or emb, 1.0)


def _h(s: str) -> int:
    return crc32(s.encode("utf-8", "surrogatepass"))


def _mix(a: np.ndarray, b: np.ndarray, salt: int, mask: int) -> np.ndarray:
    """Hash two uint64 key arrays (broadcast) into table indices."""
    with np.errstate(over="ignore"):
        x = a.astype(np.uint64) * _K1 + b.astype(np.uint64) * _K2 + np.uint64(salt) * _K3
        x ^= x >> np.uint64(29)
        x = x * _K1
        x ^= x >> np.uint64(32)
    return (x & np.uint64(mask)).astype(np.intp)


def _probit_moments(m: float, v: float, r: float, beta: float) -> tuple[float, float]:
    """(d log Z / dm, d^2 log Z / dm^2) for score ~ N(m, v) and likelihood r Phi(s/b) + (1-r) Phi(-s/b).

    r = 1 (click) and r = 0 (no click) are the usual probit ADF update; a fractional reward is the
    mixture, so a 0.3 reward moves the posterior 0.3 of the way a click would, in log-odds terms.
    """
    s = math.sqrt(beta * beta + v)
    t = m / s
    pdf = math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)
    up, down = 0.5 * math.erfc(-t / math.sqrt(2.0)), 0.5 * math.erfc(t / math.sqrt(2.0))
    z = r * up + (1.0 - r) * down
    if z < 1e-300:  # far in a tail: the asymptotic Mills ratio, so no 0/0
        g = (2.0 * r - 1.0) * abs(t) / s
        return g, -1.0 / (s * s)
    g = (2.0 * r - 1.0) * pdf / (s * z)
    h = (2.0 * r - 1.0) * (-t * pdf) / (s * s * z) - g * g
    return g, max(h, -1.0 / (s * s))  # |h| <= 1/s^2 keeps variances positive


def _hour_slot(hour: int | None) -> int:
    """The hour's slot in `hour_ratio`: 0-23, or 24 when the request named no hour."""
    return hour if hour is not None and 0 <= hour < 24 else 24


def change_statistic(obs_new: float, pred_new: float, var_new: float,
                     obs_old: float, pred_old: float, var_old: float) -> float:
    """Signed root deviance for "the ratio of observed to predicted clicks has changed": two
    Poisson samples (recent, older) against their common ratio, each part's deviance rescaled from
    a Poisson variance to its sums' actual one (`var_*`: sums of w^2 p (1 - p)). About N(0, 1)
    while the ratio holds, negative when the recent outcomes fall short, and skewed as counts are:
    a burst of a rare image's clicks is not a change too early (14 clicks where the ratio says 4
    gives +3.9; a normal approximation would say +5.1)."""
    if min(pred_new, pred_old, var_new, var_old) <= 0.0:
        return 0.0
    ratio = max(obs_new + obs_old, 0.0) / (pred_new + pred_old)
    if ratio <= 0.0:
        return 0.0

    def dev(obs: float, pred: float, var: float) -> float:
        mu = ratio * pred
        d = obs * math.log(obs / mu) - (obs - mu) if obs > 0.0 else mu
        return 2.0 * d * pred / var

    total = dev(obs_new, pred_new, var_new) + dev(max(obs_old, 0.0), pred_old, var_old)
    return math.copysign(math.sqrt(max(total, 0.0)), obs_new / pred_new - max(obs_old, 0.0) / pred_old)


class _ArmStats:
    """One artwork's outcomes against its viewers' features: exact, order-free sufficient statistics."""

    __slots__ = ("n", "sx", "sy", "sxx", "sxy", "version", "_fit")

    def __init__(self, dims: int) -> None:
        self.n, self.sy = 0.0, 0.0
        self.version = 0  # bumped on every change: what caches of the fit compare
        self.sx, self.sxy = np.zeros(dims), np.zeros(dims)
        self.sxx = np.zeros((dims, dims))
        self._fit: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, x: np.ndarray, y: float, weight: float = 1.0) -> None:
        self.n += weight
        self.sx += weight * x
        self.sy += weight * y
        self.sxx += weight * np.outer(x, x)
        self.sxy += weight * y * x
        self._fit = None
        self.version += 1

    def correct(self, x: np.ndarray, delta: float) -> None:
        """The outcome of a user with features x changed by delta (a late click, an upgrade)."""
        self.sy += delta
        self.sxy += delta * x
        self._fit = None
        self.version += 1

    def scale(self, keep: float) -> None:
        self.n *= keep
        self.sy *= keep
        self.sx *= keep
        self.sxy *= keep
        self.sxx *= keep
        self._fit = None
        self.version += 1

    def fit(self, ridge: float) -> tuple[np.ndarray, np.ndarray]:
        """(slope, centre): ridge regression with an unpenalised intercept, on centred features."""
        if self._fit is None:
            centre = self.sx / self.n
            cov = self.sxx - self.n * np.outer(centre, centre)
            cross = self.sxy - centre * self.sy
            cov.flat[::cov.shape[0] + 1] += ridge  # the diagonal, without building index arrays
            self._fit = (np.linalg.solve(cov, cross), centre)
        return self._fit


class BayesPolicy(BasePolicy):
    """Per-artwork counts + Bayesian personal residual, Thompson sampling (see the module docstring)."""

    kind: ClassVar[str] = "bayes"
    file_suffix: ClassVar[str] = "bayes"

    @classmethod
    def create(cls, seed: int = 0, **options: Any) -> BayesPolicy:
        return cls(BayesConfig(seed=seed, **options))

    def __init__(self, config: BayesConfig | None = None, **kwargs: Any) -> None:
        if config is None:
            config = BayesConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a BayesConfig or keyword options, not both")
        super().__init__(config.seed)
        self.config = config
        self.name = config.name or "bayes-ts"
        size = 1 << config.bits
        self._mask = size - 1
        self._salt = {g: i + 1 for i, g in enumerate(_GROUPS)}
        self.mean = {g: np.zeros(size) for g in _GROUPS}
        self.var = {g: np.full(size, config.prior(g)) for g in _GROUPS}
        # title_id -> artwork_id -> [clicks, impressions] (fractional: rewards and decay)
        self.counts: dict[str, dict[str, list[float]]] = {}
        self.totals = [0.0, 0.0]  # catalog-wide [clicks, impressions]
        # title_id -> artwork_id -> the personal term's statistics
        self.arms: dict[str, dict[str, _ArmStats]] = {}
        # Off-policy evidence that personalising pays, per rule (0: counts + residual, 1: counts
        # alone) over the outcomes where the rules disagree: sums of w, w r, w^2, w^2 r, w^2 r^2.
        # IPS difference between "best by counts + residual" and "best by counts alone".
        self.evidence = [0.0] * 10
        self._lock = threading.RLock()
        self._bank: dict[int, np.ndarray] = {}  # purpose -> standard-normal rows (n_draws columns)
        self._title_cache: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
        self._user_cache: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._user_cache_items = 0
        # User feature keys seen so far, in order (their slot), and the running mean user vector.
        self._user_keys: dict[str, int] = {}
        self._user_hash = np.zeros(0, dtype=np.uint64)
        self.user_mean = np.zeros(0)
        self.users_seen = 0.0
        self._key_cache: dict[str, int] = {}
        # Taste segments (see the module docstring): until fitted, the tastes they are fitted from.
        self._dims = config.personal_dims + config.segments
        self._segment_sample: list[dict[str, float]] | None = [] if config.segments else None
        self.segment_keys: list[str] = []
        self._segment_index: dict[str, int] = {}
        self.segment_centres = np.zeros((0, 0))
        self.segment_mean = np.zeros(0)
        self._fit_cache: dict[tuple[str, tuple[str, ...]], Any] = {}
        self.cache_limit = 50_000
        # Taste meets tag (see `_match`): one weight per kind, and the audience's mean taste per key.
        self.match_mean = np.zeros(len(config.match_kinds))
        self.match_var = np.full(len(config.match_kinds), config.prior_match)
        self._taste_slots: dict[str, int] = {}
        self.taste_mean = np.zeros(0)
        # Change detection (see `_watch`): title_id -> artwork_id -> observed and predicted clicks,
        # recent (decayed per impression) and since the last restart.
        self.recent: dict[str, dict[str, list[float]]] = {}
        self.hour_ratio = [[0.0, 0.0] for _ in range(25)]  # per hour (24: unknown): observed, predicted clicks
        self.restarts = 0
        self.last_restarts: list[dict[str, Any]] = []  # the latest `_RESTARTS_KEPT`, oldest first

    # -- feature arrays ------------------------------------------------------------------------
    def _key(self, s: str) -> int:
        h = self._key_cache.get(s)
        if h is None:
            if len(self._key_cache) >= self.cache_limit:
                self._key_cache.clear()
            h = self._key_cache[s] = _h(s)
        return h

    def _user(self, user: UserContext) -> tuple[np.ndarray, np.ndarray, int]:
        """(positions in the known user-key table, values, taste segment or -1) of the user's
        features (cached)."""
        key = (user.device, user.hour, user.country, user.row, tuple(user.taste.items()))
        hit = self._user_cache.get(key)
        if hit is None:
            every = user_features(user)
            segment = self._segment_of(every) if self.segment_centres.shape[0] else -1
            feats = [(k, v) for k, v in every if k in self._user_keys]
            # Bounded by entries and by the taste items they hold (a taste has up to 256 keys).
            if len(self._user_cache) >= self.cache_limit or self._user_cache_items > 20 * self.cache_limit:
                self._user_cache.clear()
                self._user_cache_items = 0
            self._user_cache_items += len(user.taste) + 1
            hit = self._user_cache[key] = (
                np.array([self._user_keys[k] for k, _ in feats], dtype=np.intp),
                np.array([v for _, v in feats], dtype=float),
                segment,
            )
        return hit

    def _segment_of(self, feats: Sequence[tuple[str, float]]) -> int:
        """The nearest segment centre to the taste part of a user's features."""
        v = -self.segment_mean  # a new array: the mean is not changed
        for k, val in feats:
            i = self._segment_index.get(k)
            if i is not None:
                v[i] += val
        return int(np.argmin(((self.segment_centres - v[None, :]) ** 2).sum(axis=1)))

    def _fit_segments(self) -> None:
        """k-means of the sampled tastes, seeded by the policy's seed: the same sample gives the
        same segments in every process (a replayed log refits them identically)."""
        sample = self._segment_sample or []
        keys = sorted({k for taste in sample for k in taste})  # sorted: a saved sample's dicts come back key-sorted
        index = {k: i for i, k in enumerate(keys)}
        x = np.zeros((len(sample), len(keys)))
        for r, taste in enumerate(sample):
            for k, v in taste.items():
                x[r, index[k]] = v
        mean = x.mean(axis=0) if len(sample) else np.zeros(0)
        k = min(self.config.segments, len(np.unique(x, axis=0)) if len(sample) else 0)
        if k >= 1:
            with warnings.catch_warnings():  # an empty cluster is kept as is: it wins no user
                warnings.simplefilter("ignore")
                centres, _ = kmeans2(x - mean, k, seed=np.random.default_rng([self.seed, 0x5E6]), minit="++")
        else:
            centres = np.zeros((1, len(keys)))
        self.segment_keys, self._segment_index = keys, index
        self.segment_centres, self.segment_mean = np.asarray(centres, dtype=float), mean
        self._segment_sample = None
        self._user_cache.clear()  # cached users were resolved without a segment
        self._user_cache_items = 0

    def _admit(self, user: UserContext) -> None:
        """Give the user's feature keys a slot, when learning from them (never when only serving).

        A key nobody has learned from has no weights yet, so serving may ignore it; admitting keys
        only here keeps requests from growing the table (and every title's index cache with it).
        """
        fresh = False
        for k, _v in user_features(user):
            if k not in self._user_keys and len(self._user_keys) < self.config.max_user_keys:
                self._user_keys[k] = len(self._user_keys)
                self._user_hash = np.append(self._user_hash, np.uint64(self._key(k)))
                self.user_mean = np.append(self.user_mean, 0.0)
                fresh = True
        if fresh:  # cached users were resolved without the new keys
            self._user_cache.clear()
            self._user_cache_items = 0

    def _title(self, title_id: str, cands: Sequence[Candidate]) -> dict[str, Any]:
        """Per candidate set: artwork keys, the artwork-feature matrix V and its keys (cached)."""
        key = (title_id, tuple(c.artwork_id for c in cands))
        hit = self._title_cache.get(key)
        # Identity first (Candidate owns its dict), equality second: re-tagged artworks rebuild.
        if hit is not None and all(a is c.features or a == c.features for a, c in zip(hit["features"], cands)):
            return hit
        if len(self._title_cache) >= self.cache_limit:
            self._title_cache.clear()
        arts = [art_features(c) for c in cands]
        keys: dict[str, int] = {}
        for feats in arts:
            for k, _v in feats:
                keys.setdefault(k, len(keys))
        vmat = np.zeros((len(cands), len(keys)))
        for i, feats in enumerate(arts):
            for k, v in feats:
                vmat[i, keys[k]] = v
        kind_of = {k: i for i, k in enumerate(self.config.match_kinds)}
        mkeys = [k for k in keys if k.split(":", 1)[0] in kind_of and ":" in k]
        ma = np.zeros((len(cands), len(mkeys)))
        for i, c in enumerate(cands):
            for j, k in enumerate(mkeys):
                ma[i, j] = c.features.get(k, 0.0)  # the raw tag score: a confidence, not a block share
        monehot = np.zeros((len(mkeys), len(kind_of)))
        monehot[np.arange(len(mkeys)), [kind_of[k.split(":", 1)[0]] for k in mkeys]] = 1.0
        hit = self._title_cache[key] = {
            "key": key,
            "mkeys": mkeys,
            "ma": ma,
            "monehot": monehot,
            "n_taste_slots": -1,  # `_match` maps mkeys to the mean-taste slots when that changes
            "features": [c.features for c in cands],
            "ids": [c.artwork_id for c in cands],
            "ha": np.array([self._key(title_id + "\x00" + c.artwork_id) for c in cands], dtype=np.uint64),
            "hv": np.array([self._key(k) for k in keys], dtype=np.uint64),
            "v": vmat,
        }
        return hit

    def _user_part(self, user: UserContext) -> tuple[Any, ...]:
        """What the scores need of the user, for any title: (key hashes, centred vector, x) for the
        residual, and (centred taste by mean-taste slot, taste keys without a slot) for the match."""
        pos, vals, segment = self._user(user)
        # Centred on the average learned-from user: that keeps the residual a residual. Averaged
        # over the audience it is zero for every artwork, so it cannot hold a copy of an artwork's
        # overall appeal (which the counts already hold, and which would then be counted twice).
        u = -self.user_mean.copy()
        u[pos] += vals
        hu = self._user_hash
        keep = pos < self.config.personal_dims
        x = np.zeros(self._dims)
        x[pos[keep]] = vals[keep]
        if segment >= 0:
            x[self.config.personal_dims + segment] = self.config.segment_weight
        return hu, u, x, *self._taste_part(user)

    def _taste_part(self, user: UserContext) -> tuple[np.ndarray, dict[str, float]]:
        """The user's match-kind tastes, clipped to [-1, 1] and centred on the audience's mean, by
        mean-taste slot (one trailing 0 for keys without one), and those without a slot by key:
        one pass over the user's tastes per page, so each title only gathers."""
        slots, kinds = self._taste_slots, self.config.match_kinds
        tv = np.zeros(len(slots) + 1)
        tv[:-1] -= self.taste_mean
        free: dict[str, float] = {}
        if kinds:
            for k, v in user.taste.items():
                slot = slots.get(k)
                if slot is not None:
                    tv[slot] += min(max(v, -1.0), 1.0)
                elif k.split(":", 1)[0] in kinds:
                    free[k] = min(max(v, -1.0), 1.0)
        return tv, free

    def _design(self, user: UserContext, title_id: str, cands: Sequence[Candidate],
                part: tuple[Any, ...] | None = None) -> dict[str, Any]:
        """Indices and values of every residual weight that scores these candidates for this user
        (`part`: the user's `_user_part`, when a page shares it across titles)."""
        hu, u, x, tv, free = self._user_part(user) if part is None else part
        t = self._title(title_id, cands)
        # Centred user vectors span every known user key, so the weight indices depend only on
        # the candidates and how many keys are known: hashed once per title, not per request.
        if t.get("n_user_keys") != hu.size:
            m, s = self._mask, self._salt
            t["shared"] = _mix(hu[:, None], t["hv"][None, :], s["shared"], m)  # (nu, nv)
            t["n_user_keys"] = hu.size
        return {**t, "u": u, "x": x, "title_id": title_id, "match": self._match(t, tv, free)}

    def _match(self, t: dict[str, Any], tv: np.ndarray, free: Mapping[str, float]) -> np.ndarray:
        """(K, kinds): per candidate and tag kind, sum over keys of (the user's taste for key - the
        audience's mean taste for it) x the candidate's tag score for the same key.

        "Likes crime" meets "looks like crime", "follows Jane Doe" meets "shows Jane Doe's face":
        one weight per kind, pooled over every title, artwork and key, so a viewer's favourite
        actor carries to a title nobody like them has been shown yet. Tastes are read as
        affinities in [-1, 1]; centring keeps the term a residual (zero for the average viewer).
        """
        mkeys = t["mkeys"]
        if not mkeys:
            return np.zeros((t["ma"].shape[0], len(self.config.match_kinds)))
        slots = self._taste_slots
        if t["n_taste_slots"] != len(slots):  # slots only grow, when learning: remapped rarely
            t["mslot"] = np.array([slots.get(k, len(slots)) for k in mkeys], dtype=np.intp)
            t["mfree"] = [(j, k) for j, k in enumerate(mkeys) if k not in slots]
            t["n_taste_slots"] = len(slots)
        # `tv` was built for the current slots (the lock is held from `_user_part` to here).
        centred = tv[t["mslot"]]
        if free and t["mfree"]:
            for j, k in t["mfree"]:
                centred[j] = free.get(k, 0.0)
        return (t["ma"] * centred[None, :]) @ t["monehot"]

    # -- the model ---------------------------------------------------------------------------------
    def rates(self, title_id: str, artwork_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each artwork's shrunk click rate and its posterior variance (Beta mean and variance)."""
        return self._rates_many([(title_id, artwork_ids)])

    def _rates_many(self, sets: Sequence[tuple[str, Sequence[str]]],
                    pending: Pending | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`rates` of several titles' artworks, concatenated in order (one array pass per page).

        `pending` (choosing only, never learning): decisions still open count as impressions
        without a click, so clicks learned before their misses do not inflate the rates.
        """
        cfg = self.config
        tot_c, tot_n = self.totals
        tot_n += pending.total if pending is not None else 0
        catalog = (tot_c + cfg.prior_rate * cfg.title_strength) / (tot_n + cfg.title_strength)
        rows: list[Any] = []
        title_rates: list[float] = []
        for title_id, artwork_ids in sets:
            arms = self.counts.get(title_id, {})
            t_c = sum(c for c, _ in arms.values())
            t_n = sum(n for _, n in arms.values())
            cn = [arms.get(a, (0.0, 0.0)) for a in artwork_ids]
            if pending is not None and (open_ := pending.of(title_id)):
                t_n += sum(open_.values())
                cn = [(c, n + open_.get(a, 0)) for (c, n), a in zip(cn, artwork_ids)]
            title_rates += [(t_c + catalog * cfg.title_strength) / (t_n + cfg.title_strength)] * len(artwork_ids)
            rows += cn
        cn = np.array(rows, dtype=float).reshape(-1, 2)
        strength = cn[:, 1] + cfg.art_strength
        p = (cn[:, 0] + np.array(title_rates) * cfg.art_strength) / strength
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return p, p * (1.0 - p) / (strength + 1.0)

    def _offsets(self, title_id: str, artwork_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rates on the score scale: probit(p), its variance by the delta method, and p."""
        return self._offsets_many([(title_id, artwork_ids)])

    def _offsets_many(self, sets: Sequence[tuple[str, Sequence[str]]],
                      pending: Pending | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`_offsets` of several titles' artworks, concatenated in order."""
        p, v = self._rates_many(sets, pending)
        z = ndtri(p) * self.config.beta
        dens = np.exp(-0.5 * (z / self.config.beta) ** 2) / math.sqrt(2.0 * math.pi) / self.config.beta
        return z, v / (dens * dens), p

    def _scores(self, d: dict[str, Any], title_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The candidates' score distributions: mean (K,) and variance (K,).

        Thompson draws come from the counts' uncertainty; the residual enters by its mean (drawing
        it too explored more and earned less in every world measured).
        """
        off, off_var, p = self._offsets(title_id, d["ids"])
        return off + d["match"] @ self.match_mean + self.gate_weight() * self._residual(d, p), off_var

    def _residual(self, d: dict[str, Any], rates: np.ndarray) -> np.ndarray:
        """Each candidate's personal residual on the score scale (before the guard's weight)."""
        return self._residuals([d], rates)

    def _residuals(self, designs: Sequence[dict[str, Any]], rates: np.ndarray) -> np.ndarray:
        """`_residual` of one user's candidate sets (`rates`: their rates, concatenated in order),
        concatenated: the personal terms of a whole page are one array pass, not one per title."""
        shared = self.mean["shared"]
        parts, rows, slopes, centres = [], [], [], []
        start = 0
        for d in designs:
            parts.append(d["v"] @ (d["u"] @ shared[d["shared"]]))
            fit = self._fits(d)
            if fit is not None:
                rows.append(fit[0] + start)
                slopes.append(fit[1])
                centres.append(fit[2])
            start += len(d["ids"])
        res = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if rows:
            idx = np.concatenate(rows)
            p = rates[idx]
            # One user: every design carries the same x.
            q = p + np.einsum("kd,kd->k", np.concatenate(slopes), designs[0]["x"][None, :] - np.concatenate(centres))
            q = np.minimum(np.maximum(q, 1e-4), 1.0 - 1e-4)
            res[idx] += (ndtri(q) - ndtri(p)) * self.config.beta
        return res

    def _fits(self, d: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(positions, slopes, centres) of the personal fits of a candidate set's artworks that have
        two or more outcomes (one outcome has no slope), rebuilt only when one of them has learned."""
        arms = self.arms.get(d["title_id"])
        if not arms:
            return None
        stats = [arms.get(a) for a in d["ids"]]
        stamp = tuple(-1 if st is None else st.version for st in stats)
        key = d["key"]
        hit = self._fit_cache.get(key)
        if hit is None or hit[0] != stamp:
            live = [k for k, st in enumerate(stats) if st is not None and st.n >= 2.0]
            fits = [stats[k].fit(self.config.ridge) for k in live]
            if len(self._fit_cache) >= self.cache_limit:
                self._fit_cache.clear()
            hit = self._fit_cache[key] = (stamp, (np.array(live, dtype=np.intp), np.stack([f[0] for f in fits]),
                                                  np.stack([f[1] for f in fits])) if fits else None)
        return hit[1]

    def gate_weight(self) -> float:
        """How much of the personal residual enters the scores, from what it has earned so far.

        Each learned outcome is scored off-policy for two greedy rules: the best artwork by counts
        + residual, and by counts alone; only outcomes where they disagree and the artwork shown is
        one of the two count. Each rule's value is a self-normalised IPS estimate (inverse
        propensities clipped at `gate_clip`) with its delta-method variance, and the weight is
        Phi(z - `gate_shift`) for z = (difference of the two values) / (its standard error).
        Until personalising has proven better the policy is close to a per-title Thompson sampler
        (weight Phi(-1) = 0.16 at the start); where context carries signal z grows like sqrt(n)
        and the weight goes to 1.

        Why self-normalised, per rule: the evidence feeds back on itself. Once a residual steers
        the choices, the rule it follows is shown often with small weights and the other rarely
        with large ones; a plain sum of IPS differences is then skewed, its z-statistic runs
        positive long before the rare large terms arrive, and in `appeal` (nothing to
        personalise) that opened the gate fully and cost 0.01 of click rate. Two separately
        normalised means compared like two samples do not drift that way.
        """
        if not self.config.gate:
            return 1.0
        values, variances = [], []
        for k in (0, 5):
            w, wr, w2, w2r, w2r2 = self.evidence[k:k + 5]
            if w <= 0.0:
                return _NORMAL.cdf(-self.config.gate_shift)
            v = wr / w
            values.append(v)
            variances.append(max(w2r2 - 2.0 * v * w2r + v * v * w2, 0.0) / (w * w))
        se = math.sqrt(variances[0] + variances[1])
        z = (values[0] - values[1]) / se if se > 0.0 else 0.0
        return _NORMAL.cdf(z - self.config.gate_shift)

    def describe(self) -> PolicyState:
        """The guard's weight, the match weights, what has been learned, and the restarts."""
        with self._lock:
            cfg = self.config
            arms = sum(len(a) for a in self.counts.values())
            impressions = sum(n for a in self.counts.values() for _, n in a.values())
            match = ", ".join(f"{k} {m:+.3f} (sd {math.sqrt(v):.3f})"
                              for k, m, v in zip(cfg.match_kinds, self.match_mean, self.match_var))
            if not cfg.segments:
                segs = "off"
            elif self._segment_sample is None:
                segs = f"{len(self.segment_centres)} fitted"
            else:
                segs = f"not yet fitted ({len(self._segment_sample):,} of {cfg.segment_after:,} outcomes' users)"
            facts = (
                ("learned", f"{self.version:,} updates (outcomes and corrections); {len(self.counts):,} titles, "
                            f"{arms:,} artworks, {impressions:,.0f} impressions in the counts",
                 "a restart keeps fewer impressions in the counts than were learned"),
                ("personalisation guard", f"{self.gate_weight():.2f}",
                 "share of the per-artwork personal residual in the scores: it opens only as far as the "
                 "residual has out-earned the counts alone, off-policy (0.16 before any evidence)"),
                ("match weights", match or "off",
                 "per tag kind, how much a viewer's taste for a tag moves an artwork that carries it "
                 "(pooled over every title; near 0 where tastes do not predict clicks)"),
                ("taste segments", segs, "k-means of viewers' tastes, fitted once, used by the personal residual"),
            )
            restarts = tuple(Restart(e["title_id"], e["artwork_id"], float(e["z"]), int(e["version"]))
                             for e in self.last_restarts)
            return PolicyState(kind=self.kind, name=self.name, version=self.version, facts=facts,
                               restarts_total=self.restarts, restarts=restarts)

    # -- Thompson distribution -------------------------------------------------------------------
    def _bank_rows(self, purpose: int, n: int) -> np.ndarray:
        # Row i is drawn from its own seeded stream, so growing the bank never changes a row.
        bank = self._bank.get(purpose)
        if bank is None or bank.shape[0] < n:
            have = 0 if bank is None else bank.shape[0]
            more = [np.random.default_rng([self.seed, purpose, i]).standard_normal(self.config.n_draws)
                    for i in range(have, max(n, 2 * have))]
            bank = self._bank[purpose] = np.vstack(([bank] if bank is not None else []) + more)
        return bank[:n]

    def _distribution(self, user: UserContext, title_id: str, allowed: list[Candidate]) -> list[float]:
        return self._distributions(user, [(title_id, allowed)])[0]

    def _distributions(self, user: UserContext, jobs: Sequence[tuple[str, list[Candidate]]]) -> list[list[float]]:
        """A page's distributions: the user's part, the guard's weight and the offsets once per
        page, the residual and the draws per title (the same numbers as title by title)."""
        floor, n_draws = self.config.floor, self.config.n_draws
        out: list[list[float]] = []
        with self._lock:
            part = self._user_part(user)
            gate = self.gate_weight()
            # Open decisions count as impressions here, when choosing, and nowhere in learning.
            off, off_var, p = self._offsets_many([(t, [c.artwork_id for c in allowed]) for t, allowed in jobs],
                                                 self.pending)
            sd = np.sqrt(off_var)
            designs = [self._design(user, t, allowed, part) for t, allowed in jobs]
            # The match term is outside the guard: a handful of pooled weights, each with its own
            # posterior, needs no proof that personalising pays before it moves (it stays near 0
            # where tastes do not predict clicks).
            matched = np.concatenate([d["match"] for d in designs]) @ self.match_mean
            mean = off + matched + gate * self._residuals(designs, p)
            # Grown by stacking into a new array, never changed in place: safe to read unlocked.
            bank = self._bank_rows(1, max(len(allowed) for _, allowed in jobs))
        # The draws (most of a page's work) outside the lock: learning need not wait for them.
        start = 0
        for title_id, allowed in jobs:
            k = len(allowed)
            end = start + k
            draws = mean[start:end, None] + sd[start:end, None] * bank[:k]
            wins = np.bincount(np.argmax(draws, axis=0), minlength=k) / n_draws
            if floor > 0.0:
                wins = (1.0 - floor) * wins + floor / k
            out.append(wins.tolist())
            start = end
        return out

    def predict(self, user: UserContext, title_id: str, candidates: Sequence[Candidate]) -> np.ndarray:
        """Posterior-mean click probability of each candidate (for reports and debugging)."""
        with self._lock:
            mean, _ = self._scores(self._design(user, title_id, candidates), title_id)
        return np.array([_NORMAL.cdf(float(x) / self.config.beta) for x in mean])

    # -- learning ----------------------------------------------------------------------------------
    def learn_one(
        self,
        user: UserContext,
        title_id: str,
        candidates: list[Candidate],
        chosen: str,
        probability: float,
        reward: float,
    ) -> None:
        """Count the outcome for the artwork, add it to the artwork's personal statistics, and move
        the shared weights that scored it.

        The shared weights are updated against the offset as it stood before this outcome, so they
        learn only what the artwork's own rate does not explain. The propensity is validated but
        not used: the posterior is conditioned on what was shown, so no importance weight is needed.
        """
        idx = _check_learn_args(title_id, candidates, chosen, probability, reward)
        r = min(max(float(reward), 0.0), 1.0)
        with self._lock:
            self._admit(user)
            # The mean taste counts this user first: the first viewer of a key is the average
            # viewer, so one early click cannot set a kind's weight from an uncentred taste.
            self._learn_taste_mean(user)
            d = self._design(user, title_id, candidates)
            u, v = d["u"], d["v"][idx]
            off, off_var, p = self._offsets(title_id, d["ids"])
            active = [("shared", d["shared"].ravel(), np.outer(u, v).ravel())]
            xm = d["match"][idx]
            m_tot = float(off[idx]) + float(self.match_mean @ xm)
            v_tot = float(off_var[idx]) + float(self.match_var @ (xm * xm))
            for g, ix, x in active:
                m_tot += float(self.mean[g][ix] @ x)
                v_tot += float(self.var[g][ix] @ (x * x))
            base, res = off + d["match"] @ self.match_mean, self._residual(d, p)
            self._gather_evidence(base, res, idx, probability, r)
            predicted = _NORMAL.cdf(float(base[idx] + self.gate_weight() * res[idx]) / self.config.beta)
            grad, hess = _probit_moments(m_tot, v_tot, r, self.config.beta)
            for g, ix, x in active:
                s2 = self.var[g][ix]
                self.mean[g][ix] = self.mean[g][ix] + x * s2 * grad
                self.var[g][ix] = s2 * (1.0 + x * x * s2 * hess)
            self.match_mean = self.match_mean + xm * self.match_var * grad
            self.match_var = self.match_var * (1.0 + xm * xm * self.match_var * hess)
            self._count(title_id, chosen, r, 1.0)
            arms = self.arms.setdefault(title_id, {})
            arm = arms.get(chosen)
            if arm is None:
                arm = arms[chosen] = _ArmStats(self._dims)
            arm.add(d["x"], r)
            self._watch(title_id, chosen, r, predicted, user.hour)
            pos, vals, _ = self._user(user)
            self.users_seen += 1.0
            self.user_mean *= 1.0 - 1.0 / self.users_seen
            self.user_mean[pos] += vals / self.users_seen
            if self._segment_sample is not None:
                # A user's 32 strongest taste keys: the sample (saved with every snapshot until the
                # fit) stays small when requests carry hundreds of keys.
                taste = sorted((kv for kv in user_features(user) if kv[0].startswith("taste")), key=lambda kv: -abs(kv[1]))
                self._segment_sample.append(dict(taste[:_SEGMENT_KEYS]))
                if len(self._segment_sample) >= self.config.segment_after:
                    self._fit_segments()
            self.version += 1

    def _learn_taste_mean(self, user: UserContext) -> None:
        """Move the audience's mean taste (per key of a match kind) toward this user's."""
        kinds = self.config.match_kinds
        if not kinds:
            return
        keys = [k for k in user.taste if ":" in k and k.split(":", 1)[0] in kinds]
        for k in keys:
            if k not in self._taste_slots and len(self._taste_slots) < _MATCH_KEYS:
                self._taste_slots[k] = len(self._taste_slots)
                self.taste_mean = np.append(self.taste_mean, 0.0)
        n = self.users_seen + 1.0  # this user included (`learn_one` counts them after)
        self.taste_mean *= 1.0 - 1.0 / n
        for k in keys:
            slot = self._taste_slots.get(k)
            if slot is not None:
                self.taste_mean[slot] += min(max(user.taste[k], -1.0), 1.0) / n

    def _gather_evidence(self, off: np.ndarray, residual: np.ndarray, idx: int, probability: float, r: float) -> None:
        """Add one outcome to the guard's evidence (see `gate_weight`)."""
        with_res, without = int(np.argmax(off + residual)), int(np.argmax(off))
        # Rules that agree, or a shown artwork neither picked, tell the two apart by nothing.
        if with_res == without or idx not in (with_res, without):
            return
        w = min(1.0 / float(probability), self.config.gate_clip)
        k = 0 if idx == with_res else 5
        for j, x in enumerate((w, w * r, w * w, w * w * r, w * w * r * r)):
            self.evidence[k + j] += x

    def _watch(self, title_id: str, artwork_id: str, r: float, predicted: float, hour: int | None) -> None:
        """Restart the title when this artwork's recent outcomes have turned away from the model's
        predictions.

        Counts pool every outcome since the start, so an image that stops pulling (or starts) moves
        its rate only as fast as new outcomes outweigh old ones: in `drift` the old favourite kept
        winning for thousands of impressions. A fixed forgetting rate (`forget`) pays for that in
        every stationary world. Instead each outcome is compared with what the model predicted for
        that user when it learned it, and the ratio of observed to predicted clicks over the recent
        outcomes (weights decaying with a mean age of `change_window` impressions) is tested
        against the same ratio over the artwork's older ones (`change_statistic`). Predictions, not
        raw click rates: an artwork the policy now shows to the users it suits is not a change.
        Two ratios, not one: a model that is steadily optimistic about what it picks (the winner
        of noisy scores is usually overrated) is not a change either.
        """
        cfg = self.config
        if cfg.change_z <= 0.0:
            return
        # The hour of the day moves every artwork at once (prime time clicks more), and an artwork's
        # recent outcomes may all come from one part of the day: predictions are scaled by the
        # catalog's observed/predicted ratio around this hour (this hour and its neighbours, all
        # outcomes so far, shrunk toward the all-day ratio), so a day is not taken for a change.
        # Sudden shifts of the whole catalog are left to the test itself.
        slot = _hour_slot(hour)
        near = (slot,) if slot == 24 else ((slot - 1) % 24, slot, (slot + 1) % 24)
        obs, pred = sum(self.hour_ratio[h][0] for h in near), sum(self.hour_ratio[h][1] for h in near)
        day = (sum(o for o, _ in self.hour_ratio) + 1.0) / (sum(e for _, e in self.hour_ratio) + 1.0)
        scale = (obs + _HOUR_PRIOR * day) / (pred + _HOUR_PRIOR)
        self.hour_ratio[slot][0] += r
        self.hour_ratio[slot][1] += predicted
        predicted = min(predicted * scale, 1.0)
        keep = 1.0 - 1.0 / cfg.change_window
        rec = self.recent.setdefault(title_id, {}).setdefault(artwork_id, [0.0] * 9)
        pv = predicted * (1.0 - predicted)
        # recent (decayed) observed, predicted, sum w p(1-p), sum w^2 p(1-p), impressions; then
        # the same since the last restart, undecayed: observed, predicted, sum p(1-p), impressions.
        for i, x in ((0, r), (1, predicted), (2, pv), (4, 1.0)):
            rec[i] = rec[i] * keep + x
        rec[3] = rec[3] * keep * keep + pv
        for i, x in ((5, r), (6, predicted), (7, pv), (8, 1.0)):
            rec[i] += x
        # Tested only once the older part is two windows long and the recent one half full.
        if rec[4] < 0.5 * cfg.change_window or rec[8] - rec[4] < 2.0 * cfg.change_window:
            return
        # The older part is everything since the restart less the recent weights (1 - w each).
        z = change_statistic(rec[0], rec[1], rec[3],
                             rec[5] - rec[0], rec[6] - rec[1], rec[7] - 2.0 * rec[2] + rec[3])
        if abs(z) >= cfg.change_z:
            self._restart(title_id, artwork_id, z)

    def _restart(self, title_id: str, artwork_id: str, z: float) -> None:
        """The changed artwork keeps only its recent outcomes; every other artwork of the title
        keeps its rate but at most `change_window` impressions of confidence, so Thompson sampling
        looks at them again (the image that gained is usually one the policy had stopped showing)."""
        window = self.config.change_window
        rec = self.recent[title_id].pop(artwork_id)
        stats = self.arms.get(title_id, {})
        for a, cn in self.counts[title_id].items():
            if cn[1] <= 0.0:
                continue
            if a == artwork_id:
                keep, cn[0], cn[1] = min(1.0, rec[4] / cn[1]), rec[0], rec[4]
            else:
                keep = min(1.0, window / cn[1])
                cn[0] *= keep
                cn[1] *= keep
            if a in stats:
                stats[a].scale(keep)
        self.restarts += 1
        self.last_restarts = (self.last_restarts + [{"title_id": title_id, "artwork_id": artwork_id,
                                                     "z": round(z, 2), "version": self.version}])[-_RESTARTS_KEPT:]

    def _count(self, title_id: str, artwork_id: str, clicks: float, impressions: float) -> None:
        arms = self.counts.setdefault(title_id, {})
        keep = 1.0 - self.config.forget
        if keep < 1.0:
            # The whole title decays, not only the arm shown: an image nobody has been shown for
            # a while grows uncertain again, and Thompson sampling looks at it again.
            for arm in arms.values():
                arm[0] *= keep
                arm[1] *= keep
            for stats in self.arms.get(title_id, {}).values():
                stats.scale(keep)
        arm = arms.setdefault(artwork_id, [0.0, 0.0])
        arm[0] += clicks
        arm[1] += impressions
        self.totals[0] += clicks
        self.totals[1] += impressions

    def relearn(
        self,
        user: UserContext,
        title_id: str,
        candidates: list[Candidate],
        chosen: str,
        probability: float,
        old_reward: float,
        new_reward: float,
    ) -> None:
        """A reward corrected after it was learned (a late click, click -> play).

        The counts and the personal statistics move exactly. The shared and match weights keep
        what they learned from the old outcome (an ADF update cannot be taken back, and one
        outcome moves them little).
        """
        _check_learn_args(title_id, candidates, chosen, probability, new_reward)
        delta = min(max(float(new_reward), 0.0), 1.0) - min(max(float(old_reward), 0.0), 1.0)
        with self._lock:
            arm = self.counts.setdefault(title_id, {}).setdefault(chosen, [0.0, 0.0])
            arm[0] = max(0.0, arm[0] + delta)
            self.totals[0] = max(0.0, self.totals[0] + delta)
            stats = self.arms.get(title_id, {}).get(chosen)
            if stats is not None:
                stats.correct(self._design(user, title_id, candidates)["x"], delta)
            rec = self.recent.get(title_id, {}).get(chosen)
            if rec is not None:  # as if it had arrived now: its weight has decayed less than its due
                rec[0] = max(0.0, rec[0] + delta)
                rec[5] = max(0.0, rec[5] + delta)
                by_hour = self.hour_ratio[_hour_slot(user.hour)]
                by_hour[0] = max(0.0, by_hour[0] + delta)
            self.version += 1

    # -- persistence --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Zip of meta.json (config, version, rng state, counts) + weights.npz, written atomically."""
        with self._lock:
            meta = {"format": _FORMAT, "kind": self.kind, "name": self.name, "version": self.version,
                    "config": self.config.to_dict(), "rng_state": self._rng_state(),
                    "counts": self.counts, "totals": self.totals, "evidence": self.evidence,
                    "arms": [[t, a] for t, arms in self.arms.items() for a in arms],
                    "user_keys": list(self._user_keys), "user_mean": self.user_mean.tolist(),
                    "users_seen": self.users_seen, "segment_keys": self.segment_keys,
                    "segment_sample": self._segment_sample,
                    "match_mean": self.match_mean.tolist(), "match_var": self.match_var.tolist(),
                    "taste_keys": list(self._taste_slots), "recent": self.recent,
                    "restarts": self.restarts, "last_restarts": self.last_restarts,
                    "hour_ratio": self.hour_ratio}
            # Only the weights data has touched (a few thousand of 2**bits): small files, and the
            # learn lock (which serving waits on) is held for a copy, not for compression.
            touched = {}
            for g in _GROUPS:
                ix = np.flatnonzero((self.mean[g] != 0.0) | (self.var[g] != self.config.prior(g)))
                touched[f"index_{g}"] = ix.astype(np.int64)
                touched[f"mean_{g}"] = self.mean[g][ix]
                touched[f"var_{g}"] = self.var[g][ix]
            touched["segment_centres"] = self.segment_centres
            touched["segment_mean"] = self.segment_mean
            touched["taste_mean"] = self.taste_mean
            stats = [st for arms in self.arms.values() for st in arms.values()]
            dims = self._dims
            upper = np.triu_indices(dims)
            touched["arm_n"] = np.array([st.n for st in stats], dtype=float)
            touched["arm_sy"] = np.array([st.sy for st in stats], dtype=float)
            touched["arm_sx"] = np.array([st.sx for st in stats]).reshape(-1, dims)
            touched["arm_sxy"] = np.array([st.sxy for st in stats]).reshape(-1, dims)
            touched["arm_sxx"] = np.array([st.sxx[upper] for st in stats]).reshape(-1, upper[0].size)
        arrays = io.BytesIO()
        np.savez_compressed(arrays, **touched)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr("meta.json", json.dumps(meta, sort_keys=True))
            z.writestr("weights.npz", arrays.getvalue())
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BayesPolicy:
        """Inverse of `save`: same probabilities, same next samples."""
        try:
            with zipfile.ZipFile(path) as z:
                meta = json.loads(z.read("meta.json"))
                arrays = np.load(io.BytesIO(z.read("weights.npz")))
                tables = {k: arrays[k] for k in arrays.files}
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, ValueError, OSError) as e:
            raise PolicyError(f"{path}: not a BayesPolicy file ({e})") from e
        if meta.get("kind") != cls.kind or meta.get("format") != _FORMAT:
            raise PolicyError(f"{path}: expected kind 'bayes' format {_FORMAT}, got {meta.get('kind')!r} "
                              f"{meta.get('format')!r}")
        pol = cls(BayesConfig.from_dict(meta["config"]))
        size = pol.mean[_GROUPS[0]].shape[0]
        for g in _GROUPS:
            ix, mean, var = tables.get(f"index_{g}"), tables.get(f"mean_{g}"), tables.get(f"var_{g}")
            if (ix is None or mean is None or var is None or not (ix.shape == mean.shape == var.shape)
                    or (ix.size and (ix.min() < 0 or ix.max() >= size))):
                raise PolicyError(f"{path}: weights of group {g!r} are missing or malformed")
            pol.mean[g][ix] = mean.astype(float)
            pol.var[g][ix] = var.astype(float)
        pol._load_arms(path, meta.get("arms"), tables)
        pol._load_segments(path, meta, tables)
        pol._load_match(path, meta, tables)
        pol._load_recent(path, meta)
        pol.counts = {t: {a: [float(c), float(n)] for a, (c, n) in arms.items()} for t, arms in meta["counts"].items()}
        pol.totals = [float(x) for x in meta["totals"]]
        pol.evidence = [float(x) for x in meta["evidence"]]
        if len(pol.evidence) != 10:
            raise PolicyError(f"{path}: the guard's evidence has {len(pol.evidence)} numbers, expected 10")
        for k in meta["user_keys"]:
            pol._user_keys[k] = len(pol._user_keys)
        pol._user_hash = np.array([pol._key(k) for k in pol._user_keys], dtype=np.uint64)
        pol.user_mean = np.array(meta["user_mean"], dtype=float)
        pol.users_seen = float(meta["users_seen"])
        pol.name = meta["name"]
        pol.version = int(meta["version"])
        pol._set_rng_state(meta["rng_state"])
        return pol

    def _load_segments(self, path: str | os.PathLike[str], meta: Mapping[str, Any],
                       tables: Mapping[str, np.ndarray]) -> None:
        keys, sample = meta.get("segment_keys"), meta.get("segment_sample")
        centres, mean = tables.get("segment_centres"), tables.get("segment_mean")
        fitted = centres is not None and centres.shape[0] > 0
        if (not isinstance(keys, list) or centres is None or mean is None or centres.ndim != 2
                or mean.shape != (len(keys),) or (fitted and centres.shape[1] != len(keys))
                or (sample is not None and not (isinstance(sample, list) and all(isinstance(t, dict) for t in sample)))
                or (fitted and sample is not None) or (self.config.segments and not fitted and sample is None)
                or centres.shape[0] > self.config.segments):
            raise PolicyError(f"{path}: the taste segments are missing or malformed")
        self.segment_keys = [str(k) for k in keys]
        self._segment_index = {k: i for i, k in enumerate(self.segment_keys)}
        self.segment_centres, self.segment_mean = centres.astype(float), mean.astype(float)
        self._segment_sample = None if sample is None else [{str(k): float(v) for k, v in t.items()} for t in sample]

    def _load_match(self, path: str | os.PathLike[str], meta: Mapping[str, Any],
                    tables: Mapping[str, np.ndarray]) -> None:
        try:
            mean = np.array(meta["match_mean"], dtype=float)
            var = np.array(meta["match_var"], dtype=float)
            keys = [str(k) for k in meta["taste_keys"]]
            taste_mean = np.asarray(tables["taste_mean"], dtype=float)
        except (KeyError, TypeError, ValueError) as e:
            raise PolicyError(f"{path}: the match weights are missing or malformed ({e})") from e
        n = len(self.config.match_kinds)
        if (mean.shape != (n,) or var.shape != (n,) or not (np.isfinite(mean).all() and (var > 0).all())
                or taste_mean.shape != (len(keys),) or len(set(keys)) != len(keys) or len(keys) > _MATCH_KEYS):
            raise PolicyError(f"{path}: the match weights are missing or malformed")
        self.match_mean, self.match_var, self.taste_mean = mean, var, taste_mean
        self._taste_slots = {k: i for i, k in enumerate(keys)}

    def _load_recent(self, path: str | os.PathLike[str], meta: Mapping[str, Any]) -> None:
        recent, restarts, last = meta.get("recent"), meta.get("restarts"), meta.get("last_restarts")
        try:
            self.recent = {str(t): {str(a): [float(x) for x in rec] for a, rec in arts.items()}
                           for t, arts in recent.items()}
            self.restarts = int(restarts)
            self.hour_ratio = [[float(o), float(e)] for o, e in meta["hour_ratio"]]
            self.last_restarts = [{"title_id": str(e["title_id"]), "artwork_id": str(e["artwork_id"]),
                                   "z": float(e["z"]), "version": int(e["version"])} for e in last]
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise PolicyError(f"{path}: the change detector's state is missing or malformed ({e})") from e
        if (any(len(rec) != 9 or not all(math.isfinite(x) for x in rec)
                for arts in self.recent.values() for rec in arts.values())
                or self.restarts < 0 or len(self.last_restarts) > _RESTARTS_KEPT
                or len(self.hour_ratio) != 25
                or not all(math.isfinite(x) and x >= 0.0 for pair in self.hour_ratio for x in pair)):
            raise PolicyError(f"{path}: the change detector's state is missing or malformed")

    def _load_arms(self, path: str | os.PathLike[str], keys: Any, tables: Mapping[str, np.ndarray]) -> None:
        dims = self._dims
        upper = np.triu_indices(dims)
        n, sy = tables.get("arm_n"), tables.get("arm_sy")
        sx, sxy, sxx = tables.get("arm_sx"), tables.get("arm_sxy"), tables.get("arm_sxx")
        a = len(keys) if isinstance(keys, list) else -1
        if (n is None or sy is None or sx is None or sxy is None or sxx is None or n.shape != (a,)
                or sy.shape != (a,) or sx.shape != (a, dims) or sxy.shape != (a, dims)
                or sxx.shape != (a, upper[0].size)):
            raise PolicyError(f"{path}: the personal statistics are missing or malformed")
        for i, (t, art) in enumerate(keys):
            st = _ArmStats(dims)
            st.n, st.sy = float(n[i]), float(sy[i])
            st.sx, st.sxy = sx[i].astype(float), sxy[i].astype(float)
            st.sxx[upper] = sxx[i]
            st.sxx.T[upper] = sxx[i]  # symmetric: the lower triangle mirrors the upper
            self.arms.setdefault(str(t), {})[str(art)] = st
