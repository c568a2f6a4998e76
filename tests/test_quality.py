"""artwork.quality: pure measures on synthetic RGB arrays (no I/O)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from artwork import quality as Q

W, H = 256, 144


def noise(seed: int = 0, block: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (H // block, W // block, 3)).astype(np.uint8).repeat(block, 0).repeat(block, 1)


def blurred(rgb: np.ndarray, radius: float = 3) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(radius)))


def flat(value: int | tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, np.uint8), (H, W, 3)).copy()


def text_card(size: int, bg=(0, 0, 0), fg=(255, 255, 255)) -> np.ndarray:
    im = Image.new("RGB", (W, H), bg)
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=size)
    for i, line in enumerate(["DIRECTED BY", "Jane Q. Doe", "Music by Someone", "A Film"]):
        d.text((16, 8 + int(i * size * 1.2)), line, font=font, fill=fg)
    return np.asarray(im)


def shapes(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (W, H), (20, 30, 120))
    d = ImageDraw.Draw(im)
    for _ in range(6):
        x, y = int(rng.integers(0, W - 60)), int(rng.integers(0, H - 40))
        d.ellipse([x, y, x + 60, y + 40], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return np.asarray(im)


def test_sharpness_orders_sharp_over_blurred_and_flat_is_zero():
    sharp = noise()
    assert Q.sharpness(sharp) > 20 * Q.sharpness(blurred(sharp))
    assert Q.sharpness(blurred(sharp, 1)) > Q.sharpness(blurred(sharp, 4))
    assert Q.sharpness(flat(128)) == 0.0


def test_brightness_and_contrast_scales():
    assert Q.brightness(flat(0)) == 0.0
    assert Q.brightness(flat(255)) == pytest.approx(1.0, abs=1e-3)
    assert Q.brightness(flat(128)) == pytest.approx(128 / 255, abs=1e-3)
    assert Q.contrast(flat(77)) == pytest.approx(0.0, abs=1e-6)
    checker = np.indices((H, W)).sum(0) % 2 * 255
    checker = np.repeat(checker[..., None], 3, axis=2).astype(np.uint8)
    assert Q.contrast(checker) == pytest.approx(0.5, abs=1e-3)


def test_colourfulness_matches_hasler_susstrunk():
    assert Q.colourfulness(flat(128)) == pytest.approx(0.0, abs=1e-6)
    # Half pure red, half pure blue: rg = (255, 0), yb = (127.5, -255).
    img = flat((255, 0, 0))
    img[:, W // 2 :] = (0, 0, 255)
    rg, yb = np.array([255.0, 0.0]), np.array([127.5, -255.0])
    expected = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    assert Q.colourfulness(img) == pytest.approx(expected, rel=1e-4)
    assert Q.colourfulness(noise()) > Q.colourfulness(blurred(noise())) > Q.colourfulness(flat(200))


def test_black_and_fade_flags():
    assert Q.is_black(flat(3)) and Q.is_fade(flat(3))
    dim = (noise() * 0.07).astype(np.uint8)  # near the bottom of a fade to black
    assert Q.is_black(dim) and Q.is_fade(dim)
    half = (noise() * 0.25).astype(np.uint8)  # half-way through a fade: dim and flat
    assert not Q.is_black(half)
    assert Q.is_fade(half)
    assert Q.is_fade(flat(240))  # fade to white
    assert not Q.is_black(noise()) and not Q.is_fade(noise())
    # End credits are dark but legible: not black.
    assert not Q.is_black(text_card(14))


def test_letterbox_box_and_crop():
    img = np.zeros((H, W, 3), np.uint8)
    img[20:124] = noise()[20:124]
    assert Q.letterbox_box(img) == (20, 124, 0, W)
    assert Q.has_letterbox(img)
    assert Q.crop_letterbox(img).shape == (104, W, 3)
    pillar = np.zeros((H, W, 3), np.uint8)
    pillar[:, 32:224] = noise()[:, 32:224]
    assert Q.letterbox_box(pillar) == (0, H, 32, 224)
    assert Q.letterbox_box(noise()) == (0, H, 0, W)
    # A black frame is not "all bars".
    assert Q.letterbox_box(flat(0)) == (0, H, 0, W)
    # Dark picture content with detail is not mistaken for a bar.
    dark = noise()
    dark[:30] = (noise(3)[:30] * 0.3).astype(np.uint8)
    assert Q.letterbox_box(dark)[0] == 0


@pytest.mark.parametrize("size", [10, 14, 24, 36])
def test_text_cards_are_flagged(size):
    assert Q.is_text(text_card(size))
    assert Q.is_text(text_card(size, bg=(240, 240, 230), fg=(10, 10, 10)))


@pytest.mark.parametrize("make", [noise, shapes, lambda: blurred(noise())])
def test_pictures_are_not_text(make):
    assert not Q.is_text(make())


def test_a_subtitle_on_a_picture_is_not_mostly_text():
    im = Image.fromarray(noise())
    ImageDraw.Draw(im).text((20, 120), "a subtitle line", font=ImageFont.load_default(size=12), fill=(255, 255, 255))
    assert not Q.is_text(np.asarray(im))


def test_measure_crops_bars_and_scores():
    pic = noise()
    boxed = np.zeros_like(pic)
    boxed[20:124] = pic[20:124]
    q = Q.measure(boxed)
    assert q["letterbox"] is True
    # Measured on the picture, so bars do not drag brightness down.
    assert q["brightness"] == pytest.approx(Q.brightness(pic[20:124]), abs=1e-6)
    assert set(q) == {"sharpness", "brightness", "contrast", "colourfulness", "text_score",
                      "black", "fade", "letterbox", "text", "score"}
    assert Q.measure(pic)["score"] > Q.measure(blurred(pic))["score"] > 0
    assert Q.measure(flat(0))["score"] == 0.0
    assert Q.measure(text_card(14))["score"] == 0.0


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32),
                                 np.zeros((10, 10, 4), np.uint8), np.zeros((2, 2, 3), np.uint8)])
def test_rejects_non_rgb_uint8(bad):
    with pytest.raises(ValueError):
        Q.measure(bad)
