"""Non-personalised baselines behind the same Policy interface, for A/B comparison and simulation."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from bandit.features import Candidate, UserContext
from bandit.policy import BasePolicy, PolicyError, _check_learn_args, atomic_write_bytes

__all__ = ["UniformPolicy", "ThompsonPolicy", "FixedPolicy"]  # loading any saved policy: bandit.registry

_FORMAT = 1


class _JsonPolicy(BasePolicy):
    """Baselines persist as one small JSON document."""

    def _state(self) -> dict[str, Any]:
        return {}

    def _restore(self, state: Mapping[str, Any]) -> None:
        pass

    def _init_kwargs(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def save(self, path: str | os.PathLike[str]) -> None:
        """JSON with kind, version, rng state and learned state; written atomically."""
        doc = {
            "format": _FORMAT,
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "init": self._init_kwargs(),
            "rng_state": self._rng_state(),
            "state": self._state(),
        }
        atomic_write_bytes(path, json.dumps(doc, sort_keys=True).encode())

    @classmethod
    def _from_doc(cls, doc: Mapping[str, Any]) -> _JsonPolicy:
        pol = cls(**doc["init"])
        pol.name = doc["name"]
        pol.version = int(doc["version"])
        pol._set_rng_state(doc["rng_state"])
        pol._restore(doc["state"])
        return pol

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> _JsonPolicy:
        """Inverse of `save`."""
        doc = _read_doc(path)
        if doc.get("kind") != cls.kind:
            raise PolicyError(f"{path}: holds a {doc.get('kind')!r} policy, not {cls.kind!r}")
        return cls._from_doc(doc)


def _read_doc(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PolicyError(f"{path}: not a baseline policy file ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise PolicyError(f"{path}: unsupported baseline policy file")
    return doc


class _StaticPolicy(_JsonPolicy):
    """A baseline whose distribution never changes with feedback."""

    def learn_one(
        self, user: UserContext, title_id: str, candidates: list[Candidate], chosen: str, probability: float, reward: float
    ) -> None:
        """Nothing to learn; validates and counts the update."""
        _check_learn_args(title_id, candidates, chosen, probability, reward)
        self.version += 1


class UniformPolicy(_StaticPolicy):
    """Every allowed artwork equally likely: the pure-exploration logging policy."""

    kind: ClassVar[str] = "uniform"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.name = "uniform"

    def _distribution(self, user: UserContext, title_id: str, allowed: list[Candidate]) -> list[float]:
        return [1.0 / len(allowed)] * len(allowed)


class FixedPolicy(_StaticPolicy):
    """Always the title's default artwork: `defaults[title_id]` when allowed, else the first allowed candidate."""

    kind: ClassVar[str] = "fixed"
    servable: ClassVar[bool] = False  # needs per-title defaults, which `serve --policy fixed` cannot give

    def __init__(self, defaults: Mapping[str, str] | None = None, seed: int = 0) -> None:
        super().__init__(seed)
        self.name = "fixed"
        self.defaults: dict[str, str] = dict(defaults or {})

    def _init_kwargs(self) -> dict[str, Any]:
        return {"seed": self.seed, "defaults": self.defaults}

    def _distribution(self, user: UserContext, title_id: str, allowed: list[Candidate]) -> list[float]:
        want = self.defaults.get(title_id)
        ids = [c.artwork_id for c in allowed]
        pick = ids.index(want) if want in ids else 0
        return [1.0 if i == pick else 0.0 for i in range(len(ids))]


