"""The policy registry: kinds found from their classes, and policy kinds added by other packages
through the `artwork.policies` entry point (a real dist-info on sys.path, in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bandit.baselines import FixedPolicy, ThompsonPolicy, UniformPolicy
from bandit.bayes import BayesPolicy
from bandit.policy import VWPolicy
from bandit.registry import DEFAULT_POLICY, POLICIES, SERVABLE, load_policy, make_policy, policy_class
from bandit.split import SplitPolicy

REPO = Path(__file__).resolve().parent.parent

PLUGIN = '''
from typing import ClassVar
from bandit.baselines import UniformPolicy


class FirstPolicy(UniformPolicy):
    """Always the first allowed artwork: a plug-in kind for the registry test."""

    kind: ClassVar[str] = "first"

    def __init__(self, seed: int = 0, note: str = "") -> None:
        super().__init__(seed)
        self.name = "first"
        self.note = note

    def _init_kwargs(self):
        return {"seed": self.seed, "note": self.note}

    def _distribution(self, user, title_id, allowed):
        return [1.0] + [0.0] * (len(allowed) - 1)
'''


def _plugin_env(tmp_path: Path, module: str, source: str, group_entries: dict[str, str]) -> dict[str, str]:
    """A package on sys.path with a dist-info naming its entry points, as pip would install it."""
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{module}.py").write_text(source)
    info = site / "artwork_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: artwork-plugin\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in group_entries.items())
    (info / "entry_points.txt").write_text(f"[artwork.policies]\n{lines}\n")
    import os

    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}


def _run(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_builtin_kinds_are_found_from_their_classes() -> None:
    assert list(POLICIES)[0] == DEFAULT_POLICY == "bayes"
    assert {k: policy_class(k) for k in ("bayes", "vw", "thompson", "uniform", "fixed", "split")} == {
        "bayes": BayesPolicy, "vw": VWPolicy, "thompson": ThompsonPolicy, "uniform": UniformPolicy,
        "fixed": FixedPolicy, "split": SplitPolicy}
    assert "split" not in POLICIES  # built from two arms, never from a name
    assert "fixed" in POLICIES and "fixed" not in SERVABLE
    assert make_policy("vw", seed=3, exploration="epsilon").config.exploration == "epsilon"
    assert make_policy("bayes", seed=4, ridge=10.0).config.ridge == 10.0
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        make_policy("nope")
    with pytest.raises(KeyError, match="known: bayes"):
        policy_class("nope")


def test_a_subclass_outside_the_registered_modules_is_not_a_kind() -> None:
    class Elsewhere(UniformPolicy):
        kind = "elsewhere"

    from bandit.registry import _discover

    assert "elsewhere" not in _discover() and Elsewhere.kind == "elsewhere"


def test_an_installed_package_adds_a_policy_kind(tmp_path: Path) -> None:
    env = _plugin_env(tmp_path, "artwork_first", PLUGIN, {"first": "artwork_first"})
    out = _run(env, f"""
        import json
        from bandit.features import Candidate, UserContext
        from bandit.registry import POLICIES, SERVABLE, load_policy, make_policy
        pol = make_policy("first", seed=5, note="hello")
        cands = [Candidate("a", {{}}), Candidate("b", {{}}), Candidate("c", {{}})]
        d = pol.choose(UserContext("u1"), "t1", cands)
        pol.save({str(tmp_path / 'first.json')!r})
        back = load_policy({str(tmp_path / 'first.json')!r})
        print(json.dumps({{"names": list(POLICIES), "servable": list(SERVABLE), "chosen": d.chosen,
                          "p": d.probability, "back": type(back).__name__, "note": back.note}}))
    """)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["names"][0] == "bayes" and "first" in got["names"] and "first" in got["servable"]
    assert (got["chosen"], got["p"], got["back"], got["note"]) == ("a", 1.0, "FirstPolicy", "hello")


def test_the_service_serves_a_plugin_kind(tmp_path: Path) -> None:
    env = _plugin_env(tmp_path, "artwork_first", PLUGIN, {"first": "artwork_first"})
    out = _run(env, f"""
        from bandit.engine import Engine, EngineConfig
        from bandit.server import PolicySpec
        assert PolicySpec().convert("first", None, None) == "first"
        with Engine({str(tmp_path / 'c.db')!r}, EngineConfig(policy="first"), start_timer=False) as eng:
            print(eng.policy.kind, type(eng.policy).__module__)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["first", "artwork_first"]


def test_a_broken_plugin_is_named_and_the_builtin_kinds_still_load(tmp_path: Path) -> None:
    env = _plugin_env(tmp_path, "artwork_broken", "raise ImportError('missing dependency xyz')\n",
                      {"broken": "artwork_broken"})
    out = _run(env, """
        from bandit.registry import POLICIES
        print(sorted(POLICIES))
    """)
    assert out.returncode == 0, out.stderr
    assert "'bayes'" in out.stdout and "'vw'" in out.stdout
    assert "policy plug-in broken (artwork_broken) not loaded: missing dependency xyz" in out.stderr


def test_two_classes_claiming_one_kind_is_an_error(tmp_path: Path) -> None:
    clash = "from typing import ClassVar\nfrom bandit.baselines import UniformPolicy\n\n" \
            "class Other(UniformPolicy):\n    kind: ClassVar[str] = 'thompson'\n"
    env = _plugin_env(tmp_path, "artwork_clash", clash, {"clash": "artwork_clash"})
    out = _run(env, "import bandit.registry\n")
    assert out.returncode != 0
    assert "policy kind 'thompson' is defined twice" in out.stderr


def test_saved_policies_load_back_by_their_kind(tmp_path: Path) -> None:
    for name in ("bayes", "thompson", "uniform", "vw"):
        path = tmp_path / f"p.{policy_class(name).file_suffix}"
        make_policy(name, seed=7).save(path)
        assert type(load_policy(path)) is policy_class(name)
