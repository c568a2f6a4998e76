"""The project as a built wheel, not an editable checkout: the package data (vocabularies, the demo's
sample titles, their licences) must be inside the wheel and found from any working directory.

The wheel is built offline (`pip wheel --no-deps --no-build-isolation`) and installed with
--no-deps into a fresh venv; that venv sees this venv's site-packages through a .pth file, so torch
and the other dependencies are not installed again. A path line in a .pth does not run the .pth
files of the folder it adds, so this checkout's editable finder stays out: the test checks that
`artwork` and `bandit` are imported from the fresh venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = "artwork/assets/samples"


def sh(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run a command, fail the test with its output if it fails; its stdout."""
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    shown = " ".join(map(str, cmd))
    assert r.returncode == 0, f"{shown} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the sources: building in the checkout would write build/ and
    *.egg-info into it while others work there, and setuptools would pack stale files left in build/."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for pkg in ("artwork", "bandit"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=ignore)
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
       "-w", tmp / "dist", src, cwd=tmp)
    (whl,) = (tmp / "dist").glob("artwork_engine-*.whl")
    return whl


def test_the_wheel_carries_the_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "artwork/assets/LICENSES.md" in names  # the licences travel with the files they cover
    for vocab in ("moods.txt", "genres.txt", "mood_templates.txt", "genre_templates.txt", "actor_templates.txt"):
        assert f"artwork/assets/vocab/{vocab}" in names
    manifest = json.loads((ROOT / SAMPLES / "titles.json").read_text())
    shipped = {n for n in names if n.startswith(SAMPLES + "/")}
    expected = {f"{SAMPLES}/{p.relative_to(ROOT / SAMPLES).as_posix()}"
                for p in (ROOT / SAMPLES).rglob("*") if p.is_file()}
    assert shipped == expected  # every sample file, cast gallery and video included
    videos = [spec["video"] for spec in manifest.values() if "video" in spec]
    assert videos and all(f"{SAMPLES}/{v}" in names for v in videos)
    assert {"bandit/static/swagger-ui/swagger-ui-bundle.js", "bandit/static/redoc/redoc.standalone.js"} <= names
    # The samples' source photos are for the repository's tests and scripts only.
    assert not any(n.startswith("artwork/assets/photos/") for n in names)
    assert not any(n.startswith(("tests/", "scripts/")) for n in names)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel installed; this venv's packages visible through a .pth."""
    env_dir = tmp_path_factory.mktemp("venv") / "fresh"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    sh(sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheel,
       cwd=env_dir)
    site = Path(sh(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=env_dir).strip())
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir


def fresh_env() -> dict[str, str]:
    """No PYTHONPATH (it would put the checkout first) and no ARTWORK_* settings."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("ARTWORK_")}


def test_the_installed_wheel_runs_from_any_directory(installed: Path, tmp_path: Path) -> None:
    py, artwork = installed / "bin" / "python", installed / "bin" / "artwork"
    elsewhere = tmp_path / "elsewhere"  # outside the checkout: nothing can come from ROOT
    elsewhere.mkdir()
    env = fresh_env()

    where = json.loads(sh(py, "-c", "import json, artwork, bandit, artwork.tagging as t, bandit.demo as d; "
                                    "print(json.dumps([artwork.__file__, bandit.__file__, str(t.ASSETS), "
                                    "str(d.SAMPLES)]))", cwd=elsewhere, env=env))
    for path in where:
        assert Path(path).is_relative_to(installed), f"{path} is not from the fresh venv"
        assert not Path(path).is_relative_to(ROOT)
    assets = Path(where[2])
    assert (assets / "LICENSES.md").is_file()
    samples = Path(where[3])
    for title, spec in json.loads((samples / "titles.json").read_text()).items():  # what the demo reads
        if "video" in spec:
            assert (samples / spec["video"]).is_file(), title
        else:
            assert any((samples / title).glob("*.jpg")), title
        for refs in spec.get("cast", {}).values():
            assert all((samples / r).is_file() for r in refs), title

    from importlib.metadata import version
    assert sh(artwork, "--version", cwd=elsewhere, env=env).strip() == f"artwork {version('artwork-engine')}"

    # Upload a packaged sample photo with the tiny seeded encoder: tagging reads the packaged vocabulary.
    photo = samples / "whiskers" / "coffee.jpg"
    store = elsewhere / "catalog.db"
    out = sh(artwork, "--store", store, "upload", "whiskers", photo, "--title-name", "Whiskers & Espresso",
             "--model", "tiny", "--quiet", cwd=elsewhere, env=env)
    assert "whiskers: 1 added, 0 duplicate, 0 rejected" in out
    titles = json.loads(sh(artwork, "--store", store, "titles", "--json", cwd=elsewhere, env=env))["titles"]
    assert [(t["title_id"], t["name"], t["artworks"]) for t in titles] == [("whiskers", "Whiskers & Espresso", 1)]
    shown = json.loads(sh(artwork, "--store", store, "show", "whiskers", "--json", cwd=elsewhere, env=env))
    moods = {ln.strip() for ln in (assets / "vocab" / "moods.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")}
    (art,) = shown["artworks"]
    assert art["top_moods"] and {label for label, _ in art["top_moods"]} <= moods
