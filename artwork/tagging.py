"""Tags for candidate images: moods and genres by zero-shot CLIP, actors by a per-title cast gallery.

Moods/genres: each label's text embedding is the normalised mean of several prompt templates
(a prompt ensemble, as in the CLIP paper); an image's label probabilities are the softmax of
the model's own logit scale times cosine similarity, separately over moods and over genres.

Actors: by face, not by CLIP (a CLIP embedding describes a scene, not an identity). Every cast
reference photo contributes its one clear face's 128-d descriptor (artwork/faces.py); every face
found in a candidate is compared with them by Euclidean distance. The threshold is dlib's 0.6,
tightened per gallery when two of its actors look alike (`calibrate_thresholds`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from artwork.encoder import Encoder
from artwork.faces import DEFAULT_THRESHOLD, FaceScan, distance
from artwork.faces import MODEL_ID as FACE_MODEL_ID
from artwork.records import ActorMatch

# Package data (pyproject.toml [tool.setuptools.package-data]): found beside this module, so a
# wheel or `pip install .` works from any directory, not only an editable checkout.
ASSETS = Path(__file__).resolve().parent / "assets"
VOCAB_DIR = ASSETS / "vocab"
#: Calibration never tightens a threshold below this: one person's photos sit up to ~0.45 apart.
MIN_THRESHOLD = 0.45
THRESHOLD_SHARE = 0.75
CONFIDENCE_SCALE = 0.05  # distance units over which confidence goes from 0.5 to about 0.27 / 0.73


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary file {path} is missing")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


@dataclass(frozen=True)
class Vocabulary:
    """Label lists and prompt templates, kept as data files in artwork/assets/vocab/."""

    moods: tuple[str, ...]
    genres: tuple[str, ...]
    mood_templates: tuple[str, ...]
    genre_templates: tuple[str, ...]

    @property
    def key(self) -> str:
        """Short hash of the vocabulary: stored tags are reused only for the same vocabulary."""
        text = "|".join("\n".join(x) for x in (self.moods, self.genres, self.mood_templates,
                                                self.genre_templates))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_vocabulary(directory: Path = VOCAB_DIR) -> Vocabulary:
    """Read moods, genres and prompt templates from a vocabulary folder."""
    d = Path(directory)
    vocab = Vocabulary(*(tuple(_read_lines(d / f)) for f in (
        "moods.txt", "genres.txt", "mood_templates.txt", "genre_templates.txt")))
    for name, templates in (("mood", vocab.mood_templates), ("genre", vocab.genre_templates)):
        bad = [t for t in templates if t.count("{}") != 1]
        if bad:
            raise ValueError(f"{d}/{name}_templates.txt: each template needs exactly one '{{}}', not {bad[0]!r}")
    return vocab


def ensemble_embeddings(encoder: Encoder, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """One unit vector per label: the mean of its prompts' embeddings, renormalised."""
    prompts = [t.format(label) for label in labels for t in templates]
    emb = encoder.embed_texts(prompts).reshape(len(labels), len(templates), -1).mean(axis=1)
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class ZeroShotTagger:
    """Scores image embeddings against the mood and genre vocabularies."""

    def __init__(self, encoder: Encoder, vocab: Vocabulary):
        self.vocab = vocab
        self.encoder_id = encoder.encoder_id
        self.logit_scale = encoder.logit_scale
        self.mood_emb = ensemble_embeddings(encoder, vocab.moods, vocab.mood_templates)
        self.genre_emb = ensemble_embeddings(encoder, vocab.genres, vocab.genre_templates)

    def tag(self, image_embeddings: np.ndarray) -> list[dict[str, dict[str, float]]]:
        """Per image: {"moods": {label: prob}, "genres": {label: prob}}, each summing to 1."""
        x = np.asarray(image_embeddings, dtype=np.float32)
        moods = softmax(self.logit_scale * x @ self.mood_emb.T)
        genres = softmax(self.logit_scale * x @ self.genre_emb.T)
        return [
            {"moods": dict(zip(self.vocab.moods, map(float, m))),
             "genres": dict(zip(self.vocab.genres, map(float, g)))}
            for m, g in zip(moods, genres)
        ]


def confidence(dist: float, threshold: float) -> float:
    """Distance -> confidence in 0..1: 0.5 at the threshold, about 0.95 at 0.15 inside it."""
    return float(1.0 / (1.0 + math.exp((dist - threshold) / CONFIDENCE_SCALE)))


def calibrate_thresholds(refs: dict[str, list[np.ndarray]]) -> dict[str, float]:
    """Each actor's distance threshold, from the distances between actors in the gallery.

    dlib's 0.6 separates people in general; an actor whose nearest other cast member sits at d gets
    `THRESHOLD_SHARE * d` when that is tighter (not below `MIN_THRESHOLD`), so two look-alikes in
    one cast do not both claim the faces between them. With one actor there is nothing to
    calibrate on and the default stands. `THRESHOLD_SHARE` is 0.6 / 0.8: the default relative to
    a typical distance between two different people.
    """
    out = {}
    for name, own in refs.items():
        others = [r for n, rs in refs.items() if n != name for r in rs]
        if not own or not others:
            out[name] = DEFAULT_THRESHOLD
            continue
        nearest = min(distance(a, b) for a in own for b in others)
        out[name] = float(min(DEFAULT_THRESHOLD, max(MIN_THRESHOLD, THRESHOLD_SHARE * nearest)))
    return out


class FaceGallery:
    """Recognises a title's cast in artwork by face descriptor distance.

    Each face in an artwork goes to the actor whose nearest reference face is closest, if that
    distance is within the actor's threshold; an actor's confidence on an artwork comes from its
    closest face there, whichever actor that face went to.
    """

    method = f"face:{FACE_MODEL_ID}"

    def __init__(self, refs: dict[str, list[np.ndarray]]):
        self.refs = {n: [np.asarray(r, np.float32) for r in rs] for n, rs in refs.items() if rs}
        if not self.refs:
            raise ValueError("the cast gallery has no reference face")
        self.names = sorted(self.refs)
        self.thresholds = calibrate_thresholds(self.refs)

    def distances(self, scan: FaceScan) -> np.ndarray:
        """(n_faces, n_actors): each face's distance to each actor's nearest reference."""
        out = np.zeros((len(scan.faces), len(self.names)), np.float32)
        for i, f in enumerate(scan.faces):
            for j, n in enumerate(self.names):
                out[i, j] = min(distance(f.descriptor, r) for r in self.refs[n])
        return out

    def match(self, scan: FaceScan) -> dict[str, ActorMatch]:
        """Per actor: confidence, presence, distance and which face, for one artwork's faces."""
        if not scan.faces:
            return {n: ActorMatch(0.0, False, None, None, self.method) for n in self.names}
        d = self.distances(scan)
        present: set[str] = set()
        for i in range(d.shape[0]):
            j = int(np.argmin(d[i]))
            if d[i, j] <= self.thresholds[self.names[j]]:
                present.add(self.names[j])
        out = {}
        for j, n in enumerate(self.names):
            i = int(np.argmin(d[:, j]))
            dist = float(d[i, j])
            out[n] = ActorMatch(round(confidence(dist, self.thresholds[n]), 4), n in present, round(dist, 4), i,
                                self.method)
        return out
