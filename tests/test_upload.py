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
    assert res.stdout.startswith("t9: 3 added")  # the summary is the result: stdout; stderr only warns
    assert "t9:" not in res.stderr
    from artwork.store import Catalog
    with Catalog(store) as cat:
        assert cat.title("t9").name == "Nine" and len(cat.artworks("t9")) == 3


# -- folders: every file that does not go in is named ------------------------------------------------
def test_a_folder_upload_names_every_skipped_file_and_takes_an_extensionless_jpeg(tmp_path, image_dir):
    (image_dir / "anim.gif").write_bytes(encode(scene(20), "GIF"))
    (image_dir / "scan.bmp").write_bytes(encode(scene(21), "BMP"))
    (image_dir / "poster").write_bytes(encode(scene(22), "JPEG"))  # no extension, but a JPEG
    (image_dir / "notes.txt").write_text("designer notes, not a picture")
    (image_dir / "gone.jpg").symlink_to(image_dir / "deleted.jpg")  # cannot be read
    store = tmp_path / "c.db"
    res = CliRunner().invoke(cli, ["upload", "t1", str(image_dir), "--model", "tiny", "--quiet", "--store", str(store)])
    assert res.exit_code == 0, res.output  # skipped folder entries warn, they do not fail the upload
    assert res.stdout == "t1: 4 added, 0 duplicate, 4 skipped, 0 rejected\n"
    lines = res.stderr.splitlines()
    assert f"skipped {image_dir / 'anim.gif'}: GIF image: only JPEG, PNG and WebP are accepted" in lines
    assert f"skipped {image_dir / 'scan.bmp'}: BMP image: only JPEG, PNG and WebP are accepted" in lines
    assert f"skipped {image_dir / 'notes.txt'}: not an image (expected JPEG, PNG or WebP)" in lines
    assert f"skipped {image_dir / 'gone.jpg'}: broken symbolic link" in lines
    from artwork.store import Catalog
    with Catalog(store) as cat:
        assert sorted(a.source for a in cat.artworks("t1")) == ["upload:a.jpg", "upload:b.png", "upload:c.webp",
                                                                 "upload:poster"]


def test_upload_progress_goes_to_stderr_and_only_the_summary_to_stdout(tmp_path, image_dir):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-m", "bandit.cli", "upload", "t1", str(image_dir), "--model", "tiny",
                          "--store", str(tmp_path / "c.db")],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(root)), timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "t1: 3 added, 0 duplicate, 0 rejected\n"
    assert "ingest t1" in res.stderr and "3/3" in res.stderr  # the (non-interactive) progress bar


