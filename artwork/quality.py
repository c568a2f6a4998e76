"""Per-frame image quality measures: pure numpy functions on an RGB uint8 array (H, W, 3).

Nothing here does I/O, so every measure is testable on synthetic arrays. Scale conventions:
brightness and contrast are fractions of full scale (0..1); sharpness is the variance of a
4-neighbour Laplacian on 0..255 luma, which grows with image detail *and* with resolution, so
compare it only between images of the same size (`artwork.frames` measures every frame on a
downscaled analysis copy of fixed width for that reason); colourfulness is Hasler and
Süsstrunk's metric M on 0..255 values (about 0 grey, 15 slightly, 33 moderately, 59 quite,
82 highly, 109 extremely colourful).
"""

from __future__ import annotations

import math

import numpy as np

# Rec. 601 luma weights: what "brightness" means for a frame decoded from YUV video.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 array of shape (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if rgb.shape[0] < 3 or rgb.shape[1] < 3:
        raise ValueError(f"image too small to measure: {rgb.shape[1]}x{rgb.shape[0]}")


def luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an RGB uint8 image as float32 on 0..255, shape (H, W)."""
    _check_rgb(rgb)
    return rgb.astype(np.float32) @ _LUMA


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of luma (higher = sharper; depends on resolution)."""
    y = luma(rgb)
    # 4-neighbour Laplacian on the interior: border pixels have no full neighbourhood.
    lap = (y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:]) - 4.0 * y[1:-1, 1:-1]
    return float(lap.var())


def brightness(rgb: np.ndarray) -> float:
    """Mean luma as a fraction of full scale (0 black .. 1 white)."""
    return float(luma(rgb).mean() / 255.0)


