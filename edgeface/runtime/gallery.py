"""A face gallery persisted in SQLite: one template per enrolled identity.

Why SQLite: embedded (no server), atomic transactions survive a killed process or a
power cut, WAL mode lets readers search while a writer enrols, and it ships with Python.

Guarantees:
- Versioned schema: PRAGMA user_version holds SCHEMA_VERSION; older files are migrated in
  a transaction, newer or foreign files are refused with a message.
- Every write is one transaction (BEGIN IMMEDIATE … COMMIT): a process killed mid-way loses
  only the write in flight, never one already committed.
- The file is created owner-only (0600) before SQLite opens it; SQLite gives its -wal and
  -shm files the same mode.
- Templates are stored as plain bytes in the gallery's codec (float32 / fp16 / int8 /
  binary / binary256 / binary512, see codecs.py); no pickle anywhere.
- The model identity (card fingerprint) and embedding size are recorded at creation, and
  opening the gallery with another model's embedder is refused: templates of two models
  are not comparable and matching them would silently return wrong people.
- Search is exact (numpy matmul over the decoded templates, cached until the gallery
  changes) below `index_threshold` templates, and a usearch HNSW index above it (when
  usearch is installed), whose candidates are re-scored exactly. The index is saved beside
  the gallery (GALLERY.index-HASH.usearch, HASH of exactly the content it indexes) so the
  next process loads it instead of rebuilding.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.card import ModelCard
from .codecs import get_codec
from .names import check_visible, invisible_characters, mixed_script_word, skeletons

SCHEMA_VERSION = 1
APPLICATION_ID = 0x45444746  # "EDGF": marks the SQLite file as an edgeface gallery

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE identities (
    name TEXT PRIMARY KEY,
    template BLOB NOT NULL,
    n_images INTEGER NOT NULL,
    quality REAL NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""

# from_version -> SQL that upgrades it to from_version + 1 (run in one transaction).
MIGRATIONS: dict[int, str] = {}


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run statements one by one: executescript() would COMMIT the open transaction first."""
    for stmt in script.split(";"):
        if stmt.strip():
            conn.execute(stmt)


def _busy(exc: sqlite3.Error) -> bool:
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


def _explain(exc: sqlite3.Error) -> str:
    """One sentence for an SQLite error, naming what to do."""
    msg = str(exc)
    low = msg.lower()
    if "readonly" in low or "read-only" in low:
        return "the gallery file (or its folder) is read-only: check its permissions, or open it with readonly=True to search only"
    if _busy(exc):
        return f"the gallery stayed locked by another process past the timeout ({msg}); try again"
    if "unable to open" in low or "disk i/o" in low:
        return f"cannot open or write the gallery file ({msg}): check the path, its folder's permissions and the free space"
    if "full" in low:
        return "the disk is full"
    if "malformed" in low or "not a database" in low or "corrupt" in low:
        return f"the gallery file is damaged ({msg}); restore it from a backup"
    if "unique" in low:
        return f"that name is already enrolled ({msg})"
    return f"SQLite error: {msg}"


def _mapped_errors(fn):
    """A Gallery method whose SQLite errors become GalleryError sentences (a damaged file read
    mid-way, a lock held past the timeout) instead of raw sqlite3 exceptions."""
    import functools

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise GalleryError(f"{self.path}: {_explain(exc)}") from None

    return wrapper


