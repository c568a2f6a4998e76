"""Synthetic test videos written with PyAV, with a known shot list.

Each shot has its own seeded texture (noise tinted with the shot's colour, plus a few filled
shapes) that pans slowly (back and forth, without jumps), so shots are easy to tell apart and frames within a shot are
similar but not identical. Special kinds: "black" (near-black frames), "blur" (the shot's
texture, Gaussian-blurred), "halfblur" (sharp first half, blurred second half: a focus pull
inside one shot) and "text" (white credits on black). Reusing a shot's `seed` and `colour`
repeats that shot later in the video. `overlays` paste photos (e.g. a real face) into the
middle of a shot's frames, each from a given fraction of the shot until the next one, so a face
can be in some of a shot's frames and not in others.

Used by scripts/make_sample_video.py (the demo's sample video), scripts/bench_frames.py and the
tests (through tests/videos.py). It lives in scripts/ because scripts must run from a checkout
without importing anything from tests/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 70, 230),
    "yellow": (230, 210, 40),
    "magenta": (210, 40, 200),
    "cyan": (40, 210, 220),
    "orange": (240, 130, 20),
    "white": (225, 225, 225),
    "purple": (120, 40, 200),
    "teal": (20, 130, 120),
}


@dataclass(frozen=True)
class ShotSpec:
    """One shot to write: `seconds` long, with content `kind` in colour `colour` from `seed`."""

    label: str
    seconds: float
    colour: str | tuple[int, int, int] = "white"  # a PALETTE name or an RGB tuple
    seed: int = 0
    kind: str = "texture"  # texture | black | blur | halfblur | text
    # (from, photo path) pairs, by `from`: the photo is pasted over the middle of the frame from
    # that fraction of the shot until the next pair's (a None path: nothing from there)
    overlays: tuple[tuple[float, str | None], ...] = ()
    overlay_height: float = 0.75  # an overlay's height as a fraction of the frame's


@dataclass(frozen=True)
class Shot:
    """A written shot: where it landed in the video (seconds, [start, end))."""

    label: str
    start: float
    end: float
    colour: str | tuple[int, int, int]
    kind: str
    first_frame: int


def texture(width: int, height: int, colour: tuple[int, int, int], seed: int, margin: int = 64,
            detail: str = "blocks") -> np.ndarray:
    """A seeded tinted texture `margin` pixels wider than the frame, to pan across.

    detail="blocks": flat square blocks of random brightness, 1/40 of the width each.
    detail="natural": detail at every scale from 4 px up (octaves of smooth noise, amplitude
    growing with scale like the 1/f spectrum of photographs); closer to real footage. The two
    differ in how an encoder sees a cut: between two "blocks" pictures at 720p most of a
    frame is flat blocks, cheap to predict from the old shot, so x264's scene-cut test (inter
    vs intra cost of the luma) rarely fires; between two "natural" pictures it does.
    """
    rng = np.random.default_rng(seed)
    w = width + margin
    if detail == "natural":
        noise = np.zeros((height, w), np.float32)
        scale, total = 4, 0.0
        while scale <= max(8, min(height, w) // 2):
            small = rng.random((height // scale + 2, w // scale + 2)).astype(np.float32)
            up = Image.fromarray(small).resize(((w // scale + 2) * scale, (height // scale + 2) * scale), Image.BICUBIC)
            amp = scale**0.5
            noise += amp * np.asarray(up, np.float32)[:height, :w]
            total += amp
            scale *= 2
        noise = (noise / total - 0.5) * 2.5 + 0.5  # octaves average out towards 0.5: restore the range
        noise = noise.clip(0.0, 1.0)
    elif detail == "blocks":
        block = max(2, width // 40)
        noise = rng.random((height // block + 1, w // block + 1)).repeat(block, 0).repeat(block, 1)[:height, :w]
    else:
        raise ValueError(f"unknown detail {detail!r}")
    base = np.asarray(colour, np.float32) * (0.45 + 0.55 * noise[..., None])
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(5):
        x0, y0 = int(rng.integers(0, w - width // 5)), int(rng.integers(0, height - height // 5))
        x1, y1 = x0 + int(rng.integers(width // 12, width // 4)), y0 + int(rng.integers(height // 12, height // 3))
        shade = tuple(int(c * s) for c, s in zip(colour, rng.uniform(0.2, 1.0, 3)))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=shade)
    return np.asarray(img)


def text_card(width: int, height: int) -> np.ndarray:
    """White credits text on black."""
    img = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    size = max(8, height // 12)
    font = ImageFont.load_default(size=size)
    for i, line in enumerate(["DIRECTED BY", "Jane Q. Example", "MUSIC BY", "A. N. Other", "Produced by Somebody"]):
        draw.text((width // 10, height // 10 + int(i * size * 1.5)), line, font=font, fill=(255, 255, 255))
    return np.asarray(img)


def pick_codec() -> str:
    """libx264 when this PyAV build has it (pip wheels do), else FFmpeg's own MPEG-4 Part 2."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(
    path: str | Path,
    shots: list[ShotSpec],
    size: tuple[int, int] = (192, 108),
    fps: int = 25,
    gop: int | None = None,
    scenecut: bool = True,
    preset: str = "superfast",
    codec: str | None = None,
    pan: int = 1,
    grain: float = 0.0,
    detail: str = "blocks",
) -> list[Shot]:
    """Encode `shots` back to back into `path`; returns where each shot landed.

    gop: maximum frames between keyframes (None: the encoder default, 250 for x264).
    scenecut: let the encoder put keyframes at cuts (x264 does by default; many streaming
    encodes turn it off for fixed-length segments).
    pan: pixels the texture moves per frame, so consecutive frames differ; it pans back and
    forth across the texture's margin (reversing at the ends, never jumping).
    grain: amplitude (0..255 levels) of per-frame film-grain noise; without it, predicted
    frames of a panning texture cost almost nothing to decode, unlike real footage.
    detail: the texture's kind, "blocks" or "natural" (see `texture`).
    """
    width, height = size
    codec = codec or pick_codec()
    options: dict[str, str] = {}
    if codec == "libx264":
        options["preset"] = preset
        params = ["scenecut=40"] if scenecut else ["scenecut=0"]  # 40 is x264's usual default
        if gop is not None:
            params.append(f"keyint={gop}")
        if params:
            options["x264-params"] = ":".join(params)
    written: list[Shot] = []
    frame_no = 0
    grains = []
    if grain > 0:  # a few grain fields, cycled: cheap to generate, still unpredictable to the encoder
        g_rng = np.random.default_rng(12345)
        grains = [g_rng.normal(0, grain, (height, width, 1)).astype(np.int16) for _ in range(7)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec != "libx264" and gop is not None:
            stream.codec_context.gop_size = gop
        for spec in shots:
            n = max(1, round(spec.seconds * fps))
            colour = PALETTE[spec.colour] if isinstance(spec.colour, str) else spec.colour
            tex = texture(width, height, colour, spec.seed, detail=detail)
            blurred = None
            if spec.kind in ("blur", "halfblur"):
                blurred = np.asarray(Image.fromarray(tex).filter(ImageFilter.GaussianBlur(radius=max(2.0, width / 60))))
            card = text_card(width, height) if spec.kind == "text" else None
            overlays = []
            for start, photo_path in spec.overlays:
                photo = None
                if photo_path is not None:
                    im = Image.open(photo_path).convert("RGB")
                    oh = round(height * spec.overlay_height)
                    photo = np.asarray(im.resize((round(im.width * oh / im.height), oh), Image.LANCZOS))
                overlays.append((start * n, photo))
            written.append(Shot(spec.label, frame_no / fps, (frame_no + n) / fps, spec.colour, spec.kind, frame_no))
            for i in range(n):
                if spec.kind == "black":
                    rgb = np.full((height, width, 3), 4, np.uint8)
                elif spec.kind == "text":
                    rgb = card
                else:
                    src = blurred if spec.kind == "blur" or (spec.kind == "halfblur" and i >= n // 2) else tex
                    span = src.shape[1] - width
                    off = (i * pan) % (2 * span)
                    off = off if off <= span else 2 * span - off  # ping-pong, no jump back
                    rgb = np.ascontiguousarray(src[:, off : off + width])
                overlay = next((photo for start, photo in reversed(overlays) if i >= start), None)
                if overlay is not None:
                    oh, ow = overlay.shape[:2]
                    y0, x0 = (height - oh) // 2, (width - ow) // 2
                    rgb = rgb.copy()
                    rgb[y0:y0 + oh, x0:x0 + ow] = overlay
                if grains and spec.kind != "black":
                    rgb = (rgb.astype(np.int16) + grains[frame_no % len(grains)]).clip(0, 255).astype(np.uint8)
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = frame_no
                for packet in stream.encode(frame):
                    container.mux(packet)
                frame_no += 1
        for packet in stream.encode():
            container.mux(packet)
    return written


def shot_at(shots: list[Shot], t: float) -> Shot:
    """The shot showing at time t (seconds)."""
    for s in shots:
        if s.start <= t < s.end:
            return s
    raise ValueError(f"no shot at {t:.3f}s")


def nearest_colour(rgb: np.ndarray) -> str:
    """The PALETTE colour a (textured, tinted) frame was made from, by its mean chroma."""
    mean = rgb.reshape(-1, 3).astype(np.float64).mean(0)
    mean = mean / max(1e-6, mean.max())

    def dist(name: str) -> float:
        c = np.asarray(PALETTE[name], np.float64)
        return float(np.abs(mean - c / c.max()).sum())

    return min(PALETTE, key=dist)


def write_audio_only(path: str | Path, seconds: float = 1.0) -> None:
    """A short sine tone in an audio-only container (format from the suffix, e.g. .m4a/.wav)."""
    rate = 16000
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le" if str(path).endswith(".wav") else "aac", rate=rate)
        t = np.arange(int(seconds * rate)) / rate
        samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        fmt = "s16" if str(path).endswith(".wav") else None
        for start in range(0, len(samples), 1024):
            chunk = samples[start : start + 1024]
            if fmt:
                frame = av.AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="mono")
            else:
                frame = av.AudioFrame.from_ndarray(chunk.astype(np.float32)[None, :] / 32768, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_empty_video(path: str | Path, size: tuple[int, int] = (64, 48)) -> None:
    """A valid container with a video stream and not a single frame."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(pick_codec(), rate=25)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        container.start_encoding()  # write the header although no frame follows
