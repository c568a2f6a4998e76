"""Faces in an image: detection, 5-point landmarks and 128-d identity descriptors (dlib).

Models: dlib's HOG frontal face detector (built into dlib), its 5-point landmark predictor and its
ResNet face descriptor (`dlib_face_recognition_resnet_model_v1`), both shipped as files by the
`face-recognition-models` package. Two faces of one person sit less than about 0.6 apart
(Euclidean) in descriptor space; that is dlib's own threshold (99.38% on LFW).

Detection runs on a copy whose longest side is at most `DETECT_MAX_SIDE` px, with no upsampling:
a few tens of ms per image whatever the upload's size, at the price of missing faces smaller than
about 80 px at that working size (an eighth of the frame's longest side), which are too small to
matter on a tile anyway. Landmarks and descriptors are then computed on a copy of at most
`DESCRIBE_MAX_SIDE` px, where the face has more pixels; boxes and landmarks are reported in the
original image's coordinates.

dlib's frontal detector is five HOG filters: looking at the camera (0), turned to one side or the
other (1, 2) and looking at the camera with the head tilted (3, 4). Which one fired is kept as the
face's `pose`: frame mining (artwork/frames.py) prefers faces that look at the camera.

dlib and the model files are loaded on first use, once per process, so importing this module
costs nothing and a machine without them fails with `FacesUnavailable` saying what to install.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from artwork.images import ImageRejected
from artwork.quality import sharpness

#: Detector, landmark and descriptor models plus the settings below: stored faces carry it, so a
#: change of any of them makes the catalog compute faces again instead of mixing two kinds.
MODEL_ID = "dlib-hog-up0-640/sp5/resnet-v1"
DETECT_MAX_SIDE = 640
DESCRIBE_MAX_SIDE = 1280
#: HOG detections scoring below this are dropped. Real faces in the sample photos score 1.3 to 1.6;
#: the strongest non-face seen (the mission patch on the astronaut's suit) scored 0.1.
MIN_DETECTION_SCORE = 0.3
#: dlib's threshold for "same person" on descriptor distance; the default of every cast gallery.
DEFAULT_THRESHOLD = 0.6
#: A reference photo's main face must be at least this many times the area of any other face.
DOMINANCE = 2.0
DESCRIPTOR_DIM = 128
#: HOG filters of dlib's frontal detector that find a face turned to one side (see the docstring).
TURNED_POSES = frozenset({1, 2})
#: Face crops are resampled to this square before their sharpness is measured, so faces of
#: different sizes are compared on one scale.
SHARPNESS_SIDE = 64

MODEL_FILES = {
    "landmarks": "shape_predictor_5_face_landmarks.dat",
    "descriptor": "dlib_face_recognition_resnet_model_v1.dat",
}
INSTALL_HINT = "install them with: pip install dlib-bin face-recognition-models"


class FacesUnavailable(RuntimeError):
    """dlib or a face model file is missing; the message says which and how to install it."""


@dataclass(frozen=True)
class FaceRecord:
    """One detected face, in the coordinates of the image it was found in."""

    box: tuple[int, int, int, int]  # left, top, right, bottom (px, right/bottom exclusive)
    landmarks: tuple[tuple[float, float], ...]  # dlib's 5 points: two per eye, one under the nose
    descriptor: np.ndarray  # (128,) float32 identity descriptor
    score: float  # HOG detection score (higher: more face-like)
    share: float  # box area / frame area
    x_centre: float  # horizontal centre of the box, 0 (left edge) .. 1 (right edge)
    pose: int | None = None  # which HOG filter found it (module docstring); None: stored before poses were kept

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return max(0, right - left) * max(0, bottom - top)

    @property
    def frontal(self) -> bool:
        """Looking at the camera (tilted or not), not turned to a side. Unknown pose counts as frontal."""
        return self.pose not in TURNED_POSES

    def to_json(self) -> dict[str, Any]:
        """Everything but the descriptor (stored as a binary blob next to it)."""
        return {"box": list(self.box), "landmarks": [list(p) for p in self.landmarks], "score": self.score,
                "share": self.share, "x_centre": self.x_centre, "pose": self.pose}

    @classmethod
    def from_json(cls, data: dict[str, Any], descriptor: np.ndarray) -> "FaceRecord":
        pose = data.get("pose")
        return cls(box=tuple(int(v) for v in data["box"]),  # type: ignore[arg-type]
                   landmarks=tuple((float(x), float(y)) for x, y in data["landmarks"]),
                   descriptor=np.asarray(descriptor, dtype=np.float32), score=float(data["score"]),
                   share=float(data["share"]), x_centre=float(data["x_centre"]),
                   pose=int(pose) if pose is not None else None)


@dataclass(frozen=True)
class FaceScan:
    """The faces found in one image, largest first (an empty tuple: looked, found none)."""

    width: int
    height: int
    faces: tuple[FaceRecord, ...] = ()
    model: str = MODEL_ID

    @property
    def largest(self) -> FaceRecord | None:
        return self.faces[0] if self.faces else None


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two descriptors (dlib's identity metric)."""
    return float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))


def face_sharpness(image: Image.Image, face: FaceRecord) -> float:
    """Variance of the Laplacian of the face's box, resampled to `SHARPNESS_SIDE` px square.

    The whole frame's sharpness says little about the face: a sharp background behind an
    out-of-focus face scores high. On the sample photos: a sharp face 600-2000, the same face
    under a 3 px Gaussian blur about 240, under 5 px about 50.
    """
    left, top, right, bottom = face.box
    if right - left < 3 or bottom - top < 3:
        return 0.0
    crop = image.crop(face.box).convert("RGB").resize((SHARPNESS_SIDE, SHARPNESS_SIDE), Image.Resampling.BILINEAR)
    return sharpness(np.asarray(crop))


