"""artwork.frames on short synthetic videos with known cuts (written by tests/videos.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artwork import frames as F
from videos import ShotSpec, nearest_colour, shot_at, write_audio_only, write_empty_video, write_video

SHOTS = [
    ShotSpec("A", 1.5, "red", seed=1),
    ShotSpec("black", 1.0, kind="black"),
    ShotSpec("B", 1.5, "green", seed=2),
    ShotSpec("C", 2.0, "blue", seed=3, kind="halfblur"),  # sharp, then out of focus
    ShotSpec("D", 1.5, "yellow", seed=4, kind="blur"),  # out of focus throughout
    ShotSpec("A-again", 1.5, "red", seed=1),  # the film cuts back to shot A
    ShotSpec("credits", 1.0, kind="text"),
    ShotSpec("E", 1.5, "magenta", seed=5),
]
GOOD = {"A", "A-again", "B", "C", "E"}


def _tiny_embed():
    try:
        from artwork.encoder import load_encoder
    except ImportError:  # encoder not there yet: the built-in colour-layout embedding stands in
        return None
    return load_encoder("tiny").embed_images


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "film.mp4"
    shots = write_video(path, SHOTS, gop=12)
    return path, shots


@pytest.fixture(scope="module")
def embed():
    return _tiny_embed()


@pytest.fixture(scope="module")
def mined(film, embed):
    path, _ = film
    return F.mine_frames(path, progress=False, embed=embed)


def test_candidates_come_from_distinct_good_shots(film, mined):
    _, shots = film
    labels = [shot_at(shots, c.timestamp).label for c in mined]
    assert set(labels) <= GOOD, labels
    assert len({c.shot_index for c in mined}) == len(mined)
    # Every usable shot is represented, the repeated one once.
    assert {lab.replace("-again", "") for lab in labels} == {"A", "B", "C", "E"}
    assert len(labels) == 4


def test_none_black_blurred_or_text(film, mined):
    _, shots = film
    for c in mined:
        shot = shot_at(shots, c.timestamp)
        assert shot.kind not in ("black", "blur", "text")
        if shot.kind == "halfblur":  # the sharp half of the focus pull
            assert c.timestamp < (shot.start + shot.end) / 2
        assert not c.quality["black"] and not c.quality["fade"] and not c.quality["text"]
        assert c.quality["sharpness"] >= F.FrameConfig().min_sharpness


def test_timestamps_point_at_the_shot_in_the_image(film, mined):
    _, shots = film
    for c in mined:
        assert nearest_colour(np.asarray(c.image)) == shot_at(shots, c.timestamp).colour
        assert c.image.size == (192, 108) and c.image.mode == "RGB"


def test_candidate_record_fields(film, mined):
    path, _ = film
    c = mined[0]
    assert c.video == str(path)
    assert c.source == f"video:film.mp4@{c.timestamp:.3f}"
    meta = json.loads(json.dumps(c.meta))
    assert meta["timestamp"] == pytest.approx(c.timestamp, abs=1e-3)
    assert meta["shot_index"] == c.shot_index and meta["crop"] is None
    assert set(meta["quality"]) >= {"sharpness", "brightness", "contrast", "colourfulness", "black", "letterbox", "text"}
    assert c.embedding is not None and c.embedding.dtype == np.float32
    assert np.linalg.norm(c.embedding) == pytest.approx(1.0, abs=1e-4)
    # Best first.
    scores = [m.quality["score"] for m in mined]
    assert scores[0] == max(scores)


def test_max_candidates_and_default_embedding(film):
    path, shots = film
    two = F.mine_frames(path, max_candidates=2, progress=False)
    assert len(two) == 2
    assert len({shot_at(shots, c.timestamp).label.replace("-again", "") for c in two}) == 2


def test_near_duplicates_kept_when_threshold_disabled(film):
    path, shots = film
    cands = F.mine_frames(path, progress=False, config=F.FrameConfig(duplicate_similarity=1.01))
    labels = {shot_at(shots, c.timestamp).label for c in cands}
    assert {"A", "A-again"} <= labels


def test_sampled_pass_finds_the_same_shots_as_a_full_decode(film):
    path, shots = film
    cfg = F.FrameConfig()
    full = F.scan_video(path, cfg, every_frame=True)
    sampled = F.scan_video(path, cfg)
    truth = [s.start for s in shots[1:]]
    # Decoding every frame locates each cut exactly (plus the focus pull inside C, which the
    # histogram sees as a change too).
    assert all(any(abs(b - t) < 1e-6 for b in full.boundaries) for t in truth)
    assert len(sampled.boundaries) == len(full.boundaries)
    for b_full, b_sampled in zip(full.boundaries, sampled.boundaries):
        before = max(t for t in sampled.sample_times if t < b_sampled)
        assert before < b_full <= b_sampled  # bracketed by consecutive samples
    assert sampled.frames_decoded * 5 < full.frames_decoded


def test_long_gop_fallback_decodes_the_gap(tmp_path):
    path = tmp_path / "onekey.mp4"
    shots = write_video(path, [ShotSpec("A", 2, "red", 1), ShotSpec("B", 2, "green", 2), ShotSpec("C", 2, "blue", 3)],
                        gop=1000, scenecut=False)
    keys_only = F.scan_video(path, F.FrameConfig(max_keyframe_gap=100, spike_ratio=0))
    assert keys_only.keyframes == 1 and keys_only.boundaries == []
    assert F.scan_video(path, F.FrameConfig(max_keyframe_gap=100)).likely_cuts >= 2  # see the next test
    fallback = F.scan_video(path, F.FrameConfig(max_keyframe_gap=1.0, dense_interval=0.5))
    assert fallback.dense_seconds > 4
    assert len(fallback.boundaries) == 2
    cands = F.mine_frames(path, progress=False, config=F.FrameConfig(max_keyframe_gap=1.0, dense_interval=0.5))
    assert {shot_at(shots, c.timestamp).label for c in cands} == {"A", "B", "C"}
    for c in cands:  # frames re-read at full resolution after seeking into the GOP
        assert nearest_colour(np.asarray(c.image)) == shot_at(shots, c.timestamp).colour


def test_cuts_inside_long_gops_found_from_packet_sizes(tmp_path):
    # Scene-cut keyframes off and one keyframe for the whole file: the cuts lie inside the GOP.
    path = tmp_path / "nosc.mp4"
    specs = [ShotSpec("A", 2, "red", 1), ShotSpec("B", 2, "green", 2), ShotSpec("C", 2, "blue", 3)]
    shots = write_video(path, specs, size=(320, 180), gop=1000, scenecut=False, pan=2, detail="natural")
    cfg = F.FrameConfig(max_keyframe_gap=100)
    keys_only = F.scan_video(path, F.FrameConfig(max_keyframe_gap=100, spike_ratio=0))
    assert keys_only.keyframes == 1 and keys_only.boundaries == []
    sampled = F.scan_video(path, cfg)
    full = F.scan_video(path, cfg, every_frame=True)
    assert sampled.dense_seconds == 0 and 2 <= sampled.likely_cuts <= 6
    assert sampled.frames_decoded * 10 < full.frames_decoded
    assert len(full.boundaries) == len(sampled.boundaries) == 2
    for b_full, b_sampled in zip(full.boundaries, sampled.boundaries):
        before = max(t for t in sampled.sample_times if t < b_sampled)
        assert before < b_full <= b_sampled <= b_full + 0.2
    cands = F.mine_frames(path, progress=False, config=cfg)
    labels = [shot_at(shots, c.timestamp).label for c in cands]
    assert len(set(labels)) == len(labels) >= 2, labels  # one per shot (a soft sample may be dropped)
    for c in cands:  # re-read exactly at full resolution, although sampled out of context
        assert nearest_colour(np.asarray(c.image)) == shot_at(shots, c.timestamp).colour


def test_fixed_gop_without_scene_cut_keyframes_adds_no_extra_shots(tmp_path):
    # A streaming-style encode: a keyframe every 1 s, scene-cut keyframes off, so every cut falls
    # inside a GOP and is decoded out of context. Part of such a picture comes from the wrong
    # reference frame, which must not make the next keyframe look like another cut.
    path = tmp_path / "fixedgop.mp4"
    specs = [ShotSpec(f"s{i}", 1.7, c, seed=10 + i) for i, c in
             enumerate(["red", "green", "blue", "yellow", "magenta", "cyan", "orange", "purple"])]
    shots = write_video(path, specs, size=(320, 180), gop=25, scenecut=False, pan=4, detail="blocks")
    sampled = F.scan_video(path)
    full = F.scan_video(path, every_frame=True)
    assert sampled.likely_cuts >= 4  # cuts really were found inside GOPs
    assert len(full.boundaries) == len(shots) - 1
    assert len(sampled.boundaries) == len(shots) - 1, (sampled.boundaries, full.boundaries)
    for b_full, b_sampled in zip(full.boundaries, sampled.boundaries):
        before = max(t for t in sampled.sample_times if t < b_sampled)
        assert before < b_full <= b_sampled


def test_all_intra_video_is_thinned(tmp_path):
    path = tmp_path / "intra.mp4"
    write_video(path, [ShotSpec("A", 2, "red", 1), ShotSpec("B", 2, "green", 2)], gop=1)
    scan = F.scan_video(path, F.FrameConfig(min_interval=0.5))
    assert scan.keyframes == 100
    assert 6 <= len(scan.sample_times) <= 10
    assert len(scan.boundaries) == 1


def test_letterboxed_video_is_cropped(tmp_path):
    path = tmp_path / "scope.mp4"
    # Bars are added by writing a wide texture into a taller frame.
    import av

    from videos import PALETTE, texture

    tex = texture(160, 64, PALETTE["orange"], seed=7)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.codec_context.gop_size = 12
        for i in range(40):
            rgb = np.zeros((96, 160, 3), np.uint8)
            rgb[16:80] = tex[:, i : i + 160]
            for p in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    (c,) = F.mine_frames(path, progress=False)
    assert c.quality["letterbox"] is True
    left, top, right, bottom = c.crop
    assert (left, right) == (0, 160) and abs(top - 16) <= 2 and abs(bottom - 80) <= 2
    assert c.image.size == (right - left, bottom - top)


def test_progress_bar_runs(film, capsys):
    path, _ = film
    F.mine_frames(path, max_candidates=1, progress=True)
    # rich's global console: stdout, or stderr once a CLI command has run in this process
    out = capsys.readouterr()
    assert "film.mp4" in out.out + out.err


# --- bad input: a FramesError naming the file and the problem, nothing returned -------------


def _truncated(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def _bad_codec(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    i = data.find(b"avc1", data.find(b"stsd"))
    if i < 0:
        i = data.find(b"mp4v", data.find(b"stsd"))
    dst.write_bytes(data[:i] + b"zzzz" + data[i + 4 :])
    return dst


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    spec = [ShotSpec("A", 2, "red", 1), ShotSpec("B", 2, "green", 2)]
    write_video(d / "ok.mp4", spec, gop=12)
    write_video(d / "ok.mkv", spec, gop=12)
    (d / "notes.txt").write_text("not a video\n" * 50)
    (d / "empty.mp4").write_bytes(b"")
    Image.new("RGB", (64, 48), (200, 0, 0)).save(d / "still.png")
    write_audio_only(d / "tone.m4a")
    write_empty_video(d / "noframes.mkv")
    return {
        "not a video": (d / "notes.txt", "not a video"),
        "zero-length file": (d / "empty.mp4", "empty file"),
        "still image": (d / "still.png", "still image"),
        "audio only": (d / "tone.m4a", "audio only"),
        "no frames": (d / "noframes.mkv", "zero-length"),
        "truncated mp4": (_truncated(d / "ok.mp4", d / "cut.mp4"), "truncated"),
        "truncated mkv": (_truncated(d / "ok.mkv", d / "cut.mkv"), "truncated"),
        "unsupported codec": (_bad_codec(d / "ok.mp4", d / "weird.mp4"), "unsupported video codec"),
        "missing": (d / "nowhere.mp4", "not found"),
    }


@pytest.mark.parametrize("case", ["not a video", "zero-length file", "still image", "audio only", "no frames",
                                  "truncated mp4", "truncated mkv", "unsupported codec", "missing"])
def test_bad_input_raises_frames_error(bad_files, case):
    path, words = bad_files[case]
    with pytest.raises(F.FramesError) as err:
        F.mine_frames(path, progress=False)
    assert isinstance(err.value, ValueError)
    assert path.name in str(err.value) and words in str(err.value)


# --- faces: frames with the cast's faces are preferred, one frame per shot ----------------------

ASSETS = Path(__file__).resolve().parent.parent / "artwork" / "assets"
HOPPER = "Grace Hopper"
FACE_SHOTS = {"hopper", "stranger"}


@pytest.fixture(scope="module")
def face_film(tmp_path_factory):
    """Six shots at 640x360. In "hopper" a photo of the coffee cup gives way, halfway through the
    shot, to Grace Hopper's face (a cast member), dimmed so that frame scores lower on quality than
    the cup's; "stranger" shows Eileen Collins (not in the cast) throughout; the rest show no face.
    The photos cover a seventh of the frame, so their change is no cut."""
    import matplotlib
    from PIL import ImageEnhance

    d = tmp_path_factory.mktemp("faces")
    grace = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    ImageEnhance.Brightness(grace.crop((100, 80, 440, 420))).enhance(0.7).save(d / "hopper.png")
    Image.open(ASSETS / "photos" / "astronaut.jpg").convert("RGB").crop((130, 30, 330, 230)).save(d / "stranger.png")
    specs = [
        ShotSpec("sky", 2, "blue", 1),
        ShotSpec("hopper", 3, "green", 2, overlays=((0.0, str(ASSETS / "photos" / "coffee.jpg")),
                                                    (0.5, str(d / "hopper.png"))), overlay_height=0.5),
        ShotSpec("street", 2, "red", 3),
        ShotSpec("stranger", 2, "yellow", 4, overlays=((0.0, str(d / "stranger.png")),), overlay_height=0.5),
        ShotSpec("sea", 2, "cyan", 5),
        ShotSpec("field", 2, "orange", 6),
    ]
    path = d / "faces.mp4"
    shots = write_video(path, specs, size=(640, 360), gop=25)
    return path, shots, grace


@pytest.fixture(scope="module")
def face_model_and_gallery(face_film):
    from artwork.faces import FaceModel
    from artwork.tagging import FaceGallery

    model = FaceModel().load()
    return model, FaceGallery({HOPPER: [model.scan(face_film[2]).faces[0].descriptor]})


def _labels(cands, shots):
    return [shot_at(shots, c.timestamp).label for c in cands]


def test_faces_choose_the_cast_frame_inside_a_shot_and_every_shot_stays(face_film, face_model_and_gallery):
    path, shots, _ = face_film
    model, gallery = face_model_and_gallery
    hopper = next(s for s in shots if s.label == "hopper")
    face_from = hopper.start + 0.5 * (hopper.end - hopper.start)
    plain = F.mine_frames(path, progress=False)
    # On quality alone the cup wins the shot: what makes the face frame win below is its face.
    assert [c.timestamp < face_from for c in plain if shot_at(shots, c.timestamp).label == "hopper"] == [True]

    scorer = F.FrameFaces(model, gallery)
    mined = F.mine_frames(path, progress=False, faces=scorer)
    labels = _labels(mined, shots)
    assert sorted(labels) == sorted(s.label for s in shots), labels  # every shot, one frame each
    by_label = dict(zip(labels, mined))
    cast_frame = by_label["hopper"]
    assert cast_frame.timestamp >= face_from and cast_frame.face.cast == (HOPPER,)
    assert 0.5 < cast_frame.face.bonus <= 1.0 and cast_frame.face.frontal
    assert labels[0] == "hopper"  # a cast face is the most relevant frame of all
    # the frame handed back is the full-resolution picture, and the face is really in it
    assert cast_frame.image.size == (640, 360)
    assert gallery.match(model.scan(cast_frame.image))[HOPPER].present
    stranger = by_label["stranger"].face
    assert stranger.faces == 1 and stranger.cast == () and 0.25 <= stranger.bonus <= 0.5
    assert all(by_label[s].face.bonus == 0.0 for s in set(labels) - FACE_SHOTS)
    assert json.loads(json.dumps(cast_frame.meta))["face"]["cast"] == [HOPPER]
    # the embedding describes the frame chosen (the face), not the shot's best-quality frame
    emb = F.colour_layout_embedding([cast_frame.image.resize((320, 180))])[0]
    old = next(c for c in plain if shot_at(shots, c.timestamp).label == "hopper")
    assert float(emb @ cast_frame.embedding) > float(emb @ old.embedding)
    # at most face_alternates frames of each shot were scanned
    assert scorer.scanned <= F.FrameConfig().face_alternates * len(shots)
    # without a cast gallery (a title with no cast yet) every face is a stranger's: still worth
    # more than none, so the shot's face frame still beats the cup
    no_cast = F.mine_frames(path, progress=False, faces=F.FrameFaces(model, None))
    frame = next(c for c in no_cast if shot_at(shots, c.timestamp).label == "hopper")
    assert frame.timestamp >= face_from and frame.face.cast == () and 0.25 <= frame.face.bonus <= 0.5


def test_faces_win_places_when_there_are_fewer_places_than_shots(face_film, face_model_and_gallery):
    path, shots, _ = face_film
    model, gallery = face_model_and_gallery
    plain = set(_labels(F.mine_frames(path, max_candidates=2, progress=False), shots))
    assert plain != FACE_SHOTS  # quality alone picks other shots
    with_faces = F.mine_frames(path, max_candidates=2, progress=False, faces=F.FrameFaces(model, gallery))
    assert _labels(with_faces, shots) == ["hopper", "stranger"]  # cast before stranger
    # face_weight 0 turns the preference off
    off = F.mine_frames(path, max_candidates=2, progress=False, faces=F.FrameFaces(model, gallery),
                        config=F.FrameConfig(face_weight=0.0))
    assert set(_labels(off, shots)) == plain


def test_a_video_without_faces_gives_the_same_frames_with_a_face_scorer(film, mined, embed, face_model_and_gallery):
    path, _ = film
    model, gallery = face_model_and_gallery
    scorer = F.FrameFaces(model, gallery)
    with_faces = F.mine_frames(path, progress=False, embed=embed, faces=scorer)
    assert [c.timestamp for c in with_faces] == [c.timestamp for c in mined]
    assert scorer.scanned >= len(mined) and all(c.face.faces == 0 and c.face.bonus == 0.0 for c in with_faces)
