"""The packages as a Python API: `__version__`, public names re-exported lazily (importing the
packages stays cheap), and the notebook path from a Parquet log to an estimate."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

import artwork
import bandit

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "open_clip", "dlib", "av", "matplotlib", "fastapi", "uvicorn", "vowpal_wabbit_next", "sklearn")


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_version_is_the_installed_distributions() -> None:
    assert artwork.__version__ == bandit.__version__ == version("artwork-engine")


@pytest.mark.parametrize("package", [artwork, bandit])
def test_every_public_name_resolves_to_its_defining_module(package) -> None:
    for name in package.__all__:
        value = getattr(package, name)
        if name == "__version__":
            continue
        home = package._EXPORTS[name]
        assert getattr(sys.modules[home], name) is value, name
        assert name in dir(package)
    with pytest.raises(AttributeError, match=f"module '{package.__name__}' has no attribute 'nope'"):
        package.nope  # noqa: B018


def test_importing_the_packages_loads_nothing_heavy() -> None:
    res = python("import sys, artwork, bandit\n"
                 "v = artwork.__version__, bandit.__version__\n"
                 f"print([m for m in {HEAVY!r} if m in sys.modules])")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
    # A name pulls in its own module only: the Parquet reader needs pyarrow, not VW or torch.
    res = python("import sys, bandit\nbandit.read_parquet\n"
                 f"print('pyarrow' in sys.modules, [m for m in {HEAVY!r} if m in sys.modules])")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "True []"


def test_the_notebook_snippet_estimates_from_a_parquet_log(tmp_path: Path) -> None:
    from bandit.learning import run_online

    sim = bandit.Simulator(seed=2, n_segments=2, n_titles=3, artworks_per_title=3)
    bandit.write_parquet(run_online(bandit.UniformPolicy(seed=2), sim, 600, seed=2, log=True, learn=False).records,
                         tmp_path / "log.parquet")

    # The README's snippet, as a notebook would run it.
    records = bandit.read_parquet(tmp_path / "log.parquet")
    rows = bandit.select_rows(records, "explore").records
    arrays = bandit.records_to_arrays(rows, reward_model=False)
    uniform = arrays.mask / arrays.mask.sum(axis=1, keepdims=True)
    inputs = bandit.build_inputs(uniform, arrays.action, arrays.reward, arrays.pscore)
    ips, snips = bandit.IPS().estimate(inputs), bandit.SNIPS().estimate(inputs)

    # A uniform log valued for the uniform policy: every weight is 1, so both are the click rate.
    rate = float(np.mean([r.reward for r in records]))
    assert ips == pytest.approx(rate, rel=1e-12) and snips == pytest.approx(rate, rel=1e-12)
    assert arrays.q_hat is None and arrays.logged is not None
    assert np.allclose(arrays.logged, uniform)  # the logger was uniform: its recorded distribution says so
    # The same arrays with the reward model run every estimator, as `artwork replay` does.
    full = bandit.records_to_arrays(rows)
    ests = bandit.evaluate_policy(bandit.policy_inputs(bandit.UniformPolicy(), rows, full), n_bootstrap=50)
    assert {e.name for e in ests} >= {"ips", "snips", "dm", "dr"}
    assert next(e.value for e in ests if e.name == "ips") == pytest.approx(ips, rel=1e-12)
    # The old name, still used by the commands, is the same step with the reward model.
    from bandit.offline import log_arrays

    old = log_arrays(rows)
    assert np.array_equal(old.q_hat, full.q_hat) and np.array_equal(old.action, arrays.action)