# -- near duplicates ---------------------------------------------------------------------------------
def _variants(tmp_path, seed: int = 30):
    """The same picture as JPEG, PNG, CMYK JPEG and a smaller WebP; a darker grade; another picture."""
    im = scene(seed, (320, 240))
    files = {"orig.jpg": encode(im, "JPEG", quality=90), "copy.png": encode(im, "PNG"),
             "cmyk.jpg": encode(im.convert("CMYK"), "JPEG", quality=85),
             "small.webp": encode(im.resize((160, 120)), "WEBP"),
             "dark.jpg": encode(im.point(lambda v: v // 2), "JPEG"),  # a colour grade: a real alternative
             "other.jpg": encode(scene(seed + 1, (320, 240)), "JPEG")}
    d = tmp_path / "variants"
    d.mkdir()
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d


def test_the_same_picture_in_other_formats_is_a_near_duplicate_and_skipped(catalog, tiny, tmp_path):
    d = _variants(tmp_path)
    ing = Ingestor(catalog, tiny)
    first = ing.upload_files("t1", [d / "orig.jpg"], progress=False)
    orig_id = first.outcomes[0].artwork_id
    report = ing.upload_files("t1", [d / n for n in ("copy.png", "cmyk.jpg", "small.webp", "dark.jpg", "other.jpg")],
                              progress=False)
    by_name = {o.name.rsplit("/", 1)[-1]: o for o in report.outcomes}
    for name in ("copy.png", "cmyk.jpg", "small.webp"):
        o = by_name[name]
        assert o.status == "near-duplicate" and o.artwork_id == orig_id, o
        assert f"looks like artwork {orig_id} (upload:orig.jpg)" in o.reason
    assert by_name["dark.jpg"].status == "added" and not by_name["dark.jpg"].reason
    assert by_name["other.jpg"].status == "added"
    assert report.ok  # a skipped near duplicate is a warning, not a failure
    assert sorted(a.source for a in catalog.artworks("t1")) == ["upload:dark.jpg", "upload:orig.jpg", "upload:other.jpg"]
    # another title is not compared: the same picture may be a candidate of two titles
    assert ing.upload_files("t2", [d / "copy.png"], progress=False).outcomes[0].status == "added"


def test_near_duplicates_inside_one_upload_and_allow_duplicates(catalog, tiny, tmp_path):
    d = _variants(tmp_path)
    ing = Ingestor(catalog, tiny)
    report = ing.upload_files("t1", [d / "orig.jpg", d / "copy.png"], progress=False)
    assert [o.status for o in report.outcomes] == ["added", "near-duplicate"]
    kept = ing.upload_files("t1", [d / "cmyk.jpg"], progress=False, allow_duplicates=True)
    [o] = kept.outcomes
    assert o.status == "added" and "looks like artwork" in o.reason  # stored, and said why it is suspicious
    assert len(catalog.artworks("t1")) == 2
    stored = [fp for _, fp, _, _ in catalog.fingerprints("t1")]
    assert all(fp is not None and len(fp) == 16 + 96 for fp in stored)


def test_cli_near_duplicate_warning_and_flag(tmp_path):
    d = _variants(tmp_path)
    store = str(tmp_path / "c.db")
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", store, "upload", "t1", str(d / "orig.jpg"), "--model", "tiny", "--quiet"]).exit_code == 0
    res = runner.invoke(cli, ["--store", store, "upload", "t1", str(d / "copy.png"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.stdout == "t1: 0 added, 0 duplicate, 1 near-duplicate, 0 rejected\n"
    assert f"near-duplicate {d / 'copy.png'}: looks like artwork" in res.stderr
    assert "--allow-duplicates keeps it" in res.stderr
    res = runner.invoke(cli, ["--store", store, "upload", "t1", str(d / "copy.png"), "--quiet", "--allow-duplicates"])
    assert res.exit_code == 0 and res.stdout.startswith("t1: 1 added"), res.output
    assert "kept near-duplicate" in res.stderr


def test_a_catalog_without_fingerprints_gets_the_column_and_they_are_computed(tmp_path, tiny):
    from artwork.store import Catalog
    store = tmp_path / "old.db"
    d = _variants(tmp_path)
    data = (d / "orig.jpg").read_bytes()
    with Catalog(store) as cat:  # an artwork stored the way an older build stores it: no fingerprint
        cat.ensure_title("t1")
        cat.add_artwork("t1", data, hashlib.sha256(data).hexdigest(), "upload:orig.jpg", 320, 240, tiny.encoder_id,
                        tiny.embed_images([Image.open(io.BytesIO(data)).convert("RGB")])[0], {}, "v")
    db = sqlite3.connect(store)
    db.execute("ALTER TABLE artworks DROP COLUMN fingerprint")  # ... in a catalog that predates the column
    db.commit()
    db.close()
    with Catalog(store) as cat:
        assert [fp for _, fp, _, _ in cat.fingerprints("t1")] == [None]  # migrated: the column is back, empty
        report = Ingestor(cat, tiny).upload_files("t1", [d / "copy.png"], progress=False)
        assert report.outcomes[0].status == "near-duplicate"  # compared with the old artwork all the same
        assert all(fp is not None for _, fp, _, _ in cat.fingerprints("t1"))  # and its fingerprint is stored
        assert cat.get_meta("schema_version") == "2"  # a nullable column: older builds still open it


def test_the_sample_catalog_has_no_near_duplicates_within_a_title():
    """The demo's colour grades (astronaut_dark, portrait_bw, chelsea_warm) are alternatives, not copies."""
    from pathlib import Path

    from artwork.images import fingerprint
    samples = Path(__file__).resolve().parents[1] / "artwork" / "assets" / "samples"
    for folder in (p for p in samples.iterdir() if p.is_dir() and p.name != "cast"):
        fps = {f.name: fingerprint(Image.open(f).convert("RGB")) for f in sorted(folder.iterdir())}
        near = [(a, b) for a in fps for b in fps if a < b and fps[a].near(fps[b])]
        assert near == [], folder.name


# -- manifests ---------------------------------------------------------------------------------------
def _manifest_dir(tmp_path):
    d = tmp_path / "delivery"
    (d / "art").mkdir(parents=True)
    (d / "art" / "one.jpg").write_bytes(encode(scene(40)))
    (d / "art" / "two.png").write_bytes(encode(scene(41), "PNG"))
    (d / "art" / "three.webp").write_bytes(encode(scene(42), "WEBP"))
    return d


def test_upload_manifest_stores_rows_with_notes_relative_to_the_csv(tmp_path):
    d = _manifest_dir(tmp_path)
    manifest = d / "manifest.csv"
    # a spreadsheet export: BOM, CRLF, capitalised header, a quoted note with a comma and a line break
    manifest.write_bytes(("\ufeffTitle,File,Notes\r\nt1,art/one.jpg,\"hero shot, warm\r\nsecond line\"\r\n"
                          "t2,art/two.png,\r\n\r\nt1, art/three.webp ,close-up\r\n").encode("utf-8"))
    store = tmp_path / "c.db"
    res = CliRunner().invoke(cli, ["upload", "--manifest", str(manifest), "--store", str(store), "--model", "tiny",
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.stdout == ("t1: 2 added, 0 duplicate, 0 rejected\n"
                          "t2: 1 added, 0 duplicate, 0 rejected\n")
    from artwork.store import Catalog
    with Catalog(store) as cat:
        notes = {a.source: a.meta.get("notes") for a in cat.all_artworks()}
    assert notes == {"upload:one.jpg": "hero shot, warm\nsecond line", "upload:two.png": None,
                     "upload:three.webp": "close-up"}


def test_a_manifest_with_bad_rows_names_each_line_and_stores_nothing(tmp_path):
    d = _manifest_dir(tmp_path)
    (d / "art" / "anim.gif").write_bytes(encode(scene(43), "GIF"))
    (d / "art" / "broken.jpg").write_bytes(encode(scene(44), quality=95)[:3000])
    manifest = d / "manifest.csv"
    manifest.write_text("title,file,notes\n"
                        "t1,art/one.jpg,fine\n"            # 2: good, but must not be stored alone
                        "t1,art/missing.jpg,\n"            # 3
                        ",art/two.png,\n"                  # 4
                        "a/b,art/two.png,\n"               # 5
                        "t1,,\n"                           # 6
                        "t1,art/anim.gif,\n"               # 7
                        "t1,art/broken.jpg,\n"             # 8
                        "t1,art,\n"                        # 9
                        "t1,art/three.webp,hello,world\n"  # 10
                        "t2,art/two.png,fine too\n")       # 11: good
    store = tmp_path / "c.db"
    res = CliRunner().invoke(cli, ["--store", str(store), "upload", "--manifest", str(manifest), "--model", "tiny"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    text = res.stderr
    assert f"{manifest}: 8 problems, nothing was stored:" in text
    assert f"line 3: art/missing.jpg: no such file (looked for {d / 'art' / 'missing.jpg'})" in text
    assert "line 4: the title is empty" in text
    assert "line 5: invalid title id 'a/b'" in text
    assert "line 6: the file is empty" in text
    assert "line 7: art/anim.gif: unsupported format GIF; expected JPEG, PNG or WebP" in text
    assert "line 8: art/broken.jpg: truncated or corrupt JPEG" in text
    assert "line 9: art: not a file" in text
    assert "line 10: 4 values but the header has 3 columns" in text
    assert "line 2" not in text and "line 11" not in text
    assert not store.exists()  # validated before the catalog was even opened


@pytest.mark.parametrize("content, expected", [
    (b"title,image\nt1,a.jpg\n", "line 1: header: unknown column(s) 'image'; missing column(s) file"),
    (b"title,file,file\n", "line 1: header: column(s) file given twice"),
    (b"title,file\n", "no rows below the header"),
    (b"", "empty; expected a header line"),
    (b"title,file\nt\xe9,a.jpg\n", "line 2: not UTF-8 text (byte 0xe9); save the CSV as UTF-8"),
    (b'title,file\nt1,"a.jpg\n', "line 2: not valid CSV"),
])
def test_a_malformed_manifest_says_what_was_expected(tmp_path, content, expected):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(content)
    res = CliRunner().invoke(cli, ["--store", str(tmp_path / "c.db"), "upload", "--manifest", str(manifest)])
    assert res.exit_code == 1 and expected in res.stderr, res.output
    assert "Traceback" not in res.output


def test_upload_arguments_are_checked(tmp_path, image_dir):
    runner = CliRunner()
    m = tmp_path / "m.csv"
    m.write_text("title,file\n")
    for args, expected in ([["upload", "t1"], "expected TITLE_ID and at least one FILE_OR_DIR, or --manifest CSV"],
                           [["upload", "t1", "--manifest", str(m)], "give no TITLE_ID"],
                           [["upload", "--manifest", str(tmp_path / "none.csv")], "none.csv: no such file"]):
        res = runner.invoke(cli, ["--store", str(tmp_path / "c.db"), *args])
        assert res.exit_code != 0 and expected in res.output, (args, res.output)
