"""The one place that maps a policy name to its class (as open_clip's factory does for models).

A policy kind is one class in one file: a `BasePolicy` subclass that sets its own `kind` (the
name in `--policy`, in `make_policy` and in its saved files), builds itself from options in
`create` and reads its files back in `load`. The registry finds kinds by walking `BasePolicy`'s
subclasses after importing the modules that hold them: this package's (`BUILTIN_MODULES`) and any
installed package's `artwork.policies` entry points, so a policy written outside this repository
needs no edit here:

    # pyproject.toml of your package
    [project.entry-points."artwork.policies"]
    mypolicy = "mypackage.mypolicy"        # a module defining class MyPolicy(BasePolicy), kind = "mine"

`make_policy` builds a fresh one from a name and options (the server, the benchmark and the demo
all go through it); `load_policy` reads any saved policy back by the kind stored in its file.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import zipfile
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from bandit.policy import BasePolicy, PolicyError

__all__ = ["POLICIES", "DEFAULT_POLICY", "ENTRY_POINT_GROUP", "make_policy", "load_policy", "policy_names",
           "policy_class", "SERVABLE"]

log = logging.getLogger(__name__)

#: Modules of this package that define policy kinds.
BUILTIN_MODULES = ("bandit.bayes", "bandit.policy", "bandit.baselines", "bandit.split")
#: Entry-point group through which other installed packages add policy kinds.
ENTRY_POINT_GROUP = "artwork.policies"
#: The serving default: the kind `scripts/bench_learning.py` checks against per-title Thompson
#: sampling on every world; first in `POLICIES`.
DEFAULT_POLICY = "bayes"


def _discover() -> dict[str, type[BasePolicy]]:
    modules = set(BUILTIN_MODULES)
    for name in BUILTIN_MODULES:
        importlib.import_module(name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plug-in must not stop the built-in kinds
            log.warning("policy plug-in %s (%s) not loaded: %s", ep.name, ep.value, e)
            continue
        modules.add(ep.module)
    kinds: dict[str, type[BasePolicy]] = {}
    stack = list(BasePolicy.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        kind = cls.__dict__.get("kind")
        # A helper base class has no kind of its own; a subclass made elsewhere (a test's, an
        # experiment's) is not a registered kind unless its module is a plug-in.
        if not isinstance(kind, str) or cls.__module__ not in modules:
            continue
        if kind in kinds and kinds[kind] is not cls:
            raise RuntimeError(f"policy kind {kind!r} is defined twice: {kinds[kind].__module__}.{kinds[kind].__name__} "
                               f"and {cls.__module__}.{cls.__name__}")
        kinds[kind] = cls
    return dict(sorted(kinds.items(), key=lambda kv: (kv[0] != DEFAULT_POLICY, kv[0])))


#: kind -> class, every kind a saved file may name (the default first, then by name).
_KINDS: dict[str, type[BasePolicy]] = _discover()
#: name -> factory(seed, **options): the kinds `make_policy` builds from a name.
POLICIES: dict[str, Callable[..., BasePolicy]] = {k: c.create for k, c in _KINDS.items() if c.by_name}
#: The names `artwork serve --policy` accepts.
SERVABLE: tuple[str, ...] = tuple(k for k, c in _KINDS.items() if c.by_name and c.servable)


def policy_class(kind: str) -> type[BasePolicy]:
    """The class registered for a kind (KeyError naming the known ones)."""
    try:
        return _KINDS[kind]
    except KeyError:
        raise KeyError(f"unknown policy kind {kind!r}; known: {', '.join(_KINDS)}") from None


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
