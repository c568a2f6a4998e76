"""Records that cross module lines on the image side (and are read by `bandit`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Title:
    title_id: str
    name: str


@dataclass(frozen=True)
class ActorMatch:
    """How one actor scored on one artwork."""

    score: float  # confidence 0..1 (0.5 at the actor's threshold)
    present: bool
    distance: float | None = None  # descriptor distance of the matched face (None: no face in the artwork)
    face: int | None = None  # which of the artwork's faces
    method: str | None = None  # what tagged it: "face:<face model id>"


@dataclass
class FaceSummary:
    """What the faces in one artwork add up to (see artwork/faces.py for how they are found)."""

    n_faces: int = 0
    largest_share: float = 0.0  # area of the largest face's box / area of the frame
    largest_x: float | None = None  # horizontal centre of the largest face, 0 (left) .. 1 (right)
    lead: str | None = None  # the title's lead cast member (None: the title has no cast)
    lead_visible: bool = False  # the lead's face was recognised in the artwork


@dataclass
class Tags:
    """Per-label scores for one artwork: probabilities for moods/genres, confidences for actors.

    Actor confidences come from face descriptor distances (`actor_distances`: the closest face in
    the artwork to the actor's nearest reference face) and lie in 0..1, 0.5 at the gallery's
    threshold; `actors_present` names the actors recognised. `faces` is None until the artwork's
    image has been scanned for faces.
    """

    moods: dict[str, float] = field(default_factory=dict)
    genres: dict[str, float] = field(default_factory=dict)
    actors: dict[str, float] = field(default_factory=dict)
    actors_present: list[str] = field(default_factory=list)
    actor_distances: dict[str, float] = field(default_factory=dict)
    faces: FaceSummary | None = None

    def top(self, kind: str, k: int = 3) -> list[tuple[str, float]]:
        """The k highest-scoring labels of one kind ('moods', 'genres' or 'actors')."""
        scores: dict[str, float] = getattr(self, kind)
        return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


@dataclass
class Artwork:
    """One candidate image of a title, as the catalog holds it."""

    artwork_id: str
    title_id: str
    sha256: str
    source: str  # "upload:<filename>" or "video:<file>@<seconds>"
    width: int
    height: int
    size_bytes: int
    created: float  # unix seconds
    encoder_id: str | None = None
    embedding: np.ndarray | None = None  # float32, L2-normalised
    tags: Tags = field(default_factory=Tags)
    meta: dict = field(default_factory=dict)  # e.g. frame quality measures, timestamp
    disabled: bool = False
    pinned: bool = False
