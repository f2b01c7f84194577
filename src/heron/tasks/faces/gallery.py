"""The enrolment database: people, their face embeddings, and 1:1 / 1:K search.

One SQLite file (Python's own `sqlite3`, no server) holds everyone enrolled:

- `meta`: the encoder's weight hash, the embedding size and the schema
  version. Embeddings from one encoder mean nothing to another, so a database
  opened with a different hash or size is refused with a one-line fix.
- `people`: one row per name (unique).
- `embeddings`: float32 vectors stored as raw bytes, each with the file it
  came from; deleting a person deletes their embeddings (foreign key, ON DELETE
  CASCADE).

The file runs in WAL mode with a busy timeout, so readers never block and two
processes enrolling at once both succeed (one waits for the other). An
enrolment is one `BEGIN IMMEDIATE` transaction: a process killed half-way
leaves the database as it was before, never a person with half their images.

Search is exact. All embeddings are read once into one `(N, d)` matrix
(re-read only after the database changes); a query is one matrix product,
distances follow from `d^2 = 2 - 2 q.e` for unit vectors, and each person
scores their nearest embedding. From `FAISS_MIN_ROWS` embeddings on, where
`faiss` is installed, an exact inner-product index (`IndexFlatIP`) answers the
same question with the same result.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from heron.errors import DataError

__all__ = ["FAISS_MIN_ROWS", "SCHEMA_VERSION", "FaceGallery", "unit_rows"]

SCHEMA_VERSION = 1
FAISS_MIN_ROWS = 100_000  # below this one matrix product is as fast as any index
BUSY_TIMEOUT_S = 60.0  # how long a writer waits for another process's transaction
_SHORT = 12  # hex digits of a hash shown in messages

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    source TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX embeddings_by_person ON embeddings(person_id, id);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def unit_rows(vectors: np.ndarray, dim: int) -> np.ndarray:
    """`vectors` as a C-contiguous float32 `(n, dim)` array of unit rows (a `(dim,)` vector becomes `(1, dim)`).

    Raises ValueError for the wrong size, non-finite values or a zero row:
    those are a caller's bug, not something a user can fix.
    """
    rows = np.asarray(vectors, dtype=np.float32)
    rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
    if rows.ndim != 2 or rows.shape[1] != dim:
        raise ValueError(f"embeddings of shape {tuple(np.shape(vectors))} given; this gallery holds ({dim},) vectors")
    if not np.isfinite(rows).all():
        raise ValueError("embeddings contain NaN or infinity")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("an embedding is all zeros; it has no direction to compare")
    return np.ascontiguousarray(rows / norms, dtype=np.float32)


def _distances_from_similarity(similarity: np.ndarray) -> np.ndarray:
    """Euclidean distances between unit vectors from their dot products: sqrt(2 - 2 q.e), clipped into [0, 2]."""
    return np.sqrt(np.clip(2.0 - 2.0 * similarity, 0.0, 4.0)).astype(np.float32)


class _Matrix:
    """Every embedding in one `(N, d)` matrix, rows grouped by person, with where each person's rows start."""

    def __init__(self, vectors: np.ndarray, starts: np.ndarray, names: list[str], counts: np.ndarray):
        self.vectors = vectors  # (N, d) float32, read-only view of the rows' bytes
        self.starts = starts  # (P,) first row of each person
        self.names = names  # (P,) names in row order
        self.row_person = np.repeat(np.arange(len(names)), counts)  # (N,) person index of each row
        self.largest = int(counts.max()) if len(counts) else 0  # most rows any one person has
        self.index = None  # a FAISS index over `vectors`, built on first use

    @property
    def rows(self) -> int:
        return self.vectors.shape[0]


