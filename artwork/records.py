"""Records that cross module lines on the image side (and are read by `bandit`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Title:
    title_id: str
    name: str


@dataclass
class Tags:
    """Per-label scores for one artwork: probabilities for moods/genres, similarities for actors."""

    moods: dict[str, float] = field(default_factory=dict)
    genres: dict[str, float] = field(default_factory=dict)
    actors: dict[str, float] = field(default_factory=dict)
    actors_present: list[str] = field(default_factory=list)

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
