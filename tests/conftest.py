"""Shared fixtures: the tiny seeded encoder, catalogs in temp folders, real image files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from artwork.encoder import build_tiny
from artwork.store import Catalog


def scene(seed: int, size: tuple[int, int] = (256, 192)) -> Image.Image:
    """A seeded synthetic picture: a background with coloured ellipses and boxes."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    d = ImageDraw.Draw(im)
    w, h = size
    for _ in range(8):
        x, y = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        s = int(rng.integers(15, max(16, min(w, h) // 2)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)((x, y, x + s, y + s * 2 // 3), fill=colour)
    return im


def encode(im: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def tiny():
    return build_tiny()


@pytest.fixture
def catalog(tmp_path: Path):
    with Catalog(tmp_path / "catalog.db") as c:
        yield c


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """Three valid candidates, one per accepted format."""
    d = tmp_path / "images"
    d.mkdir()
    (d / "a.jpg").write_bytes(encode(scene(1), "JPEG"))
    (d / "b.png").write_bytes(encode(scene(2), "PNG"))
    (d / "c.webp").write_bytes(encode(scene(3), "WEBP"))
    return d
