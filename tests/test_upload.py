"""Upload pipeline: validation per file, duplicates, orientation, original bytes, caching."""

from __future__ import annotations

import hashlib
import io
import sqlite3

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from artwork.images import ImageLimits
from artwork.ingest import Ingestor
from bandit.cli import cli
from conftest import encode, scene


def test_valid_formats_are_added_with_original_bytes(catalog, tiny, image_dir):
    report = Ingestor(catalog, tiny).upload_files("t1", [image_dir], title_name="Title One", progress=False)
    assert [o.status for o in report.outcomes] == ["added"] * 3
    assert catalog.title("t1").name == "Title One"
    arts = catalog.artworks("t1")
    assert len(arts) == 3
    for a, f in zip(sorted(arts, key=lambda a: a.source), sorted(image_dir.iterdir())):
        data = f.read_bytes()
        assert catalog.image_bytes(a.artwork_id) == data  # kept as uploaded, not re-encoded
        assert a.sha256 == hashlib.sha256(data).hexdigest()
        assert a.embedding.dtype == np.float32
        assert abs(float(np.linalg.norm(a.embedding)) - 1) < 1e-5
        assert a.encoder_id == tiny.encoder_id


def test_each_bad_file_gets_its_own_reason_and_the_rest_go_in(catalog, tiny, tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    good = encode(scene(5))
    (d / "good.jpg").write_bytes(good)
    (d / "notimage.jpg").write_bytes(b"this is a text file, not a picture" * 20)
    (d / "truncated.jpg").write_bytes(encode(scene(6), quality=95)[:3000])
    (d / "tiny.png").write_bytes(encode(scene(7, (40, 30)), "PNG"))
    (d / "huge.png").write_bytes(encode(Image.new("RGB", (1200, 1000), "gray"), "PNG"))
    (d / "anim.gif").write_bytes(encode(scene(8), "GIF"))
    limits = ImageLimits(min_side=64, max_pixels=1_000_000)
    report = Ingestor(catalog, tiny, limits=limits).upload_files(
        "t1", [d / n for n in ("good.jpg", "notimage.jpg", "truncated.jpg", "tiny.png", "huge.png", "anim.gif")],
        progress=False)
    by_name = {o.name.rsplit("/", 1)[-1]: o for o in report.outcomes}
    assert by_name["good.jpg"].status == "added"
    assert "not an image" in by_name["notimage.jpg"].reason
    assert "truncated or corrupt JPEG" in by_name["truncated.jpg"].reason
    assert "too small" in by_name["tiny.png"].reason and "64" in by_name["tiny.png"].reason
    assert "1,200,000 pixels exceeds" in by_name["huge.png"].reason
    assert "unsupported format GIF" in by_name["anim.gif"].reason
    assert not report.ok and report.count("rejected") == 5
    assert [a.sha256 for a in catalog.artworks("t1")] == [hashlib.sha256(good).hexdigest()]


def test_duplicate_bytes_are_stored_once_and_reported(catalog, tiny, tmp_path):
    data = encode(scene(9))
    (tmp_path / "one.jpg").write_bytes(data)
    (tmp_path / "copy.jpg").write_bytes(data)
    ing = Ingestor(catalog, tiny)
    first = ing.upload_files("t1", [tmp_path / "one.jpg", tmp_path / "copy.jpg"], progress=False)
    assert [o.status for o in first.outcomes] == ["added", "duplicate"]
    again = ing.upload_files("t1", [tmp_path / "one.jpg"], progress=False)
    assert again.outcomes[0].status == "duplicate"
    assert again.outcomes[0].artwork_id == first.outcomes[0].artwork_id
    assert len(catalog.artworks("t1")) == 1


def test_same_bytes_in_another_title_reuse_the_stored_embedding(catalog, tiny, tmp_path):
    (tmp_path / "x.jpg").write_bytes(encode(scene(10)))
    ing = Ingestor(catalog, tiny)
    ing.upload_files("t1", [tmp_path / "x.jpg"], progress=False)
    calls = []
    original = tiny.embed_pixels
    try:
        tiny.embed_pixels = lambda px: calls.append(len(px)) or original(px)
        report = ing.upload_files("t2", [tmp_path / "x.jpg"], progress=False)
    finally:
        tiny.embed_pixels = original
    assert report.outcomes[0].status == "added"  # a new candidate of t2 ...
    assert calls == []  # ... whose embedding was not computed again
    assert catalog.stats()["embeddings"] == 1
    np.testing.assert_array_equal(catalog.artworks("t1")[0].embedding, catalog.artworks("t2")[0].embedding)


def test_exif_orientation_is_applied(catalog, tiny, tmp_path):
    im = scene(11, (240, 120))  # landscape pixels ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... that the camera says to rotate 90° clockwise
    data = encode(im, "JPEG", exif=exif)
    (tmp_path / "rot.jpg").write_bytes(data)
    Ingestor(catalog, tiny).upload_files("t1", [tmp_path / "rot.jpg"], progress=False)
    a = catalog.artworks("t1")[0]
    assert (a.width, a.height) == (120, 240)
    assert catalog.image_bytes(a.artwork_id) == data


def test_cli_upload_exit_status_and_messages(tmp_path, image_dir):
    (image_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    runner = CliRunner()
    store = str(tmp_path / "cli.db")
    res = runner.invoke(cli, ["--store", store, "upload", "t1", str(image_dir), "--model", "tiny", "--quiet"])
    assert res.exit_code == 1, res.output
    assert "broken.png" in res.output and "3 added" in res.output and "1 rejected" in res.output
    res = runner.invoke(cli, ["--store", store, "upload", "t1", str(image_dir / "a.jpg"), "--quiet"])
    assert res.exit_code == 0 and "1 duplicate" in res.output  # the catalog's own encoder was reused
    res = runner.invoke(cli, ["--store", store, "upload", "t1", str(tmp_path / "missing.jpg"), "--quiet"])
    assert res.exit_code == 1 and "no such file" in res.output
    res = runner.invoke(cli, ["--store", store, "show", "t1", "--json"])
    assert res.exit_code == 0 and res.output.count('"artwork_id"') == 3 and "TINY RANDOM TEST ENCODER" in res.output
    res = runner.invoke(cli, ["--store", store, "show", "nope"])
    assert res.exit_code == 1 and "unknown title 'nope'" in res.output
    typo = tmp_path / "typo.db"
    res = runner.invoke(cli, ["--store", str(typo), "show", "t1"])
    assert res.exit_code == 1 and "does not exist" in res.output and not typo.exists()
    assert sqlite3.connect(store).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_designer_script_uploads_like_the_cli(tmp_path, image_dir):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    store = tmp_path / "script.db"
    res = subprocess.run([sys.executable, str(root / "scripts" / "upload_artwork.py"), "t9", str(image_dir),
                          "--title-name", "Nine", "--model", "tiny", "--quiet", "--store", str(store)],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(root)), timeout=120)
    assert res.returncode == 0, res.stderr
    assert "t9: 3 added" in res.stderr
    from artwork.store import Catalog
    with Catalog(store) as cat:
        assert cat.title("t9").name == "Nine" and len(cat.artworks("t9")) == 3