def _import_usearch():
    """usearch.index, imported after onnxruntime's native library.

    Measured here (usearch 2.26.6, onnxruntime 1.32): loading usearch first makes every
    later onnxruntime.InferenceSession segfault in the same process; loading onnxruntime
    first is fine. The runtime needs both (index + bundle/YuNet), so fix the order.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        pass
    from usearch import index

    return index


class GalleryError(ValueError):
    """A gallery that cannot be opened or used, with the file and the reason."""


# The decision word identify() answers below the threshold: never a legal identity name (a
# person enrolled as "unknown" was reported as not recognised, issue 20).
UNKNOWN = "unknown"
MAX_NAME_CHARS = 256
# Unicode bidirectional overrides/isolates: they make a name display as another one.
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def normalize_name(name) -> str:
    """An identity name as stored: NFC-normalised (so a composed and a decomposed "é" are one
    person). Raises ValueError naming the problem for a name that is not a non-empty string
    without surrounding spaces, control characters (newlines, escape sequences), line/paragraph
    separators or bidi overrides, at most MAX_NAME_CHARS long, and not the sentinel "unknown";
    nor (edgeface.runtime.names) holding invisible format characters, mixing look-alike scripts in
    a word, or displaying like "unknown" in any disguise. Names confusable with ANOTHER enrolled
    name are refused by the gallery's writes (Gallery.add_many / rename)."""
    if not isinstance(name, str):
        raise ValueError(f"identity name must be a string, got {type(name).__name__} {name!r}")
    n = unicodedata.normalize("NFC", name)
    if not n.strip():
        raise ValueError("identity name must be a non-empty string")
    if n != n.strip():
        raise ValueError(f"identity name {n!r} has leading or trailing spaces")
    bad = [c for c in n if unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs", "Co", "Cn") or c in _BIDI_CONTROLS]
    if bad:
        raise ValueError(f"identity name {n!r} contains control or invisible characters {sorted({f'U+{ord(c):04X}' for c in bad})}")
    if len(n) > MAX_NAME_CHARS:
        raise ValueError(f"identity name is {len(n)} characters long; at most {MAX_NAME_CHARS}")
    if n.casefold() == UNKNOWN:
        raise ValueError(f"{n!r} is reserved: identify answers {UNKNOWN!r} for a face that matches nobody")
    check_visible(n)
    return n


def display_name(name) -> str:
    """A stored name made safe for one line of terminal output (galleries written before names
    were validated may hold newlines or escape sequences)."""
    if not isinstance(name, str):
        return repr(name)
    if all(unicodedata.category(c)[0] != "C" and c not in _BIDI_CONTROLS and unicodedata.category(c) not in ("Zl", "Zp") for c in name) \
            and not invisible_characters(name) and not mixed_script_word(name):
        return name
    return ascii(name)  # legacy rows: a homoglyph or an invisible character shows as its code points


def _lookup(name) -> str | None:
    """A name to look up: NFC if it is a string (legacy rows are still found), else None."""
    return unicodedata.normalize("NFC", name) if isinstance(name, str) else None


class ModelMismatchError(GalleryError):
    """The gallery's templates come from another model than the embedder in use."""


def auto_expansion_search(n: int) -> int:
    """HNSW search breadth (ef) for a gallery of n templates: 256 up to 100k, then growing as
    n^0.9, rounded up to a multiple of 256 (2048 at 1M).

    Measured with usearch's default graph (connectivity 16) on random unit 128-d templates,
    the hardest case (benchmarks/results/runtime_gallery_scale_ef.json, _1m_ef.json): a mated
    query's own template came first 99.5 % of the time at ef 256 for 100k templates, but at
    1M ef 256 found it only 61.5 % of the time, ef 512 84.5 %, 1024 94 %, 2048 99.5 %. Both
    measured points lie on ef = 256 * (n / 100k)^0.9; beyond 1M it is an extrapolation."""
    need = 256.0 * (max(int(n), 1) / 100_000) ** 0.9
    return max(256, 256 * int(np.ceil(need / 256.0 - 1e-9)))


def model_fingerprint(card: ModelCard) -> str:
    """Identity of the embedding space: a hash of the model card (name, arch, input, template,
    normalisation, embedding size). Bundles of the same card on different backends share it."""
    return hashlib.sha256(card.to_json().encode()).hexdigest()[:16]


@dataclass
class Match:
    name: str
    score: float

    def to_dict(self) -> dict:
        return {"name": self.name, "score": round(float(self.score), 6)}


class Gallery:
    """Open (or create) a gallery file.

    Creating needs `card` (the embedder's ModelCard) and a `codec`; opening an existing file
    with a `card` checks it is the same model. `readonly=True` opens a reader connection
    (many may run while one writer enrols).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        card: ModelCard | None = None,
        codec: str = "float32",
        readonly: bool = False,
        create: bool = True,
        index_threshold: int = 50_000,
        timeout: float = 30.0,
        index_expansion_search: int | str | None = "auto",
        persist_index: bool = True,
    ):
        self.path = Path(path)
        self.readonly = readonly
        self.index_threshold = index_threshold
        # usearch's search breadth (ef): "auto" grows it with the gallery (auto_expansion_search),
        # an int fixes it, None keeps usearch's default (64). A miss can only lower the best
        # score, so a non-mated query is never turned into a false accept; a mated one may be
        # missed, which is what the breadth buys back.
        if not (index_expansion_search in (None, "auto") or (isinstance(index_expansion_search, int) and index_expansion_search > 0)):
            raise ValueError(f"index_expansion_search must be 'auto', a positive int or None, got {index_expansion_search!r}")
        self.index_expansion_search = index_expansion_search
        # Building an HNSW index over a large gallery takes minutes (1M templates: see
        # benchmarks/results/runtime_gallery_scale_1m.json), so the index is saved beside the
        # gallery file, named by a hash of exactly what it indexes, and loaded by the next process.
        self.persist_index = persist_index
        self.index_source: str | None = None  # "built" / "loaded" once an index exists
        if self.path.is_symlink() and not self.path.exists():
            raise GalleryError(f"{self.path}: a symbolic link to {os.readlink(self.path)!r}, which does not exist")
        if self.path.exists() and not self.path.is_file():
            raise GalleryError(f"{self.path}: not a file (a directory or device); give the gallery's file path")
        exists = self.path.exists() and self.path.stat().st_size > 0
        if not exists:
            if readonly or not create:
                raise GalleryError(f"{self.path}: no such gallery (enrol someone first to create it, or check the path)")
            if card is None:
                raise GalleryError(f"{self.path}: creating a gallery needs the model card of the embedder that fills it")
            get_codec(codec, card.embedding_size)  # validate the codec name before touching the disk
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
                    os.close(fd)
                except FileExistsError:
                    pass  # another process created it first: both go on to the schema transaction
                os.chmod(self.path, 0o600)
            except OSError as exc:
                raise GalleryError(f"{self.path}: cannot create the gallery file ({exc.strerror or exc})") from None
        # Opening races with other processes creating or migrating the same file (issue 20: 4
        # processes creating one gallery, up to 3 died): every step below waits busy_timeout on
        # a lock, and the whole open is retried with back-off while SQLite still says busy.
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            try:
                self._open(card, codec, timeout)
                break
            except sqlite3.OperationalError as exc:
                self._close_quietly()
                if _busy(exc) and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
                raise GalleryError(f"{self.path}: {_explain(exc)}") from None
            except sqlite3.DatabaseError as exc:
                self._close_quietly()
                raise GalleryError(f"{self.path}: not a usable gallery ({exc})") from None
            except GalleryError:
                self._close_quietly()
                raise
        try:
            meta = self.meta()
            self.embedding_size = int(meta["embedding_size"])
            self.codec = get_codec(meta["codec"], self.embedding_size)
            self.model_name = meta["model_name"]
            self.model_fingerprint = meta["model_fingerprint"]
        except (KeyError, ValueError, TypeError) as exc:
            self._close_quietly()
            if isinstance(exc, GalleryError):
                raise
            raise GalleryError(f"{self.path}: the gallery's metadata is damaged ({type(exc).__name__}: {exc}); restore it from a backup") from None
        if card is not None:
            self.check_model(card)
        self._local_writes = 0
        self._cache_key: tuple | None = None
        self._names: list[str] = []
        self._matrix = np.zeros((0, self.embedding_size), np.float32)
        self._codes = np.zeros((0, self.codec.bytes_per_template), np.uint8)
        self._index = None

    # -- schema ---------------------------------------------------------------------
    def _uri(self, immutable: bool = False) -> str:
        from urllib.parse import quote

        return f"file:{quote(str(self.path.absolute()))}?mode=ro" + ("&immutable=1" if immutable else "")

    def _connect_readonly(self, timeout: float) -> sqlite3.Connection:
        """A reader connection. A WAL gallery needs its -shm file, which SQLite cannot create in a
        read-only folder (a gallery shipped on a read-only partition): then, if no -wal file holds
        changes not yet in the main file, the file is opened immutable (nobody can write it there);
        with a non-empty -wal it is refused, since reading the main file alone would miss them."""
        conn = sqlite3.connect(self._uri(), uri=True, timeout=timeout, isolation_level=None)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            if "unable to open" not in str(exc).lower() and "readonly" not in str(exc).lower():
                raise
        wal = Path(f"{self.path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise GalleryError(f"{self.path}: its folder is read-only and {wal.name} holds changes not yet written into the gallery file: open it "
                               "once read-write where it can be written (that folds them in), then ship the single file")
        return sqlite3.connect(self._uri(immutable=True), uri=True, timeout=timeout, isolation_level=None)

    def _open(self, card: ModelCard | None, codec: str, timeout: float) -> None:
        if self.readonly:
            self.conn = self._connect_readonly(timeout)
        else:
            self.conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        self.conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        if not self.readonly:
            # Look before switching to WAL (a write to the file's header): another application's
            # SQLite file must be refused byte-identical (issue 37: it was switched to WAL first).
            version, app_id, tables = self._state()
            if app_id != APPLICATION_ID and (app_id or version or tables):
                self._check_existing(version, app_id)
                raise GalleryError(f"{self.path}: an SQLite file but not an edgeface gallery (tables {sorted(tables)[:5]})")
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise GalleryError(f"{self.path}: could not switch to WAL journal mode (got {mode})")
            self.conn.execute("PRAGMA synchronous = FULL")  # a commit is on disk when it returns
        self._check_or_create(card, codec)

    def _state(self) -> tuple[int, int, set]:
        # One read transaction, so the three reads see one snapshot. As separate statements, a process
        # could read version 0 and application_id 0 before another one's schema commit and the tables
        # after it, and refuse a good new gallery as "not an edgeface gallery" (seen once in
        # test_processes_creating_one_new_gallery_at_once_all_succeed during a full suite run).
        own = not self.conn.in_transaction
        if own:
            self.conn.execute("BEGIN")
        try:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            app_id = self.conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            if own:
                self.conn.execute("COMMIT")
        return version, app_id, tables

    def _check_or_create(self, card: ModelCard | None, codec: str) -> None:
        version, app_id, tables = self._state()
        if version == 0 and not tables:
            if self.readonly:
                raise GalleryError(f"{self.path}: empty file, not a gallery")
            if card is None:
                raise GalleryError(f"{self.path}: empty gallery file; creating it needs the model card")
            now = time.time()
            meta = {
                "kit_version": __version__,
                "codec": codec,
                "embedding_size": str(card.embedding_size),
                "model_name": card.name,
                "model_fingerprint": model_fingerprint(card),
                "model_card": card.to_json(),
                "created_at": repr(now),
            }
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                # Look again under the write lock: another process may have created the schema
                # between our first look and this transaction.
                version, app_id, tables = self._state()
                if version == 0 and not tables:
                    _run_script(self.conn, _SCHEMA_V1)
                    self.conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
                    self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self.conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            if tables:
                self._check_existing(version, app_id)
            return
        self._check_existing(version, app_id)

    def _check_existing(self, version: int, app_id: int) -> None:
        if app_id != APPLICATION_ID:
            raise GalleryError(f"{self.path}: an SQLite file but not an edgeface gallery (application_id {app_id:#x})")
        if version > SCHEMA_VERSION:
            raise GalleryError(f"{self.path}: gallery schema version {version} is newer than this edgeface ({__version__}) supports ({SCHEMA_VERSION}); upgrade edgeface")
        if version < 1:
            raise GalleryError(f"{self.path}: gallery has no schema version; refusing to guess its layout")
        if version < SCHEMA_VERSION:
            if self.readonly:
                raise GalleryError(f"{self.path}: gallery schema {version} needs migrating to {SCHEMA_VERSION}; open it once read-write")
            self._migrate(version)

    def _rollback(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction left to undo (SQLite already rolled back)

    def _migrate(self, version: int) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            while version < SCHEMA_VERSION:
                if version not in MIGRATIONS:
                    raise GalleryError(f"{self.path}: no migration from schema {version}")
                _run_script(self.conn, MIGRATIONS[version])
                version += 1
                self.conn.execute(f"PRAGMA user_version = {version}")
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    @_mapped_errors
    def meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    def check_model(self, card: ModelCard) -> None:
        fp = model_fingerprint(card)
        if card.embedding_size != self.embedding_size or fp != self.model_fingerprint:
            raise ModelMismatchError(
                f"{self.path}: gallery was built with model {self.model_name!r} ({self.embedding_size}-d, fingerprint {self.model_fingerprint}); "
                f"the embedder in use is {card.name!r} ({card.embedding_size}-d, fingerprint {fp}). Templates of different models cannot be compared: "
                "re-enrol into a new gallery."
            )

    # -- writes ---------------------------------------------------------------------
    def _write(self, fn):
        if self.readonly:
            raise GalleryError(f"{self.path}: opened read-only (readonly=True, or the file or its folder is not writable)")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn()
                self.conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except sqlite3.Error as exc:
            raise GalleryError(f"{self.path}: {_explain(exc)}") from None
        self._local_writes += 1
        return out

    def _check_template(self, template: np.ndarray) -> np.ndarray:
        t = np.asarray(template, np.float32).reshape(-1)
        if t.size != self.embedding_size:
            raise ValueError(f"template has {t.size} values, the gallery stores {self.embedding_size}-d templates")
        if not np.all(np.isfinite(t)):
            raise ValueError("template contains NaN or infinite values")
        n = float(np.linalg.norm(t))
        if n < 1e-6:
            raise ValueError("template is all zeros")
        return t / n

    def add(self, name: str, template: np.ndarray, n_images: int = 1, quality: float = 1.0, replace: bool = True) -> None:
        """Store (or replace) one identity's template, in its own transaction."""
        self.add_many([(name, template, n_images, quality)], replace=replace)

    def add_many(self, items, replace: bool = True) -> int:
        """Store several (name, template, n_images, quality) in ONE transaction: all or none."""
        rows = []
        now = time.time()
        for name, template, n_images, quality in items:
            name = normalize_name(name)
            t = self._check_template(template)
            rows.append((name, self.codec.to_bytes(t), int(n_images), float(quality), now, now))

        def write():
            if not replace:
                clash = [r[0] for r in rows if self.conn.execute("SELECT 1 FROM identities WHERE name = ?", (r[0],)).fetchone()]
                if clash:
                    raise GalleryError(f"{self.path}: already enrolled: {', '.join(clash[:5])} (use replace=True to overwrite)")
            self._refuse_confusable([r[0] for r in rows])
            self.conn.executemany(
                "INSERT INTO identities (name, template, n_images, quality, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET template = excluded.template, n_images = excluded.n_images, "
                "quality = excluded.quality, updated_at = excluded.updated_at",
                rows,
            )
            return len(rows)

        out = self._write(write)
        self._commit_skeletons()
        return out

    def _refuse_confusable(self, new_names: list[str], same_identity=()) -> None:
        """GalleryError when a name to store displays like another enrolled name or another name of
        the same batch (edgeface.runtime.names.skeletons: "José" and "J\u043es\u00e9", "ALICE" and
        "Alice"): two identities a reader cannot tell apart. Storing under the exact same name
        replaces that identity's template and is allowed. Runs inside the write transaction."""
        key = (self.conn.execute("PRAGMA data_version").fetchone()[0], self._local_writes)
        cached = getattr(self, "_skeletons", None)
        if cached is not None and cached[0] == key and not same_identity:
            holders, enrolled = cached[1], cached[2]
        else:  # every enrolled name's skeletons (C-speed translate: ~1 s per 100k names here)
            existing = [r[0] for r in self.conn.execute("SELECT name FROM identities")]
            enrolled = set(existing)
            holders = {}  # skeleton -> an enrolled name having it (both skeletons of each name)
            for other in existing:
                if isinstance(other, str) and other not in same_identity:
                    kept, folded = skeletons(other)
                    holders.setdefault(kept, other)
                    holders.setdefault(folded, other)
            if not same_identity:
                self._skeletons = (key, holders, enrolled)
        batch: dict[str, str] = {}
        for name in new_names:
            sks = skeletons(name)
            others = sorted({d.get(sk) for sk in sks for d in (holders, batch)} - {None, name})
            if others:
                raise GalleryError(f"{self.path}: {display_name(name)} displays like {display_name(others[0])}, "
                                   f"{'enrolled already' if others[0] in enrolled else 'in the same batch'}: two identities that look the "
                                   "same in every answer; use the enrolled name to replace its template, or choose a distinguishable name")
            for sk in sks:
                batch.setdefault(sk, name)
        self._pending_skeletons = (key, batch, new_names)

    def _commit_skeletons(self) -> None:
        """After a committed add: fold the batch's names into the cached skeletons (a process adding
        people one by one then pays the O(enrolled) pass once, not per add)."""
        cached, pending = getattr(self, "_skeletons", None), getattr(self, "_pending_skeletons", None)
        if cached is None or pending is None or cached[0] != pending[0]:
            return
        for sk, name in pending[1].items():
            cached[1].setdefault(sk, name)
        cached[2].update(pending[2])
        self._skeletons = ((pending[0][0], self._local_writes), cached[1], cached[2])

    def remove(self, name: str) -> bool:
        return bool(self._write(lambda: self.conn.execute("DELETE FROM identities WHERE name = ?", (_lookup(name),)).rowcount))

    def rename(self, old: str, new: str) -> bool:
        """Give `old`'s template the name `new` (validated like an enrolment name); refused
        when `new` is already enrolled. False when `old` is not enrolled."""
        new = normalize_name(new)
        old = _lookup(old)

        def write():
            if old != new and self.conn.execute("SELECT 1 FROM identities WHERE name = ?", (new,)).fetchone():
                raise GalleryError(f"{self.path}: cannot rename {display_name(old)} to {display_name(new)}: {display_name(new)} is already enrolled "
                                   "(remove it first)")
            if self.conn.execute("SELECT 1 FROM identities WHERE name = ?", (old,)).fetchone():
                self._refuse_confusable([new], same_identity=(old,))
            return self.conn.execute("UPDATE identities SET name = ? WHERE name = ?", (new, old)).rowcount

        return bool(self._write(write))

    # -- reads ----------------------------------------------------------------------
    @_mapped_errors
    def __len__(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0])

    @_mapped_errors
    def __contains__(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM identities WHERE name = ?", (_lookup(name),)).fetchone() is not None

    @_mapped_errors
    def names(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM identities ORDER BY name")]

    @_mapped_errors
    def info(self, name: str) -> dict | None:
        r = self.conn.execute("SELECT n_images, quality, created_at, updated_at FROM identities WHERE name IS ?", (_lookup(name) if isinstance(name, str) else name,)).fetchone()
        return None if r is None else {"name": name, "n_images": r[0], "quality": r[1], "created_at": r[2], "updated_at": r[3]}

    def template(self, name: str) -> np.ndarray | None:
        """The decoded template (for binary codecs an approximation; score with template_code)."""
        code = self.template_code(name)
        return None if code is None else self.codec.decode(code)[0]

    @_mapped_errors
    def template_code(self, name: str) -> np.ndarray | None:
        """The stored template as the codec's (1, bytes_per_template) uint8 code (checked: _checked_codes)."""
        r = self.conn.execute("SELECT template FROM identities WHERE name = ?", (_lookup(name),)).fetchone()
        return None if r is None else self._checked_codes([r[0]], [_lookup(name)])

    def _checked_codes(self, blobs: list, names: list) -> np.ndarray:
        """Stored rows as codes, refusing (GalleryError) rows that the gallery's own writes cannot
        have produced: not bytes, the wrong length for the codec, or (float codecs) not a unit
        vector. Scores are trusted to be cosines in [-1, 1]; a template scaled by 3 made every
        probe "match" at 2.6 (issue 37)."""
        n = self.codec.bytes_per_template
        bad = [(i, f"stored as {type(b).__name__}, not bytes") for i, b in enumerate(blobs) if not isinstance(b, bytes)]
        bad += [(i, f"{len(b)} bytes, the {self.codec.name} codec stores {n}") for i, b in enumerate(blobs) if isinstance(b, bytes) and len(b) != n]
        if not bad:
            codes = self.codec.from_bytes(blobs)
            bad = self.codec.invalid_rows(codes)
            if not bad:
                return codes
        shown = "; ".join(f"{display_name(names[i])}: {why}" for i, why in bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise GalleryError(f"{self.path}: {len(bad)} stored template(s) are not valid {self.codec.name} templates ({shown}): the file was "
                           "altered outside edgeface; remove those names (edgeface gallery remove NAME) and enrol them again, or restore a backup")

    @_mapped_errors
    def _refresh(self) -> None:
        """Reload templates when this or another connection has committed since the last load."""
        key = (self.conn.execute("PRAGMA data_version").fetchone()[0], self._local_writes)
        if key == self._cache_key:
            return
        rows = self.conn.execute("SELECT name, template FROM identities ORDER BY rowid").fetchall()
        self._codes = self._checked_codes([r[1] for r in rows], [r[0] for r in rows])
        self._names = [r[0] for r in rows]
        self._matrix = self.codec.decode(self._codes) if rows else np.zeros((0, self.embedding_size), np.float32)
        self._index = None
        self._cache_key = key

    def index_file(self) -> Path:
        """Where the index of the gallery's current content is (or would be) saved: the gallery's
        name + a hash of the ordered names, stored template bytes and index settings, so an index
        is only ever loaded for exactly the content it was built from."""
        self._refresh()
        h = hashlib.sha256(f"usearch cos f32 {self.embedding_size} {len(self._names)}\n".encode())
        h.update("\n".join(self._names).encode())
        h.update(np.ascontiguousarray(self._codes).tobytes())
        return self.path.with_name(f"{self.path.name}.index-{h.hexdigest()[:24]}.usearch")

    def _load_index(self, path: Path):
        Index = _import_usearch().Index
        try:
            index = Index.restore(str(path))
        except (RuntimeError, ValueError, OSError):
            return None  # unreadable or from another usearch layout: rebuilt below
        if index is None or len(index) != len(self._names) or index.ndim != self.embedding_size:
            return None
        return index

    def _build_index(self):
        Index = _import_usearch().Index

        path = self.index_file() if self.persist_index and len(self._matrix) else None
        index = self._load_index(path) if path is not None and path.is_file() else None
        self.index_source = "loaded"
        if index is None:
            index = Index(ndim=self.embedding_size, metric="cos", dtype="f32")
            if len(self._matrix):
                index.add(np.arange(len(self._matrix), dtype=np.uint64), self._matrix)
            self.index_source = "built"
            if path is not None:
                self._save_index(index, path)
        ef = self.expansion_search_for(len(self._names))
        if ef:
            index.expansion_search = ef
        return index

    def expansion_search_for(self, n: int) -> int | None:
        """The search breadth (ef) used for a gallery of n templates."""
        if self.index_expansion_search == "auto":
            return auto_expansion_search(n)
        return self.index_expansion_search

    def _save_index(self, index, path: Path) -> None:
        """Atomic (temp file + rename, owner-only), then remove indexes of older content. A
        gallery in a read-only folder just rebuilds each time: saving is an optimisation."""
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
            os.close(fd)
            index.save(str(tmp))
            os.replace(tmp, path)
        except (OSError, RuntimeError):
            tmp.unlink(missing_ok=True)
            return
        prefix = f"{self.path.name}.index-"  # not glob(): a gallery name may hold [ ] * ?
        for old in self.path.parent.iterdir():
            if old.name.startswith(prefix) and old.name.endswith(".usearch") and old != path:
                old.unlink(missing_ok=True)

    def index_available(self) -> bool:
        try:
            _import_usearch()
        except ImportError:
            return False
        return True

    def search(self, query: np.ndarray, top_k: int = 5, use_index: bool | None = None, exact_candidates: int = 0) -> list[list[Match]]:
        """Best `top_k` identities for each query (M, D) or (D,), highest score first.

        use_index: None = automatic (index when len >= index_threshold, usearch is
        installed and the codec's scores are cosines; Hamming codes are always scanned
        exactly), True = index (error if usearch is missing), False = exact.
        Index results are re-scored exactly over the returned candidates
        (max(top_k, exact_candidates) of them).
        """
        q = np.asarray(query, np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.embedding_size:
            raise ValueError(f"query must be (M, {self.embedding_size}) or ({self.embedding_size},), got {np.asarray(query).shape}")
        if not np.all(np.isfinite(q)):
            raise ValueError("query contains NaN or infinite values")
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-10)
        self._refresh()
        n = len(self._names)
        if n == 0 or top_k <= 0:
            return [[] for _ in range(len(q))]
        k = min(top_k, n)
        if use_index is None:
            # Hamming codes are scanned exactly: an index over their back-projections would be
            # approximate twice (recall never measured); the scan costs 31 ms (binary) / 57 ms
            # (binary512) per query at 1M, docs/runtime.md
            use_index = n >= self.index_threshold and self.index_available() and not self.codec.hamming_scores
        if use_index:
            if self._index is None:
                self._index = self._build_index()
            cand_k = min(n, max(k, exact_candidates))
            # one query: a single thread (thread start-up costs more than a graph walk)
            found = self._index.search(q, cand_k, threads=1 if len(q) == 1 else 0)
            keys = np.asarray(found.keys).reshape(len(q), -1).astype(np.int64)
            out = []
            for i in range(len(q)):
                cand = keys[i][(keys[i] >= 0) & (keys[i] < n)]
                s = self._scores(q[i : i + 1], cand)[0]
                order = np.argsort(-s)[:k]
                out.append([Match(self._names[cand[j]], float(s[j])) for j in order])
            return out
        scores = self._scores(q, None)
        out = []
        for i in range(len(q)):
            top = np.argpartition(-scores[i], k - 1)[:k] if k < n else np.arange(n)
            top = top[np.argsort(-scores[i][top])]
            out.append([Match(self._names[j], float(scores[i][j])) for j in top])
        return out

    def _scores(self, q: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        if self.codec.hamming_scores:
            codes = self._codes if rows is None else self._codes[rows]
            return self.codec.similarity(q, codes)
        m = self._matrix if rows is None else self._matrix[rows]
        return q @ m.T

    # -- lifecycle ------------------------------------------------------------------
    def _close_quietly(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def close(self) -> None:
        self._close_quietly()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @_mapped_errors
    def summary(self) -> dict:
        meta = self.meta()
        return {
            "path": str(self.path),
            "schema_version": SCHEMA_VERSION,
            "identities": len(self),
            "codec": self.codec.name,
            "bytes_per_template": self.codec.bytes_per_template,
            "embedding_size": self.embedding_size,
            "model_name": self.model_name,
            "model_fingerprint": self.model_fingerprint,
            "kit_version": meta.get("kit_version"),
            "file_bytes": self.path.stat().st_size,
        }


def writable(path: str | os.PathLike) -> bool:
    """Whether this process may write a gallery file AND its folder (SQLite's WAL keeps -wal and
    -shm files beside it); False on a read-only partition or folder. os.access honours read-only
    mounts and, for root, ignores file modes as SQLite will."""
    p = Path(path).absolute()
    return os.access(p.parent, os.W_OK) and (not p.exists() or os.access(p, os.W_OK))


def card_from_gallery(path: str | os.PathLike) -> ModelCard:
    """The model card a gallery was built with (to check a bundle against it before loading)."""
    with Gallery(path, readonly=True) as g:
        return ModelCard.from_json(g.meta()["model_card"])


__all__ = ["Gallery", "GalleryError", "ModelMismatchError", "Match", "SCHEMA_VERSION", "model_fingerprint", "card_from_gallery", "writable"]
