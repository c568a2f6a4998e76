"""`artwork serve --config FILE.toml` and $ARTWORK_SERVE_<OPTION>: precedence, the shipped example,
and bad files or variables refused with one line naming the file (or variable), the key and what
was expected, before anything starts."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from bandit.server import free_port, serve_command
from servekit import build_catalog

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "serve.example.toml"
ARTWORK = str(Path(sys.executable).parent / "artwork")


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any ARTWORK_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTWORK_")}
    return {**env, **extra}


def config_options() -> dict[str, object]:
    """serve's options a config file may set: key (option name without '--') -> click option."""
    return {p.opts[0][2:]: p for p in serve_command.params if p.name not in ("config", "store")}


def parse(args: list[str], env: dict[str, str]) -> dict[str, object]:
    """serve's parameters as click resolves them (no server started)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        ctx = serve_command.make_context("serve", list(args), obj={"store": "unused.db"})
        return dict(ctx.params)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_the_example_lists_every_option_with_its_default() -> None:
    text = EXAMPLE.read_text()
    active = tomllib.loads(text)
    commented = set(re.findall(r"^#\s*([a-z][a-z-]*)\s*=", text, flags=re.M))
    options = config_options()
    assert set(active) | commented == set(options), "docs/serve.example.toml must list every serve option"
    assert not set(active) & commented
    defaults = parse([], clean_env())
    for key, value in active.items():
        assert (tuple(value) if isinstance(value, list) else value) == defaults[options[key].name], key
    for key in commented:  # left commented because they have no value by default
        assert defaults[options[key].name] is None, key
    # The example, loaded as it stands, changes nothing.
    assert parse(["--config", str(EXAMPLE)], clean_env()) == defaults


def test_precedence_command_line_then_environment_then_file_then_default(tmp_path: Path) -> None:
    cfg = tmp_path / "serve.toml"
    cfg.write_text('port = 7001\npolicy = "thompson"\nexplore-share = 0.25\nreward-range = [0.0, 2.0]\n'
                   'durable = true\nlog-level = "info"\n')
    env = clean_env(ARTWORK_SERVE_PORT="7002", ARTWORK_SERVE_POLICY="uniform")
    got = parse(["--config", str(cfg), "--port", "7003"], env)
    assert got["port"] == 7003  # command line over environment over file
    assert got["policy"] == "uniform"  # environment over file
    assert got["explore_share"] == 0.25 and got["reward_range"] == (0.0, 2.0) and got["durable"] is True
    assert got["log_level"] == "info"  # file over default
    assert got["feedback_window"] == 1800.0  # default: set nowhere
    # The config file itself can come from the environment.
    assert parse([], clean_env(ARTWORK_SERVE_CONFIG=str(cfg)))["port"] == 7001


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            r = httpx.get(url + "/health", timeout=1.0)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server did not come up on {url}:\n{log.read_text()[-3000:]}")


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.db"
    build_catalog(path, n_titles=2, per_title=3)
    return path


def test_a_server_started_from_a_config_file_and_environment_honours_both(tmp_path: Path, store: Path) -> None:
    file_port, env_port = free_port(), free_port()
    while env_port == file_port:  # free_port may hand out the same free port twice
        env_port = free_port()
    events = tmp_path / "from-config.events.db"
    cfg = tmp_path / "serve.toml"
    cfg.write_text(f'port = {file_port}\npolicy = "thompson"\nevents = "{events}"\nexplore-share = 1.0\n')
    log = tmp_path / "server.log"
    # The environment moves the port away from the file's; the policy and event log come from the file.
    proc = subprocess.Popen([ARTWORK, "--store", str(store), "serve", "--config", str(cfg)], cwd=tmp_path,
                            env=clean_env(ARTWORK_SERVE_PORT=str(env_port)), stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    try:
        health = wait_for(f"http://127.0.0.1:{env_port}", proc, log)
        assert health["policy"].startswith("thompson"), health
        assert health["event_log_location"] == str(events) and events.is_file()
        assert not Path(f"{store}.events.db").exists()  # the default event log was not used
        with socket.socket() as s:  # nothing listens on the file's port: the environment won
            assert s.connect_ex(("127.0.0.1", file_port)) != 0
        # explore-share = 1.0 from the file: every page is served by the uniform explorer, not thompson.
        r = httpx.post(f"http://127.0.0.1:{env_port}/v1/choose", timeout=30,
                       json={"user_id": "u1", "titles": ["t00", "t01"]})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert len(results) == 2 and all(t["policy"] == "uniform" and t["probability"] == pytest.approx(1 / 3)
                                         for t in results), results
    finally:
        proc.terminate()
        proc.wait(timeout=30)


BAD_FILES = [
    ('port = "8000"\n', ["key 'port'", "expected an integer", "a string ('8000')"]),
    ('explor-share = 0.1\n', ["unknown key 'explor-share'", "did you mean 'explore-share'"]),
    ('explore_share = 0.1\n', ["unknown key 'explore_share'", "did you mean 'explore-share'"]),
    ('explore-share = 1.5\n', ["key 'explore-share'", "1.5 is not in the range 0<=x<=1"]),
    ('policy = "greedy"\n', ["key 'policy'", "'greedy' is not one of 'bayes'"]),
    ('durable = "yes"\n', ["key 'durable'", "expected true or false"]),
    ('reward-range = [0, 1, 2]\n', ["key 'reward-range'", "expected an array of 2 numbers", "an array of 3"]),
    ('store = "other.db"\n', ["key 'store' is not allowed", "$ARTWORK_STORE"]),
    ('[serve]\nport = 8000\n', ["unknown key 'serve'"]),
    ('port = \n', ["not valid TOML", "line 1"]),
]


@pytest.mark.parametrize("text,expected", BAD_FILES, ids=[t.split("\n")[0] for t, _ in BAD_FILES])
def test_a_bad_config_file_is_refused_before_anything_starts(tmp_path: Path, store: Path, text: str,
                                                             expected: list[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    port = free_port()
    r = subprocess.run([ARTWORK, "--store", str(store), "serve", "--config", str(cfg), "--port", str(port)],
                       cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("Error:"))
    assert str(cfg) in line and "--config" in line
    for part in expected:
        assert part in line, line
    assert not Path(f"{store}.events.db").exists() and not Path(f"{store}.events.db.lock").exists()


@pytest.mark.parametrize("var,value,expected", [
    ("ARTWORK_SERVE_PORT", "eighty", ["environment variable ARTWORK_SERVE_PORT='eighty'", "not a valid integer"]),
    ("ARTWORK_SERVE_EXPLORE_SHARE", "2", ["ARTWORK_SERVE_EXPLORE_SHARE='2'", "not in the range 0<=x<=1"]),
    ("ARTWORK_SERVE_PROT", "8000", ["ARTWORK_SERVE_PROT is not a serve setting", "did you mean ARTWORK_SERVE_PORT"]),
    ("ARTWORK_SERVE_STORE", "x.db", ["ARTWORK_SERVE_STORE is not a serve setting", "$ARTWORK_STORE"]),
    ("ARTWORK_SERVE_API_KEY", "k", ["ARTWORK_SERVE_API_KEY is not a serve setting", "$ARTWORK_API_KEY"]),
])
def test_a_bad_environment_variable_is_named(tmp_path: Path, store: Path, var: str, value: str,
                                             expected: list[str]) -> None:
    r = subprocess.run([ARTWORK, "--store", str(store), "serve"], cwd=tmp_path, env=clean_env(**{var: value}),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    for part in expected:
        assert part in r.stderr, r.stderr
    assert not Path(f"{store}.events.db").exists()
