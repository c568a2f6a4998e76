"""The catalog: one SQLite file (WAL) holding titles, artworks, original bytes, embeddings, tags,
faces and cast.

Embeddings and mood/genre tags are keyed by (image sha256, encoder id), faces by (image sha256,
face model id), so the same bytes are never embedded or scanned for faces twice, whichever title
they belong to. Every multi-row change runs in one transaction: a process killed mid-upload leaves
either the whole artwork or none of it.

Schema version 2 added faces (`face_scans`, `faces`), the lead flag of a cast member, the face
chosen from each cast reference and the distance behind each actor score. A version 1 catalog is
migrated when opened (added tables and columns, no rows rewritten); its artworks get their faces
the next time their title is written to (`artwork.ingest.CastManager.ensure_faces`).

`artworks.fingerprint` (perceptual fingerprint, `artwork.images.Fingerprint`, for near-duplicate
detection) is added in place to any catalog that lacks it, without a version change: the column is
nullable and every insert names its columns, so older builds keep working on such a catalog. NULL
means "not computed yet"; an upload computes the missing ones of its title first.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artwork.faces import MODEL_ID as FACE_MODEL_ID
from artwork.faces import FaceRecord, FaceScan
from artwork.records import ActorMatch, Artwork, FaceSummary, Tags, Title
from artwork.sqlite import WalDatabase, connect_wal

DEFAULT_STORE = "artwork.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS titles (
    title_id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS artworks (
    artwork_id TEXT PRIMARY KEY,
    title_id TEXT NOT NULL REFERENCES titles(title_id),
    sha256 TEXT NOT NULL REFERENCES blobs(sha256),
    source TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL, created REAL NOT NULL, meta TEXT NOT NULL DEFAULT '{}',
    disabled INTEGER NOT NULL DEFAULT 0, pinned INTEGER NOT NULL DEFAULT 0,
    UNIQUE (title_id, sha256));
CREATE TABLE IF NOT EXISTS embeddings (
    sha256 TEXT NOT NULL, encoder_id TEXT NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (sha256, encoder_id));
CREATE TABLE IF NOT EXISTS image_tags (
    sha256 TEXT NOT NULL, encoder_id TEXT NOT NULL, vocab TEXT NOT NULL, tags TEXT NOT NULL,
    PRIMARY KEY (sha256, encoder_id, vocab));
CREATE TABLE IF NOT EXISTS cast_members (
    actor_id INTEGER PRIMARY KEY AUTOINCREMENT, title_id TEXT NOT NULL REFERENCES titles(title_id),
    name TEXT NOT NULL, threshold REAL, UNIQUE (title_id, name));
CREATE TABLE IF NOT EXISTS cast_refs (
    actor_id INTEGER NOT NULL REFERENCES cast_members(actor_id), sha256 TEXT NOT NULL,
    PRIMARY KEY (actor_id, sha256));
CREATE TABLE IF NOT EXISTS actor_scores (
    artwork_id TEXT NOT NULL REFERENCES artworks(artwork_id), actor TEXT NOT NULL,
    score REAL NOT NULL, present INTEGER NOT NULL, PRIMARY KEY (artwork_id, actor));
CREATE INDEX IF NOT EXISTS artworks_by_title ON artworks(title_id);
CREATE TABLE IF NOT EXISTS face_scans (
    sha256 TEXT NOT NULL, model TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    n_faces INTEGER NOT NULL, PRIMARY KEY (sha256, model));
CREATE TABLE IF NOT EXISTS faces (
    sha256 TEXT NOT NULL, model TEXT NOT NULL, face INTEGER NOT NULL, geometry TEXT NOT NULL,
    descriptor BLOB NOT NULL, PRIMARY KEY (sha256, model, face));
"""

