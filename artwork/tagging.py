"""Tags for candidate images: moods and genres by zero-shot CLIP, actors by a per-title cast gallery.

Moods/genres: each label's text embedding is the normalised mean of several prompt templates
(a prompt ensemble, as in the CLIP paper); an image's label probabilities are the softmax of
the model's own logit scale times cosine similarity, separately over moods and over genres.

Actors: every cast reference photo is embedded whole and as crops, every candidate whole and as
crops (so a face in a corner still meets a close view of it); the image score is the best cosine
over those view pairs, plus a small weight times the similarity to "a photo of NAME" prompts.
Each actor's present/absent threshold is calibrated on the gallery itself: augmented copies of
the actor's own photos must score above it, other actors' photos and plain distractor images
below it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from artwork.encoder import Encoder

ASSETS = Path(__file__).resolve().parent.parent / "assets"
VOCAB_DIR = ASSETS / "vocab"
TEXT_WEIGHT = 0.1  # the name prompt is a weak second signal next to the image match


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary file {path} is missing")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


@dataclass(frozen=True)
class Vocabulary:
    """Label lists and prompt templates, kept as data files in assets/vocab/."""

    moods: tuple[str, ...]
    genres: tuple[str, ...]
    mood_templates: tuple[str, ...]
    genre_templates: tuple[str, ...]
    actor_templates: tuple[str, ...]

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
        "moods.txt", "genres.txt", "mood_templates.txt", "genre_templates.txt", "actor_templates.txt")))
    for name, templates in (("mood", vocab.mood_templates), ("genre", vocab.genre_templates),
                            ("actor", vocab.actor_templates)):
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


def views(image: Image.Image) -> list[Image.Image]:
    """The whole image, its four quadrants and its centre: crops let a small face count."""
    w, h = image.size
    boxes = [(0, 0, w // 2, h // 2), (w // 2, 0, w, h // 2), (0, h // 2, w // 2, h),
             (w // 2, h // 2, w, h), (w // 4, h // 4, 3 * w // 4, 3 * h // 4)]
    return [image] + [image.crop(b) for b in boxes]


def _augment(image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
    """Copies of a reference photo as it may appear in artwork: cropped, resized, in a corner."""
    w, h = image.size
    cw, ch = int(w * 0.75), int(h * 0.75)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    crop = image.crop((x, y, x + cw, y + ch))
    small = image.resize((max(32, w // 2), max(32, h // 2)))
    canvas = Image.new("RGB", (w * 2, h * 2), tuple(int(v) for v in rng.integers(0, 255, 3)))
    canvas.paste(image, (int(rng.integers(0, w + 1)), int(rng.integers(0, h + 1))))
    return [crop, small, canvas, image.filter(ImageFilter.GaussianBlur(1))]


def distractors(size: int = 224, n: int = 6, seed: int = 0) -> list[Image.Image]:
    """Plain images that contain no one: gradients, noise, blocks (calibration negatives)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if i % 3 == 0:
            arr = np.linspace(0, 255, size, dtype=np.float32)[None, :, None] * rng.random(3)[None, None, :]
            arr = np.broadcast_to(arr, (size, size, 3))
            out.append(Image.fromarray(arr.astype(np.uint8)))
        elif i % 3 == 1:
            out.append(Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)))
        else:
            im = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
            d = ImageDraw.Draw(im)
            for _ in range(5):
                x0, y0 = (int(v) for v in rng.integers(0, size - 40, 2))
                d.rectangle((x0, y0, x0 + 40, y0 + 40), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
            out.append(im)
    return out


@dataclass
class ActorScore:
    score: float
    present: bool


class ActorMatcher:
    """Matches candidate images against one title's cast gallery."""

    def __init__(self, encoder: Encoder, gallery: dict[str, list[Image.Image]],
                 templates: Sequence[str] | None = None, seed: int = 0):
        if not gallery:
            raise ValueError("the cast gallery is empty")
        self.encoder = encoder
        self.names = sorted(gallery)
        # Image embeddings share a large common direction (CLIP's and, more so, a random net's);
        # centring on plain distractor images first makes the cosine measure what differs.
        self._neg_views = self._embed_views(distractors())
        self.center = np.concatenate(self._neg_views).mean(axis=0)
        self.ref_views: dict[str, np.ndarray] = {}
        for name in self.names:
            if not gallery[name]:
                raise ValueError(f"cast member {name!r} has no reference image")
            imgs = [v for ref in gallery[name] for v in views(ref)]
            self.ref_views[name] = self._centred(encoder.embed_images(imgs))
        templates = templates or load_vocabulary().actor_templates
        self.name_emb = ensemble_embeddings(encoder, self.names, templates)
        self.thresholds = self._calibrate(gallery, np.random.default_rng(seed))

    def _raw_scores(self, view_emb: list[np.ndarray]) -> np.ndarray:
        """(n_images, n_actors) combined scores from each image's view embeddings."""
        out = np.zeros((len(view_emb), len(self.names)), np.float32)
        for i, v in enumerate(view_emb):
            cv = self._centred(v)
            for j, name in enumerate(self.names):
                image_sim = float((cv @ self.ref_views[name].T).max())
                text_sim = float(v[0] @ self.name_emb[j])
                out[i, j] = image_sim + TEXT_WEIGHT * text_sim
        return out

    def _centred(self, x: np.ndarray) -> np.ndarray:
        x = x - self.center
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

    def _embed_views(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        k = len(views(images[0])) if images else 0
        flat = self.encoder.embed_images([v for im in images for v in views(im)])
        return [flat[i * k:(i + 1) * k] for i in range(len(images))]

    def _calibrate(self, gallery: dict[str, list[Image.Image]], rng: np.random.Generator) -> dict[str, float]:
        pos_imgs: list[tuple[str, Image.Image]] = [(n, a) for n in self.names for ref in gallery[n]
                                                   for a in _augment(ref, rng)]
        pos = self._raw_scores(self._embed_views([im for _, im in pos_imgs]))
        neg = self._raw_scores(self._neg_views)
        thresholds = {}
        for j, name in enumerate(self.names):
            own = np.array([pos[i, j] for i, (n, _) in enumerate(pos_imgs) if n == name])
            others = np.concatenate([neg[:, j], [pos[i, j] for i, (n, _) in enumerate(pos_imgs) if n != name]])
            # Midway between the weakest true match and the strongest impostor; if they overlap,
            # the impostors' maximum wins so that a present flag stays trustworthy.
            lo, hi = float(np.min(own)), float(np.max(others))
            thresholds[name] = (lo + hi) / 2 if lo > hi else hi + 1e-6
        return thresholds

    def score(self, images: Sequence[Image.Image]) -> list[dict[str, ActorScore]]:
        """Per image: actor name -> score and present/absent."""
        if not images:
            return []
        raw = self._raw_scores(self._embed_views(images))
        return [{n: ActorScore(float(raw[i, j]), bool(raw[i, j] >= self.thresholds[n]))
                 for j, n in enumerate(self.names)} for i in range(len(images))]
