"""The catalog file under crashes and concurrent readers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from artwork.ingest import Ingestor
from artwork.store import Catalog
from conftest import encode, scene

ROOT = Path(__file__).resolve().parents[1]

UPLOADER = """
import sys
from artwork.encoder import build_tiny
from artwork.ingest import Ingestor
from artwork.store import Catalog
Ingestor(Catalog(sys.argv[1]), build_tiny(), batch_size=2).upload_files("t1", [sys.argv[2]], progress=False)
"""


def _consistent(db: Path) -> int:
    """Assert every artwork row is complete; returns how many there are."""
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n = con.execute("SELECT COUNT(*) FROM artworks").fetchone()[0]
    orphans = con.execute(
        "SELECT COUNT(*) FROM artworks a LEFT JOIN blobs b USING (sha256) "
        "LEFT JOIN embeddings e ON e.sha256=a.sha256 LEFT JOIN image_tags t ON t.sha256=a.sha256 "
        "WHERE b.data IS NULL OR e.vector IS NULL OR t.tags IS NULL").fetchone()[0]
    assert orphans == 0
    con.close()
    return n


def test_killed_upload_leaves_a_consistent_store_and_a_rerun_completes(tmp_path, tiny):
    images = tmp_path / "many"
    images.mkdir()
    for i in range(120):
        (images / f"img{i:03d}.png").write_bytes(encode(scene(i, (320, 240)), "PNG"))
    db = tmp_path / "crash.db"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", UPLOADER, str(db), str(images)], env=env)
    try:
        deadline = time.time() + 120
        seen = 0
        while time.time() < deadline and proc.poll() is None:
            if db.exists():
                try:  # a reader works while the uploader writes (WAL)
                    with Catalog(db) as reader:
                        seen = len(reader.artworks("t1"))
                except sqlite3.OperationalError:
                    seen = 0
            if seen >= 6:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "uploader finished before it could be killed; make the upload bigger"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    stored = _consistent(db)
    assert 6 <= stored < 120
    with Catalog(db) as catalog:
        report = Ingestor(catalog, tiny).upload_files("t1", [images], progress=False)
        assert report.count("duplicate") == stored and report.count("added") == 120 - stored
    assert _consistent(db) == 120


def test_failed_write_rolls_back_the_whole_artwork(catalog, tiny, tmp_path, monkeypatch):
    (tmp_path / "a.jpg").write_bytes(encode(scene(1)))
    (tmp_path / "b.jpg").write_bytes(encode(scene(2)))
    ing = Ingestor(catalog, tiny)
    ing.upload_files("t1", [tmp_path / "a.jpg"], progress=False)
    real_dumps = __import__("json").dumps

    def exploding(obj, *a, **kw):  # fails after blob and embedding rows were written
        if isinstance(obj, dict) and "format" in obj:
            raise OSError("disk full")
        return real_dumps(obj, *a, **kw)

    monkeypatch.setattr("artwork.store.json.dumps", exploding)
    with pytest.raises(OSError, match="disk full"):
        ing.upload_files("t1", [tmp_path / "b.jpg"], progress=False)
    monkeypatch.undo()
    assert len(catalog.artworks("t1")) == 1
    assert catalog.stats()["blobs"] == 1 and catalog.stats()["embeddings"] == 1
