"""artwork-engine, image side: the catalog, uploads, encoders, tags, faces and frames.

The public names below are imported on first use (PEP 562), so `import artwork` loads nothing
heavy: torch, open_clip, dlib and av come in only with the names that need them (`load_encoder`,
`Ingestor`, `mine_frames`...), and `artwork --help` stays fast.

    import artwork
    with artwork.Catalog("artwork.db") as catalog:
        print([t.title_id for t in catalog.titles()])
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: name -> the module that defines it.
_EXPORTS = {
    "Catalog": "artwork.store",
    "StoreError": "artwork.store",
    "EncoderMismatch": "artwork.store",
    "DEFAULT_STORE": "artwork.store",
    "artwork_id_for": "artwork.store",
    "Title": "artwork.records",
    "Artwork": "artwork.records",
    "Tags": "artwork.records",
    "ImageLimits": "artwork.images",
    "ImageRejected": "artwork.images",
    "load_image": "artwork.images",
    "Encoder": "artwork.encoder",
    "load_encoder": "artwork.encoder",
    "build_tiny": "artwork.encoder",
    "WeightsUnavailable": "artwork.encoder",
    "Ingestor": "artwork.ingest",
    "CastManager": "artwork.ingest",
    "IngestReport": "artwork.ingest",
    "read_manifest": "artwork.ingest",
    "FrameConfig": "artwork.frames",
    "mine_frames": "artwork.frames",
}

__all__ = ["__version__", *_EXPORTS]


def _version(dist: str = "artwork-engine") -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'artwork' has no attribute {name!r}")
    globals()[name] = value  # once: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
