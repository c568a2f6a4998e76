"""The upload pipeline: files → validate → embed → tag → catalog, in batches, with progress.

Each artwork is stored in its own transaction, so a crash keeps every artwork stored before it
and never a half-written one. Embeddings and mood/genre tags are looked up by image sha256
first: bytes the catalog has seen (in any title) are never embedded again.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np
import torch

from artwork.encoder import Encoder
from artwork.images import ImageLimits, ImageRejected, LoadedImage, collect_image_files, load_image
from artwork.progress import progress_bar
from artwork.store import Catalog
from artwork.tagging import ActorMatcher, Vocabulary, ZeroShotTagger, load_vocabulary

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


class Ingestor:
    """Adds candidate images and cast members to a catalog with one loaded encoder."""

    def __init__(self, catalog: Catalog, encoder: Encoder, vocab: Vocabulary | None = None,
                 limits: ImageLimits = ImageLimits(), batch_size: int = 32, reembed: bool = False):
        if not reembed:
            catalog.check_encoder(encoder.encoder_id)  # fail before any work, not after
        self.catalog = catalog
        self.encoder = encoder
        self.vocab = vocab or load_vocabulary()
        self.limits = limits
        self.batch_size = batch_size
        self._tagger: ZeroShotTagger | None = None

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
        """Validate, embed, tag and store images as candidates of a title."""
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
        if new_ids and self.catalog.cast(title_id):
            self.rescore_actors(title_id, new_ids)
        return report

    def _prepare(self, batch: Sequence[NewImage], read_files: bool
                 ) -> tuple[list[_Prepared], list[Outcome], dict[str, np.ndarray | None], torch.Tensor | None]:
        """Read, validate and preprocess one batch (runs on the worker thread)."""
        prepared, rejected = [], []
        for item in batch:
            try:
                if read_files:
                    try:
                        item.data = Path(item.name).read_bytes()
                    except OSError as exc:
                        raise ImageRejected(item.name, f"cannot read file ({exc.strerror})") from None
                prepared.append(_Prepared(item, load_image(item.data, item.name, self.limits)))
            except ImageRejected as exc:
                rejected.append(Outcome(exc.name, "rejected", reason=exc.reason))
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
                                              self.vocab.key, meta)
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

    # -- cast -------------------------------------------------------------------------------
    def add_cast_member(self, title_id: str, name: str, ref_paths: Sequence[str | Path]) -> dict[str, float]:
        """Add reference photos for an actor, recalibrate the gallery, rescore the title's artworks.

        Returns the calibrated thresholds per cast member.
        """
        if self.catalog.title(title_id) is None:
            raise ImageRejected(title_id, "unknown title: upload its artwork first")
        files, problems = collect_image_files(ref_paths)
        if problems:
            raise problems[0]
        if not files:
            raise ImageRejected(name, "no reference images given")
        refs = []
        for f in files:
            li = load_image(f.read_bytes(), str(f), self.limits)
            refs.append((li.sha256, li.data, self.encoder.embed_images([li.image])[0]))
        self.catalog.add_cast_member(title_id, name, refs, self.encoder.encoder_id)
        return self.rescore_actors(title_id)

    def rescore_actors(self, title_id: str, artwork_ids: Sequence[str] | None = None) -> dict[str, float]:
        """Score a title's artworks (all, or the given ones) against its cast gallery."""
        gallery = {n: [load_image(b, n, ImageLimits(min_side=1)).image for b in blobs]
                   for n, blobs in self.catalog.cast(title_id).items()}
        if not gallery:
            return {}
        matcher = ActorMatcher(self.encoder, gallery, templates=self.vocab.actor_templates)
        self.catalog.set_cast_thresholds(title_id, matcher.thresholds)
        wanted = set(artwork_ids) if artwork_ids is not None else None
        arts = [a for a in self.catalog.artworks(title_id) if wanted is None or a.artwork_id in wanted]
        scores: dict[str, dict[str, tuple[float, bool]]] = {}
        for batch in _chunks(arts, max(1, self.batch_size // 6)):
            images = [load_image(self.catalog.image_bytes(a.artwork_id), a.artwork_id, ImageLimits(min_side=1)).image
                      for a in batch]
            for a, per_actor in zip(batch, matcher.score(images)):
                scores[a.artwork_id] = {n: (s.score, s.present) for n, s in per_actor.items()}
        self.catalog.put_actor_scores(scores)
        return matcher.thresholds

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
        for t in self.catalog.titles():
            if self.catalog.cast(t.title_id):
                self.rescore_actors(t.title_id)
        return len(hashes)


def _chunks(seq: Sequence, n: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]
