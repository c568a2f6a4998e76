"""Operator hardening: one server per store (lock), slow clients timed out and a connection limit,
a failing store is a 503 with the error envelope and /health degraded, owner-only event log files,
a warning when serving without an API key, and `frames` saying why nothing was added.

Real processes, real sockets, real SQLite (disk full is SQLite's own SQLITE_FULL via max_page_count)."""

from __future__ import annotations

import os
import json
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
import uvicorn
from click.testing import CliRunner

from bandit.cli import cli
from bandit.engine import Engine, EngineConfig
from bandit.server import ServeConfig, create_app, free_port, serve_command
from servekit import ROOT, LiveServer, build_catalog

PAGE = {"user_id": "u1", "titles": ["t00", "t01"]}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    s = tmp_path / "catalog.db"
    build_catalog(s, n_titles=2)
    return s


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def log_decisions(events: Path) -> int:
    """Decision count read through a read-only connection of our own."""
    db = sqlite3.connect(f"file:{events}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
    finally:
        db.close()


# -- B: one learner per store ----------------------------------------------------------------------


def test_a_second_server_on_the_same_store_refuses_with_the_holders_pid(store: Path) -> None:
    first = LiveServer(store).start()
    try:
        with first.client() as c:
            assert c.post("/v1/choose", json=PAGE).status_code == 200
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("ARTWORK_API_KEY", None)
        second = subprocess.run([sys.executable, "-m", "bandit.server", "--store", str(store), "--port",
                                 str(free_port())], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode != 0, second.stderr
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, second.stderr
        lock = f"{store}.events.db.lock"
        assert f"store {store} is already served by pid {first.proc.pid} (lock file {lock})" in lines[0], lines[0]
        assert "Traceback" not in second.stderr
        # The first server is untouched and still the only writer.
        with first.client() as c:
            assert c.post("/v1/choose", json={**PAGE, "user_id": "u2"}).status_code == 200
        assert mode(Path(lock)) == 0o600
    finally:
        first.kill()
    # SIGKILL leaves the lock file behind, but not the lock: the next server starts.
    again = LiveServer(store).start()  # raises if it exits
    again.stop()


# -- C: slow clients, connection limit --------------------------------------------------------------


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed the connection (EOF or reset), None if still open."""
    t0 = time.monotonic()
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(4096):
                return time.monotonic() - t0
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - t0
    except socket.timeout:
        return None


def test_dripping_and_idle_connections_are_closed_and_the_connection_limit_holds(store: Path) -> None:
    server = LiveServer(store, "--read-timeout", "1", "--max-connections", "4", api_key="k").start()
    try:
        port = server.port
        partial = socket.create_connection(("127.0.0.1", port))
        partial.sendall(b"GET /heal")  # a partial request line, then nothing
        headers = socket.create_connection(("127.0.0.1", port))
        headers.sendall(b"POST /v1/choose HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")  # body never ends
        idle = socket.create_connection(("127.0.0.1", port))  # connects and sends nothing
        socks = [partial, headers, idle]
        try:
            # Four connections open (three stalled + this client's): a new request is 503, not a hang.
            with httpx.Client(base_url=server.url, timeout=10) as c:
                assert c.get("/health").status_code == 503
            # A drip feed does not reset the deadline.
            drip = socket.create_connection(("127.0.0.1", port))
            socks.append(drip)
            t0 = time.monotonic()
            for ch in b"GET /health HTTP/1.1\r\n":
                try:
                    drip.sendall(bytes([ch]))
                except OSError:
                    break
                time.sleep(0.1)
                if time.monotonic() - t0 > 3:
                    break
            for s in (partial, headers, idle, drip):
                took = closed_within(s, 5.0)
                assert took is not None, "a stalled connection was not closed"
            assert time.monotonic() - t0 < 6
        finally:
            for s in socks:
                s.close()
        # With the stalled connections gone, requests are served again, including a slow-ish but
        # complete one (the deadline counts per request, not per connection).
        with server.client() as c:
            assert c.get("/health").status_code == 200
            assert c.post("/v1/choose", json=PAGE).status_code == 200
        ok = socket.create_connection(("127.0.0.1", port))
        try:
            ok.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.4)
            ok.sendall(b"\r\n")
            ok.settimeout(5)
            assert ok.recv(4096).startswith(b"HTTP/1.1 200")
        finally:
            ok.close()
    finally:
        server.stop()
    log = server.log.read_text()
    assert "no API key" not in log  # keyed: no warning


# -- D: a failing store is 503 + envelope, /health degraded until a write succeeds ------------------


class InProcessServer:
    """uvicorn in a thread over an engine we hold, so the test can reach its SQLite connection."""

    def __init__(self, store: Path) -> None:
        self.engine = Engine(store, EngineConfig())
        self.port = free_port()
        app = create_app(ServeConfig(store=str(store), port=self.port), self.engine)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="critical"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> InProcessServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def max_pages(self, n: int | None) -> None:
        """Cap the event log's size at n pages (None: at its current size) on the engine's own connection."""
        ev = self.engine.events
        with ev._lock:
            if n is None:
                n = ev._db.execute("PRAGMA page_count").fetchone()[0]
            ev._db.execute(f"PRAGMA max_page_count={n}")


def test_disk_full_is_503_with_the_envelope_and_health_names_the_failing_store(store: Path) -> None:
    events = Path(f"{store}.events.db")
    with InProcessServer(store) as srv, httpx.Client(base_url=f"http://127.0.0.1:{srv.port}", timeout=30) as c:
        assert c.post("/v1/choose", json=PAGE).status_code == 200
        assert c.get("/health").json()["status"] == "ok"
        srv.max_pages(None)
        failed = None
        for i in range(200):  # the first pages may still fit in free space on the last page
            before = log_decisions(events)
            r = c.post("/v1/choose", json={"user_id": f"full{i}", "titles": ["t00", "t01"],
                                           "history": [f"h{j}-" + "x" * 100 for j in range(40)]})
            if r.status_code != 200:
                failed = r
                break
        assert failed is not None, "the capped event log never filled"
        assert failed.status_code == 503, failed.text
        assert failed.headers["content-type"] == "application/problem+json"
        body = failed.json()
        assert body["error"] == "store_unavailable" and "database or disk is full" in body["detail"], body
        assert str(events) in body["detail"] and "Traceback" not in failed.text
        assert log_decisions(events) == before  # nothing half-written
        h = c.get("/health")
        assert h.status_code == 503, h.text
        assert h.json()["status"] == "degraded" and h.json()["failing_store"] == str(events), h.text
        assert h.json()["error"] == "database or disk is full", h.text
        assert c.head("/health").status_code == 503
        # Reads still work; a write that cannot fit still fails; the next write after space is back heals.
        assert c.get("/metrics").status_code == 200
        srv.max_pages(1_073_741_823)
        ok = c.post("/v1/choose", json={"user_id": "after", "titles": ["t00"]})
        assert ok.status_code == 200, ok.text
        h = c.get("/health")
        assert h.status_code == 200 and h.json()["status"] == "ok" and "failing_store" not in h.json(), h.text


# -- E: file modes, API key warning and help ------------------------------------------------------


def test_event_log_files_are_owner_only_and_keyless_serving_warns(store: Path) -> None:
    old = os.umask(0o022)  # the usual umask: without the fix the log would be 0644
    try:
        server = LiveServer(store).start()
    finally:
        os.umask(old)
    try:
        with server.client() as c:
            assert c.post("/v1/choose", json=PAGE).status_code == 200
        events = Path(f"{store}.events.db")
        for p in (events, Path(f"{events}-wal"), Path(f"{events}-shm")):
            assert p.exists(), p
            assert mode(p) == 0o600, (p, oct(mode(p)))
    finally:
        server.stop()
    warnings = [ln for ln in server.log.read_text().splitlines() if ln.startswith("warning: no API key")]
    assert len(warnings) == 1 and "ARTWORK_API_KEY" in warnings[0], server.log.read_text()


def test_api_key_help_prefers_the_environment_and_the_environment_is_read(monkeypatch) -> None:
    res = CliRunner().invoke(cli, ["serve", "--help"])
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    assert "$ARTWORK_API_KEY" in text and "ps" in text
    for flag in ("--read-timeout", "--keep-alive", "--max-connections"):
        assert flag in text
    monkeypatch.setenv("ARTWORK_API_KEY", "from-env")
    ctx = serve_command.make_context("serve", [], obj={"store": "x.db"})
    assert ctx.params["api_key"] == "from-env"


# -- E: frames says why nothing was added ---------------------------------------------------------


def write_flat_video(path: Path, seconds: float = 3.0, fps: int = 10) -> None:
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = 160, 96, "yuv420p"
        img = np.full((96, 160, 3), (90, 120, 150), np.uint8)
        for _ in range(int(seconds * fps)):
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)


def test_frames_on_a_flat_video_exits_1_and_says_why(tmp_path: Path) -> None:
    video = tmp_path / "flat.mp4"
    write_flat_video(video)
    store = tmp_path / "c.db"
    res = CliRunner().invoke(cli, ["--store", str(store), "frames", "t1", str(video), "--model", "tiny", "--quiet"])
    assert res.exit_code == 1, res.output
    out = " ".join(res.output.split())
    assert "no frames added from flat.mp4" in out, out
    assert "sampled frames were rejected" in out and "flat" in out, out
    assert "Traceback" not in res.output


def read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a content-length body; fails if the server closes the socket."""
    data = b""
    while True:
        if b"\r\n\r\n" in data:
            head, body = data.split(b"\r\n\r\n", 1)
            length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
            if len(body) >= length:
                return data
        chunk = sock.recv(65536)
        assert chunk, "the server closed the keep-alive connection"
        data += chunk


def test_an_unexpected_error_is_a_json_500_and_the_connection_stays_open(store: Path, monkeypatch) -> None:
    """Two requests on one keep-alive socket: both get the JSON envelope, no traceback, no reset."""
    with InProcessServer(store) as srv:
        def boom() -> str:
            raise RuntimeError("secret internal detail")

        monkeypatch.setattr(srv.engine, "metrics_text", boom)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            replies = []
            for _ in range(2):
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
                replies.append(read_response(sock))
        for r in replies:
            head, body = r.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 500")
            assert json.loads(body)["error"] == "internal"
            assert b"Traceback" not in body and b"secret internal detail" not in body
