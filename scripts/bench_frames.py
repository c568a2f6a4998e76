"""Benchmark artwork.frames sampling against decoding every frame.

Generates a synthetic 720p video (default 5 minutes, 25 fps) with known hard cuts (every 2-12 s,
each shot a different hue; "natural" multi-scale texture, panning 4 px a frame back and forth,
no grain) into a temp dir, once per encoding variant, all x264 "superfast" at its default CRF:

* x264-default: encoded the way a real distribution encode is, x264's defaults: keyint 250
  (10 s at 25 fps), min-keyint 25, scene-cut detection on (scenecut=40), so x264 itself decides
  whether a cut gets a keyframe (the JSON records how many did);
* fixed-gop-2s: a keyframe every 50 frames and scene-cut detection off, like a streaming encode
  cut into fixed-length segments: most cuts fall inside GOPs;
* x264-default-blocks (only with --variants): x264's defaults again, on the flat-block texture
  of the unit tests, whose cuts x264's scene-cut test mostly misses at 720p (the content the
  first version of this benchmark used).

For each it times (a) PyAV decoding every frame, (b) a full pass that decodes every frame and
runs the shot detector on each, (c) the sampled pass `scan_video` uses and (d) `mine_frames`
end to end (default colour-layout embedding), and checks that the sampled pass finds the same
shots as the full pass: every full-pass boundary must lie between the two consecutive samples
around a sampled-pass boundary, one to one. Speed is seconds of video per second of wall time.

    .venv/bin/python scripts/bench_frames.py [--seconds 300] [--json bench-results/bench_frames.json]
"""

from __future__ import annotations

import argparse
import colorsys
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # when imported from elsewhere, not run as a script

from artwork import frames as F  # noqa: E402
from synthetic_video import ShotSpec, write_video  # noqa: E402

VARIANTS = {
    "x264-default": dict(gop=None, scenecut=True, detail="natural"),
    "fixed-gop-2s": dict(gop=50, scenecut=False, detail="natural"),
    "x264-default-blocks": dict(gop=None, scenecut=True, detail="blocks"),
}
DEFAULT_VARIANTS = ["x264-default", "fixed-gop-2s"]


def make_shots(seconds: float, seed: int = 0) -> list[ShotSpec]:
    """Hard cuts every 2-12 s; each shot a distinct hue so the cut is real content change."""
    rng = np.random.default_rng(seed)
    shots, t, i = [], 0.0, 0
    while t < seconds - 1e-9:
        length = min(float(rng.uniform(2.0, 12.0)), seconds - t)
        hue = (i * 0.382) % 1.0  # golden-ratio steps keep neighbours far apart in hue
        r, g, b = colorsys.hsv_to_rgb(hue, 0.8, float(rng.uniform(0.7, 1.0)))
        shots.append(ShotSpec(f"s{i}", length, (int(r * 255), int(g * 255), int(b * 255)), seed=100 + i))
        t += length
        i += 1
    return shots


def decode_every_frame(path: Path) -> int:
    """Plain PyAV decode of every frame, the baseline (same threading as the sampler)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        return sum(1 for _ in c.decode(s))


ENCODER_NOTE = {
    "x264-default": "libx264 superfast, keyint=250 min-keyint=25 scenecut=40 (x264 defaults)",
    "fixed-gop-2s": "libx264 superfast, keyint=50 scenecut=0",
    "x264-default-blocks": "libx264 superfast, keyint=250 min-keyint=25 scenecut=40 (x264 defaults); flat-block texture",
}


def keyframe_times(path: Path) -> list[float]:
    """Presentation times of the packets the container flags as keyframes (demux only)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        start = s.start_time or 0
        return [float((p.pts - start) * s.time_base) for p in c.demux(s) if p.size and p.is_keyframe and p.pts is not None]


