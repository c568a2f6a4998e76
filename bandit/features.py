"""What a policy sees: validated user context, per-artwork candidate features, embedding projection.

Everything here is pure (no model state) so the HTTP server, the simulator and the offline
log replay all build identical features from the same inputs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

import artwork.records
from artwork.records import Artwork, Tags

__all__ = [
    "TAG_KINDS",
    "EMB_PREFIX",
    "FACE_FEATURES",
    "ContextError",
    "LIMITS",
    "MAX_USER_ID_CHARS",
    "MAX_ID_CHARS",
    "MAX_TASTE_KEYS",
    "MAX_TASTE_KEY_CHARS",
    "MAX_HISTORY",
    "MAX_LABEL_CHARS",
    "MAX_EXCLUDE",
    "text_problem",
    "UserContext",
    "Candidate",
    "EmbeddingProjection",
    "taste_from_history",
    "title_cast",
    "tag_features",
    "face_features",
    "candidate_from_artwork",
    "candidates_from_artworks",
    "InputWarning",
    "tagger_labels",
    "taste_vocabulary",
    "unknown_inputs",
]

#: Tag kinds on `Tags`, mapped to the feature-key prefix used in taste profiles and candidates.
TAG_KINDS: dict[str, str] = {"moods": "mood", "genres": "genre", "actors": "actor"}
#: Candidate feature keys starting with this are embedding-projection components ("emb:0", ...).
EMB_PREFIX = "emb:"
#: Face features of a candidate (from `Tags.faces`): a fixed set of names, so however many faces
#: and cast members an artwork has, it adds at most these keys (which cast members are visible is
#: the "actor:<name>" tags). "face:one" / "face:two" / "face:group" one-hot the number of faces
#: (a close-up and a group shot are different kinds of image, not more or less of one); share: the
#: largest face's area over the frame's; x: its horizontal centre, 0 left .. 1 right; lead: the
#: title's lead is recognised; cast: some cast member is. An artwork without faces has none of them.
FACE_FEATURES = ("face:one", "face:two", "face:group", "face:share", "face:x", "face:lead", "face:cast")


class ContextError(ValueError):
    """A user context or candidate field is malformed; the message names the field."""


# -- request limits -------------------------------------------------------------------------------
# One place for every bound on client input: the HTTP models (bandit/server.py) and `UserContext`
# / the engine's page checks (in-process callers) enforce the same numbers, so a request cannot
# get further in one path than in the other. Each bound exists because the unbounded value cost
# something real: memory (per-taste example caches), CPU (history -> taste), disk (logged ids).

#: user_id: stored in every logged request, session and decision row.
MAX_USER_ID_CHARS = 256
#: title ids, artwork ids (exclude, pin), event ids and history entries.
MAX_ID_CHARS = 128
#: distinct keys in a taste profile (an explicit one, or one derived from history).
MAX_TASTE_KEYS = 256
#: one taste key ("genre:crime", "actor:Jane Doe").
MAX_TASTE_KEY_CHARS = 128
#: watched title ids in `history`.
MAX_HISTORY = 500
#: context.device and context.country.
MAX_LABEL_CHARS = 64
#: artwork ids in a request's `exclude`.
MAX_EXCLUDE = 1000

LIMITS: dict[str, int] = {
    "user_id_chars": MAX_USER_ID_CHARS,
    "id_chars": MAX_ID_CHARS,
    "taste_keys": MAX_TASTE_KEYS,
    "taste_key_chars": MAX_TASTE_KEY_CHARS,
    "history_entries": MAX_HISTORY,
    "label_chars": MAX_LABEL_CHARS,
    "exclude_entries": MAX_EXCLUDE,
}

# Control characters (C0, DEL, C1) and UTF-16 surrogates. A lone surrogate (JSON "\ud800") is a
# valid Python str but not encodable as UTF-8: SQLite, VW and every log reader choke on it.
_BAD_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def text_problem(value: Any, max_chars: int) -> str | None:
    """Why `value` is not acceptable client text (None when it is): a non-empty str of at most
    `max_chars` characters, UTF-8 encodable (no lone surrogates), without control characters."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "must be a non-empty string"
    if len(value) > max_chars:
        return f"must be at most {max_chars} characters, got {len(value)}"
    bad = _BAD_TEXT.search(value)
    if bad is not None:
        ch = bad.group()
        what = "a lone surrogate (not valid UTF-8)" if "\ud800" <= ch <= "\udfff" else "a control character"
        return f"contains {what} U+{ord(ch):04X} at position {bad.start()}"
    return None


