"""Write a short sample video with several shots, for demos of `artwork frames`.

    .venv/bin/python scripts/make_sample_video.py artwork/assets/samples/night-shift.mp4 [--width 320 --height 180]

About 24 s at 25 fps: seven textured shots in different colours, a black stretch, a
blurred (out-of-focus) shot, a return to the first shot and an end-credits card, so that
frame mining has something to keep and something to reject. Seeded, so the file is the same
every run on the same PyAV/FFmpeg build. Prints the shot list.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # when imported from elsewhere, not run as a script

from synthetic_video import ShotSpec, write_video  # noqa: E402

SAMPLE_SHOTS = [
    ShotSpec("opening", 3.0, "orange", seed=11),
    ShotSpec("black", 1.0, kind="black"),
    ShotSpec("city", 3.0, "blue", seed=12),
    ShotSpec("forest", 3.0, "green", seed=13, kind="halfblur"),
    ShotSpec("dream", 2.0, "purple", seed=14, kind="blur"),
    ShotSpec("desert", 3.0, "yellow", seed=15),
    ShotSpec("opening-again", 2.0, "orange", seed=11),
    ShotSpec("party", 3.0, "magenta", seed=16),
    ShotSpec("sea", 2.0, "cyan", seed=17),
    ShotSpec("credits", 2.0, kind="text"),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write a short multi-shot sample video.")
    ap.add_argument("path", help="output file, e.g. artwork/assets/samples/night-shift.mp4")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=180)
    ap.add_argument("--fps", type=int, default=25)
    args = ap.parse_args(argv)
    out = Path(args.path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Keyframe every second: small, and realistic for streaming encodes.
    shots = write_video(out, SAMPLE_SHOTS, size=(args.width, args.height), fps=args.fps, gop=args.fps, pan=2)
    for s in shots:
        print(f"{s.start:6.2f}-{s.end:6.2f}s  {s.label:14s} {s.kind}")
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB, {shots[-1].end:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