SCHEMA_VERSION = 2
#: Columns added after version 1: (table, column, declaration). Added in place when missing.
ADDED_COLUMNS = (
    ("cast_members", "lead", "INTEGER NOT NULL DEFAULT 0"),
    # index into the reference image's faces; NULL: not chosen yet (a version 1 reference),
    # -1: the image has no single clear face and does not count
    ("cast_refs", "face", "INTEGER"),
    ("actor_scores", "distance", "REAL"),
    ("actor_scores", "face", "INTEGER"),
    ("actor_scores", "method", "TEXT"),  # NULL: scored by the CLIP matcher of version 1
    ("artworks", "fingerprint", "TEXT"),  # NULL: not computed yet (see the module docstring)
)
#: Longest cast member name: "actor:" + name must fit a taste key (bandit.features.MAX_TASTE_KEY_CHARS).
MAX_CAST_NAME_CHARS = 120


def stored_schema_version(db: sqlite3.Connection) -> int:
    """The schema version an SQLite file of this project was written with: the larger of its header's
    user_version and its meta table's schema_version (files from before user_version was set have
    only the second; a new file has neither: 0)."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone():
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is not None and str(row[0]).strip().isdigit():
            version = max(version, int(row[0]))
    return version


class StoreError(RuntimeError):
    """The store cannot do what was asked (wrong encoder, unknown title...); the message says why."""


class EncoderMismatch(StoreError):
    """An embedding from a different encoder than the catalog's was about to be mixed in."""


def check_title_id(title_id: str) -> None:
    """A title id is used in URLs and file names: non-empty, not only spaces, no '/'."""
    if not title_id or not title_id.strip() or "/" in title_id:
        raise StoreError(f"invalid title id {title_id!r}: expected a non-empty id without '/'")


def artwork_id_for(title_id: str, sha256: str) -> str:
    """Stable artwork id: the same bytes in the same title always get the same id."""
    return hashlib.sha256(f"{title_id}\0{sha256}".encode()).hexdigest()[:16]


def _vec_to_blob(vec: np.ndarray) -> bytes:
    return np.asarray(vec, dtype="<f4").tobytes()


