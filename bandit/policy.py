"""The personalised policy: a Vowpal Wabbit contextual bandit (`--cb_explore_adf`) plus the shared
Policy interface, designer controls (pin/disable), sampling and atomic persistence used by every
policy including the baselines.

Example layout handed to VW (namespaces are keyed by their first letter):

    shared |User device=tv hour=evening country=US row=2 |Taste genre=crime:0.8 mood=dark:0.4
    |Art mood=dark:0.71 genre=crime:0.3 actor=Jane_Doe:0.9 |Emb 0:0.123 1:-0.04 ... |Id a=art123

Quadratic interactions Taste x Art / Emb / Id and User x Art / Emb / Id let the model learn
"crime fans click dark images" (T x A) and generalise to a new artwork through its tags and
embedding before it has a single click; Id features learn per-artwork effects once data exists.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import threading
import zipfile
from bisect import bisect_right
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np
import vowpal_wabbit_next as vw

from bandit.features import EMB_PREFIX, Candidate, ContextError, UserContext
from bandit.pending import Pending

if TYPE_CHECKING:
    from bandit.decisions import DecisionRecord

__all__ = [
    "Decision",
    "TitleRequest",
    "Policy",
    "PolicyError",
    "NoCandidatesError",
    "ContextError",
    "BasePolicy",
    "PolicyState",
    "Restart",
    "VWConfig",
    "VWPolicy",
    "EXPLORATIONS",
    "allowed_candidates",
    "atomic_write_bytes",
    "load_policy",
    "shared_line",
    "action_line",
    "hour_bucket",
]


@dataclass
class Decision:
    """One served choice, with everything needed to log it for off-policy learning/evaluation."""

    title_id: str
    chosen: str  # artwork id
    probability: float  # prob of chosen under the policy at decision time
    distribution: dict[str, float]  # artwork_id -> probability, sums to 1
    policy: str  # policy name
    version: int  # model version: number of learn_one updates applied


@runtime_checkable
class Policy(Protocol):
    """What the HTTP server, simulator and benchmark call. Keep in sync with `BasePolicy`."""

    name: str
    version: int

    def distribution(
        self,
        user: UserContext,
        title_id: str,
        candidates: list[Candidate],
        exclude: Collection[str] = (),
        *,
        pinned: str | None = None,
        disabled: Collection[str] = (),
    ) -> dict[str, float]: ...

    def choose(
        self,
        user: UserContext,
        title_id: str,
        candidates: list[Candidate],
        exclude: Collection[str] = (),
        *,
        pinned: str | None = None,
        disabled: Collection[str] = (),
    ) -> Decision: ...

    def learn_one(
        self,
        user: UserContext,
        title_id: str,
        candidates: list[Candidate],
        chosen: str,
        probability: float,
        reward: float,
    ) -> None: ...

    def relearn(
        self,
        user: UserContext,
        title_id: str,
        candidates: list[Candidate],
        chosen: str,
        probability: float,
        old_reward: float,
        new_reward: float,
    ) -> None: ...

    def learn_many(self, records: Iterable[DecisionRecord]) -> int: ...

    def save(self, path: str | os.PathLike[str]) -> None: ...

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy: ...


class TitleRequest(NamedTuple):
    """One title of a page, as a policy is asked to serve it (`BasePolicy.choose_many`)."""

    title_id: str
    candidates: list[Candidate]
    pinned: str | None = None  # designer pin
    disabled: Collection[str] = ()  # designer-disabled artwork ids


class PolicyError(ValueError):
    """A request a policy cannot serve (bad candidate list, bad learn arguments, bad model file)."""


class NoCandidatesError(PolicyError):
    """Every candidate was excluded or disabled (or none were given)."""


def allowed_candidates(
    title_id: str,
    candidates: Sequence[Candidate],
    exclude: Collection[str] = (),
    disabled: Collection[str] = (),
) -> list[Candidate]:
    """Candidates minus per-request exclusions and designer-disabled ids, in the given order."""
    if not candidates:
        raise NoCandidatesError(f"title {title_id!r}: no candidate artworks given")
    ids = {c.artwork_id for c in candidates}
    if len(ids) != len(candidates):
        dup = next(i for n, i in enumerate(c.artwork_id for c in candidates) if i in [c.artwork_id for c in candidates[:n]])
        raise PolicyError(f"title {title_id!r}: duplicate candidate artwork id {dup!r}")
    if not exclude and not disabled:
        return list(candidates)
    drop = set(exclude) | set(disabled)
    out = [c for c in candidates if c.artwork_id not in drop]
    if not out:
        raise NoCandidatesError(
            f"title {title_id!r}: all {len(candidates)} candidate artworks are excluded or disabled"
        )
    return out


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write via a temp file in the same directory + os.replace, so readers never see a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _check_learn_args(
    title_id: str, candidates: Sequence[Candidate], chosen: str, probability: float, reward: float
) -> int:
    """Validate learn_one arguments; returns the index of `chosen`."""
    idx = next((i for i, c in enumerate(candidates) if c.artwork_id == chosen), None)
    if idx is None:
        raise PolicyError(f"title {title_id!r}: chosen artwork {chosen!r} is not among the candidates")
    if isinstance(probability, bool) or not isinstance(probability, (int, float, np.floating, np.integer)):
        raise PolicyError(f"probability must be a number in (0, 1], got {probability!r}")
    if not (0.0 < float(probability) <= 1.0):
        raise PolicyError(f"probability must be in (0, 1], got {probability!r}")
    if isinstance(reward, bool) or not isinstance(reward, (int, float, np.floating, np.integer)):
        raise PolicyError(f"reward must be a finite number, got {reward!r}")
    if not math.isfinite(float(reward)):
        raise PolicyError(f"reward must be a finite number, got {reward!r}")
    return idx


class BasePolicy:
    """Shared machinery: designer controls, seeded sampling from the distribution, log replay.

    Subclasses implement `_distribution(user, title_id, allowed) -> list[float]` (aligned with
    `allowed`, summing to 1), `learn_one`, `save` and `load`.
    """

    name: str = "base"
    kind: ClassVar[str] = "base"  # a subclass that sets its own `kind` is a policy kind (bandit.registry)
    file_suffix: ClassVar[str] = "json"  # snapshot file name suffix
    #: `make_policy(kind)` can build it from a name and options (a split is built from two arms).
    by_name: ClassVar[bool] = True
    #: `artwork serve --policy KIND` may start it (a fixed default needs per-title defaults).
    servable: ClassVar[bool] = True

    @classmethod
    def create(cls, seed: int = 0, **options: Any) -> BasePolicy:
        """A fresh policy from a name's options: what `bandit.registry.make_policy` calls."""
        return cls(seed=seed, **options)

    def __init__(self, seed: int = 0) -> None:
        self.version = 0
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        # Decisions shown whose outcome is not learned yet (`bandit.pending`): transient serving
        # state a kind may read when choosing (`bayes` does), never saved or learned from.
        self.pending: Pending | None = None

    def attach_pending(self, pending: Pending | None) -> None:
        """Choose with the serving process's open decisions in view (see `bandit.pending`)."""
        self.pending = pending

    def _distribution(self, user: UserContext, title_id: str, allowed: list[Candidate]) -> list[float]:
        raise NotImplementedError

    def _distributions(self, user: UserContext, jobs: Sequence[tuple[str, list[Candidate]]]) -> list[list[float]]:
        """`_distribution` for several titles of one page; a policy overrides it to share the
        per-user work across the page (the HTTP path asks for 40 titles at a time)."""
        return [self._distribution(user, title_id, allowed) for title_id, allowed in jobs]

    def distributions(
        self, user: UserContext, requests: Sequence[TitleRequest], exclude: Collection[str] = ()
    ) -> list[dict[str, float] | PolicyError]:
        """One `distribution` per request, in order; a title that cannot be served gets its
        PolicyError in its place instead of failing the page.

        `exclude` (per request) and `disabled` (designer) are hard: those ids never get mass.
        `pinned` (designer) gets probability 1 when allowed; a pin on an excluded/disabled
        artwork is ignored so the page still renders. A pin naming no candidate is an error.
        """
        prepared: list[tuple[list[Candidate], list[float] | None] | PolicyError] = []
        jobs: list[tuple[str, list[Candidate]]] = []
        for r in requests:
            try:
                allowed = allowed_candidates(r.title_id, r.candidates, exclude, r.disabled)
                fixed = None
                if r.pinned is not None:
                    if not any(c.artwork_id == r.pinned for c in r.candidates):
                        raise PolicyError(f"title {r.title_id!r}: pinned artwork {r.pinned!r} is not among the candidates")
                    if any(c.artwork_id == r.pinned for c in allowed):
                        fixed = [1.0 if c.artwork_id == r.pinned else 0.0 for c in allowed]
                if fixed is None and len(allowed) == 1:
                    fixed = [1.0]
            except PolicyError as e:
                prepared.append(e)
                continue
            if fixed is None:
                jobs.append((r.title_id, allowed))
            prepared.append((allowed, fixed))
        try:
            computed = iter(self._distributions(user, jobs) if jobs else [])
        except PolicyError:
            # One title the policy cannot serve fails the page call: ask title by title, so only
            # that title gets its error and the rest of the page is served.
            computed = iter([self._one_or_error(user, t, allowed) for t, allowed in jobs])
        out: list[dict[str, float] | PolicyError] = []
        for item in prepared:
            if isinstance(item, PolicyError):
                out.append(item)
                continue
            allowed, fixed = item
            probs = fixed if fixed is not None else next(computed)
            out.append(probs if isinstance(probs, PolicyError) else dict(zip([c.artwork_id for c in allowed], probs)))
        return out

    def _one_or_error(self, user: UserContext, title_id: str, allowed: list[Candidate]) -> list[float] | PolicyError:
        try:
            return self._distribution(user, title_id, allowed)
        except PolicyError as e:
            return e

    def distribution(
        self,
        user: UserContext,
        title_id: str,
        candidates: list[Candidate],
        exclude: Collection[str] = (),
        *,
        pinned: str | None = None,
        disabled: Collection[str] = (),
    ) -> dict[str, float]:
        """artwork_id -> probability over the allowed candidates (sums to 1); see `distributions`."""
        d = self.distributions(user, [TitleRequest(title_id, candidates, pinned, disabled)], exclude)[0]
        if isinstance(d, PolicyError):
            raise d
        return d

    def choose_many(
        self, user: UserContext, requests: Sequence[TitleRequest], exclude: Collection[str] = ()
    ) -> list[Decision | PolicyError]:
        """Sample one artwork per request from `distributions` with this policy's seeded generator,
        in request order (so a page costs the generator exactly what title-by-title calls would)."""
        out: list[Decision | PolicyError] = []
        for r, dist in zip(requests, self.distributions(user, requests, exclude)):
            if isinstance(dist, PolicyError):
                out.append(dist)
                continue
            ids = list(dist)
            cum = list(accumulate(dist.values()))
            # bisect on the cumulative sum; clamp guards the u*total == total float edge case.
            i = min(bisect_right(cum, float(self._rng.random()) * cum[-1]), len(ids) - 1)
            while dist[ids[i]] <= 0.0:  # never serve a zero-probability arm (float edge case)
                i -= 1
            out.append(Decision(r.title_id, ids[i], dist[ids[i]], dist, self.name, self.version))
        return out

    def choose(
        self,
        user: UserContext,
        title_id: str,
        candidates: list[Candidate],
        exclude: Collection[str] = (),
        *,
        pinned: str | None = None,
        disabled: Collection[str] = (),
    ) -> Decision:
        """Sample an artwork from `distribution` with this policy's seeded generator."""
        d = self.choose_many(user, [TitleRequest(title_id, candidates, pinned, disabled)], exclude)[0]
        if isinstance(d, PolicyError):
            raise d
        return d

    def learn_one(
        self,
        user: UserContext,
        title_id: str,
        candidates: list[Candidate],
        chosen: str,
        probability: float,
        reward: float,
    ) -> None:
        """Update on one logged outcome (reward: click=1, no click=0, any finite float)."""
        raise NotImplementedError

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
        """Correct an outcome already learned with `old_reward` to `new_reward` (a late click).

        Default: learn the new reward as one more observation of the same decision (the earlier
        `old_reward` stays absorbed: an online learner cannot take an example back). Policies
        that keep sufficient statistics override this to move them exactly.
        """
        _check_learn_args(title_id, candidates, chosen, probability, old_reward)
        self.learn_one(user, title_id, candidates, chosen, probability, new_reward)

    def learn_many(self, records: Iterable[DecisionRecord]) -> int:
        """Warm-start from logged DecisionRecords; records with reward None are skipped. Returns count learned."""
        n = 0
        self.skipped: list[tuple[str, str]] = []  # (event_id, why) of rows that could not be learned
        for r in records:
            if r.reward is None:
                continue
            try:
                self.learn_one(r.user_context(), r.title_id, r.candidate_objects(), r.chosen, r.probability, r.reward)
            except (ValueError, TypeError, KeyError) as e:  # one bad row must not poison a warm start
                self.skipped.append((r.event_id, f"{type(e).__name__}: {e}"))
                continue
            n += 1
        return n

    def reseed(self, *entropy: int) -> None:
        """Sample from a new stream seeded by (seed, *entropy): the state learned is untouched.

        Copies of one snapshot start from the same sampling state; a chooser replica reseeds its
        copy so that replicas do not make the same draws in step (every propensity stays exact:
        it is the distribution the draw was made from, whatever the stream).
        """
        self._rng = np.random.default_rng([self.seed, *entropy])

    def _rng_state(self) -> dict[str, Any]:
        return self._rng.bit_generator.state

    def _set_rng_state(self, state: Mapping[str, Any]) -> None:
        self._rng.bit_generator.state = dict(state)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Persist atomically (temp file + os.replace)."""
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BasePolicy:
        """Inverse of `save`."""
        raise NotImplementedError

    def describe(self) -> PolicyState:
        """What an operator reads about the learned state (`artwork report`'s "Policy state").

        A subclass adds its own facts (`BayesPolicy`: the guard's weight, the match weights, the
        change detector's restarts) by extending `facts` and `restarts`.
        """
        return PolicyState(kind=self.kind, name=self.name, version=self.version)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version})"


@dataclass(frozen=True)
class Restart:
    """A title the policy restarted because one artwork's appeal changed (`BayesPolicy._watch`)."""

    title_id: str
    artwork_id: str
    z: float  # the change statistic that crossed the threshold (negative: the artwork fell)
    version: int  # the policy version (outcomes learned) at the restart


@dataclass(frozen=True)
class PolicyState:
    """A policy's learned state in a few readable facts: kind, name, outcomes learned, and what
    its kind adds (label, value, why it matters), plus the change detector's restarts."""

    kind: str
    name: str
    version: int
    facts: tuple[tuple[str, str, str], ...] = ()
    restarts_total: int | None = None  # None: the kind has no change detector
    restarts: tuple[Restart, ...] = ()  # the latest ones, oldest first


# ---------------------------------------------------------------------------------------------
# VW example text
# ---------------------------------------------------------------------------------------------

# VW text format reserves whitespace, ':' (value separator) and '|' (namespace marker).
_SANITIZE = str.maketrans({" ": "_", "\t": "_", "\n": "_", "\r": "_", ":": "=", "|": "/"})


def _fname(key: str) -> str:
    return key.translate(_SANITIZE)


def _fval(v: float) -> str:
    # 6 significant digits is far below VW's float32 noise and keeps examples short.
    return f"{v:.6g}"


def hour_bucket(hour: int) -> str:
    """Coarse day part: a one-hot hour would need 24x the data to learn the same thing."""
    if hour < 6:
        return "night"
    if hour < 12:
        return "morning"
    if hour < 18:
        return "afternoon"
    return "evening"


def shared_line(user: UserContext) -> str:
    """VW text for the shared (user) example."""
    parts = ["shared |User"]
    if user.device is not None:
        parts.append(f"device={_fname(user.device)}")
    if user.hour is not None:
        parts.append(f"hour={hour_bucket(user.hour)}")
    if user.country is not None:
        parts.append(f"country={_fname(user.country)}")
    if user.row is not None:
        parts.append(f"row={user.row if user.row < 5 else '5+'}")
    if user.taste:
        parts.append("|Taste")
        parts.extend(f"{_fname(k)}:{_fval(v)}" for k, v in user.taste.items() if v != 0.0)
    else:
        # Lets the User x Art interaction learn what works for cold-start users specifically.
        parts.append("taste=none")
    return " ".join(parts)


def action_line(c: Candidate) -> str:
    """VW text for one candidate artwork (no label)."""
    tags: list[str] = []
    emb: list[str] = []
    for k, v in c.features.items():
        if v == 0.0:
            continue
        if k.startswith(EMB_PREFIX):
            emb.append(f"{_fname(k[len(EMB_PREFIX):])}:{_fval(v)}")
        else:
            tags.append(f"{_fname(k)}:{_fval(v)}")
    parts = ["|Art", *tags]
    if emb:
        parts.append("|Emb")
        parts.extend(emb)
    parts.append(f"|Id a={_fname(c.artwork_id)}")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# VW policy
# ---------------------------------------------------------------------------------------------

#: Exploration strategies supported by vowpal-wabbit-next 0.7.0's cb_explore_adf (all tried).
# regcb also parses but stayed uniform on our simulated problem, so it is not offered.
EXPLORATIONS = ("epsilon", "softmax", "squarecb", "bag", "cover")


@dataclass
class VWConfig:
    """How the VW policy is built; stored with the model so `load` rebuilds the same thing."""

    exploration: str = "squarecb"
    epsilon: float = 0.05  # epsilon-greedy floor: each arm gets >= epsilon / K
    softmax_lambda: float = 10.0  # softmax inverse temperature on negated costs
    gamma_scale: float = 10.0  # SquareCB: larger = greedier
    gamma_exponent: float = 0.5
    bag_size: int = 5
    cover_size: int = 3
    bits: int = 18
    learning_rate: float | None = None  # None: VW default (0.5)
    interactions: tuple[str, ...] = ("TA", "TE", "TI", "UA", "UE", "UI")
    seed: int = 0
    extra_args: tuple[str, ...] = ()
    name: str | None = None

    def __post_init__(self) -> None:
        self.interactions = tuple(self.interactions)
        self.extra_args = tuple(self.extra_args)
        if self.exploration not in EXPLORATIONS:
            raise ValueError(f"exploration must be one of {EXPLORATIONS}, got {self.exploration!r}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        if self.softmax_lambda <= 0 or self.gamma_scale <= 0:
            raise ValueError("softmax_lambda and gamma_scale must be > 0")
        if not 1 <= self.bits <= 30:
            raise ValueError(f"bits must be 1..30, got {self.bits}")
        for q in self.interactions:
            if len(q) != 2 or not q.isalpha():
                raise ValueError(f"interactions are pairs of namespace letters like 'TA', got {q!r}")

    def vw_args(self) -> list[str]:
        """Command line for vowpal_wabbit_next.Workspace."""
        args = ["--cb_explore_adf", "--quiet", "--random_seed", str(self.seed), "-b", str(self.bits)]
        for q in self.interactions:
            args += ["-q", q]
        if self.learning_rate is not None:
            args += ["-l", str(self.learning_rate)]
        ex = self.exploration
        if ex == "epsilon":
            args += ["--epsilon", str(self.epsilon)]
        elif ex == "softmax":
            # VW's softmax explorer mixes in epsilon too; 0 keeps it a pure softmax.
            args += ["--softmax", "--lambda", str(self.softmax_lambda), "--epsilon", "0"]
        elif ex == "squarecb":
            args += ["--squarecb", "--gamma_scale", str(self.gamma_scale), "--gamma_exponent", str(self.gamma_exponent)]
        elif ex == "bag":
            args += ["--bag", str(self.bag_size), "--epsilon", str(self.epsilon)]
        elif ex == "cover":
            args += ["--cover", str(self.cover_size), "--epsilon", str(self.epsilon)]
        return args + list(self.extra_args)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        d = asdict(self)
        d["interactions"] = list(self.interactions)
        d["extra_args"] = list(self.extra_args)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VWConfig:
        """Inverse of `to_dict` (unknown keys ignored for forward compatibility)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


_FORMAT = 1


class VWPolicy(BasePolicy):
    """Personalised contextual bandit on vowpal-wabbit-next `--cb_explore_adf`.

    Parsed VW examples are cached because parsing and text building cost more than VW's own
    predict: per artwork (keyed by id, checked against the candidate's features) and per
    shared context (keyed by the fields the shared example is built from). Caches are per
    instance and rebuilt after `load`. A lock serialises VW calls: a Workspace is not thread-safe.
    """

    kind: ClassVar[str] = "vw"
    file_suffix: ClassVar[str] = "vwz"

    @classmethod
    def create(cls, seed: int = 0, exploration: str = "squarecb", **options: Any) -> VWPolicy:
        return cls(VWConfig(exploration=exploration, seed=seed, **options))

    def __init__(self, config: VWConfig | None = None, *, _model_data: bytes | None = None, **kwargs: Any) -> None:
        if config is None:
            config = VWConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a VWConfig or keyword options, not both")
        super().__init__(config.seed)
        self.config = config
        self.name = config.name or f"vw-{config.exploration}"
        if _model_data is None:
            self._ws = vw.Workspace(config.vw_args())
        else:
            self._ws = vw.Workspace(["--quiet"], model_data=_model_data)
        self._parser = vw.TextFormatParser(self._ws)
        self._lock = threading.RLock()
        # artwork_id -> (features snapshot, action text, parsed unlabelled example, raw core example)
        self._cache: dict[str, tuple[dict[str, float], str, vw.Example, Any]] = {}
        # shared-context fingerprint -> (parsed example, raw core example); a page asks 40 times per user
        self._shared_cache: dict[tuple[Any, ...], tuple[vw.Example, Any]] = {}
        self.cache_limit = 100_000
        self.shared_cache_limit = 10_000
        # Entries are as large as the taste dicts they key (up to 256 keys each): bound the
        # total number of taste items held too, not only the entry count.
        self.shared_cache_items_limit = 200_000
        self._shared_cache_items = 0
        # Workspace.predict_one re-checks every example's label type on each call (about a third
        # of its cost for 11 examples). Our cached examples come from our own parser, so their
        # label type is right by construction: call the core directly when this version has it.
        core = getattr(self._ws, "_workspace", None)
        self._predict_core = getattr(core, "predict_multi_ex_one", None)
        self._label_type = self._ws.label_type

    # -- features -> examples ------------------------------------------------------------------

    def _parse(self, text: str) -> tuple[vw.Example, Any]:
        ex = self._parser.parse_line(text)
        if ex.label_type != self._label_type:  # once per cache miss instead of once per predict
            raise PolicyError(f"VW parsed {text!r} with label type {ex.label_type}, expected {self._label_type}")
        return ex, getattr(ex, "_example", None)

    def _action(self, c: Candidate) -> tuple[dict[str, float], str, vw.Example, Any]:
        hit = self._cache.get(c.artwork_id)
        # Identity first (Candidate owns its dict), equality second: re-tagged artworks re-parse.
        if hit is not None and (hit[0] is c.features or hit[0] == c.features):
            return hit
        if len(self._cache) >= self.cache_limit:
            self._cache.clear()  # crude bound; catalogs are far smaller than the limit
        text = action_line(c)
        entry = (c.features, text, *self._parse(text))
        self._cache[c.artwork_id] = entry
        return entry

    def _shared(self, user: UserContext) -> tuple[vw.Example, Any]:
        # The fingerprint holds exactly what shared_line reads, so equal keys mean equal text.
        key = (user.device, user.hour, user.country, user.row, tuple(user.taste.items()))
        hit = self._shared_cache.get(key)
        if hit is None:
            if (len(self._shared_cache) >= self.shared_cache_limit
                    or self._shared_cache_items + len(user.taste) > self.shared_cache_items_limit):
                self._shared_cache.clear()
                self._shared_cache_items = 0
            hit = self._shared_cache[key] = self._parse(shared_line(user))
            self._shared_cache_items += len(user.taste) + 1
        return hit

    def _distribution(self, user: UserContext, title_id: str, allowed: list[Candidate]) -> list[float]:
        with self._lock:
            shared = self._shared(user)
            actions = [self._action(c) for c in allowed]
            if self._predict_core is not None and shared[1] is not None:
                pred = self._predict_core([shared[1], *[a[3] for a in actions]])
            else:
                pred = self._ws.predict_one([shared[0], *[a[2] for a in actions]])
        probs = [0.0] * len(allowed)
        for i, p in pred:
            probs[i] = p
        # VW returns float32 probabilities; renormalise in float64 so they sum to 1 here.
        total = math.fsum(probs)
        if not total > 0.0:
            return [1.0 / len(allowed)] * len(allowed)
        return [p / total for p in probs]

    def learn_one(
        self,
        user: UserContext,
        title_id: str,
        candidates: list[Candidate],
        chosen: str,
        probability: float,
        reward: float,
    ) -> None:
        """One IPS-weighted update: VW cost = -reward on the chosen artwork, logged probability as given."""
        idx = _check_learn_args(title_id, candidates, chosen, probability, reward)
        with self._lock:
            lines = [shared_line(user)]
            for i, c in enumerate(candidates):
                text = self._action(c)[1]
                # Label "0:cost:prob": with ADF the action index is ignored; position marks it.
                lines.append(f"0:{_fval(-float(reward))}:{float(probability)!r} {text}" if i == idx else text)
            self._ws.learn_one([self._parser.parse_line(s) for s in lines])
            self.version += 1

    # -- persistence -----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Zip of meta.json (config, version, rng state) + model.vw, written atomically."""
        with self._lock:
            model = self._ws.serialize()
            meta = {
                "format": _FORMAT,
                "kind": self.kind,
                "name": self.name,
                "version": self.version,
                "config": self.config.to_dict(),
                "rng_state": self._rng_state(),
            }
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("meta.json", json.dumps(meta, sort_keys=True))
            z.writestr("model.vw", model)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VWPolicy:
        """Inverse of `save`: same probabilities, same next samples."""
        try:
            with zipfile.ZipFile(path) as z:
                meta = json.loads(z.read("meta.json"))
                model = z.read("model.vw")
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as e:
            raise PolicyError(f"{path}: not a VWPolicy file ({e})") from e
        if meta.get("kind") != cls.kind or meta.get("format") != _FORMAT:
            raise PolicyError(f"{path}: expected kind 'vw' format {_FORMAT}, got {meta.get('kind')!r} {meta.get('format')!r}")
        pol = cls(VWConfig.from_dict(meta["config"]), _model_data=model)
        pol.name = meta["name"]
        pol.version = int(meta["version"])
        pol._set_rng_state(meta["rng_state"])
        return pol


def load_policy(path: str | os.PathLike[str]) -> BasePolicy:
    """Load any policy saved by this package (see `bandit.registry.load_policy`)."""
    from bandit.registry import load_policy as load  # local: the registry imports this module

    return load(path)