def _check_text(name: str, value: Any, max_chars: int) -> str:
    why = text_problem(value, max_chars)
    if why is not None:
        raise ContextError(f"{name} {why}")
    return value


def _is_number(v: Any) -> bool:
    # bool is an int subclass; a True affinity is almost certainly a caller bug, so reject it.
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _check_float_map(name: str, value: Any, max_keys: int | None = None, max_key_chars: int | None = None
                     ) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ContextError(f"{name} must be a dict of str -> finite number, got {type(value).__name__}")
    if max_keys is not None and len(value) > max_keys:
        raise ContextError(f"{name} has {len(value)} keys; at most {max_keys}")
    out: dict[str, float] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise ContextError(f"{name} keys must be non-empty strings, got {k!r}")
        if max_key_chars is not None:
            why = text_problem(k, max_key_chars)
            if why is not None:
                raise ContextError(f"{name} key {k!r} {why}")
        if not _is_number(v) or not math.isfinite(float(v)):
            raise ContextError(f"{name}[{k!r}] must be a finite number, got {v!r}")
        out[k] = float(v)
    return out


def _check_opt_str(name: str, value: Any, max_chars: int = MAX_LABEL_CHARS) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ContextError(f"{name} must be a non-empty string or None, got {value!r}")
    return _check_text(name, value, max_chars)


