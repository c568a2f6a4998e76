"""The upload pipeline: files → validate → faces + embed → tag → catalog, in batches, with progress.

Each artwork is stored in its own transaction, so a crash keeps every artwork stored before it
and never a half-written one. Embeddings, mood/genre tags and faces are looked up by image sha256
first: bytes the catalog has seen (in any title) are never embedded or scanned again. Faces are
found on the worker thread that decodes the next batch, while the CLIP forward runs on this one.
Actors are recognised by face against the title's cast gallery (`rescore_actors`).

Uploads skip near duplicates: a picture whose perceptual fingerprint (`artwork.images.Fingerprint`)
matches a candidate the title already has, whatever its encoding, is reported and not stored
unless asked for. Mined video frames are not checked (the miner already keeps one frame per shot),
but their fingerprints are stored so that a later upload of the same frame is caught.

`read_manifest` validates a whole CSV manifest (every image decoded) before anything is stored.
Importing this module loads neither torch nor the tagger: the CLI reads a manifest first.
"""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Literal, Sequence

import numpy as np
from PIL import Image

from artwork.faces import FaceModel, FaceScan, face_model, main_face
from artwork.images import (Fingerprint, ImageLimits, ImageRejected, LoadedImage, collect_image_files, fingerprint,
                            load_image)
from artwork.progress import progress_bar
from artwork.records import ActorMatch
from artwork.store import Catalog, StoreError, check_title_id

if TYPE_CHECKING:
    import torch

    from artwork.encoder import Encoder
    from artwork.frames import FrameConfig
    from artwork.tagging import FaceGallery, Vocabulary, ZeroShotTagger

#: What to do with an upload that looks like a candidate the title already has.
NearDuplicates = Literal["skip", "keep", "ignore"]


@dataclass
class Outcome:
    """What happened to one input."""

    name: str
    # "added", "duplicate" (same bytes), "near-duplicate" (same picture, not stored), "rejected"
    # (a named file that is not an acceptable image) or "skipped" (a folder entry that is not one)
    status: str
    artwork_id: str | None = None  # the artwork added, or the one it duplicates
    reason: str = ""  # for "added": set when a near duplicate was kept on purpose


@dataclass
class IngestReport:
    title_id: str
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def ok(self) -> bool:
        """True when no input was rejected."""
        return self.count("rejected") == 0

    @property
    def artwork_ids(self) -> list[str]:
        return [o.artwork_id for o in self.outcomes if o.artwork_id]


@dataclass
class NewImage:
    """Image bytes to add as a candidate (uploads and mined video frames alike)."""

    name: str
    data: bytes
    source: str
    meta: dict = field(default_factory=dict)


@dataclass
class _Prepared:
    item: NewImage
    loaded: LoadedImage
    faces: FaceScan
    fingerprint: Fingerprint


class CastRejected(ValueError):
    """Reference photos that cannot join a cast gallery; the message names each file and why."""

    def __init__(self, problems: Sequence[ImageRejected]):
        super().__init__("; ".join(str(p) for p in problems) + " (nothing was added to the cast)")
        self.problems = list(problems)


