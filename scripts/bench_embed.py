#!/usr/bin/env python3
"""Benchmark: images per second of the whole upload pipeline (with faces) next to the bare model forward.

Writes ``--n`` photo-like 640x360 JPEGs into a temp dir (the photos in artwork/assets/photos, each
randomly cropped, flipped, colour-jittered, given film grain and re-encoded at a random
quality, so every file is different bytes; seeded), then for each model:

* pipeline: ``Ingestor(catalog, encoder, batch_size).upload_files(title, files)`` into a fresh
  SQLite catalog each run: read, decode and validate, find faces, preprocess (worker thread),
  embed, zero-shot tag, store;
* pipeline, faces stored: the same, into a fresh catalog that already holds every image's faces
  (bytes scanned before are never scanned again): the pipeline without the face stage;
* bare forward: ``encoder.embed_pixels`` on the same images, already preprocessed into tensors
  with the same batch size;
* stages: the pipeline's stages timed one by one on the same images, single-threaded:
  decode (file read + validate + decode + EXIF + sha256, `load_image`), faces (`FaceModel.scan`:
  HOG detection, landmarks and a descriptor per face), preprocess (`preprocess_batch`), forward
  (the bare forward above), tag (`ZeroShotTagger.tag`) and store (the catalog lookups and
  `add_artwork` transactions the pipeline does per image).

Each model gets a warm-up (one batch through the pipeline, which also builds the tagger's text
embeddings, timed apart as a one-time setup) and then ``--repeats`` rounds of pipeline, bare
forward and stages, interleaved so that all three see the same machine load; the figures are
medians over the rounds. Goals: pipeline with faces img/s >= 0.50 x bare forward img/s (for
ViT-B-32; issue 13), and the pipeline without the face stage (faces stored) >= 0.80 x.

dlib holds Python's GIL while it computes, so the face stage on the worker thread overlaps the
forward only where torch is inside an operator (which releases it); the stage figures show how far.

Models: ``tiny`` (`build_tiny()`, the seeded random test encoder) and ``vit-b-32`` (open_clip's
ViT-B-32 architecture with RANDOM weights, `pretrained=None`: the cost of the real model with
none of its meaning; its encoder id says so).

    .venv/bin/python scripts/bench_embed.py                       # ~3 min on 2 busy cores
    .venv/bin/python scripts/bench_embed.py --threads 1           # shared machine: see below

On a machine whose cores other processes also use, torch's default intra-op threads (one per
core) can make the forward many times slower (OpenMP teams waiting on descheduled threads), and
the pipeline's worker thread adds its own team for preprocessing; ``--threads 1`` then gives
figures that say more about the code than about the neighbours. The JSON records threads and
load averages.
    .venv/bin/python scripts/bench_embed.py --models tiny --n 256 # tiny only, more images
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from artwork.encoder import Encoder, build_tiny  # noqa: E402
from artwork.faces import FaceScan  # noqa: E402
from artwork.images import load_image  # noqa: E402
from artwork.ingest import Ingestor  # noqa: E402
from artwork.store import Catalog  # noqa: E402
from artwork.tagging import load_vocabulary  # noqa: E402

PHOTOS = ROOT / "artwork" / "assets" / "photos"
GOAL_RATIO = 0.80  # the pipeline without the face stage
GOAL_RATIO_FACES = 0.50  # the pipeline with faces
VIT_ID = "open_clip/ViT-B-32/random-weights-bench"
VIT_LABEL = "CLIP ViT-B-32 architecture with RANDOM WEIGHTS (benchmark only: embeddings and tags are meaningless)"
STAGES = ("decode", "faces", "preprocess", "forward", "tag", "store")
TITLE = "bench-title"


# -- test images ------------------------------------------------------------------------------
def _synthetic_scene(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Fallback when artwork/assets/photos is missing: sky/ground gradient with soft shapes."""
    w, h = size
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    top, bottom = rng.uniform(40, 220, 3), rng.uniform(20, 160, 3)
    arr = np.broadcast_to(top * (1 - y) + bottom * y, (h, w, 3)).copy()
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(4, 9))):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, 140)
        mask = np.clip(1.2 - np.hypot(xx - cx, yy - cy) / r, 0, 1)[..., None]
        arr = arr * (1 - mask) + rng.uniform(0, 255, 3) * mask
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def make_images(folder: Path, n: int, size: tuple[int, int] = (640, 360), seed: int = 0) -> dict[str, Any]:
    """Write n distinct photo-like JPEGs of `size`; returns what they are like."""
    rng = np.random.default_rng(seed)
    sources = [Image.open(p).convert("RGB") for p in sorted(PHOTOS.glob("*.jpg"))]
    w, h = size
    nbytes = []
    for i in range(n):
        if sources:
            src = sources[i % len(sources)]
            # A random 16:9 window of 55-100% of the largest one that fits, scaled to `size`.
            fit_w = min(src.width, src.height * w / h)
            cw = fit_w * rng.uniform(0.55, 1.0)
            ch = cw * h / w
            x0, y0 = rng.uniform(0, src.width - cw), rng.uniform(0, src.height - ch)
            im = src.resize(size, Image.Resampling.LANCZOS, box=(x0, y0, x0 + cw, y0 + ch))
            if rng.random() < 0.5:
                im = ImageOps.mirror(im)
            im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.8, 1.2))
            im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.8, 1.2))
            im = ImageEnhance.Color(im).enhance(rng.uniform(0.7, 1.3))
        else:
            im = _synthetic_scene(rng, size)
        # Film grain: upscaled photos are smoother than camera photos; grain restores texture.
        arr = np.asarray(im, dtype=np.float32) + rng.normal(0, 3.0, (h, w, 1)) + rng.normal(0, 1.5, (h, w, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(
            buf, "JPEG", quality=int(rng.integers(82, 93)))
        (folder / f"img_{i:05d}.jpg").write_bytes(buf.getvalue())
        nbytes.append(buf.tell())
    return {"n": n, "width": w, "height": h, "source": "artwork/assets/photos, perturbed" if sources else "synthetic scenes",
            "mean_kib": round(float(np.mean(nbytes)) / 1024, 1)}


# -- encoders ---------------------------------------------------------------------------------
def build_vit_b_32_random(seed: int = 0) -> Encoder:
    """open_clip ViT-B-32 with seeded random weights, wrapped like a loaded encoder."""
    import open_clip

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.eval().to(dev)
    return Encoder(encoder_id=VIT_ID, label=VIT_LABEL, model=model, preprocess=preprocess,
                   tokenizer=open_clip.get_tokenizer("ViT-B-32"), device=dev, is_tiny=False)


MODELS: dict[str, Callable[[], Encoder]] = {"tiny": build_tiny, "vit-b-32": build_vit_b_32_random}


# -- measurements -----------------------------------------------------------------------------
def _chunks(seq: list, n: int) -> list[list]:
    return [seq[i:i + n] for i in range(0, len(seq), n)]


def _sync(enc: Encoder) -> None:
    if enc.device.type == "cuda":
        torch.cuda.synchronize(enc.device)


def run_pipeline(ing: Ingestor, files: list[Path], db_path: Path,
                 stored_faces: dict[str, FaceScan] | None = None) -> float:
    """Seconds for one upload of `files` into a fresh catalog at db_path (holding `stored_faces`)."""
    for p in db_path.parent.glob(db_path.name + "*"):
        p.unlink()
    ing.catalog = Catalog(db_path)  # fresh catalog; the ingestor keeps its (already built) tagger
    for sha, scan in (stored_faces or {}).items():  # not timed
        ing.catalog.put_face_scan(sha, scan)
    try:
        t0 = time.perf_counter()
        report = ing.upload_files(TITLE, files, progress=False)
        dt = time.perf_counter() - t0
    finally:
        ing.catalog.close()
    if report.count("added") != len(files):
        bad = [o for o in report.outcomes if o.status != "added"][:3]
        raise RuntimeError(f"pipeline stored {report.count('added')} of {len(files)} images: {bad}")
    return dt


def run_bare(enc: Encoder, batches: list[torch.Tensor]) -> tuple[float, list[np.ndarray]]:
    """Seconds for `embed_pixels` over preprocessed batches, and the embeddings."""
    _sync(enc)
    t0 = time.perf_counter()
    out = [enc.embed_pixels(px) for px in batches]
    _sync(enc)
    return time.perf_counter() - t0, out


def run_stages(ing: Ingestor, files: list[Path], vectors: list[np.ndarray], batch_size: int,
               db_path: Path) -> dict[str, float]:
    """Seconds per stage (forward excluded: it is the bare forward), one stage after another."""
    enc, tagger, vocab = ing.encoder, ing.tagger, ing.vocab
    for p in db_path.parent.glob(db_path.name + "*"):
        p.unlink()
    t = dict.fromkeys(("decode", "faces", "preprocess", "tag", "store", "scan_with_face", "scan_without_face"), 0.0)
    with Catalog(db_path) as cat:
        cat.ensure_title(TITLE)
        for batch, vecs in zip(_chunks(files, batch_size), vectors):
            t0 = time.perf_counter()
            loaded = [load_image(f.read_bytes(), str(f), ing.limits) for f in batch]
            t1 = time.perf_counter()
            scans = []
            for li in loaded:
                ts = time.perf_counter()
                scans.append(ing.faces.scan(li.image))
                t["scan_with_face" if scans[-1].faces else "scan_without_face"] += time.perf_counter() - ts
            t2 = time.perf_counter()
            enc.preprocess_batch([li.image for li in loaded])
            t3 = time.perf_counter()
            tags = tagger.tag(vecs)
            t4 = time.perf_counter()
            for li, vec, tg, sc in zip(loaded, vecs, tags, scans):  # the catalog work the pipeline does per image
                cat.cached_embedding(li.sha256, enc.encoder_id)
                cat.cached_tags(li.sha256, enc.encoder_id, vocab.key)
                cat.face_scan(li.sha256)
                cat.has_artwork(TITLE, li.sha256)
                cat.add_artwork(TITLE, li.data, li.sha256, f"upload:{Path(li.name).name}", li.width, li.height,
                                enc.encoder_id, vec, tg, vocab.key, {"format": li.format}, faces=sc)
            t5 = time.perf_counter()
            t["decode"] += t1 - t0
            t["faces"] += t2 - t1
            t["preprocess"] += t3 - t2
            t["tag"] += t4 - t3
            t["store"] += t5 - t4
    return t


def face_counts(ing: Ingestor, files: list[Path]) -> tuple[dict[str, FaceScan], list[int]]:
    """Every image's faces (to pre-store for the faces-stored runs) and the number per image."""
    scans = {}
    for f in files:
        li = load_image(f.read_bytes(), str(f), ing.limits)
        scans[li.sha256] = ing.faces.scan(li.image)
    return scans, [len(s.faces) for s in scans.values()]


def bench_model(name: str, files: list[Path], batch_size: int, repeats: int, workdir: Path,
                log: Callable[[str], None]) -> dict[str, Any]:
    t0 = time.perf_counter()
    enc = MODELS[name]()
    build_s = time.perf_counter() - t0
    n = len(files)
    db = workdir / f"{name}.db"
    ing = Ingestor(Catalog(workdir / f"{name}-init.db"), enc, vocab=load_vocabulary(), batch_size=batch_size)
    ing.catalog.close()

    # Preprocessed tensors for the bare forward: same images, same batches (not timed).
    batches = [enc.preprocess_batch([load_image(f.read_bytes(), str(f)).image for f in chunk])
               for chunk in _chunks(files, batch_size)]

    # Warm-up: the tagger's text embeddings (one-time setup, timed apart), the face models, then
    # one batch through the whole pipeline (first forward at this batch shape, first catalog writes).
    t0 = time.perf_counter()
    _ = ing.tagger
    tagger_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ing.faces.load()
    faces_load_s = time.perf_counter() - t0
    log(f"{name}: model built in {build_s:.1f} s, tagger text embeddings in {tagger_s:.1f} s, face models "
        f"in {faces_load_s:.1f} s; warming up")
    stored_faces, n_faces = face_counts(ing, files)
    run_pipeline(ing, files[:batch_size], db)
    if n % batch_size:
        run_bare(enc, batches[-1:])  # the odd last batch shape

    pipe_s, stored_s, bare_s, stage_s = [], [], [], []
    for r in range(repeats):
        # Alternate which goes first, so a load change from other processes does not always
        # hit the same side.
        if r % 2:
            dt, vectors = run_bare(enc, batches)
            stored_s.append(run_pipeline(ing, files, db, stored_faces))
            pipe_s.append(run_pipeline(ing, files, db))
        else:
            pipe_s.append(run_pipeline(ing, files, db))
            stored_s.append(run_pipeline(ing, files, db, stored_faces))
            dt, vectors = run_bare(enc, batches)
        bare_s.append(dt)
        st = run_stages(ing, files, vectors, batch_size, db)
        st["forward"] = dt
        stage_s.append(st)
        log(f"{name}: round {r + 1}/{repeats}: pipeline {n / pipe_s[-1]:.1f} img/s (faces stored: "
            f"{n / stored_s[-1]:.1f}), bare forward {n / bare_s[-1]:.1f} img/s")

    pipe, stored, bare = statistics.median(pipe_s), statistics.median(stored_s), statistics.median(bare_s)
    stage_ms = {s: 1000 * statistics.median(st[s] for st in stage_s) / n for s in STAGES}
    worker_ms = stage_ms["decode"] + stage_ms["faces"] + stage_ms["preprocess"]  # the pipeline's worker thread
    main_ms = stage_ms["forward"] + stage_ms["tag"] + stage_ms["store"]  # its main thread
    serial_ms = worker_ms + main_ms
    ratio = bare / pipe  # = pipeline img/s / bare img/s
    ratio_stored = bare / stored
    with_face = [k for k in n_faces if k]
    return {
        "model": name,
        "encoder_id": enc.encoder_id,
        "label": enc.label,
        "device": str(enc.device),
        "batch_size": batch_size,
        "n_images": n,
        "repeats": repeats,
        "pipeline_img_s": n / pipe,
        "pipeline_faces_stored_img_s": n / stored,
        "bare_forward_img_s": n / bare,
        "ratio": ratio,
        "goal_ratio": GOAL_RATIO_FACES,
        "goal_met": ratio >= GOAL_RATIO_FACES,
        "ratio_faces_stored": ratio_stored,
        "goal_ratio_faces_stored": GOAL_RATIO,
        "goal_met_faces_stored": ratio_stored >= GOAL_RATIO,
        "faces_per_image": statistics.mean(n_faces),
        "images_with_faces": len(with_face),
        # one scan: detection alone (no face found), and detection + landmarks + descriptors
        "face_scan_ms_without_face": (1000 * statistics.median(st["scan_without_face"] for st in stage_s)
                                      / max(1, n - len(with_face))),
        "face_scan_ms_with_face": (1000 * statistics.median(st["scan_with_face"] for st in stage_s) / len(with_face)
                                   if with_face else None),
        "pipeline_faces_stored_s_runs": stored_s,
        "face_models_load_s": faces_load_s,
        # Noise checks: on a shared machine a ratio above 1 only means the load moved between runs.
        "ratio_median_of_rounds": statistics.median(b / p for p, b in zip(pipe_s, bare_s)),
        "ratio_of_best_runs": min(bare_s) / min(pipe_s),
        "pipeline_s_runs": pipe_s,
        "bare_forward_s_runs": bare_s,
        "stage_ms_per_image": stage_ms,
        "stage_share": {s: stage_ms[s] / serial_ms for s in STAGES},
        "serial_sum_img_s": 1000 / serial_ms,
        "worker_thread_ms_per_image": worker_ms,
        "main_thread_ms_per_image": main_ms,
        "overlap_bound_img_s": 1000 / max(worker_ms, main_ms),
        "limited_by": "decode+preprocess (worker thread)" if worker_ms > main_ms else "forward+tag+store (main thread)",
        "stage_runs_s": stage_s,
        "model_build_s": build_s,
        "tagger_setup_s": tagger_s,
    }


# -- output -----------------------------------------------------------------------------------
def breakdown_line(r: dict[str, Any]) -> str:
    ms, share = r["stage_ms_per_image"], r["stage_share"]
    parts = " | ".join(f"{s} {ms[s]:.2f} ms ({100 * share[s]:.0f}%)" for s in STAGES)
    return (f"{r['model']}: {parts} per image; serial {r['serial_sum_img_s']:.1f} img/s, "
            f"overlap bound {r['overlap_bound_img_s']:.1f} img/s, limited by {r['limited_by']}")


def print_table(results: list[dict[str, Any]]) -> None:
    headers = ["model", "batch", "n images", "pipeline img/s", "faces stored img/s", "bare forward img/s",
               f"ratio (>= {GOAL_RATIO_FACES:.2f})", f"faces stored ratio (>= {GOAL_RATIO:.2f})"]
    rows = [[r["model"], str(r["batch_size"]), str(r["n_images"]), f"{r['pipeline_img_s']:.1f}",
             f"{r['pipeline_faces_stored_img_s']:.1f}", f"{r['bare_forward_img_s']:.1f}",
             f"{r['ratio']:.2f} {'met' if r['goal_met'] else 'NOT met'}",
             f"{r['ratio_faces_stored']:.2f} {'met' if r['goal_met_faces_stored'] else 'NOT met'}"]
            for r in results]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
        for row in [headers, *rows]:
            print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        return
    table = Table(title="Upload pipeline with faces vs bare forward (median of repeats)")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    ap.add_argument("--batch-size", type=int, default=32, help="ingest and forward batch size (default 32)")
    ap.add_argument("--models", default="tiny,vit-b-32", help="comma list of: " + ", ".join(MODELS))
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds per model; medians are reported")
    ap.add_argument("--seed", type=int, default=0, help="seed of the test images")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "bench_embed.json")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a model misses the goal")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        ap.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    if args.n < 1 or args.batch_size < 1 or args.repeats < 1:
        ap.error("--n, --batch-size and --repeats must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_embed_") as tmp:
        img_dir = Path(tmp) / "images"
        img_dir.mkdir()
        images = make_images(img_dir, args.n, seed=args.seed)
        files = sorted(img_dir.glob("*.jpg"))
        log(f"{args.n} test images {images['width']}x{images['height']} ({images['source']}), "
            f"mean {images['mean_kib']} KiB")
        for name in models:
            results.append(bench_model(name, files, args.batch_size, args.repeats, Path(tmp), log))

    print_table(results)
    for r in results:
        print(breakdown_line(r))
        with_face = r["face_scan_ms_with_face"]
        print(f"{r['model']}: {r['images_with_faces']} of {r['n_images']} images have a face "
              f"({r['faces_per_image']:.2f} per image); face stage {r['stage_ms_per_image']['faces']:.1f} ms per image: "
              f"{r['face_scan_ms_without_face']:.1f} ms to find none"
              + (f", {with_face:.1f} ms for an image with faces (detection + landmarks + descriptors)" if with_face else ""))
    report = {
        "benchmark": "bench_embed",
        "goal": (f"pipeline (with faces) img/s >= {GOAL_RATIO_FACES:.2f} x bare forward img/s; without the face "
                 f"stage (faces stored) >= {GOAL_RATIO:.2f} x"),
        "images": images,
        "config": {"n": args.n, "batch_size": args.batch_size, "repeats": args.repeats, "seed": args.seed,
                   "models": models},
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "cpu_count": os.cpu_count(), "cuda": torch.cuda.is_available(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "wall_s": time.perf_counter() - started,
        "results": results,
    }
    m = report["machine"]
    print(f"torch threads {m['torch_threads']} on {m['cpu_count']} cores, load average "
          f"{m['loadavg_before'][0]:.1f} before / {m['loadavg_after'][0]:.1f} after (other processes share the cores)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['wall_s']:.0f} s)")
    return 1 if args.strict and not all(r["goal_met"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
