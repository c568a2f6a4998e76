"""Decode and validate candidate images: format, integrity, size limits, EXIF orientation; perceptual
fingerprints for near-duplicate detection; which files of a folder are candidates.

Near duplicates: a `Fingerprint` is a 64-bit difference hash (dHash) of the grey picture plus its
4x4 mean colours. Re-encoding the same picture (JPEG at any quality, PNG, WebP, a CMYK JPEG, a
smaller copy) moves neither: hash distance 0-2 bits, colours under 1.5 levels of 255 on the test
scenes. A colour grade of the same photo (darker, black and white, warmer: the sample catalog's
`astronaut_dark`, `portrait_bw`, `chelsea_warm`) keeps the hash but moves the colours by 15-55
levels, and is a real alternative the policy should test, so the colours must match too.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps

ACCEPTED_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}

#: Near duplicates: at most this many of the 64 dHash bits differ ...
NEAR_DUPLICATE_BITS = 6
#: ... and the 4x4 mean colours differ by at most this much on average (levels of 255).
NEAR_DUPLICATE_COLOUR = 4.0


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


@dataclass(frozen=True)
class Fingerprint:
    """What a picture looks like, independent of its encoding (see the module docstring)."""

    dhash: int  # 64 bits: is each of 8x9 grey cells brighter than its right neighbour
    colours: bytes  # 4x4 cells x RGB, mean of each

    def to_text(self) -> str:
        """16 hex digits of the hash, then 96 of the colours (how the catalog stores it)."""
        return f"{self.dhash:016x}{self.colours.hex()}"

    @classmethod
    def from_text(cls, text: str) -> "Fingerprint":
        return cls(int(text[:16], 16), bytes.fromhex(text[16:]))

    def distance(self, other: "Fingerprint") -> tuple[int, float]:
        """(differing hash bits, mean colour difference in levels of 255)."""
        colour = np.abs(np.frombuffer(self.colours, np.uint8).astype(np.int16)
                        - np.frombuffer(other.colours, np.uint8).astype(np.int16)).mean()
        return bin(self.dhash ^ other.dhash).count("1"), float(colour)

    def near(self, other: "Fingerprint") -> bool:
        bits, colour = self.distance(other)
        return bits <= NEAR_DUPLICATE_BITS and colour <= NEAR_DUPLICATE_COLOUR


def fingerprint(image: Image.Image) -> Fingerprint:
    """The perceptual fingerprint of a decoded (upright RGB) picture."""
    grey = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    colours = np.asarray(image.convert("RGB").resize((4, 4), Image.Resampling.BOX), dtype=np.uint8)
    return Fingerprint(int.from_bytes(np.packbits(bits).tobytes(), "big"), colours.tobytes())


@dataclass
class ImageFiles:
    """Files to ingest, named paths that are unusable (rejected), and folder entries passed over (skipped)."""

    files: list[Path] = field(default_factory=list)
    problems: list[ImageRejected] = field(default_factory=list)
    skipped: list[ImageRejected] = field(default_factory=list)


def _why_not_a_candidate(path: Path) -> str | None:
    """None when a file without an image suffix holds JPEG, PNG or WebP after all; else why it is skipped."""
    try:
        with Image.open(path) as im:  # reads the header only
            fmt = im.format
    except OSError as exc:
        if exc.strerror:  # the file itself cannot be read (permissions, I/O), not PIL failing to identify it
            return f"cannot read file ({exc.strerror})"
        return "not an image (expected JPEG, PNG or WebP)"
    except Exception:  # PIL raises more than OSError on odd headers; any of them means "not a candidate"
        return "not an image (expected JPEG, PNG or WebP)"
    if fmt in ACCEPTED_FORMATS:
        return None
    return f"{fmt} image: only JPEG, PNG and WebP are accepted"


def collect_image_files(paths: Iterable[str | Path]) -> ImageFiles:
    """Expand files and directories (sorted, recursive) into candidate files.

    Files named explicitly are all taken, so a wrong one gets a specific rejection. Inside a folder,
    files with an image suffix are taken; any other file is looked at: a JPEG, PNG or WebP without
    the suffix is taken too, everything else (GIF, BMP, text, unreadable) is skipped with a reason,
    so a designer sees every file that did not go in.
    """
    found = ImageFiles()
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_dir():
                    continue
                if not f.is_file():  # never opened: reading a FIFO would block the upload
                    why = "broken symbolic link" if f.is_symlink() and not f.exists() else "not a regular file"
                    found.skipped.append(ImageRejected(str(f), why))
                elif f.suffix.lower() in IMAGE_SUFFIXES:
                    found.files.append(f)
                elif (why := _why_not_a_candidate(f)) is None:
                    found.files.append(f)
                else:
                    found.skipped.append(ImageRejected(str(f), why))
        elif p.is_file():
            found.files.append(p)
        else:
            found.problems.append(ImageRejected(str(p), "no such file or directory"))
    return found
