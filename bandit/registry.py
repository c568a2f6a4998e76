"""The one place that maps a policy name to its class (as open_clip's factory does for models).

Adding a policy kind = one class with a `kind`, registered here. `make_policy` builds a fresh one
from a name and options (the server, the benchmark and the demo all go through it); `load_policy`
reads any saved policy back by the kind stored in its file.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from typing import Any

from bandit.baselines import FixedPolicy, ThompsonPolicy, UniformPolicy
from bandit.bayes import BayesConfig, BayesPolicy
from bandit.policy import BasePolicy, PolicyError, VWConfig, VWPolicy
from bandit.split import SplitPolicy

__all__ = ["POLICIES", "DEFAULT_POLICY", "make_policy", "load_policy", "policy_names"]


def _vw(seed: int, exploration: str = "squarecb", **options: Any) -> BasePolicy:
    return VWPolicy(VWConfig(exploration=exploration, seed=seed, **options))


#: name -> factory(seed, **options). The first entry is the serving default: it is the one
#: `scripts/bench_learning.py` checks against per-title Thompson sampling on every world.
POLICIES: dict[str, Callable[..., BasePolicy]] = {
    "bayes": lambda seed, **o: BayesPolicy(BayesConfig(seed=seed, **o)),
    "thompson": lambda seed, **o: ThompsonPolicy(seed=seed, **o),
    "vw": _vw,
    "uniform": lambda seed, **o: UniformPolicy(seed=seed, **o),
    "fixed": lambda seed, **o: FixedPolicy(seed=seed, **o),
}
DEFAULT_POLICY = "bayes"

# Saved files name their kind; kind -> class with a `load` classmethod. A split (an online A/B
# test of two policies) is loadable but not in POLICIES: it is built from two arms, not a name.
_KINDS: dict[str, type[BasePolicy]] = {
    c.kind: c for c in (BayesPolicy, VWPolicy, ThompsonPolicy, UniformPolicy, FixedPolicy, SplitPolicy)
}


def policy_names() -> list[str]:
    """Registered policy names, the default first."""
    return list(POLICIES)


def make_policy(name: str, seed: int = 0, **options: Any) -> BasePolicy:
    """A fresh policy by registered name; VW takes `exploration` (`VWConfig` checks it)."""
    try:
        factory = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}") from None
    return factory(seed, **options)


def _stored_kind(path: str | os.PathLike[str]) -> str:
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return str(json.loads(z.read("meta.json")).get("kind"))
        with open(path, "rb") as f:
            return str(json.loads(f.read()).get("kind"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, AttributeError) as e:
        raise PolicyError(f"{path}: not a saved policy ({e})") from e


def load_policy(path: str | os.PathLike[str]) -> BasePolicy:
    """Load any policy saved by this package, dispatching on the kind stored in the file."""
    kind = _stored_kind(path)
    cls = _KINDS.get(kind)
    if cls is None:
        raise PolicyError(f"{path}: unknown policy kind {kind!r}; expected one of {', '.join(_KINDS)}")
    return cls.load(path)