def _blob_to_vec(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").copy()


@dataclass(frozen=True)
class CastMember:
    """One actor of a title's cast gallery, as stored."""

    name: str
    lead: bool  # the title's lead (flagged, or else the first member added)
    threshold: float | None  # distance threshold calibrated on the gallery (None before the first scoring)
    refs: tuple[tuple[str, int | None], ...]  # (reference image sha256, index of its face; -1: none usable)


class Catalog(WalDatabase):
    """A connection to one catalog file. Safe to share between threads of one process."""

    def __init__(self, path: str | Path = DEFAULT_STORE, timeout: float = 30.0, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise StoreError(f"catalog {self.path} does not exist (check --store or $ARTWORK_STORE)")
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = connect_wal(self.path, timeout)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable SQLite catalog: {exc}") from exc
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self.transaction() as db:
            # Checked first, inside the transaction: a newer catalog is refused before anything in it
            # changes, and an older one is migrated (tables, columns, version) all or nothing.
            stored = stored_schema_version(db)
            if stored > SCHEMA_VERSION:
                raise StoreError(f"catalog {self.path} has schema version {stored}, newer than this build's "
                                 f"{SCHEMA_VERSION}: upgrade artwork-engine (pip install -U artwork-engine) to open "
                                 "it; its contents were not changed")
            for stmt in SCHEMA.strip().split(";"):
                if stmt.strip():
                    db.execute(stmt)
            self._migrate(db)

    def _migrate(self, db: sqlite3.Connection) -> None:
        for table, column, decl in ADDED_COLUMNS:
            if column not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        # The header's user_version is what `sqlite3 FILE 'PRAGMA user_version'` and other tools read;
        # the meta row stays for builds that only know it. Both change in this transaction.
        db.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- meta -------------------------------------------------------------------------------
    def set_meta(self, key: str, value: str, db: sqlite3.Connection | None = None) -> None:
        sql, args = "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value)
        if db is not None:
            db.execute(sql, args)
        else:
            with self.transaction() as tx:
                tx.execute(sql, args)

    @property
    def encoder_id(self) -> str | None:
        """The encoder every embedding in this catalog comes from (None while empty)."""
        return self.get_meta("encoder_id")

    def check_encoder(self, encoder_id: str) -> None:
        """Refuse an encoder other than the catalog's, saying how to re-embed."""
        current = self.encoder_id
        if current is not None and current != encoder_id:
            raise EncoderMismatch(
                f"catalog {self.path} holds embeddings from encoder '{current}', but encoder "
                f"'{encoder_id}' is loaded; embeddings of two encoders are never mixed. Load the "
                f"same encoder again, use another --store, or re-embed the whole catalog with "
                f"`artwork reembed` and the new encoder's options.")

    def _claim_encoder(self, db: sqlite3.Connection, encoder_id: str) -> None:
        """Inside a write transaction: the first embedding sets the catalog's encoder, others must match."""
        if self.get_meta("encoder_id") is None:
            self.set_meta("encoder_id", encoder_id, db)
        else:
            self.check_encoder(encoder_id)

    # -- titles -----------------------------------------------------------------------------
    def ensure_title(self, title_id: str, name: str | None = None) -> tuple[Title, bool]:
        """Return the title, creating it if needed; the flag says whether it was created."""
        check_title_id(title_id)
        with self.transaction() as db:
            row = db.execute("SELECT name FROM titles WHERE title_id=?", (title_id,)).fetchone()
            if row:
                if name and name != row[0]:
                    db.execute("UPDATE titles SET name=? WHERE title_id=?", (name, title_id))
                return Title(title_id, name or row[0]), False
            db.execute("INSERT INTO titles VALUES (?, ?, ?)", (title_id, name or title_id, time.time()))
            return Title(title_id, name or title_id), True

    def title(self, title_id: str) -> Title | None:
        rows = self._query("SELECT title_id, name FROM titles WHERE title_id=?", (title_id,))
        return Title(*rows[0]) if rows else None

    def titles(self) -> list[Title]:
        return [Title(*r) for r in self._query("SELECT title_id, name FROM titles ORDER BY title_id")]

    def title_summaries(self) -> list[dict]:
        """Every title with its artwork counts and pin, by title id (the shape of GET /v1/titles)."""
        rows = self._query(
            "SELECT t.title_id, t.name, COUNT(a.artwork_id), COALESCE(SUM(a.disabled), 0), "
            "MAX(CASE WHEN a.pinned THEN a.artwork_id END) "
            "FROM titles t LEFT JOIN artworks a USING (title_id) GROUP BY t.title_id ORDER BY t.title_id")
        return [{"title_id": tid, "name": name, "artworks": n, "disabled": int(disabled), "pinned": pinned}
                for tid, name, n, disabled, pinned in rows]

    # -- artworks ---------------------------------------------------------------------------
    def has_artwork(self, title_id: str, sha256: str) -> str | None:
        rows = self._query("SELECT artwork_id FROM artworks WHERE title_id=? AND sha256=?",
                           (title_id, sha256))
        return rows[0][0] if rows else None

    def cached_embedding(self, sha256: str, encoder_id: str) -> np.ndarray | None:
        rows = self._query("SELECT vector FROM embeddings WHERE sha256=? AND encoder_id=?",
                           (sha256, encoder_id))
        return _blob_to_vec(rows[0][0]) if rows else None

    def cached_tags(self, sha256: str, encoder_id: str, vocab: str) -> dict | None:
        rows = self._query("SELECT tags FROM image_tags WHERE sha256=? AND encoder_id=? AND vocab=?",
                           (sha256, encoder_id, vocab))
        return json.loads(rows[0][0]) if rows else None

    def add_artwork(
        self,
        title_id: str,
        data: bytes,
        sha256: str,
        source: str,
        width: int,
        height: int,
        encoder_id: str,
        embedding: np.ndarray,
        tags: dict,
        vocab: str,
        meta: dict | None = None,
        faces: FaceScan | None = None,
        fingerprint: str | None = None,
    ) -> tuple[str, bool]:
        """Store one artwork with its bytes, embedding, tags and faces atomically; returns (id, created)."""
        artwork_id = artwork_id_for(title_id, sha256)
        with self.transaction() as db:
            self._claim_encoder(db, encoder_id)
            if db.execute("SELECT 1 FROM artworks WHERE artwork_id=?", (artwork_id,)).fetchone():
                return artwork_id, False
            db.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?)", (sha256, data))
            db.execute("INSERT OR IGNORE INTO embeddings VALUES (?, ?, ?, ?)",
                       (sha256, encoder_id, int(embedding.shape[0]), _vec_to_blob(embedding)))
            db.execute("INSERT OR IGNORE INTO image_tags VALUES (?, ?, ?, ?)",
                       (sha256, encoder_id, vocab, json.dumps(tags)))
            if faces is not None:
                self._put_face_scan(db, sha256, faces)
            db.execute(
                "INSERT INTO artworks (artwork_id, title_id, sha256, source, width, height, "
                "size_bytes, created, meta, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (artwork_id, title_id, sha256, source, width, height, len(data), time.time(),
                 json.dumps(meta or {}), fingerprint))
        return artwork_id, True

    def fingerprints(self, title_id: str) -> list[tuple[str, str | None, str, str]]:
        """(artwork id, stored fingerprint or None, source, sha256) of a title's artworks, oldest first."""
        return self._query("SELECT artwork_id, fingerprint, source, sha256 FROM artworks WHERE title_id=? "
                           "ORDER BY created, artwork_id", (title_id,))

    def set_fingerprints(self, fingerprints: dict[str, str]) -> None:
        """Store computed fingerprints: artwork id -> `Fingerprint.to_text()`."""
        with self.transaction() as db:
            db.executemany("UPDATE artworks SET fingerprint=? WHERE artwork_id=?",
                           [(fp, aid) for aid, fp in fingerprints.items()])

    def remove_artwork(self, artwork_id: str) -> Artwork:
        """Delete one candidate in one transaction and return it as it was.

        Its actor scores go with it; its image bytes, embeddings, tags and faces go too unless another
        artwork or a cast reference shows the same bytes. The event log is not touched: decisions that
        showed the artwork stay as they were logged (the caller decides whether removing is allowed).
        """
        with self.transaction() as db:
            art = self.artwork(artwork_id)
            if art is None:
                raise StoreError(f"unknown artwork id {artwork_id!r} (see `artwork show TITLE_ID`)")
            db.execute("DELETE FROM actor_scores WHERE artwork_id=?", (artwork_id,))
            db.execute("DELETE FROM artworks WHERE artwork_id=?", (artwork_id,))
            sha = art.sha256
            if not db.execute("SELECT 1 FROM artworks WHERE sha256=? UNION ALL "
                              "SELECT 1 FROM cast_refs WHERE sha256=?", (sha, sha)).fetchone():
                for table in ("embeddings", "image_tags", "faces", "face_scans", "blobs"):
                    db.execute(f"DELETE FROM {table} WHERE sha256=?", (sha,))
        return art

    # -- faces ----------------------------------------------------------------------------------
    def face_scan(self, sha256: str, model: str = FACE_MODEL_ID) -> FaceScan | None:
        """The faces stored for these image bytes (None: never scanned with this face model)."""
        rows = self._query("SELECT width, height, n_faces FROM face_scans WHERE sha256=? AND model=?",
                           (sha256, model))
        if not rows:
            return None
        width, height, n = rows[0]
        faces = self._query("SELECT geometry, descriptor FROM faces WHERE sha256=? AND model=? ORDER BY face",
                            (sha256, model))
        if len(faces) != n:
            raise StoreError(f"catalog {self.path}: image {sha256[:12]} should have {n} faces stored, has {len(faces)}")
        return FaceScan(width, height, tuple(FaceRecord.from_json(json.loads(g), _blob_to_vec(d)) for g, d in faces),
                        model)

    def put_face_scan(self, sha256: str, scan: FaceScan) -> None:
        """Store the faces of image bytes (kept if already stored: the same bytes have the same faces)."""
        with self.transaction() as db:
            self._put_face_scan(db, sha256, scan)

    def _put_face_scan(self, db: sqlite3.Connection, sha256: str, scan: FaceScan) -> None:
        if db.execute("SELECT 1 FROM face_scans WHERE sha256=? AND model=?", (sha256, scan.model)).fetchone():
            return
        db.execute("INSERT INTO face_scans VALUES (?, ?, ?, ?, ?)",
                   (sha256, scan.model, scan.width, scan.height, len(scan.faces)))
        for i, f in enumerate(scan.faces):
            db.execute("INSERT INTO faces VALUES (?, ?, ?, ?, ?)",
                       (sha256, scan.model, i, json.dumps(f.to_json()), _vec_to_blob(f.descriptor)))

    def unscanned_hashes(self, title_id: str | None = None, model: str = FACE_MODEL_ID) -> list[str]:
        """Artwork images (of one title, or all) and cast references never scanned with this face model."""
        where, args = ("WHERE a.title_id=?", (title_id,)) if title_id is not None else ("", ())
        ref_where = "WHERE m.title_id=?" if title_id is not None else ""
        return [r[0] for r in self._query(
            f"SELECT sha256 FROM (SELECT a.sha256 FROM artworks a {where} UNION "
            f"SELECT r.sha256 FROM cast_refs r JOIN cast_members m USING (actor_id) {ref_where}) "
            "WHERE sha256 NOT IN (SELECT sha256 FROM face_scans WHERE model=?) ORDER BY sha256",
            (*args, *args, model))]

    def image_bytes(self, artwork_id: str) -> bytes | None:
        rows = self._query("SELECT b.data FROM artworks a JOIN blobs b USING (sha256) "
                           "WHERE a.artwork_id=?", (artwork_id,))
        return bytes(rows[0][0]) if rows else None

    def artworks(self, title_id: str, vocab: str | None = None) -> list[Artwork]:
        """All candidates of a title with embedding (catalog encoder) and tags, oldest first."""
        return self._artworks("a.title_id=?", (title_id,), vocab)

    def artwork(self, artwork_id: str, vocab: str | None = None) -> Artwork | None:
        found = self._artworks("a.artwork_id=?", (artwork_id,), vocab)
        return found[0] if found else None

    def all_artworks(self, vocab: str | None = None) -> list[Artwork]:
        return self._artworks("1=1", (), vocab)

    def _artworks(self, where: str, args: tuple, vocab: str | None) -> list[Artwork]:
        enc = self.encoder_id or ""
        rows = self._query(
            "SELECT a.artwork_id, a.title_id, a.sha256, a.source, a.width, a.height, a.size_bytes, "
            "a.created, a.meta, a.disabled, a.pinned, e.vector, "
            "(SELECT t.tags FROM image_tags t WHERE t.sha256=a.sha256 AND t.encoder_id=? "
            "  AND (? IS NULL OR t.vocab=?) ORDER BY t.rowid DESC LIMIT 1), fs.n_faces, f.geometry "
            "FROM artworks a LEFT JOIN embeddings e ON e.sha256=a.sha256 AND e.encoder_id=? "
            "LEFT JOIN face_scans fs ON fs.sha256=a.sha256 AND fs.model=? "
            "LEFT JOIN faces f ON f.sha256=a.sha256 AND f.model=? AND f.face=0 "
            f"WHERE {where} ORDER BY a.created, a.artwork_id",
            (enc, vocab, vocab, enc, FACE_MODEL_ID, FACE_MODEL_ID, *args))
        out = []
        for (aid, tid, sha, src, w, h, size, created, meta, disabled, pinned, vec, tags, n_faces, largest) in rows:
            tagd = json.loads(tags) if tags else {}
            faces = None
            if n_faces is not None:
                geo = json.loads(largest) if largest else {}
                faces = FaceSummary(n_faces=int(n_faces), largest_share=float(geo.get("share", 0.0)),
                                    largest_x=geo.get("x_centre"))
            out.append(Artwork(
                artwork_id=aid, title_id=tid, sha256=sha, source=src, width=w, height=h,
                size_bytes=size, created=created, encoder_id=enc if vec is not None else None,
                embedding=_blob_to_vec(vec) if vec is not None else None,
                tags=Tags(moods=tagd.get("moods", {}), genres=tagd.get("genres", {}), faces=faces),
                meta=json.loads(meta), disabled=bool(disabled), pinned=bool(pinned)))
        self._attach_actor_scores(out)
        return out

    def _attach_actor_scores(self, arts: list[Artwork]) -> None:
        if not arts:
            return
        by_id = {a.artwork_id: a for a in arts}
        marks = ",".join("?" * len(by_id))
        for aid, actor, score, present, dist in self._query(
                f"SELECT artwork_id, actor, score, present, distance FROM actor_scores "
                f"WHERE artwork_id IN ({marks}) ORDER BY actor", tuple(by_id)):
            by_id[aid].tags.actors[actor] = score
            if present:
                by_id[aid].tags.actors_present.append(actor)
            if dist is not None:
                by_id[aid].tags.actor_distances[actor] = dist
        leads = self.leads({a.title_id for a in arts})
        for a in arts:
            if a.tags.faces is not None:
                a.tags.faces.lead = leads.get(a.title_id)
                a.tags.faces.lead_visible = a.tags.faces.lead in a.tags.actors_present

    def set_flags(self, artwork_id: str, *, pinned: bool | None = None, disabled: bool | None = None) -> None:
        """Designer controls: pin (at most one per title) or disable a candidate."""
        with self.transaction() as db:
            row = db.execute("SELECT title_id FROM artworks WHERE artwork_id=?", (artwork_id,)).fetchone()
            if not row:
                raise StoreError(f"unknown artwork id {artwork_id!r}")
            if pinned:
                db.execute("UPDATE artworks SET pinned=0 WHERE title_id=?", (row[0],))
            if pinned is not None:
                db.execute("UPDATE artworks SET pinned=? WHERE artwork_id=?", (int(pinned), artwork_id))
            if disabled is not None:
                db.execute("UPDATE artworks SET disabled=? WHERE artwork_id=?", (int(disabled), artwork_id))

    # -- cast -------------------------------------------------------------------------------
    def add_cast_member(self, title_id: str, name: str, refs: list[tuple[str, bytes, FaceScan, int]],
                        lead: bool = False) -> int:
        """Add (or extend) a cast member with reference images: (sha256, bytes, faces, main face index).

        `lead` makes the member the title's lead (otherwise the first member added is).
        """
        if not name.strip() or name != name.strip():
            raise StoreError(f"cast member name {name!r} must be non-empty, without leading or trailing spaces")
        if len(name) > MAX_CAST_NAME_CHARS:
            raise StoreError(f"cast member name has {len(name)} characters; at most {MAX_CAST_NAME_CHARS}")
        if any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f or 0xd800 <= ord(c) <= 0xdfff for c in name):
            raise StoreError(f"cast member name {name!r} contains a control character or a lone surrogate")
        with self.transaction() as db:
            if not db.execute("SELECT 1 FROM titles WHERE title_id=?", (title_id,)).fetchone():
                raise StoreError(f"unknown title {title_id!r}: upload artwork or create it first")
            db.execute("INSERT OR IGNORE INTO cast_members (title_id, name) VALUES (?, ?)", (title_id, name))
            actor_id = db.execute("SELECT actor_id FROM cast_members WHERE title_id=? AND name=?",
                                  (title_id, name)).fetchone()[0]
            if lead:
                db.execute("UPDATE cast_members SET lead=(actor_id=?) WHERE title_id=?", (actor_id, title_id))
            for sha, data, scan, face in refs:
                db.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?)", (sha, data))
                self._put_face_scan(db, sha, scan)
                db.execute("INSERT OR REPLACE INTO cast_refs (actor_id, sha256, face) VALUES (?, ?, ?)",
                           (actor_id, sha, face))
        return int(actor_id)

    def remove_cast_member(self, title_id: str, name: str) -> None:
        """Remove an actor, its references and its scores from a title (StoreError if not in the cast)."""
        with self.transaction() as db:
            row = db.execute("SELECT actor_id FROM cast_members WHERE title_id=? AND name=?",
                             (title_id, name)).fetchone()
            if row is None:
                known = [r[0] for r in db.execute("SELECT name FROM cast_members WHERE title_id=? ORDER BY actor_id",
                                                  (title_id,))]
                raise StoreError(f"{name!r} is not in the cast of {title_id!r} (cast: "
                                 f"{', '.join(map(repr, known)) or 'none'})")
            refs = [r[0] for r in db.execute("SELECT sha256 FROM cast_refs WHERE actor_id=?", row)]
            db.execute("DELETE FROM cast_refs WHERE actor_id=?", row)
            db.execute("DELETE FROM cast_members WHERE actor_id=?", row)
            db.execute("DELETE FROM actor_scores WHERE actor=? AND artwork_id IN "
                       "(SELECT artwork_id FROM artworks WHERE title_id=?)", (name, title_id))
            for sha in refs:  # a reference photo nobody else uses goes with its actor
                if not db.execute("SELECT 1 FROM artworks WHERE sha256=? UNION ALL "
                                  "SELECT 1 FROM cast_refs WHERE sha256=?", (sha, sha)).fetchone():
                    db.execute("DELETE FROM blobs WHERE sha256=?", (sha,))
                    db.execute("DELETE FROM faces WHERE sha256=?", (sha,))
                    db.execute("DELETE FROM face_scans WHERE sha256=?", (sha,))

    def cast_members(self, title_id: str) -> list[CastMember]:
        """The title's cast in the order added; exactly one is the lead when there is any cast."""
        rows = self._query("SELECT actor_id, name, lead, threshold FROM cast_members WHERE title_id=? "
                           "ORDER BY actor_id", (title_id,))
        refs: dict[int, list[tuple[str, int | None]]] = {}
        for actor_id, sha, face in self._query(
                "SELECT r.actor_id, r.sha256, r.face FROM cast_refs r JOIN cast_members m USING (actor_id) "
                "WHERE m.title_id=? ORDER BY r.rowid", (title_id,)):
            refs.setdefault(actor_id, []).append((sha, face))
        lead_id = next((r[0] for r in rows if r[2]), rows[0][0] if rows else None)
        return [CastMember(name, actor_id == lead_id, thr, tuple(refs.get(actor_id, ())))
                for actor_id, name, _lead, thr in rows]

    def leads(self, title_ids: set[str] | None = None) -> dict[str, str]:
        """title id -> its lead cast member (flagged lead, else the first added), for titles with a cast."""
        out: dict[str, str] = {}
        for tid, name in self._query("SELECT title_id, name FROM cast_members ORDER BY lead DESC, actor_id"):
            if title_ids is None or tid in title_ids:
                out.setdefault(tid, name)
        return out

    def set_ref_face(self, title_id: str, name: str, sha256: str, face: int) -> None:
        """Record which face of a reference image is the actor's (-1: none usable)."""
        with self.transaction() as db:
            db.execute("UPDATE cast_refs SET face=? WHERE sha256=? AND actor_id=(SELECT actor_id FROM "
                       "cast_members WHERE title_id=? AND name=?)", (face, sha256, title_id, name))

    def cast(self, title_id: str) -> dict[str, list[bytes]]:
        """Cast member name -> reference image bytes, for one title."""
        out: dict[str, list[bytes]] = {}
        for name, data in self._query(
                "SELECT m.name, b.data FROM cast_members m JOIN cast_refs r USING (actor_id) "
                "JOIN blobs b ON b.sha256=r.sha256 WHERE m.title_id=? ORDER BY m.name, r.rowid",
                (title_id,)):
            out.setdefault(name, []).append(bytes(data))
        return out

    def set_cast_thresholds(self, title_id: str, thresholds: dict[str, float]) -> None:
        with self.transaction() as db:
            for name, thr in thresholds.items():
                db.execute("UPDATE cast_members SET threshold=? WHERE title_id=? AND name=?",
                           (thr, title_id, name))

    def cast_thresholds(self, title_id: str) -> dict[str, float]:
        return {n: t for n, t in self._query(
            "SELECT name, threshold FROM cast_members WHERE title_id=? AND threshold IS NOT NULL",
            (title_id,))}

    def put_actor_scores(self, scores: dict[str, dict[str, ActorMatch]]) -> None:
        """Replace the actor scores of the given artworks: artwork_id -> actor -> match."""
        with self.transaction() as db:
            for aid, per_actor in scores.items():
                db.execute("DELETE FROM actor_scores WHERE artwork_id=?", (aid,))
                for actor, m in per_actor.items():
                    db.execute("INSERT INTO actor_scores (artwork_id, actor, score, present, distance, face, method) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (aid, actor, float(m.score), int(m.present), m.distance, m.face, m.method))

    def actor_methods(self, title_id: str | None = None) -> set[str]:
        """What tagged the stored actor scores ("face:<model>"; "clip" for version 1 CLIP matching)."""
        where, args = ("WHERE a.title_id=?", (title_id,)) if title_id is not None else ("", ())
        return {m or "clip" for (m,) in self._query(
            f"SELECT DISTINCT s.method FROM actor_scores s JOIN artworks a USING (artwork_id) {where}", args)}

    # -- re-embedding -----------------------------------------------------------------------
    def all_image_hashes(self) -> list[str]:
        """Every image the catalog embeds: the artworks (cast references are matched by face, not CLIP)."""
        return [r[0] for r in self._query("SELECT DISTINCT sha256 FROM artworks ORDER BY sha256")]

    def blob(self, sha256: str) -> bytes:
        return bytes(self._query("SELECT data FROM blobs WHERE sha256=?", (sha256,))[0][0])

    def switch_encoder(self, encoder_id: str, vectors: dict[str, np.ndarray],
                       tags: dict[str, dict], vocab: str) -> None:
        """Swap the whole catalog to a new encoder in one transaction (old vectors stay cached)."""
        missing = set(self.all_image_hashes()) - set(vectors)
        if missing:
            raise StoreError(f"re-embedding incomplete: {len(missing)} images have no new vector")
        with self.transaction() as db:
            for sha, vec in vectors.items():
                db.execute("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)",
                           (sha, encoder_id, int(vec.shape[0]), _vec_to_blob(vec)))
            for sha, t in tags.items():
                db.execute("INSERT OR REPLACE INTO image_tags VALUES (?, ?, ?, ?)",
                           (sha, encoder_id, vocab, json.dumps(t)))
            self.set_meta("encoder_id", encoder_id, db)

    def stats(self) -> dict[str, int]:
        """Row counts and file size, for `show` and metrics."""
        counts = {t: self._query(f"SELECT COUNT(*) FROM {t}")[0][0]
                  for t in ("titles", "artworks", "blobs", "embeddings", "cast_members", "faces")}
        files = [self.path.with_name(self.path.name + sfx) for sfx in ("", "-wal", "-shm")]
        counts["file_bytes"] = sum(f.stat().st_size for f in files if f.exists())
        return counts