def main_face(scan: FaceScan, name: str) -> int:
    """Index of a reference photo's one clear face, or ImageRejected naming the file and why."""
    if not scan.faces:
        raise ImageRejected(name, f"no face found (looked for frontal faces at least ~{_min_face_px(scan)} px "
                                  f"wide in this {scan.width}x{scan.height} image); a reference photo must show "
                                  f"the actor's face clearly")
    if len(scan.faces) > 1:
        first, second = scan.faces[0].area, scan.faces[1].area
        if first < DOMINANCE * second:
            raise ImageRejected(name, f"{len(scan.faces)} faces and none clearly the main one (largest "
                                      f"{first} px², next {second} px²; the actor's face must be at least "
                                      f"{DOMINANCE:g}x the area of any other): crop the photo to the actor")
    return 0


def _min_face_px(scan: FaceScan) -> int:
    # The HOG window is 80x80 px at the working size; in original pixels that is proportionally larger.
    return int(round(80 * max(1.0, max(scan.width, scan.height) / DETECT_MAX_SIDE)))


def models_dir() -> Path:
    """Folder holding the face-recognition-models files (found without importing the package,
    whose __init__ needs pkg_resources, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FacesUnavailable(f"the face model files (package face-recognition-models) are not installed; "
                               f"{INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def _scaled(image: Image.Image, max_side: int) -> tuple[Image.Image, float]:
    """A copy whose longest side is at most max_side (never enlarged) and its scale factor."""
    scale = min(1.0, max_side / max(image.size))
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR), scale


class FaceModel:
    """The three dlib models behind one lock (dlib objects are not documented as thread-safe)."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self._dir = Path(directory) if directory is not None else None
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, Any, Any] | None = None
        self.detector_calls = 0  # images run through the detector (tests count recomputation)

    def _load(self) -> tuple[Any, Any, Any, Any]:
        if self._loaded is None:
            try:
                import dlib
            except ImportError as exc:
                raise FacesUnavailable(f"dlib is not installed ({exc}); {INSTALL_HINT}") from None
            directory = self._dir if self._dir is not None else models_dir()
            paths = {k: directory / f for k, f in MODEL_FILES.items()}
            for kind, path in paths.items():
                if not path.is_file():
                    raise FacesUnavailable(f"face {kind} model file {path} is missing; {INSTALL_HINT}")
            try:
                landmarks = dlib.shape_predictor(str(paths["landmarks"]))
                descriptor = dlib.face_recognition_model_v1(str(paths["descriptor"]))
            except RuntimeError as exc:  # dlib says "Error deserializing object ..." for a damaged file
                raise FacesUnavailable(f"cannot load the face models from {directory}: {exc}; "
                                       f"reinstall them: pip install --force-reinstall face-recognition-models") from None
            self._loaded = (dlib, dlib.get_frontal_face_detector(), landmarks, descriptor)
        return self._loaded

    def load(self) -> "FaceModel":
        """Load now (raises FacesUnavailable), rather than on the first image."""
        with self._lock:
            self._load()
        return self

    def scan(self, image: Image.Image) -> FaceScan:
        """Detect every face in an upright RGB image, with landmarks and descriptors, largest first."""
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        small, s_detect = _scaled(rgb, DETECT_MAX_SIDE)
        with self._lock:
            dlib, detector, predictor, encoder = self._load()
            self.detector_calls += 1
            rects, scores, poses = detector.run(np.asarray(small), 0, 0.0)
            found = [(r, float(s), int(p)) for r, s, p in zip(rects, scores, poses) if s >= MIN_DETECTION_SCORE]
            if not found:
                return FaceScan(rgb.width, rgb.height)
            big, s_describe = _scaled(rgb, DESCRIBE_MAX_SIDE)
            pixels = np.ascontiguousarray(np.asarray(big))
            k = s_describe / s_detect  # detection coordinates -> descriptor-image coordinates
            shapes = dlib.full_object_detections()
            for r, _, _ in found:
                shapes.append(predictor(pixels, dlib.rectangle(round(r.left() * k), round(r.top() * k),
                                                              round(r.right() * k), round(r.bottom() * k))))
            descriptors = encoder.compute_face_descriptor(pixels, shapes)
        faces = []
        w, h = rgb.width, rgb.height
        for (r, score, pose), shape, desc in zip(found, shapes, descriptors):
            # dlib boxes may reach past the frame for faces at its edge: clip to the image.
            left = min(max(0, round(r.left() / s_detect)), w)
            top = min(max(0, round(r.top() / s_detect)), h)
            right = min(max(left, round((r.right() + 1) / s_detect)), w)
            bottom = min(max(top, round((r.bottom() + 1) / s_detect)), h)
            points = tuple((round(p.x / s_describe, 1), round(p.y / s_describe, 1)) for p in shape.parts())
            faces.append(FaceRecord(
                box=(left, top, right, bottom), landmarks=points,
                descriptor=np.asarray(desc, dtype=np.float32), score=round(score, 4),
                share=round((right - left) * (bottom - top) / (w * h), 6),
                x_centre=round((left + right) / 2 / w, 4), pose=pose))
        faces.sort(key=lambda f: (-f.area, f.box))
        return FaceScan(w, h, tuple(faces))


_shared: FaceModel | None = None
_shared_lock = threading.Lock()


def face_model() -> FaceModel:
    """The process's face model (loaded on its first scan)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FaceModel()
        return _shared