class ThompsonPolicy(_JsonPolicy):
    """Per-title Bernoulli Thompson sampling: the non-personalised "A/B winner" baseline.

    Each (title, artwork) has a Beta(prior_a + clicks, prior_b + misses) posterior. Rewards are
    clipped to [0, 1] and counted fractionally, so a 0.3 reward is 0.3 click + 0.7 miss.
    The distribution is P(arm has the highest posterior draw), estimated from `n_draws` seeded
    Monte Carlo draws; `choose` samples from that same estimate so the logged propensity is
    exactly the probability the choice was made with.
    """

    kind: ClassVar[str] = "thompson"

    def __init__(self, n_draws: int = 2000, prior_a: float = 1.0, prior_b: float = 1.0, seed: int = 0) -> None:
        super().__init__(seed)
        if n_draws < 1 or prior_a <= 0 or prior_b <= 0:
            raise ValueError("n_draws must be >= 1 and priors > 0")
        self.name = "thompson"
        self.n_draws = int(n_draws)
        self.prior_a = float(prior_a)
        self.prior_b = float(prior_b)
        # title_id -> artwork_id -> [successes, failures]
        self.counts: dict[str, dict[str, list[float]]] = {}

    def _init_kwargs(self) -> dict[str, Any]:
        return {"seed": self.seed, "n_draws": self.n_draws, "prior_a": self.prior_a, "prior_b": self.prior_b}

    def _state(self) -> dict[str, Any]:
        return {"counts": self.counts}

    def _restore(self, state: Mapping[str, Any]) -> None:
        self.counts = {t: {a: [float(s), float(f)] for a, (s, f) in arms.items()} for t, arms in state["counts"].items()}

    def posterior(self, title_id: str, artwork_id: str) -> tuple[float, float]:
        """Beta parameters (a, b) of one arm."""
        s, f = self.counts.get(title_id, {}).get(artwork_id, (0.0, 0.0))
        return self.prior_a + s, self.prior_b + f

    def _distribution(self, user: UserContext, title_id: str, allowed: list[Candidate]) -> list[float]:
        ab = np.array([self.posterior(title_id, c.artwork_id) for c in allowed])
        # Draws seeded by the posterior itself: the estimate is a pure function of the state, so
        # asking for a distribution (debug endpoint, offline evaluation) never shifts the
        # sampling stream that `choose` and a restored snapshot rely on.
        key = hashlib.sha256(repr((title_id, [c.artwork_id for c in allowed], ab.tolist())).encode()).digest()
        mc = np.random.default_rng([self.seed, int.from_bytes(key[:8], "little")])
        draws = mc.beta(ab[:, :1], ab[:, 1:], size=(len(allowed), self.n_draws))
        wins = np.bincount(np.argmax(draws, axis=0), minlength=len(allowed))
        return (wins / self.n_draws).tolist()

    def learn_one(
        self, user: UserContext, title_id: str, candidates: list[Candidate], chosen: str, probability: float, reward: float
    ) -> None:
        """Add the (clipped) reward to the chosen arm's Beta posterior; the propensity is not needed."""
        _check_learn_args(title_id, candidates, chosen, probability, reward)
        r = min(max(float(reward), 0.0), 1.0)
        arm = self.counts.setdefault(title_id, {}).setdefault(chosen, [0.0, 0.0])
        arm[0] += r
        arm[1] += 1.0 - r
        self.version += 1

    def relearn(
        self, user: UserContext, title_id: str, candidates: list[Candidate], chosen: str, probability: float,
        old_reward: float, new_reward: float,
    ) -> None:
        """Move the chosen arm's counts exactly: the old (clipped) reward out, the new one in.

        A reward-0 close corrected by a late click turns one failure into one success; the arm's
        number of observations stays the same.
        """
        _check_learn_args(title_id, candidates, chosen, probability, old_reward)
        _check_learn_args(title_id, candidates, chosen, probability, new_reward)
        old = min(max(float(old_reward), 0.0), 1.0)
        new = min(max(float(new_reward), 0.0), 1.0)
        arm = self.counts.setdefault(title_id, {}).setdefault(chosen, [0.0, 0.0])
        # Clamped at 0: a correction of an outcome this policy never learned (it was restored
        # from another policy's history) must not leave a negative Beta parameter.
        arm[0] = max(arm[0] + new - old, 0.0)
        arm[1] = max(arm[1] + old - new, 0.0)
        self.version += 1
