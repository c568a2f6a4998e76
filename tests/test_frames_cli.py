"""`artwork frames`: mined frames are stored as candidates like uploads; bad videos store nothing."""

from __future__ import annotations

from click.testing import CliRunner

from artwork.store import Catalog
from bandit.cli import cli
from videos import ShotSpec, shot_at, write_audio_only, write_video


def test_frames_command_stores_candidates_with_video_timestamp_and_quality(tmp_path):
    video = tmp_path / "ep1.mp4"
    shots = write_video(video, [ShotSpec("a", 2.0, "red", seed=1), ShotSpec("b", 2.0, "blue", seed=2),
                                ShotSpec("c", 2.0, "green", seed=3), ShotSpec("a2", 2.0, "red", seed=1)])
    store = tmp_path / "c.db"
    res = CliRunner().invoke(cli, ["--store", str(store), "frames", "ep1", str(video), "--max", "5",
                                   "--title-name", "Episode 1", "--model", "tiny", "--quiet"])
    assert res.exit_code == 0, res.output
    with Catalog(store) as cat:
        arts = cat.artworks("ep1")
        assert cat.title("ep1").name == "Episode 1"
    assert 2 <= len(arts) <= 3  # three distinct shots; the repeat of "a" is a near-duplicate
    names = set()
    for a in arts:
        assert a.source.startswith("video:ep1.mp4@")
        t = a.meta["timestamp"]
        assert abs(float(a.source.rsplit("@", 1)[1]) - t) < 1e-3
        assert {"sharpness", "brightness", "contrast", "colourfulness"} <= set(a.meta["quality"])
        assert a.embedding is not None and a.tags.moods
        names.add(shot_at(shots, t).label.rstrip("2"))
    assert len(names) == len(arts)  # each from a different shot
    again = CliRunner().invoke(cli, ["--store", str(store), "frames", "ep1", str(video), "--quiet"])
    assert again.exit_code == 0 and f"{len(arts)} duplicate" in again.output


def test_bad_videos_give_a_clear_error_and_store_nothing(tmp_path):
    store = tmp_path / "c.db"
    (tmp_path / "text.mp4").write_text("not a video at all")
    write_audio_only(tmp_path / "audio.m4a")
    (tmp_path / "empty.mp4").write_bytes(b"")
    for name, expected in (("text.mp4", "not a video"), ("audio.m4a", "video stream"), ("empty.mp4", "empty"),
                           ("missing.mp4", "missing.mp4")):
        res = CliRunner().invoke(cli, ["--store", str(store), "frames", "t", str(tmp_path / name),
                                       "--model", "tiny", "--quiet"])
        assert res.exit_code == 1, (name, res.output)
        assert name in res.output and expected in res.output.lower(), (name, res.output)
        assert "Traceback" not in res.output
    with Catalog(store) as cat:
        assert cat.stats()["artworks"] == 0
