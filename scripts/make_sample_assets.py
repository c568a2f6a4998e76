"""Build artwork/assets/samples/ (demo and test titles) from the real photos in artwork/assets/photos/.

Designers usually deliver several treatments of the same key art; the variants made here
(a darker grade, a warm grade, a tighter crop, a poster with a small portrait in a corner)
stand in for those. Run: python scripts/make_sample_assets.py
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

ASSETS = Path(__file__).resolve().parent.parent / "artwork" / "assets"
PHOTOS = ASSETS / "photos"
SAMPLES = ASSETS / "samples"


def photo(name: str) -> Image.Image:
    return Image.open(PHOTOS / f"{name}.jpg").convert("RGB")


def dark(im: Image.Image) -> Image.Image:
    im = ImageEnhance.Brightness(im).enhance(0.55)
    r, g, b = im.split()
    return Image.merge("RGB", (r.point(lambda v: v * 0.8), g, b.point(lambda v: min(255, v * 1.15))))


def warm(im: Image.Image) -> Image.Image:
    r, g, b = ImageEnhance.Color(im).enhance(1.3).split()
    return Image.merge("RGB", (r.point(lambda v: min(255, v * 1.15)), g, b.point(lambda v: v * 0.85)))


def tight(im: Image.Image, frac: float = 0.65) -> Image.Image:
    w, h = im.size
    cw, ch = int(w * frac), int(h * frac)
    return im.crop(((w - cw) // 2, (h - ch) // 3, (w - cw) // 2 + cw, (h - ch) // 3 + ch))


def corner_poster(im: Image.Image, title: str) -> Image.Image:
    canvas = Image.new("RGB", (640, 400), (18, 22, 40))
    small = im.copy()
    small.thumbnail((220, 220))
    canvas.paste(small, (640 - small.width - 20, 400 - small.height - 20))
    ImageDraw.Draw(canvas).text((30, 40), title.upper(), fill=(235, 200, 90))
    return canvas


def main() -> None:
    titles = {
        "stellar-drift": {"name": "Stellar Drift", "images": {
            "astronaut.jpg": photo("astronaut"), "rocket.jpg": photo("rocket"),
            "deep_field.jpg": photo("hubble_deep_field"), "astronaut_dark.jpg": dark(photo("astronaut"))}},
        "whiskers": {"name": "Whiskers & Espresso", "images": {
            "chelsea.jpg": photo("chelsea"), "coffee.jpg": photo("coffee"),
            "chelsea_warm.jpg": warm(photo("chelsea")), "coffee_tight.jpg": tight(photo("coffee"))}},
        "the-admiral": {"name": "The Admiral", "images": {
            "portrait.jpg": photo("grace_hopper"), "portrait_bw.jpg": ImageOps.grayscale(photo("grace_hopper")).convert("RGB"),
            "poster_corner.jpg": corner_poster(photo("grace_hopper"), "The Admiral"),
            "rocket_launch.jpg": tight(photo("rocket"), 0.8)},
            "cast": {"Grace Hopper": ["cast/grace_hopper_face.jpg"]}},
    }
    (SAMPLES / "cast").mkdir(parents=True, exist_ok=True)
    face = photo("grace_hopper")
    w, h = face.size
    face.crop((int(w * 0.2), int(h * 0.05), int(w * 0.8), int(h * 0.6))).save(SAMPLES / "cast" / "grace_hopper_face.jpg", quality=88)
    manifest = {}
    for tid, t in titles.items():
        (SAMPLES / tid).mkdir(parents=True, exist_ok=True)
        for fname, im in t["images"].items():
            im.save(SAMPLES / tid / fname, quality=88)
        manifest[tid] = {"name": t["name"], "cast": t.get("cast", {})}
    # Its candidates are mined from the video that scripts/make_sample_video.py writes.
    manifest["night-shift"] = {"name": "Night Shift", "video": "night-shift.mp4", "max_frames": 6}
    (SAMPLES / "titles.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {SAMPLES}")


if __name__ == "__main__":
    main()