class Ingestor:
    """Adds candidate images and cast members to a catalog with one loaded encoder and the face model."""

    def __init__(self, catalog: Catalog, encoder: Encoder, vocab: Vocabulary | None = None,
                 limits: ImageLimits = ImageLimits(), batch_size: int = 32, reembed: bool = False,
                 faces: FaceModel | None = None):
        if not reembed:
            catalog.check_encoder(encoder.encoder_id)  # fail before any work, not after
        from artwork.tagging import load_vocabulary

        self.catalog = catalog
        self.encoder = encoder
        self.vocab = vocab or load_vocabulary()
        self.limits = limits
        self.batch_size = batch_size
        self.faces = faces or face_model()
        self._tagger: ZeroShotTagger | None = None

    @property
    def cast(self) -> CastManager:
        """Faces and cast of this ingestor's catalog (which a caller may swap)."""
        return CastManager(self.catalog, self.faces, self.limits)

    @property
    def tagger(self) -> ZeroShotTagger:
        if self._tagger is None:  # text embeddings of ~200 prompts: only when a new image needs them
            from artwork.tagging import ZeroShotTagger

            self._tagger = ZeroShotTagger(self.encoder, self.vocab)
        return self._tagger

    # -- uploads ----------------------------------------------------------------------------
    def upload_files(self, title_id: str, paths: Iterable[str | Path], title_name: str | None = None,
                     progress: bool = True, allow_duplicates: bool = False) -> IngestReport:
        """Add image files and folders to a title, creating the title if needed.

        Near duplicates of the title's candidates are skipped, or stored anyway with
        `allow_duplicates` (their outcome's reason says so either way).
        """
        found = collect_image_files(paths)
        report = IngestReport(title_id, [Outcome(p.name, "rejected", reason=p.reason) for p in found.problems]
                              + [Outcome(p.name, "skipped", reason=p.reason) for p in found.skipped])
        items = (NewImage(name=str(f), data=b"", source=f"upload:{f.name}") for f in found.files)
        sub = self.add_images(title_id, items, title_name=title_name, progress=progress, total=len(found.files),
                              read_files=True, near_duplicates="keep" if allow_duplicates else "skip")
        report.outcomes.extend(sub.outcomes)
        return report

    def upload_manifest(self, rows: Sequence[ManifestRow], progress: bool = True,
                        allow_duplicates: bool = False) -> list[IngestReport]:
        """Store the rows of a manifest that `read_manifest` validated: one report per title, in manifest order."""
        by_title: dict[str, list[ManifestRow]] = {}
        for row in rows:
            by_title.setdefault(row.title_id, []).append(row)
        reports = []
        for title_id, title_rows in by_title.items():
            items = [NewImage(name=f"line {r.line}: {r.path}", data=r.data, source=f"upload:{r.path.name}",
                              meta={"notes": r.notes} if r.notes else {}) for r in title_rows]
            reports.append(self.add_images(title_id, items, progress=progress,
                                           near_duplicates="keep" if allow_duplicates else "skip"))
        return reports

    def add_images(self, title_id: str, items: Iterable[NewImage], title_name: str | None = None,
                   progress: bool = True, total: int | None = None, read_files: bool = False,
                   near_duplicates: NearDuplicates = "ignore") -> IngestReport:
        """Validate, scan for faces, embed, tag and store images as candidates of a title.

        `near_duplicates`: "skip" an image that looks like one of the title's candidates, "keep" it
        (its outcome's reason says what it looks like), or "ignore" the question (video frames).
        """
        self.faces.load()  # a missing face model fails here, before anything is stored
        self.catalog.ensure_title(title_id, title_name)
        report = IngestReport(title_id)
        seen: dict[str, str] = {}  # sha256 -> artwork id, for duplicates inside this upload
        known = None if near_duplicates == "ignore" else self.title_fingerprints(title_id)
        new_ids: list[str] = []
        items = list(items)
        with progress_bar(total if total is not None else len(items), f"ingest {title_id}",
                          enabled=progress) as advance, ThreadPoolExecutor(1) as pool:
            batches = list(_chunks(items, self.batch_size))
            # Decode the next batch on a worker thread while the model runs on this one.
            pending = pool.submit(self._prepare, batches[0], read_files) if batches else None
            for i in range(len(batches)):
                prepared, rejected, cached, pixels = pending.result()
                if i + 1 < len(batches):
                    pending = pool.submit(self._prepare, batches[i + 1], read_files)
                report.outcomes.extend(rejected)
                for outcome in self._store_batch(title_id, prepared, cached, pixels, seen, known,
                                                 near_duplicates):
                    report.outcomes.append(outcome)
                    if outcome.status == "added":
                        new_ids.append(outcome.artwork_id)
                advance(len(batches[i]))
        backfilled = self.cast.ensure_faces(title_id)  # artworks stored before faces existed
        if (new_ids or backfilled) and self.catalog.cast_members(title_id):
            self.rescore_actors(title_id, None if backfilled else new_ids)
        return report

    def title_fingerprints(self, title_id: str) -> list[tuple[str, Fingerprint, str]]:
        """(artwork id, fingerprint, source) of a title's candidates; computes and stores missing ones
        (artworks stored before fingerprints existed)."""
        out, missing = [], {}
        for aid, text, source, sha in self.catalog.fingerprints(title_id):
            if text is None:
                fp = fingerprint(load_image(self.catalog.blob(sha), sha, ImageLimits(min_side=1)).image)
                missing[aid] = fp.to_text()
            else:
                fp = Fingerprint.from_text(text)
            out.append((aid, fp, source))
        if missing:
            self.catalog.set_fingerprints(missing)
        return out

    def _prepare(self, batch: Sequence[NewImage], read_files: bool
                 ) -> tuple[list[_Prepared], list[Outcome], dict[str, np.ndarray | None], torch.Tensor | None]:
        """Read, validate and preprocess one batch (runs on the worker thread)."""
        prepared, rejected = [], []
        scans: dict[str, FaceScan] = {}  # the same bytes twice in one batch are scanned once
        for item in batch:
            try:
                if read_files:
                    try:
                        item.data = Path(item.name).read_bytes()
                    except OSError as exc:
                        raise ImageRejected(item.name, f"cannot read file ({exc.strerror})") from None
                loaded = load_image(item.data, item.name, self.limits)
            except ImageRejected as exc:
                rejected.append(Outcome(exc.name, "rejected", reason=exc.reason))
                continue
            if loaded.sha256 not in scans:
                scans[loaded.sha256] = self.cast.faces_of(loaded.sha256, loaded.image)
            prepared.append(_Prepared(item, loaded, scans[loaded.sha256], fingerprint(loaded.image)))
        cached = {p.loaded.sha256: self.catalog.cached_embedding(p.loaded.sha256, self.encoder.encoder_id)
                  for p in prepared}
        need = {p.loaded.sha256: p.loaded.image for p in prepared if cached[p.loaded.sha256] is None}
        pixels = self.encoder.preprocess_batch(list(need.values())) if need else None
        return prepared, rejected, cached, pixels

    def _store_batch(self, title_id: str, prepared: list[_Prepared], cached: dict[str, np.ndarray | None],
                     pixels: torch.Tensor | None, seen: dict[str, str],
                     known: list[tuple[str, Fingerprint, str]] | None,
                     near_duplicates: NearDuplicates) -> Iterator[Outcome]:
        enc_id = self.encoder.encoder_id
        fresh = [sha for sha, vec in cached.items() if vec is None]  # same order as the pixels
        if pixels is not None:
            for sha, vec in zip(fresh, self.encoder.embed_pixels(pixels)):
                cached[sha] = vec
        tags = {sha: self.catalog.cached_tags(sha, enc_id, self.vocab.key) for sha in cached}
        untagged = [sha for sha, t in tags.items() if t is None]
        if untagged:
            for sha, t in zip(untagged, self.tagger.tag(np.stack([cached[s] for s in untagged]))):
                tags[sha] = t
        for p in prepared:
            li = p.loaded
            existing = seen.get(li.sha256) or self.catalog.has_artwork(title_id, li.sha256)
            if existing:
                yield Outcome(li.name, "duplicate", existing, "same image bytes already stored for this title")
                continue
            looks_like = ""
            if known is not None:
                near = [(p.fingerprint.distance(fp), aid, src) for aid, fp, src in known if p.fingerprint.near(fp)]
                if near:
                    (bits, colour), twin, src = min(near)
                    looks_like = (f"looks like artwork {twin} ({src}): {bits} of 64 hash bits and "
                                  f"{colour:.1f} colour levels apart")
                    if near_duplicates == "skip":
                        yield Outcome(li.name, "near-duplicate", twin, looks_like)
                        continue
            meta = dict(p.item.meta, format=li.format)
            aid, _ = self.catalog.add_artwork(title_id, li.data, li.sha256, p.item.source, li.width,
                                              li.height, enc_id, cached[li.sha256], tags[li.sha256],
                                              self.vocab.key, meta, faces=p.faces,
                                              fingerprint=p.fingerprint.to_text())
            seen[li.sha256] = aid
            if known is not None:  # later files of this upload are compared with this one too
                known.append((aid, p.fingerprint, p.item.source))
            yield Outcome(li.name, "added", aid, looks_like)

    # -- video frames -----------------------------------------------------------------------
    def add_video_frames(self, title_id: str, video: str | Path, max_candidates: int = 12,
                         config: "FrameConfig | None" = None, title_name: str | None = None,
                         progress: bool = True) -> IngestReport:
        """Mine up to `max_candidates` frames from a video and add them like uploads.

        Frames showing the title's cast (its gallery as it stands), or else any face looking at
        the camera, are preferred, one frame per shot (artwork.frames, "Faces"). The whole video
        is read and validated before anything is stored (FramesError otherwise).
        """
        from artwork.frames import FrameFaces, mine_frames

        self.faces.load()  # a missing face model fails before the video is read, not after
        gallery = self.cast.gallery(title_id) if self.catalog.title(title_id) is not None else None
        frames = mine_frames(video, max_candidates, config, embed=self.encoder.embed_images, progress=progress,
                             faces=FrameFaces(self.faces, gallery))
        items = []
        for f in frames:
            buf = io.BytesIO()
            f.image.save(buf, "JPEG", quality=92)
            items.append(NewImage(name=f.source, data=buf.getvalue(), source=f.source, meta=f.meta))
        return self.add_images(title_id, items, title_name=title_name, progress=progress)

    # -- cast (by face: see CastManager) --------------------------------------------------------
    def add_cast_member(self, title_id: str, name: str, ref_paths: Sequence[str | Path],
                        lead: bool = False) -> dict[str, float]:
        return self.cast.add_cast_member(title_id, name, ref_paths, lead)

    def rescore_actors(self, title_id: str, artwork_ids: Sequence[str] | None = None) -> dict[str, float]:
        return self.cast.rescore_actors(title_id, artwork_ids)

    # -- re-embedding -----------------------------------------------------------------------
    def reembed_catalog(self, progress: bool = True) -> int:
        """Embed and tag every stored image with this encoder and switch the catalog to it."""
        hashes = self.catalog.all_image_hashes()
        vectors: dict[str, np.ndarray] = {}
        with progress_bar(len(hashes), "re-embed", enabled=progress) as advance:
            for batch in _chunks(hashes, self.batch_size):
                images = [load_image(self.catalog.blob(h), h, ImageLimits(min_side=1)).image for h in batch]
                vectors.update(zip(batch, self.encoder.embed_images(images)))
                advance(len(batch))
        tags = dict(zip(hashes, self.tagger.tag(np.stack([vectors[h] for h in hashes])))) if hashes else {}
        self.catalog.switch_encoder(self.encoder.encoder_id, vectors, tags, self.vocab.key)
        return len(hashes)  # actors are matched by face, which does not depend on the encoder