def _check_opt_int(name: str, value: Any, lo: int, hi: int | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ContextError(f"{name} must be an int {rng} or None, got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ContextError(f"{name} must be an int {rng} or None, got {value}")
    return value


@dataclass
class UserContext:
    """The shared (per-request) context: who is looking, where, when, and what they like.

    `taste` keys are "genre:crime", "mood:dark", "actor:Jane Doe" with affinity values (typically
    0..1). Every field but `user_id` may be left out: a cold-start user gets only the artwork
    features, so the policy falls back to what works for everybody.
    """

    user_id: str
    taste: dict[str, float] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    device: str | None = None
    hour: int | None = None
    country: str | None = None
    row: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.user_id, str) or not self.user_id:
            raise ContextError(f"user_id must be a non-empty string, got {self.user_id!r}")
        _check_text("user_id", self.user_id, MAX_USER_ID_CHARS)
        self.taste = _check_float_map("taste", self.taste, MAX_TASTE_KEYS, MAX_TASTE_KEY_CHARS)
        if isinstance(self.history, (str, bytes)) or not isinstance(self.history, Sequence):
            raise ContextError(f"history must be a list of title ids, got {type(self.history).__name__}")
        if len(self.history) > MAX_HISTORY:
            raise ContextError(f"history has {len(self.history)} entries; at most {MAX_HISTORY}")
        for i, t in enumerate(self.history):
            if not isinstance(t, str) or not t:
                raise ContextError(f"history[{i}] must be a non-empty string title id, got {t!r}")
            _check_text(f"history[{i}]", t, MAX_ID_CHARS)
        self.history = list(self.history)
        self.device = _check_opt_str("device", self.device)
        self.country = _check_opt_str("country", self.country)
        self.hour = _check_opt_int("hour", self.hour, 0, 23)
        self.row = _check_opt_int("row", self.row, 0, None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UserContext:
        """Build from a JSON-like dict, rejecting unknown keys (typos would otherwise be silently dropped)."""
        if not isinstance(data, Mapping):
            raise ContextError(f"context must be an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ContextError(f"unknown context field(s) {unknown}; expected a subset of {sorted(known)}")
        if "user_id" not in data:
            raise ContextError("user_id is required")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of all fields (inverse of `from_dict`)."""
        d = dict(vars(self))  # asdict's generic deep copy is slow on the request path
        d["taste"], d["history"] = dict(self.taste), list(self.history)
        return d

    @property
    def is_cold(self) -> bool:
        """True when we know nothing about the user's taste."""
        return not self.taste and not self.history


@dataclass
class Candidate:
    """One artwork as a policy sees it: its id and a flat feature dict.

    Feature keys: "mood:<label>", "genre:<label>", "actor:<name>" for tags, `FACE_FEATURES` for
    faces and "emb:<i>" for embedding-projection components. An empty dict is valid (the policy
    still knows the id).
    """

    artwork_id: str
    features: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.artwork_id, str) or not self.artwork_id:
            raise ContextError(f"artwork_id must be a non-empty string, got {self.artwork_id!r}")
        self.features = _check_float_map(f"features of {self.artwork_id}", self.features)


def tag_features(tags: Tags, top_k: int | None = 5, min_score: float = 0.01) -> dict[str, float]:
    """Flatten an artwork's tags to "kind:label" -> score, keeping the top_k labels of each kind.

    Actors: the names in `actors_present` (their confidence, or 1.0) when the tagger filled it or
    the artwork was scanned for faces, else the raw similarity scores (catalogs tagged before
    faces). A face-based confidence below the threshold says "probably not this actor", not "this
    actor a little": an unrecognised face must not give the artwork an actor feature that a fan's
    `actor:<name>` taste would then be crossed with. Low scores are dropped so examples stay small.
    """
    out: dict[str, float] = {}
    for kind, prefix in TAG_KINDS.items():
        scores: dict[str, float] = dict(getattr(tags, kind) or {})
        if kind == "actors" and (tags.actors_present or tags.faces is not None):
            scores = {name: float(scores.get(name, 1.0)) for name in tags.actors_present}
        items = [
            (label, float(s))
            for label, s in scores.items()
            if label and _is_number(s) and math.isfinite(float(s)) and float(s) >= min_score
        ]
        items.sort(key=lambda kv: (-kv[1], kv[0]))
        if top_k is not None:
            items = items[:top_k]
        for label, s in items:
            key = f"{prefix}:{label}"
            if len(key) <= MAX_TASTE_KEY_CHARS:  # a longer key could never match a taste key
                out[key] = s
    return out


def face_features(tags: Tags, decimals: int = 4) -> dict[str, float]:
    """The artwork's face features (names in `FACE_FEATURES`); empty when it has no face or was not scanned."""
    f = tags.faces
    if f is None or f.n_faces <= 0:
        return {}
    out = {("face:one" if f.n_faces == 1 else "face:two" if f.n_faces == 2 else "face:group"): 1.0,
           "face:share": round(float(f.largest_share), decimals)}
    if f.largest_x is not None:
        out["face:x"] = round(float(f.largest_x), decimals)
    if f.lead_visible:
        out["face:lead"] = 1.0
    if tags.actors_present:
        out["face:cast"] = 1.0
    return {k: v for k, v in out.items() if math.isfinite(v)}


def title_cast(artworks: Iterable[Artwork]) -> list[str]:
    """A title's cast as its artworks' tags know it: every actor scored on any of them.

    The cast gallery scores every artwork against every cast member (present or not), so this is
    the gallery's cast, including actors whose face no candidate shows.
    """
    names: set[str] = set()
    for a in artworks:
        names.update(n for n in (a.tags.actors or {}) if n)
        names.update(n for n in a.tags.actors_present if n)
    return sorted(names)


def taste_from_history(
    history: Iterable[str],
    artworks_by_title: Mapping[str, Sequence[Artwork]],
    top_k: int | None = 5,
) -> dict[str, float]:
    """Aggregate watched titles into a taste profile (unknown titles ignored).

    Moods and genres: the tags of each title's artworks, averaged over its artworks. Actors: the
    title's cast (`title_cast`), 1.0 each: whoever watched the title watched its cast, however
    many of its candidate images happen to show each face. Each title counts once however many
    artworks it has, then titles are averaged, so values stay on the tag-score scale (0..1) and
    "actor:<name>" is the share of watched titles the actor is in. A title watched twice counts
    twice: rewatching is a signal.
    """
    totals: dict[str, float] = {}
    n_titles = 0
    for title_id in history:
        arts = artworks_by_title.get(title_id)
        if not arts:
            continue
        per_title: dict[str, float] = {}
        for a in arts:
            for k, v in tag_features(a.tags, top_k=top_k).items():
                if not k.startswith("actor:"):
                    per_title[k] = per_title.get(k, 0.0) + v / len(arts)
        for name in title_cast(arts):
            key = f"actor:{name}"
            if len(key) <= MAX_TASTE_KEY_CHARS:
                per_title[key] = 1.0
        n_titles += 1
        for k, v in per_title.items():
            totals[k] = totals.get(k, 0.0) + v
    if n_titles == 0:
        return {}
    return {k: v / n_titles for k, v in sorted(totals.items())}


# -- taste vocabulary ------------------------------------------------------------------------------

#: The tagger's label files, the ones `artwork.tagging.load_vocabulary` reads; read here without
#: importing the tagger (it loads torch).
TAGGER_VOCAB_DIR = Path(artwork.records.__file__).resolve().parent / "assets" / "vocab"


@lru_cache(maxsize=4)
def tagger_labels(directory: Path = TAGGER_VOCAB_DIR) -> dict[str, tuple[str, ...]]:
    """The tagger's labels by taste-key prefix, {"mood": (...), "genre": (...)} (do not mutate: cached);
    empty when a file is missing (the vocabulary then comes from the catalog's tags alone)."""
    out: dict[str, tuple[str, ...]] = {}
    for prefix, name in (("mood", "moods.txt"), ("genre", "genres.txt")):
        try:
            lines = (Path(directory) / name).read_text(encoding="utf-8").splitlines()
        except OSError:
            lines = []
        out[prefix] = tuple(ln for ln in (x.strip() for x in lines) if ln and not ln.startswith("#"))
    return out


def taste_vocabulary(artworks: Iterable[Artwork], labels: Mapping[str, Iterable[str]] | None = None
                     ) -> frozenset[str]:
    """Every taste key that can meet a candidate feature of this catalog: "mood:" / "genre:" with
    the tagger's labels (`labels`, default `tagger_labels()`) and every label in the artworks' tags,
    "actor:" with every cast member their tags name (scored or recognised), and `FACE_FEATURES`.
    Keys over MAX_TASTE_KEY_CHARS are left out (no request can send one). Embedding components
    ("emb:<i>") are not taste: a projection's axes mean nothing to a client. A taste built by
    `taste_from_history` from the same artworks only has keys in here.
    """
    keys: set[str] = set(FACE_FEATURES)
    for prefix, labs in (tagger_labels() if labels is None else labels).items():
        keys.update(f"{prefix}:{lab}" for lab in labs if lab)
    for a in artworks:
        for kind, prefix in TAG_KINDS.items():
            keys.update(f"{prefix}:{lab}" for lab in (getattr(a.tags, kind) or {}) if lab)
        keys.update(f"actor:{name}" for name in a.tags.actors_present if name)
    return frozenset(k for k in keys if len(k) <= MAX_TASTE_KEY_CHARS)


@dataclass(frozen=True)
class InputWarning:
    """A request input the service does not know, and so ignored: `field` is its path in the request
    ("taste.genre:nonsense", "history.2"), `type` is unknown_taste_key or unknown_title."""

    field: str
    value: str
    type: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "value": self.value, "type": self.type, "reason": self.reason}


def unknown_inputs(taste: Iterable[str], history: Iterable[str], vocabulary: Collection[str],
                   titles: Collection[str]) -> list[InputWarning]:
    """Taste keys not in `vocabulary` and history entries not in `titles`, in request order (one
    set lookup per key and entry)."""
    out = [InputWarning(f"taste.{k}", k, "unknown_taste_key",
                        f"unknown taste key {k!r}: not in the taste vocabulary (the tagger's moods and "
                        "genres, the catalog's tags and cast, face:*)")
           for k in taste if k not in vocabulary]
    out.extend(InputWarning(f"history.{i}", t, "unknown_title", f"unknown title {t!r}: not in the catalog")
               for i, t in enumerate(history) if t not in titles)
    return out


class EmbeddingProjection:
    """PCA of a catalog's CLIP embeddings to a few dimensions, so VW gets ~24 dense features not 512+.

    Fitted per catalog with numpy SVD; stored alongside it via `to_dict()`/`from_dict()`.
    Component signs are fixed (largest-magnitude loading positive) so refits are reproducible.
    """

    def __init__(self, encoder_id: str | None, mean: np.ndarray, components: np.ndarray) -> None:
        self.encoder_id = encoder_id
        self.mean = np.asarray(mean, dtype=np.float32)
        self.components = np.asarray(components, dtype=np.float32).reshape(-1, self.mean.shape[0])

    @property
    def dim(self) -> int:
        """Input embedding dimension."""
        return int(self.mean.shape[0])

    @property
    def n_components(self) -> int:
        """Output dimension (may be 0 for a one-artwork catalog)."""
        return int(self.components.shape[0])

    @classmethod
    def fit(
        cls,
        embeddings: np.ndarray | Sequence[np.ndarray],
        n_components: int = 24,
        encoder_id: str | None = None,
    ) -> EmbeddingProjection:
        """Fit on an (n, d) array; keeps min(n_components, n - 1, d) components."""
        if not 1 <= n_components <= 64:
            raise ValueError(f"n_components must be 1..64, got {n_components}")
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"embeddings must be a non-empty (n, d) array, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("embeddings contain NaN or inf")
        mean = x.mean(axis=0)
        # Centred data has rank <= n - 1, so components beyond that would be noise.
        k = min(n_components, x.shape[0] - 1, x.shape[1])
        if k <= 0:
            return cls(encoder_id, mean, np.zeros((0, x.shape[1])))
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        vt = vt[:k]
        keep = s[:k] > 1e-9 * max(float(s[0]), 1e-30)
        vt = vt[keep]
        signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
        signs[signs == 0] = 1.0
        return cls(encoder_id, mean, vt * signs[:, None])

    def transform(self, vec: np.ndarray) -> np.ndarray:
        """Project one (d,) vector or an (n, d) batch; returns float32."""
        v = np.asarray(vec, dtype=np.float32)
        if v.shape[-1] != self.dim:
            raise ValueError(f"embedding has dimension {v.shape[-1]}, projection expects {self.dim}")
        return ((v - self.mean) @ self.components.T).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; float32 values survive the float64 JSON round trip exactly."""
        return {
            "format": 1,
            "encoder_id": self.encoder_id,
            "dim": self.dim,
            "n_components": self.n_components,
            "mean": [float(v) for v in self.mean],
            "components": [[float(v) for v in row] for row in self.components],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EmbeddingProjection:
        """Inverse of `to_dict`."""
        try:
            dim = int(data["dim"])
            mean = np.asarray(data["mean"], dtype=np.float32)
            comps = np.asarray(data["components"], dtype=np.float32).reshape(-1, dim)
            enc = data.get("encoder_id")
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed EmbeddingProjection dict: {e}") from e
        if mean.shape != (dim,) or comps.shape[0] != int(data.get("n_components", comps.shape[0])):
            raise ValueError("malformed EmbeddingProjection dict: shapes do not match dim/n_components")
        return cls(enc, mean, comps)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, EmbeddingProjection)
            and self.encoder_id == other.encoder_id
            and np.array_equal(self.mean, other.mean)
            and np.array_equal(self.components, other.components)
        )

    def __repr__(self) -> str:
        return f"EmbeddingProjection(encoder_id={self.encoder_id!r}, dim={self.dim}, n_components={self.n_components})"


def candidate_from_artwork(
    a: Artwork,
    projection: EmbeddingProjection | None = None,
    top_k: int | None = 5,
    decimals: int = 4,
) -> Candidate:
    """Features of one artwork: its top tag scores, its face features and its projected embedding
    (when compatible).

    The embedding is skipped, not an error, when missing or from another encoder / dimension:
    a fresh upload that has not been embedded yet must still be servable.
    """
    feats = tag_features(a.tags, top_k=top_k)
    feats.update(face_features(a.tags, decimals))
    emb = a.embedding
    if (
        projection is not None
        and projection.n_components > 0
        and emb is not None
        and (projection.encoder_id is None or a.encoder_id is None or a.encoder_id == projection.encoder_id)
        and np.asarray(emb).shape == (projection.dim,)
    ):
        z = projection.transform(emb)
        if np.all(np.isfinite(z)):
            # Rounding keeps example text short and makes features stable across float noise.
            for i, v in enumerate(z.tolist()):
                feats[f"{EMB_PREFIX}{i}"] = round(v, decimals)
    return Candidate(a.artwork_id, feats)


def candidates_from_artworks(
    artworks: Iterable[Artwork],
    projection: EmbeddingProjection | None = None,
    include_disabled: bool = False,
) -> list[Candidate]:
    """Candidates for a title's artworks, skipping disabled ones unless asked."""
    return [candidate_from_artwork(a, projection) for a in artworks if include_disabled or not a.disabled]