class FaceGallery:
    """People and their face embeddings in one SQLite file, tied to one encoder.

    Open with `FaceGallery.open(db_path, encoder_hash, dim)`; use as a context
    manager or call `close()`. One instance belongs to one thread; other
    processes may use the same file at the same time.
    """

    faiss_min_rows = FAISS_MIN_ROWS  # set lower on an instance to use FAISS on a small gallery

    def __init__(self, path: Path, connection: sqlite3.Connection, encoder_hash: str, dim: int):
        self.path = path
        self.encoder_hash = encoder_hash
        self.dim = dim
        self._db = connection
        self._matrix: _Matrix | None = None
        self._matrix_version: tuple[int, int] | None = None
        self._writes = 0  # own commits; sqlite's data_version counts only other connections'

    # ---- opening -----------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, db_path: str | Path, encoder_hash: str | None = None, dim: int | None = None,
             create: bool = True) -> FaceGallery:
        """Open (or, with `create` and a hash, make) the database at `db_path` for the encoder `encoder_hash`.

        `encoder_hash=None` opens an existing database for listing and removal
        whatever encoder made it. Raises DataError when the file is missing
        (and not to be created), is not a heron faces database, or was made by
        another encoder or for another embedding size.
        """
        path = Path(db_path)
        if encoder_hash is not None and dim is None:
            raise ValueError("give the embedding size `dim` with the encoder hash")
        create = create and encoder_hash is not None
        if not create and not path.is_file():
            raise DataError(f"{path}: no such enrolment database; enrol people first with "
                            f"`heron faces enroll RUN --db {path} NAME IMAGE...` or check the path")
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = cls._connect(path)
        try:
            stored_hash, stored_dim = cls._prepare(connection, path, encoder_hash, dim, create)
        except BaseException:
            connection.close()
            raise
        return cls(path, connection, stored_hash, stored_dim)

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        """A connection in autocommit mode (transactions are begun explicitly), WAL, foreign keys, busy timeout."""
        connection = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            connection.execute("PRAGMA foreign_keys = ON")
            _use_wal(connection, path)
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise _not_a_gallery(path, exc) from None
        return connection

    @staticmethod
    def _prepare(connection: sqlite3.Connection, path: Path, encoder_hash: str | None,
                 dim: int | None, create: bool) -> tuple[str, int]:
        """Create the schema in an empty file, or check the stored encoder; (encoder hash, dim) of the database."""
        try:
            with _transaction(connection, "BEGIN", path):  # a read: never waits for a writer (WAL)
                meta = _read_meta(connection, path, _tables(connection), allow_empty=create)
            if meta is None:  # an empty file: make the schema, unless another process just did
                with _transaction(connection, "BEGIN IMMEDIATE", path):
                    tables = _tables(connection)
                    if not tables:
                        _create_schema(connection, encoder_hash, dim)
                        tables = {"meta", "people", "embeddings"}
                    meta = _read_meta(connection, path, tables)
        except sqlite3.DatabaseError as exc:
            raise _not_a_gallery(path, exc) from None
        _check_meta(path, meta, encoder_hash, dim)
        return meta["encoder_hash"], int(meta["dim"])

    # ---- writing -----------------------------------------------------------------------------------------------

    def enroll(self, name: str, embeddings: np.ndarray, sources: Sequence[str]) -> int:
        """Add `embeddings` `(n, d)` (one per entry of `sources`, the files they came from) to `name`.

        A new name is created; an existing one gets more embeddings. All in one
        transaction: either every row is there or none is. Returns rows added.
        """
        return self.enroll_many([(name, embeddings, sources)])

    def enroll_many(self, entries: Iterable[tuple[str, np.ndarray, Sequence[str]]]) -> int:
        """`enroll` for many people at once, in ONE transaction (a bulk import). Returns rows added."""
        prepared = [(_check_name(name), unit_rows(vectors, self.dim), sources) for name, vectors, sources in entries]
        for name, rows, sources in prepared:
            if len(rows) == 0 or len(rows) != len(sources):
                raise ValueError(f"{name}: {len(rows)} embeddings and {len(sources)} sources; give one source each, "
                                 "at least one")
        now = _now()
        with self._transaction():
            for name, rows, sources in prepared:
                self._insert(name, rows, sources, now)
        return sum(len(rows) for _, rows, _ in prepared)

    def _insert(self, name: str, rows: np.ndarray, sources: Sequence[str], now: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO people (name, created) VALUES (?, ?)", (name, now))
        person = self._db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()[0]
        self._db.executemany(
            "INSERT INTO embeddings (person_id, vector, source, created) VALUES (?, ?, ?, ?)",
            ((person, row.tobytes(), str(source), now) for row, source in zip(rows, sources)))

    def remove(self, name: str) -> int:
        """Delete `name` and all their embeddings; returns how many embeddings went (0: no such person)."""
        with self._transaction():
            count = self._count(name)
            self._db.execute("DELETE FROM people WHERE name = ?", (name,))
        return count

    @contextmanager
    def _transaction(self, immediate: bool = True) -> Iterator[None]:
        """A write transaction (BEGIN IMMEDIATE: the write lock first, waiting up to the busy timeout), or with
        `immediate=False` a read snapshot."""
        with _transaction(self._db, "BEGIN IMMEDIATE" if immediate else "BEGIN", self.path):
            yield
        if immediate:
            self._writes += 1

    # ---- reading -----------------------------------------------------------------------------------------------

    def people(self) -> list[tuple[str, int]]:
        """Everyone enrolled, by name: [(name, number of embeddings)]."""
        return [(name, count) for name, count in self._db.execute(
            "SELECT p.name, COUNT(e.id) FROM people p LEFT JOIN embeddings e ON e.person_id = p.id "
            "GROUP BY p.id ORDER BY p.name")]

    def people_count(self) -> int:
        """How many people are enrolled."""
        return self._db.execute("SELECT COUNT(*) FROM people").fetchone()[0]

    def __contains__(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM people WHERE name = ?", (name,)).fetchone() is not None

    def __len__(self) -> int:
        """Embeddings stored."""
        return self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]

    def _count(self, name: str) -> int:
        return self._db.execute("SELECT COUNT(e.id) FROM embeddings e JOIN people p ON p.id = e.person_id "
                                "WHERE p.name = ?", (name,)).fetchone()[0]

    def verify(self, name: str, query: np.ndarray) -> float:
        """Distance from `query` `(d,)` to the nearest of `name`'s embeddings. DataError if `name` is not enrolled."""
        q = unit_rows(query, self.dim)[0]
        blobs = [row[0] for row in self._db.execute(
            "SELECT e.vector FROM embeddings e JOIN people p ON p.id = e.person_id WHERE p.name = ? ORDER BY e.id",
            (name,))]
        if not blobs:
            raise DataError(f"{self.path}: no one named {name!r} is enrolled; "
                            f"`heron faces list --db {self.path}` shows who is")
        vectors = self._as_matrix(blobs)
        return float(_distances_from_similarity(vectors @ q).min())

    def identify(self, query: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        """The `k` people nearest to `query` `(d,)`: [(name, distance to their nearest embedding)], nearest first."""
        q = unit_rows(query, self.dim)[0]
        matrix = self._load()
        if matrix.rows == 0 or k <= 0:
            return []
        if self._use_faiss(matrix):
            person, similarity = self._search_faiss(matrix, q, k)
        else:
            person, similarity = self._search_numpy(matrix, q, k)
        distance = _distances_from_similarity(similarity)
        return [(matrix.names[p], float(d)) for p, d in zip(person, distance)]

    @property
    def search_backend(self) -> str:
        """"faiss" or "numpy": what `identify` uses for the gallery as it is now."""
        return "faiss" if self._use_faiss(self._load()) else "numpy"

    # ---- search ------------------------------------------------------------------------------------------------

    def _use_faiss(self, matrix: _Matrix) -> bool:
        return matrix.rows >= self.faiss_min_rows and _faiss() is not None

    @staticmethod
    def _search_numpy(matrix: _Matrix, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """One matrix product, best row per person (rows are grouped), top k: (person indices, similarities)."""
        similarity = matrix.vectors @ q  # (N,)
        best = np.maximum.reduceat(similarity, matrix.starts)  # (P,) each person's nearest embedding
        return _top(best, np.arange(len(best)), k)

    @staticmethod
    def _search_faiss(matrix: _Matrix, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner-product search over enough rows that k different people are among them.

        A person holds at most `largest` rows, so the nearest `k * largest` rows
        contain at least k people, and each person's first row in that ranking
        is their nearest: the same answer as `_search_numpy`.
        """
        if matrix.index is None:
            index = _faiss().IndexFlatIP(matrix.vectors.shape[1])
            index.add(matrix.vectors)
            matrix.index = index
        wanted = min(matrix.rows, k * matrix.largest)
        similarity, rows = matrix.index.search(q[None, :], wanted)  # (1, wanted) each, best first
        similarity, rows = similarity[0], rows[0]
        person = matrix.row_person[rows]
        _, first = np.unique(person, return_index=True)  # each person's best row among the ranked ones
        return _top(similarity[first], person[first], k)

    def _load(self) -> _Matrix:
        """The embedding matrix, read again only when the database changed since the last read."""
        version = (self._db.execute("PRAGMA data_version").fetchone()[0], self._writes)
        if self._matrix is None or version != self._matrix_version:
            self._matrix = self._read_matrix()
            self._matrix_version = version
        return self._matrix

    def _read_matrix(self) -> _Matrix:
        with self._transaction(immediate=False):  # one consistent snapshot of both tables
            rows = self._db.execute("SELECT person_id, vector FROM embeddings ORDER BY person_id, id").fetchall()
            names = dict(self._db.execute("SELECT id, name FROM people"))
        person_ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        vectors = self._as_matrix([row[1] for row in rows])
        starts = np.flatnonzero(np.r_[True, person_ids[1:] != person_ids[:-1]]) if len(rows) else np.zeros(0, int)
        counts = np.diff(np.r_[starts, len(rows)])
        return _Matrix(vectors, starts, [names[int(person_ids[s])] for s in starts], counts)

    def _as_matrix(self, blobs: list[bytes]) -> np.ndarray:
        data = b"".join(blobs)
        if len(data) != len(blobs) * self.dim * 4:
            raise DataError(f"{self.path}: stored embeddings are not {self.dim} float32 values each; the database "
                            "is damaged: enrol again into a new --db")
        return np.frombuffer(data, dtype=np.float32).reshape(len(blobs), self.dim)

    # ---- closing -----------------------------------------------------------------------------------------------

    def close(self) -> None:
        self._matrix = None
        self._db.close()

    def __enter__(self) -> FaceGallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FaceGallery({str(self.path)!r}, encoder {self.encoder_hash[:_SHORT]}, dim {self.dim})"


@contextmanager
def _transaction(connection: sqlite3.Connection, begin: str, path: Path) -> Iterator[None]:
    """`begin` ... COMMIT, or ROLLBACK on any exception (a killed process's transaction sqlite undoes itself).

    DataError when another process held the write lock for longer than the busy timeout.
    """
    try:
        connection.execute(begin)
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise
        raise DataError(f"{path}: another process kept the database busy for {BUSY_TIMEOUT_S:g} s; "
                        "try again when it has finished") from None
    try:
        yield
    except BaseException:
        if connection.in_transaction:  # sqlite may have rolled back already (disk full, I/O error)
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _use_wal(connection: sqlite3.Connection, path: Path) -> None:
    """Switch the file to WAL (it stays so). Switching needs a moment alone with the file and sqlite does not
    wait for it with the busy timeout, so while another process holds the file this retries until it is free."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        if mode != "wal":  # a file system without shared memory, for one
            raise DataError(f"{path}: SQLite cannot keep a write-ahead log here (journal mode stays {mode}); "
                            "put the database on a local disk")
        return


def _top(best: np.ndarray, person: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k highest of `best` (similarity per person) with their `person` indices, highest first, ties by index."""
    if k < len(best):
        keep = np.argpartition(-best, k - 1)[:k]
        best, person = best[keep], person[keep]
    order = np.lexsort((person, -best))[:k]
    return person[order], best[order]


def _faiss():
    """The faiss module, or None where it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise DataError(f"{name!r}: a person's name must be non-empty text without leading or trailing spaces")
    return name


def _create_schema(connection: sqlite3.Connection, encoder_hash: str, dim: int) -> None:
    for statement in _SCHEMA.strip().split(";\n"):
        connection.execute(statement)
    connection.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                           [("encoder_hash", encoder_hash), ("dim", str(int(dim))),
                            ("schema_version", str(SCHEMA_VERSION)), ("created", _now())])


def _tables(connection: sqlite3.Connection) -> set[str]:
    return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _read_meta(connection: sqlite3.Connection, path: Path, tables: set[str],
               allow_empty: bool = False) -> dict[str, str] | None:
    """The `meta` table as a dict; None for a file with no tables at all when `allow_empty`; else DataError."""
    if not tables and allow_empty:
        return None
    if not {"meta", "people", "embeddings"} <= tables:
        raise DataError(f"{path}: not a heron faces enrolment database (tables: {', '.join(sorted(tables)) or 'none'});"
                        " pass the file `heron faces enroll` made, or a new --db path")
    meta = dict(connection.execute("SELECT key, value FROM meta"))
    if not {"encoder_hash", "dim", "schema_version"} <= meta.keys():
        raise DataError(f"{path}: the enrolment database has no encoder record; enrol again into a new --db")
    if int(meta["schema_version"]) > SCHEMA_VERSION:
        raise DataError(f"{path}: made by a newer heron (schema {meta['schema_version']}, this one reads "
                        f"{SCHEMA_VERSION}); upgrade heron")
    return meta


def _check_meta(path: Path, meta: dict[str, str], encoder_hash: str | None, dim: int | None) -> None:
    """DataError unless the database was made by this encoder (same weight hash, same embedding size)."""
    stored_hash, stored_dim = meta["encoder_hash"], int(meta["dim"])
    if encoder_hash is not None and encoder_hash != stored_hash:
        raise DataError(f"{path}: enrolled with encoder {stored_hash[:_SHORT]}, but this run's encoder is "
                        f"{encoder_hash[:_SHORT]}; embeddings of different encoders cannot be compared: use the run "
                        "that made this database, or a new --db")
    if dim is not None and int(dim) != stored_dim:
        raise DataError(f"{path}: holds {stored_dim}-d embeddings, but this run makes {dim}-d ones; use the run "
                        "that made this database, or a new --db")


def _not_a_gallery(path: Path, exc: Exception) -> DataError:
    return DataError(f"{path}: cannot be read as an enrolment database ({exc}); pass the file `heron faces enroll` "
                     "made, or a new --db path")