class CastManager:
    """Faces stored with the catalog's images, and each title's cast gallery matched against them.

    Needs no CLIP encoder: `artwork cast` commands run without loading one.
    """

    def __init__(self, catalog: Catalog, faces: FaceModel | None = None, limits: ImageLimits = ImageLimits()):
        self.catalog = catalog
        self.faces = faces or face_model()
        self.limits = limits

    def faces_of(self, sha256: str, image: Image.Image) -> FaceScan:
        """The faces of an image: stored ones for bytes already scanned, else scanned now (not stored)."""
        stored = self.catalog.face_scan(sha256)
        return stored if stored is not None else self.faces.scan(image)

    def ensure_faces(self, title_id: str | None = None) -> int:
        """Scan and store the faces of every artwork and cast reference (of a title, or all) that has
        none stored yet: catalogs written before faces existed. Returns how many images were scanned."""
        hashes = self.catalog.unscanned_hashes(title_id)
        for sha in hashes:
            image = load_image(self.catalog.blob(sha), sha, ImageLimits(min_side=1)).image
            self.catalog.put_face_scan(sha, self.faces.scan(image))
        return len(hashes)

    def add_cast_member(self, title_id: str, name: str, ref_paths: Sequence[str | Path],
                        lead: bool = False) -> dict[str, float]:
        """Add reference photos for an actor, recalibrate the gallery, rescore the title's artworks.

        Each photo must show one clear face (the only one, or at least `faces.DOMINANCE` times the
        area of any other); otherwise CastRejected names every failing file and nothing is stored.
        Returns the calibrated distance threshold per cast member.
        """
        if self.catalog.title(title_id) is None:
            raise ImageRejected(title_id, "unknown title: upload its artwork first")
        found = collect_image_files(ref_paths)
        files, problems = found.files, list(found.problems)  # as before: folder entries that are not images are passed over
        if not files and not problems:
            raise ImageRejected(name, "no reference images given")
        self.faces.load()
        refs = []
        for f in files:
            try:
                try:
                    data = f.read_bytes()
                except OSError as exc:
                    raise ImageRejected(str(f), f"cannot read file ({exc.strerror})") from None
                li = load_image(data, str(f), self.limits)
                scan = self.faces_of(li.sha256, li.image)
                refs.append((li.sha256, li.data, scan, main_face(scan, str(f))))
            except ImageRejected as exc:
                problems.append(exc)
        if problems:
            raise CastRejected(problems)
        self.catalog.add_cast_member(title_id, name, refs, lead=lead)
        return self.rescore_actors(title_id)

    def remove_cast_member(self, title_id: str, name: str) -> dict[str, float]:
        """Remove an actor from a title's cast and rescore the rest (thresholds depend on the gallery)."""
        self.catalog.remove_cast_member(title_id, name)
        return self.rescore_actors(title_id)

    def gallery(self, title_id: str) -> FaceGallery | None:
        """The title's cast as reference face descriptors (None: no actor has a usable reference)."""
        from artwork.tagging import FaceGallery

        refs: dict[str, list[np.ndarray]] = {}
        for member in self.catalog.cast_members(title_id):
            for sha, face in member.refs:
                scan = self.catalog.face_scan(sha)
                if scan is None:
                    continue
                if face is None:  # a reference added before faces existed: choose its face now
                    try:
                        face = main_face(scan, sha)
                    except ImageRejected:
                        face = -1
                    self.catalog.set_ref_face(title_id, member.name, sha, face)
                if 0 <= face < len(scan.faces):
                    refs.setdefault(member.name, []).append(scan.faces[face].descriptor)
        return FaceGallery(refs) if refs else None

    def rescore_actors(self, title_id: str, artwork_ids: Sequence[str] | None = None) -> dict[str, float]:
        """Match a title's artworks (all, or the given ones) against its cast gallery by face.

        Returns the calibrated thresholds; an empty dict when the title has no usable cast (its
        actor scores are cleared then).
        """
        self.ensure_faces(title_id)
        gallery = self.gallery(title_id)
        wanted = set(artwork_ids) if artwork_ids is not None else None
        arts = [a for a in self.catalog.artworks(title_id) if wanted is None or a.artwork_id in wanted]
        if gallery is None:
            self.catalog.put_actor_scores({a.artwork_id: {} for a in arts})
            return {}
        self.catalog.set_cast_thresholds(title_id, gallery.thresholds)
        scores: dict[str, dict[str, ActorMatch]] = {}
        for a in arts:
            scan = self.catalog.face_scan(a.sha256)
            scores[a.artwork_id] = gallery.match(scan) if scan is not None else {}
        self.catalog.put_actor_scores(scores)
        return gallery.thresholds