def contrast(rgb: np.ndarray) -> float:
    """RMS contrast: standard deviation of luma as a fraction of full scale (0..0.5)."""
    return float(luma(rgb).std() / 255.0)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler–Süsstrunk colourfulness M = σ_rgyb + 0.3·μ_rgyb on 0..255 channel values."""
    _check_rgb(rgb)
    f = rgb.astype(np.float32)
    rg = f[..., 0] - f[..., 1]
    yb = 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    sigma = math.hypot(float(rg.std()), float(yb.std()))
    mu = math.hypot(float(rg.mean()), float(yb.mean()))
    return sigma + 0.3 * mu


def is_black(rgb: np.ndarray, dark_level: float = 0.12, min_dark_fraction: float = 0.97) -> bool:
    """True when almost every pixel is dark: a black frame, or the bottom of a fade to black.

    Counting dark pixels rather than thresholding the mean keeps dim but legible frames
    (end credits, night scenes with a lit window) out of this flag.
    """
    y = luma(rgb)
    return bool((y < dark_level * 255.0).mean() >= min_dark_fraction)


def is_fade(
    rgb: np.ndarray,
    max_brightness: float = 0.15,
    max_dim_contrast: float = 0.06,
    max_flat_contrast: float = 0.025,
) -> bool:
    """True for a frame in the middle of a fade (to black or to a flat colour).

    Fading compresses the luma range towards one level, so a fade frame is either dim with
    little contrast, or nearly uniform at any brightness (fade to white, flash frames).
    Black frames are fades too.
    """
    b, c = brightness(rgb), contrast(rgb)
    return bool((b <= max_brightness and c <= max_dim_contrast) or c <= max_flat_contrast or is_black(rgb))


def letterbox_box(
    rgb: np.ndarray, dark_level: float = 0.10, max_spread: float = 0.04, max_bar_fraction: float = 0.35
) -> tuple[int, int, int, int]:
    """The picture area inside black letterbox/pillarbox bars, as (top, bottom, left, right).

    Rows/columns count as bar while their mean luma is below `dark_level` and nearly uniform
    (std below `max_spread`), so dark picture content with detail is not eaten. Each side may
    lose at most `max_bar_fraction` of the frame, which keeps a black frame from collapsing to
    nothing. Returns the full frame (0, H, 0, W) when there are no bars.
    """
    y = luma(rgb) / 255.0
    h, w = y.shape

    def bar_length(line_mean: np.ndarray, line_std: np.ndarray, limit: int) -> int:
        is_bar = (line_mean < dark_level) & (line_std < max_spread)
        n = 0
        while n < limit and is_bar[n]:
            n += 1
        return n

    row_mean, row_std = y.mean(axis=1), y.std(axis=1)
    col_mean, col_std = y.mean(axis=0), y.std(axis=0)
    lim_h, lim_w = int(h * max_bar_fraction), int(w * max_bar_fraction)
    top = bar_length(row_mean, row_std, lim_h)
    bottom = h - bar_length(row_mean[::-1], row_std[::-1], lim_h)
    left = bar_length(col_mean, col_std, lim_w)
    right = w - bar_length(col_mean[::-1], col_std[::-1], lim_w)
    # A "bar" that runs into the limit means the frame itself is dark and flat there (a black
    # or fading frame), not letterboxed: leave that axis alone.
    if top >= lim_h or h - bottom >= lim_h:
        top, bottom = 0, h
    if left >= lim_w or w - right >= lim_w:
        left, right = 0, w
    # Compression noise makes bars ragged by a pixel or two; ignore bars thinner than 1% so a
    # clean frame is never cropped by a dark edge row.
    if top < max(2, h // 100):
        top = 0
    if h - bottom < max(2, h // 100):
        bottom = h
    if left < max(2, w // 100):
        left = 0
    if w - right < max(2, w // 100):
        right = w
    return top, bottom, left, right


def has_letterbox(rgb: np.ndarray) -> bool:
    """True when `letterbox_box` finds bars on any side."""
    h, w = rgb.shape[:2]
    return letterbox_box(rgb) != (0, h, 0, w)


def crop_letterbox(rgb: np.ndarray) -> np.ndarray:
    """The frame with letterbox/pillarbox bars removed (a view, not a copy)."""
    top, bottom, left, right = letterbox_box(rgb)
    return rgb[top:bottom, left:right]


def _erode(mask: np.ndarray) -> np.ndarray:
    """3x3 binary erosion; pixels on the image border count as eroded."""
    out = np.zeros_like(mask)
    m = mask
    out[1:-1, 1:-1] = (
        m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
        & m[:-2, :-2] & m[:-2, 2:] & m[2:, :-2] & m[2:, 2:]
    )
    return out


def _text_stats(rgb: np.ndarray, min_ink_contrast: float) -> tuple[float, float]:
    """(text score, ink fraction) for `text_score` and `is_text`."""
    y = luma(rgb) / 255.0
    hist, edges = np.histogram(y, bins=32, range=(0.0, 1.0))
    mode = int(hist.argmax())
    bg_level = 0.5 * (edges[mode] + edges[mode + 1])
    diff = np.abs(y - bg_level)
    background = diff < 0.08
    ink = diff > min_ink_contrast
    ink_fraction = float(ink.mean())
    if ink_fraction < 0.005:
        return 0.0, ink_fraction
    thin = 1.0 - float(_erode(ink).sum()) / float(ink.sum())
    return float(background.mean()) * thin, ink_fraction


def text_score(rgb: np.ndarray, min_ink_contrast: float = 0.25) -> float:
    """How much the frame looks like a text card (titles, credits, intertitles), 0..1.

    A text card is a plain background covering most of the frame with thin, high-contrast
    strokes on it. We take the most common luma level as the background, call pixels that
    differ from it by more than `min_ink_contrast` "ink", and measure how thin the ink is:
    the share of ink that disappears under one 3x3 erosion. Filled shapes and photographic
    detail are thick or lack a plain background, so they score low. The score is
    background_fraction x thin_ink_fraction, zero when there is (almost) no ink.
    """
    return _text_stats(rgb, min_ink_contrast)[0]


def is_text(
    rgb: np.ndarray, threshold: float = 0.35, max_ink_fraction: float = 0.35, min_ink_contrast: float = 0.25
) -> bool:
    """True when the frame is mostly text on a plain background (see `text_score`).

    `max_ink_fraction` rejects busy frames: text cards are sparse ink on a lot of background.
    """
    score, ink_fraction = _text_stats(rgb, min_ink_contrast)
    return score >= threshold and ink_fraction <= max_ink_fraction


def quality_score(q: dict[str, float | bool]) -> float:
    """One 0..1 number to rank frames by, from the measures `measure` returns.

    Sharpness dominates (a soft frame makes poor artwork however nice its colours); it enters
    on a log scale because Laplacian variance spans orders of magnitude. Brightness is best
    near mid-grey. Flagged frames (black, fade, text) score 0.
    """
    if q.get("black") or q.get("fade") or q.get("text"):
        return 0.0
    sharp = min(1.0, math.log1p(max(0.0, float(q["sharpness"]))) / math.log1p(2000.0))
    contr = min(1.0, float(q["contrast"]) / 0.25)
    colour = min(1.0, float(q["colourfulness"]) / 80.0)
    bright = max(0.0, 1.0 - abs(float(q["brightness"]) - 0.45) / 0.45)
    return 0.45 * sharp + 0.2 * contr + 0.2 * colour + 0.15 * bright


def measure(rgb: np.ndarray, crop: bool = True) -> dict[str, float | bool]:
    """All measures for one frame, computed on the picture inside any letterbox bars.

    Keys: sharpness, brightness, contrast, colourfulness, text_score (floats); black, fade,
    letterbox, text (flags); score (`quality_score`).
    """
    _check_rgb(rgb)
    h, w = rgb.shape[:2]
    box = letterbox_box(rgb) if crop else (0, h, 0, w)
    pic = rgb[box[0] : box[1], box[2] : box[3]]
    q: dict[str, float | bool] = {
        "sharpness": sharpness(pic),
        "brightness": brightness(pic),
        "contrast": contrast(pic),
        "colourfulness": colourfulness(pic),
        "text_score": text_score(pic),
        "black": is_black(rgb),  # on the whole frame: bars are black by definition
        "fade": is_fade(pic),
        "letterbox": box != (0, h, 0, w),
        "text": is_text(pic),
    }
    q["score"] = quality_score(q)
    return q