def match(full: F.VideoScan, sampled: F.VideoScan) -> dict:
    """Pair boundaries: a full-pass cut matches a sampled cut if the samples around it bracket it."""
    times = sampled.sample_times
    brackets = []
    for b in sampled.boundaries:
        j = times.index(b)
        brackets.append((times[j - 1], b))
    matched, used, offsets = 0, set(), []
    for b in full.boundaries:
        for k, (lo, hi) in enumerate(brackets):
            if k not in used and lo < b <= hi:
                used.add(k)
                matched += 1
                offsets.append(hi - b)
                break
    return {
        "full_boundaries": len(full.boundaries),
        "sampled_boundaries": len(sampled.boundaries),
        "matched": matched,
        "missed_by_sampling": len(full.boundaries) - matched,
        "extra_in_sampling": len(sampled.boundaries) - len(used),
        "same_shots": matched == len(full.boundaries) == len(sampled.boundaries),
        "max_offset_s": round(max(offsets), 3) if offsets else 0.0,
        "mean_offset_s": round(float(np.mean(offsets)), 3) if offsets else 0.0,
    }


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run_variant(name: str, shots: list[ShotSpec], tmp: Path, size: tuple[int, int], fps: int) -> dict:
    path = tmp / f"{name}.mp4"
    (written, enc_s) = timed(lambda: write_video(path, shots, size=size, fps=fps, pan=4, **VARIANTS[name]))
    duration = written[-1].end
    truth = [s.start for s in written[1:]]
    cfg = F.FrameConfig()
    n_all, t_decode = timed(lambda: decode_every_frame(path))
    full, t_full = timed(lambda: F.scan_video(path, cfg, every_frame=True))
    sampled, t_sampled = timed(lambda: F.scan_video(path, cfg))
    cands, t_mine = timed(lambda: F.mine_frames(path, config=cfg, progress=False))
    found_full = sum(any(abs(b - t) < 0.5 / fps for b in full.boundaries) for t in truth)
    keytimes = keyframe_times(path)
    keys_at_cuts = sum(any(abs(k - t) < 0.5 / fps for k in keytimes) for t in truth)
    return {
        "variant": name,
        "video": {"seconds": round(duration, 2), "width": size[0], "height": size[1], "fps": fps,
                  "frames": n_all, "cuts": len(truth), "keyframes": sampled.keyframes,
                  "cuts_with_keyframe": keys_at_cuts, "encoder": ENCODER_NOTE[name],
                  "bytes": path.stat().st_size, "encode_s": round(enc_s, 1)},
        "decode_every_frame": {"wall_s": round(t_decode, 3), "video_s_per_s": round(duration / t_decode, 1)},
        "full_pass_shots": {"wall_s": round(t_full, 3), "video_s_per_s": round(duration / t_full, 1),
                            "frames_decoded": full.frames_decoded, "true_cuts_found": found_full},
        "sampled_pass_shots": {"wall_s": round(t_sampled, 3), "video_s_per_s": round(duration / t_sampled, 1),
                               "frames_decoded": sampled.frames_decoded, "frames_analysed": len(sampled.sample_times),
                               "dense_seconds": round(sampled.dense_seconds, 1),
                               "likely_cuts_decoded": sampled.likely_cuts},
        "mine_frames": {"wall_s": round(t_mine, 3), "video_s_per_s": round(duration / t_mine, 1),
                        "candidates": len(cands)},
        "speedup_vs_decode_every_frame": round(t_decode / t_sampled, 1),
        "speedup_mine_frames_vs_decode_every_frame": round(t_decode / t_mine, 1),
        "shots": match(full, sampled),
    }


def print_table(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="artwork frames: seconds of video processed per second of wall time")
    for col in ("variant", "pass", "frames decoded", "wall s", "video s / s", "speed-up", "shots (cuts)"):
        table.add_column(col, justify="left" if col in ("variant", "pass") else "right")
    for r in results:
        v = r["variant"]
        base = r["decode_every_frame"]["wall_s"]
        vid = r["video"]
        enc = f"{vid['keyframes']} keyframes, {vid['cuts_with_keyframe']}/{vid['cuts']} cuts on one"
        sh = r["shots"]
        rows = [
            ("decode every frame (PyAV)", r["video"]["frames"], r["decode_every_frame"], enc),
            ("full pass + shot detection", r["full_pass_shots"]["frames_decoded"], r["full_pass_shots"],
             f"{sh['full_boundaries']} ({r['full_pass_shots']['true_cuts_found']}/{r['video']['cuts']} true)"),
            ("sampled pass (scan_video)", r["sampled_pass_shots"]["frames_decoded"], r["sampled_pass_shots"],
             f"{sh['sampled_boundaries']} ({sh['matched']} match full, {sh['extra_in_sampling']} extra)"),
            ("mine_frames end to end", "", r["mine_frames"], f"{r['mine_frames']['candidates']} candidates"),
        ]
        for i, (label, n, t, shots) in enumerate(rows):
            table.add_row(v if i == 0 else "", label, str(n), f"{t['wall_s']:.2f}", f"{t['video_s_per_s']:.0f}",
                          f"{base / t['wall_s']:.1f}x", shots)
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300.0, help="length of the generated video")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    ap.add_argument("--json", default="bench-results/bench_frames.json", help="where to write results")
    args = ap.parse_args(argv)

    shots = make_shots(args.seconds)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            print(f"[{name}] encoding {args.seconds:.0f}s of {args.width}x{args.height} video ...", flush=True)
            results.append(run_variant(name, shots, Path(tmp), (args.width, args.height), args.fps))
    print_table(results)
    goal = all(r["speedup_vs_decode_every_frame"] >= 10 and r["shots"]["same_shots"] for r in results)
    out = {
        "benchmark": "bench_frames",
        "machine": {"python": platform.python_version(), "pyav": av.__version__, "platform": platform.platform()},
        "config": {k: getattr(F.FrameConfig(), k) for k in F.FrameConfig.__dataclass_fields__},
        "goal": "sampled pass >= 10x faster than decoding every frame, same shots found",
        "goal_met": goal,
        "results": results,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"goal met: {goal}; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
