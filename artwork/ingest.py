"""The upload pipeline: files → validate → faces + embed → tag → catalog, in batches, with progress.

Each artwork is stored in its own transaction, so a crash keeps every artwork stored before it
and never a half-written one. Embeddings, mood/genre tags and faces are looked up by image sha256
first: bytes the catalog has seen (in any title) are never embedded or scanned again. Faces are
found on the worker thread that decodes the next batch, while the CLIP forward runs on this one.
Actors are recognised by face against the title's cast gallery (`rescore_actors`).
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from artwork.encoder import Encoder
from artwork.faces import FaceModel, FaceScan, face_model, main_face
from artwork.images import ImageLimits, ImageRejected, LoadedImage, collect_image_files, load_image
from artwork.progress import progress_bar
from artwork.records import ActorMatch
from artwork.store import Catalog
from artwork.tagging import FaceGallery, Vocabulary, ZeroShotTagger, load_vocabulary

if TYPE_CHECKING:
    from artwork.frames import FrameConfig


@dataclass
class Outcome:
    """What happened to one input."""

    name: str
    status: str  # "added", "duplicate" or "rejected"
    artwork_id: str | None = None
    reason: str = ""


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
            self._tagger = ZeroShotTagger(self.encoder, self.vocab)
        return self._tagger

    # -- uploads ----------------------------------------------------------------------------
    def upload_files(self, title_id: str, paths: Iterable[str | Path], title_name: str | None = None,
                     progress: bool = True) -> IngestReport:
        """Add image files and folders to a title, creating the title if needed."""
        files, problems = collect_image_files(paths)
        report = IngestReport(title_id, [Outcome(p.name, "rejected", reason=p.reason) for p in problems])
        items = (NewImage(name=str(f), data=b"", source=f"upload:{f.name}") for f in files)
        sub = self.add_images(title_id, items, title_name=title_name, progress=progress, total=len(files),
                              read_files=True)
        report.outcomes.extend(sub.outcomes)
        return report

    def add_images(self, title_id: str, items: Iterable[NewImage], title_name: str | None = None,
                   progress: bool = True, total: int | None = None, read_files: bool = False) -> IngestReport:
        """Validate, scan for faces, embed, tag and store images as candidates of a title."""
        self.faces.load()  # a missing face model fails here, before anything is stored
        self.catalog.ensure_title(title_id, title_name)
        report = IngestReport(title_id)
        seen: dict[str, str] = {}  # sha256 -> artwork id, for duplicates inside this upload
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
                for outcome in self._store_batch(title_id, prepared, cached, pixels, seen):
                    report.outcomes.append(outcome)
                    if outcome.status == "added":
                        new_ids.append(outcome.artwork_id)
                advance(len(batches[i]))
        backfilled = self.cast.ensure_faces(title_id)  # artworks stored before faces existed
        if (new_ids or backfilled) and self.catalog.cast_members(title_id):
            self.rescore_actors(title_id, None if backfilled else new_ids)
        return report

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
            prepared.append(_Prepared(item, loaded, scans[loaded.sha256]))
        cached = {p.loaded.sha256: self.catalog.cached_embedding(p.loaded.sha256, self.encoder.encoder_id)
                  for p in prepared}
        need = {p.loaded.sha256: p.loaded.image for p in prepared if cached[p.loaded.sha256] is None}
        pixels = self.encoder.preprocess_batch(list(need.values())) if need else None
        return prepared, rejected, cached, pixels

    def _store_batch(self, title_id: str, prepared: list[_Prepared], cached: dict[str, np.ndarray | None],
                     pixels: torch.Tensor | None, seen: dict[str, str]) -> Iterator[Outcome]:
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
            meta = dict(p.item.meta, format=li.format)
            aid, _ = self.catalog.add_artwork(title_id, li.data, li.sha256, p.item.source, li.width,
                                              li.height, enc_id, cached[li.sha256], tags[li.sha256],
                                              self.vocab.key, meta, faces=p.faces)
            seen[li.sha256] = aid
            yield Outcome(li.name, "added", aid)

    # -- video frames -----------------------------------------------------------------------
    def add_video_frames(self, title_id: str, video: str | Path, max_candidates: int = 12,
                         config: "FrameConfig | None" = None, title_name: str | None = None,
                         progress: bool = True) -> IngestReport:
        """Mine up to `max_candidates` frames from a video and add them like uploads.

        The whole video is read and validated before anything is stored (FramesError otherwise).
        """
        from artwork.frames import mine_frames

        frames = mine_frames(video, max_candidates, config, embed=self.encoder.embed_images, progress=progress)
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
        files, problems = collect_image_files(ref_paths)
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


def _chunks(seq: Sequence, n: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]