# -- manifests --------------------------------------------------------------------------------------
MANIFEST_COLUMNS = ("title", "file", "notes")
MAX_NOTES_CHARS = 2000


@dataclass
class ManifestRow:
    """One validated manifest row: where it is, what it adds, and the file's bytes (already decoded once)."""

    line: int
    title_id: str
    path: Path
    notes: str
    data: bytes


class ManifestError(ValueError):
    """A manifest that cannot be stored as a whole; the message names every bad line and why."""

    def __init__(self, manifest: str | Path, problems: Sequence[str]):
        if len(problems) == 1:
            text = f"{manifest}: {problems[0]} (nothing was stored)"
        else:
            text = f"{manifest}: {len(problems)} problems, nothing was stored:\n  " + "\n  ".join(problems)
        super().__init__(text)
        self.problems = list(problems)


def read_manifest(manifest: str | Path, limits: ImageLimits = ImageLimits()) -> list[ManifestRow]:
    """Read and check a CSV manifest (header `title,file,notes`; notes optional) before anything is stored.

    Files are relative to the manifest's folder unless absolute. Every row is checked, every image
    decoded with `limits`, and every problem collected: ManifestError lists them all (by line), so
    a designer fixes the file once, and a bad row never leaves the good ones half stored.
    """
    manifest = Path(manifest)
    try:
        raw = manifest.read_bytes()
    except FileNotFoundError:
        raise ManifestError(manifest, ["no such file"]) from None
    except IsADirectoryError:
        raise ManifestError(manifest, ["is a folder; expected a CSV file"]) from None
    except OSError as exc:
        raise ManifestError(manifest, [f"cannot read file ({exc.strerror})"]) from None
    try:
        text = raw.decode("utf-8-sig")  # a BOM from spreadsheet exports is not part of a column name
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ManifestError(manifest, [f"line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                                       f"save the CSV as UTF-8"]) from None
    # Universal newlines, as a text file is read: CRLF exports give "\n" inside quoted notes too.
    reader = csv.reader(io.StringIO(text, newline=None), strict=True)
    problems: list[str] = []
    rows: list[ManifestRow] = []
    header: list[str] | None = None
    line = 1  # where the next record starts (a quoted value may span lines)
    try:
        for record in reader:
            start, line = line, reader.line_num + 1
            if not any(v.strip() for v in record):
                continue  # blank lines: a spreadsheet's trailing ones, or spacing
            if header is None:
                header = [h.strip().lower() for h in record]
                unknown = [h for h in header if h not in MANIFEST_COLUMNS]
                missing = [c for c in ("title", "file") if c not in header]
                repeated = sorted({h for h in header if header.count(h) > 1})
                if unknown or missing or repeated:
                    parts = ([f"unknown column(s) {', '.join(map(repr, unknown))}"] if unknown else []) + \
                            ([f"missing column(s) {', '.join(missing)}"] if missing else []) + \
                            ([f"column(s) {', '.join(repeated)} given twice"] if repeated else [])
                    raise ManifestError(manifest, [f"line {start}: header: {'; '.join(parts)}; expected the columns "
                                                   f"title, file and optionally notes"])
                continue
            if len(record) > len(header):
                problems.append(f"line {start}: {len(record)} values but the header has {len(header)} columns "
                                f"({', '.join(header)}); quote a value that contains a comma")
                continue
            row = dict(zip(header, record))
            checked = _manifest_row(manifest.parent, start, row, limits)
            if isinstance(checked, str):
                problems.append(checked)
            else:
                rows.append(checked)
    except csv.Error as exc:  # an unterminated quote and the like: later lines cannot be trusted
        problems.append(f"line {reader.line_num}: not valid CSV ({exc})")
    if header is None:
        raise ManifestError(manifest, ["empty; expected a header line `title,file,notes` and one row per image"])
    if not rows and not problems:
        raise ManifestError(manifest, ["no rows below the header; expected one row per image"])
    if problems:
        raise ManifestError(manifest, problems)
    return rows


def _manifest_row(folder: Path, line: int, row: dict[str, str], limits: ImageLimits) -> ManifestRow | str:
    """One row checked, or the line saying what is wrong with it."""
    title_id, file, notes = (row.get(c, "").strip() for c in MANIFEST_COLUMNS)
    if not title_id:
        return f"line {line}: the title is empty; expected a title id"
    try:
        check_title_id(title_id)
    except StoreError as exc:
        return f"line {line}: {exc}"
    if not file:
        return f"line {line}: the file is empty; expected an image path (relative to the manifest's folder)"
    if len(notes) > MAX_NOTES_CHARS:
        return f"line {line}: notes have {len(notes)} characters; at most {MAX_NOTES_CHARS}"
    path = folder / file  # an absolute `file` stays as it is
    if not path.exists():
        return f"line {line}: {file}: no such file (looked for {path})"
    if not path.is_file():
        return f"line {line}: {file}: not a file; a row names one image"
    try:
        data = path.read_bytes()
        load_image(data, file, limits)  # decoded now and again when stored: no row fails after the first is stored
    except OSError as exc:
        return f"line {line}: {file}: cannot read file ({exc.strerror})"
    except ImageRejected as exc:
        return f"line {line}: {exc}"
    return ManifestRow(line, title_id, path, notes, data)


def _chunks(seq: Sequence, n: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


if TYPE_CHECKING:
    from collections.abc import Callable


def encoder_factory(encoder: Encoder, model: str | None = None, pretrained: str | None = None,
                    checkpoint: str | None = None, cache_dir: str | None = None, device: str | None = None,
                    download: bool = False) -> Callable[[], Encoder]:
    """A picklable zero-argument callable that loads `encoder` again in another process (a Ray worker):
    the tiny encoder by its seed, any other by the options it was loaded with (weights from the
    cache or checkpoint the driver used; never downloaded again). The model itself never travels."""
    import functools

    from artwork.encoder import DEFAULT_MODEL, DEFAULT_PRETRAINED, build_tiny, load_encoder

    if encoder.is_tiny:
        seed = int(encoder.encoder_id.rsplit("seed", 1)[1])
        return functools.partial(build_tiny, seed=seed, device=device)
    # Absolute paths: a worker process need not share this one's working directory.
    return functools.partial(load_encoder, model=model or DEFAULT_MODEL, pretrained=pretrained or DEFAULT_PRETRAINED,
                             checkpoint=str(Path(checkpoint).resolve()) if checkpoint else None,
                             cache_dir=str(Path(cache_dir).resolve()) if cache_dir else None, device=device,
                             download=False)
