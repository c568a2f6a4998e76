"""Decode and validate candidate images: format, integrity, size limits, EXIF orientation."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from PIL import Image, ImageOps

ACCEPTED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


@dataclass(frozen=True)
class ImageLimits:
    """What an acceptable candidate looks like."""

    min_side: int = 64  # px, short side
    max_pixels: int = 50_000_000  # decompression-bomb guard, checked before decoding


class ImageRejected(ValueError):
    """One file is not an acceptable candidate; `reason` says what was expected."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass
class LoadedImage:
    """A validated image: the original bytes (kept as uploaded) and an upright RGB copy."""

    name: str
    data: bytes
    sha256: str
    image: Image.Image
    format: str

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_image(data: bytes, name: str, limits: ImageLimits = ImageLimits()) -> LoadedImage:
    """Validate and decode image bytes; raises ImageRejected with a specific reason."""
    if not data:
        raise ImageRejected(name, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # PIL's own bomb warning is replaced by our configurable limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageRejected(name, f"too many pixels ({exc}); max is {limits.max_pixels:,}") from None
    except Exception:
        raise ImageRejected(name, "not an image (expected JPEG, PNG or WebP)") from None
    if im.format not in ACCEPTED_FORMATS:
        raise ImageRejected(name, f"unsupported format {im.format}; expected JPEG, PNG or WebP")
    w, h = im.size
    if w * h > limits.max_pixels:
        raise ImageRejected(name, f"{w}x{h} = {w * h:,} pixels exceeds the maximum of "
                                  f"{limits.max_pixels:,} (decompression-bomb guard)")
    try:
        im.load()
    except Exception as exc:  # PIL says "image file is truncated", "broken data stream", ...
        raise ImageRejected(name, f"truncated or corrupt {ACCEPTED_FORMATS[im.format]} data ({exc})") from None
    upright = ImageOps.exif_transpose(im).convert("RGB")
    if min(upright.size) < limits.min_side:
        raise ImageRejected(name, f"{upright.width}x{upright.height} is too small: the short side "
                                  f"must be at least {limits.min_side} px")
    return LoadedImage(name=name, data=data, sha256=sha256_of(data), image=upright,
                       format=ACCEPTED_FORMATS[im.format])


def collect_image_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[ImageRejected]]:
    """Expand files and directories (sorted, recursive) into candidate files.

    Directories contribute files with image suffixes; files named explicitly are all taken, so
    a wrongly named file gets a specific rejection instead of being skipped silently.
    """
    files: list[Path] = []
    problems: list[ImageRejected] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            problems.append(ImageRejected(str(p), "no such file or directory"))
    return files, problems
