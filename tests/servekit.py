"""Helpers for the serving tests: a small real catalog and a live server subprocess on loopback."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import uvicorn

from artwork.store import Catalog
from bandit.engine import Engine, EngineConfig
from bandit.server import ServeConfig, create_app, free_port
from conftest import encode, scene

ROOT = Path(__file__).resolve().parent.parent

# Each title gets one crime-looking, one romance-looking and one neutral candidate, so a
# two-segment audience (crime fans, romance fans) has something to personalise on.
LOOKS = (
    {"genres": {"crime": 0.7, "romance": 0.1}, "moods": {"dark": 0.8, "tense": 0.6, "warm": 0.1}},
    {"genres": {"crime": 0.1, "romance": 0.7}, "moods": {"romantic": 0.8, "warm": 0.7, "dark": 0.1}},
    {"genres": {"crime": 0.35, "romance": 0.35}, "moods": {"warm": 0.3, "dark": 0.3}},
)


def build_catalog(path: Path, n_titles: int = 6, per_title: int = 3, seed: int = 0) -> list[str]:
    """Real JPEG candidates with designed tags and random unit embeddings (no encoder needed).

    Returns the title ids. Written with `Catalog.add_artwork` directly because loading even the
    tiny encoder costs seconds per process and the server never embeds anything.
    """
    rng = np.random.default_rng(seed)
    with Catalog(path) as c:
        titles = []
        for t in range(n_titles):
            tid = f"t{t:02d}"
            c.ensure_title(tid, f"Title {t}")
            for k in range(per_title):
                data = encode(scene(seed * 1000 + t * 10 + k, (64, 48)))
                emb = rng.normal(size=32).astype(np.float32)
                emb /= np.linalg.norm(emb)
                look = LOOKS[k % len(LOOKS)]
                tags = {kind: {lab: round(float(np.clip(v + rng.normal(0, 0.05), 0.01, 1)), 4) for lab, v in d.items()}
                        for kind, d in look.items()}
                c.add_artwork(tid, data, hashlib.sha256(data).hexdigest(), f"upload:{k}.jpg", 64, 48,
                              "test-encoder/seed0", emb, tags, "test-vocab")
            titles.append(tid)
    return titles


class LiveServer:
    """`python -m bandit.server` as a subprocess on a free loopback port."""

    def __init__(self, store: Path, *args: str, api_key: str | None = None) -> None:
        self.store = store
        self.args = list(args)
        self.api_key = api_key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = store.parent / f"server-{self.port}.log"

    def command(self) -> list[str]:
        """The server's command line (`python -m bandit.server ...`)."""
        cmd = [sys.executable, "-m", "bandit.server", "--store", str(self.store), "--port", str(self.port), *self.args]
        return cmd + (["--api-key", self.api_key] if self.api_key else [])

    def start(self, timeout: float = 30.0) -> LiveServer:
        """Start and wait until /health answers."""
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("ARTWORK_API_KEY", None)
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not come up:\n{self.log.read_text()[-3000:]}")

    def client(self, **kw) -> httpx.Client:
        """An httpx client with the API key set when there is one."""
        headers = {"X-API-Key": self.api_key} if self.api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kw)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final snapshot."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM: graceful shutdown (final snapshot)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


class InProcessServer:
    """uvicorn in a thread over an engine the test holds, on a free loopback port: for faults a
    test has to cause from inside (a full disk on the engine's own SQLite connection)."""

    def __init__(self, store: Path, api_key: str | None = None) -> None:
        self.engine = Engine(store, EngineConfig())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(ServeConfig(store=str(store), port=self.port, api_key=api_key), self.engine)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="critical"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> InProcessServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("in-process server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def max_pages(self, n: int | None) -> None:
        """Cap the event log at n pages (None: its current size): SQLite then fails writes with
        SQLITE_FULL, exactly as on a full disk."""
        ev = self.engine.events
        with ev._lock:
            if n is None:
                n = ev._db.execute("PRAGMA page_count").fetchone()[0]
            ev._db.execute(f"PRAGMA max_page_count={n}")
