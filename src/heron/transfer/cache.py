"""The feature cache: backbone outputs computed once, kept on disk, memory-mapped.

A cache directory belongs to one (backbone weights, preprocessing, feature
kind) key and to one on-disk format (`v2-<fingerprint>`; folders of older
formats are simply not looked at). Inside:

- `features.f16`: rows of float16 features, `dim` values each; row `r` starts
  at byte `r * dim * 2`. Read through `numpy.memmap`, so RAM does not grow
  with the dataset.
- `index.log`: a JSON header line (format version, key fingerprint, `dim`,
  and a random `generation` that changes every time the cache is cleared),
  then one line per row, `"<row> <crc32> <entry key> <line crc32>\\n"`,
  appended, never rewritten. An entry key is a file's content hash plus the
  view (e.g. "eval" or "aug3"); a changed file has a new content hash, so
  only it is recomputed.
- `file_hashes.json`: the (path, size, mtime) -> content hash memo.
- `lock`: the file the processes sharing the folder lock (`fcntl.flock`).

Writing (`commit`) takes the exclusive lock, reads the log records other
processes added since, writes the new rows just past the last row the log
knows (cutting off rows a killed writer left without records), syncs them to
disk, and only then appends their records. A commit costs O(rows added), so
an extraction commits every batch and a kill loses at most the batch in
flight. Readers take the shared lock, so they never see a record before its
row. A torn last line, a line whose own CRC fails, and rows without records
are ignored. A row whose bytes do not match its CRC (`verify`) or records
pointing past the end of `features.f16` (the file lost data) mean damage:
the cache is cleared and rebuilt.

Without `fcntl` (Windows) there is no locking: one process at a time per
cache folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from heron._atomic import atomic_write_json, atomic_write_text

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process per cache folder
    fcntl = None

__all__ = ["FeatureCache", "CacheDamaged", "FileHashes", "content_hash", "file_lock", "fingerprint",
           "weights_fingerprint"]

FORMAT_VERSION = 2
_HASH_CHUNK = 1 << 20
_MAGIC = "heron-feature-cache"
_fsync_data = getattr(os, "fdatasync", os.fsync)


class CacheDamaged(Exception):
    """The cache on disk does not match its index; the caller rebuilds it."""


def fingerprint(data) -> str:
    """Stable short hash of JSON-able data (cache keys)."""
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=10).hexdigest()


def weights_fingerprint(module: torch.nn.Module) -> str:
    """Hash of every tensor in a module's state dict: changed weights, new cache."""
    digest = hashlib.blake2b(digest_size=10)
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def content_hash(path: Path) -> str:
    """Hash of a file's bytes (identifies an image whatever its name or date)."""
    digest = hashlib.blake2b(digest_size=12)
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _record(key: str, row: int, crc: int) -> bytes:
    """One index line: row, row CRC, entry key, and the CRC of the line itself."""
    body = f"{row} {crc} {key}".encode()
    return body + b" %d\n" % zlib.crc32(body)


def _parse_record(line: bytes) -> tuple[str, int, int] | None:
    """`(key, row, crc)` of one index line, or None for a torn or garbled line."""
    body, _, check = line.rpartition(b" ")
    try:
        if zlib.crc32(body) != int(check):
            return None
        row, crc, key = body.split(b" ", 2)
        return key.decode(), int(row), int(crc)
    except (ValueError, UnicodeDecodeError):
        return None


def _write_all(fh, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[fh.write(view) :]


@contextmanager
def file_lock(lock_path: Path, exclusive: bool) -> Iterator[None]:
    """Hold `lock_path`'s advisory lock (shared for reading, exclusive for writing).

    The lock file is opened for each hold, so a forked child never shares
    its parent's lock. Never nest two holds in one process: flock would
    wait on itself.
    """
    if fcntl is None:
        yield
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


class FileHashes:
    """The (path, size, mtime) -> content hash memo of a JSON file, shared by the processes using it.

    Content hashes name a file's cached results whatever its name; the memo
    spares re-reading unchanged files on every run.
    """

    def __init__(self, path: Path, lock_path: Path) -> None:
        self.path, self.lock_path = Path(path), Path(lock_path)
        self._known = self._read()
        self._new: dict[str, list] = {}

    def _read(self) -> dict[str, list]:
        """The memo on disk; anything unreadable or malformed is ignored."""
        try:
            with open(self.path) as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {
            path: entry
            for path, entry in data.items()
            if isinstance(entry, list) and len(entry) == 3 and isinstance(entry[2], str)
        }

    def keys(self, paths: list[Path]) -> list[str]:
        """Content hash of each file; unchanged files (same size and mtime) are not re-read."""
        keys = []
        for path in paths:
            st = Path(path).stat()
            stamp = [st.st_size, st.st_mtime_ns]
            known = self._known.get(str(path))
            if known and known[:2] == stamp:
                keys.append(known[2])
                continue
            digest = content_hash(Path(path))
            self._known[str(path)] = self._new[str(path)] = stamp + [digest]
            keys.append(digest)
        return keys

    def save(self) -> None:
        """Add the hashes computed here to the memo on disk (merged, so no process loses another's)."""
        if not self._new:
            return
        with file_lock(self.lock_path, exclusive=True):
            merged = self._read()
            merged.update(self._new)
            atomic_write_json(self.path, merged)
        self._known = merged
        self._new = {}


class FeatureCache:
    """Rows of features by entry key, for one backbone/preprocessing key; safe to share between processes.

    `index` maps each entry key to `[row, crc32]` for the rows this process
    knows; `refresh()` reads the rows other processes have committed since.
    Rows, once known, keep their numbers until the cache is cleared.
    """

    def __init__(self, root: str | Path, key: dict) -> None:
        self.key = key
        self._key_fingerprint = fingerprint(key)
        self.dir = Path(root) / f"v{FORMAT_VERSION}-{self._key_fingerprint}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.features_path = self.dir / "features.f16"
        self.log_path = self.dir / "index.log"
        self.hashes_path = self.dir / "file_hashes.json"
        self.lock_path = self.dir / "lock"
        self.rebuilt = False
        self._features = None  # read handle on this generation's features.f16
        self._pending: list[tuple[list[str], np.ndarray]] = []
        self._reset()
        self.refresh()
        self.hashes = FileHashes(self.hashes_path, self.lock_path)

    def __del__(self) -> None:
        if getattr(self, "_features", None) is not None:
            self._features.close()

    def _reset(self) -> None:
        """Forget every row (the on-disk cache is read again from the start)."""
        if self._features is not None:
            self._features.close()
        self._features = None
        self.index: dict[str, list[int]] = {}
        self.dim: int | None = None
        self._generation: str | None = None
        self._offset = 0  # bytes of index.log read so far (whole lines only)
        self._end = 0  # 1 + the largest row number in the log
        self._inconsistent = False  # records pointed past the end of features.f16

    # ---- locking -------------------------------------------------------------------
    def _locked(self, exclusive: bool):
        """Hold the folder's lock (shared for reading, exclusive for writing); see `file_lock`."""
        return file_lock(self.lock_path, exclusive)

    # ---- reading the log -----------------------------------------------------------
    def _read_header(self, fh) -> dict:
        line = fh.readline()
        try:
            header = json.loads(line)
        except ValueError:
            header = None
        if (
            not isinstance(header, dict)
            or header.get("format") != _MAGIC
            or header.get("version") != FORMAT_VERSION
            or header.get("key") != self._key_fingerprint
            or not isinstance(header.get("dim"), int)
            or header["dim"] <= 0
            or not isinstance(header.get("generation"), str)
        ):
            raise CacheDamaged(f"unreadable index header in {self.log_path}")
        header["length"] = len(line)
        return header

    def _disk_generation(self) -> str | None:
        """The generation on disk (None: no index yet); raises CacheDamaged. Caller holds the lock."""
        try:
            with open(self.log_path, "rb") as fh:
                return self._read_header(fh)["generation"]
        except FileNotFoundError:
            return None

    def _refresh_locked(self, switch: bool = True) -> None:
        """Read the records added since the last read. Caller holds the lock.

        A new generation on disk (another process cleared the cache) replaces
        what this process knew, unless `switch` is False and it knew some.
        """
        switch = switch or self._generation is None
        try:
            fh = open(self.log_path, "rb")
        except FileNotFoundError:
            if switch and self._generation is not None:
                self._reset()
            return
        with fh:
            header = self._read_header(fh)
            if header["generation"] != self._generation:
                if not switch:
                    return
                self._reset()
                self._generation, self.dim, self._offset = header["generation"], header["dim"], header["length"]
            fh.seek(self._offset)
            data = fh.read()
        whole = data.rfind(b"\n") + 1  # a torn last line is left for later (or cut by the next writer)
        self._offset += whole
        if self._features is None and self.features_path.exists():
            self._features = open(self.features_path, "rb")
        size = os.fstat(self._features.fileno()).st_size if self._features is not None else 0
        row_bytes = self.dim * 2
        for line in data[:whole].split(b"\n")[:-1]:
            record = _parse_record(line)
            if record is None or record[1] < 0:
                continue
            key, row, crc = record
            if (row + 1) * row_bytes > size:
                self._inconsistent = True
                continue
            self.index.setdefault(key, [row, crc])
            self._end = max(self._end, row + 1)

    def refresh(self) -> None:
        """Read the rows other processes have committed; a damaged cache is cleared (`rebuilt`)."""
        with self._locked(exclusive=False):
            try:
                self._refresh_locked()
                if not self._inconsistent:
                    return
            except CacheDamaged:
                pass
        with self._locked(exclusive=True):
            self._repair_locked()

    def _repair_locked(self) -> None:
        """Read the cache again from the start; if it is still damaged, clear it. Caller holds the lock exclusively."""
        self._reset()
        try:
            self._refresh_locked()
            if not self._inconsistent:
                return  # another process has repaired it meanwhile
        except CacheDamaged:
            pass
        self._reset()
        self._remove_files()
        self.rebuilt = True

    # ---- clearing --------------------------------------------------------------------
    def _remove_files(self) -> None:
        # Index first: features without an index are never read, only replaced.
        # Unlinking (never truncating in place) keeps other processes' memory maps valid.
        for path in (self.log_path, self.features_path):
            path.unlink(missing_ok=True)

    def clear(self) -> None:
        """Delete every row.

        If another process has already cleared the cache since this one last
        read it, the newer cache (rows written since, all valid) is kept and read.
        """
        self._pending.clear()
        with self._locked(exclusive=True):
            try:
                newer = self._disk_generation() not in (None, self._generation)
            except CacheDamaged:
                newer = False
            self._reset()
            if not newer:
                self._remove_files()
            self._refresh_locked()

    # ---- file hashes, remembered by (path, size, mtime) ------------------------------
    def file_keys(self, paths: list[Path]) -> list[str]:
        """Content hash of each file; unchanged files (same size and mtime) are not re-read."""
        return self.hashes.keys(paths)

    def save_file_hashes(self) -> None:
        """Add the hashes computed here to the memo on disk (merged, so no process loses another's)."""
        self.hashes.save()

    # ---- rows ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index)

    def missing(self, entry_keys: list[str]) -> list[int]:
        """Positions of `entry_keys` not in the cache (as last read: call `refresh()` first)."""
        return [i for i, k in enumerate(entry_keys) if k not in self.index]

    def add(self, entry_keys: list[str], features: np.ndarray, commit: bool = True) -> None:
        """Queue rows (float16) `(len(entry_keys), dim)`; with `commit`, write them now.

        Uncommitted rows live in this process only: they are not in `index`
        and have no row number until `commit()`.
        """
        feats = np.ascontiguousarray(features, dtype=np.float16).reshape(len(entry_keys), -1)
        if self.dim is not None and feats.shape[1] != self.dim:
            raise ValueError(f"feature width {feats.shape[1]} != cache width {self.dim}")
        if any("\n" in k or "\r" in k for k in entry_keys):
            raise ValueError("entry keys cannot contain line breaks")
        self._pending.append((list(entry_keys), feats))
        if commit:
            self.commit()

    def commit(self) -> None:
        """Write the queued rows, then the index records that point at them.

        Keys that another process has committed meanwhile are skipped (features
        are deterministic: its row is as good). A kill at any point loses at
        most the rows of this call.
        """
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        with self._locked(exclusive=True):
            try:
                self._refresh_locked()
                damaged = self._inconsistent
            except CacheDamaged:
                damaged = True
            if damaged:
                self._reset()
                self._remove_files()
                self.rebuilt = True
            keys, rows, queued = [], [], set()  # the index is not copied: commits run every batch
            for entry_keys, feats in pending:
                for key, row in zip(entry_keys, feats):
                    if key not in self.index and key not in queued:
                        queued.add(key)
                        keys.append(key)
                        rows.append(row)
            if keys:
                self._append_locked(keys, np.stack(rows))

    def _start_generation(self, dim: int) -> None:
        """A new empty cache: a stray features file goes, then the header appears. Caller holds the lock."""
        self._reset()
        self.features_path.unlink(missing_ok=True)
        generation = os.urandom(8).hex()
        header = {
            "format": _MAGIC, "version": FORMAT_VERSION, "key": self._key_fingerprint,
            "dim": dim, "generation": generation,
        }
        text = json.dumps(header, sort_keys=True) + "\n"
        atomic_write_text(self.log_path, text)
        self._generation, self.dim, self._offset = generation, dim, len(text.encode())

    def _append_locked(self, keys: list[str], feats: np.ndarray) -> None:
        """Rows at the end of the log's rows, synced; then their records. Caller holds the lock exclusively."""
        if self._generation is None:
            self._start_generation(feats.shape[1])
        if feats.shape[1] != self.dim:
            raise ValueError(f"feature width {feats.shape[1]} != cache width {self.dim}")
        start = self._end
        row_bytes = self.dim * 2
        with open(self.features_path, "r+b" if self.features_path.exists() else "w+b", buffering=0) as fh:
            if os.fstat(fh.fileno()).st_size > start * row_bytes:
                fh.truncate(start * row_bytes)  # rows of a writer killed before its records; nobody maps them
            fh.seek(start * row_bytes)
            _write_all(fh, feats.tobytes())
            _fsync_data(fh.fileno())  # the rows are on disk before any record points at them
        crcs = [zlib.crc32(row.tobytes()) for row in feats]
        records = b"".join(_record(key, start + i, crc) for i, (key, crc) in enumerate(zip(keys, crcs)))
        with open(self.log_path, "r+b", buffering=0) as fh:
            fh.truncate(self._offset)  # a torn line of a writer killed mid-record
            fh.seek(self._offset)
            _write_all(fh, records)
        for i, (key, crc) in enumerate(zip(keys, crcs)):
            self.index[key] = [start + i, crc]
        self._offset += len(records)
        self._end = start + len(keys)
        if self._features is None:
            self._features = open(self.features_path, "rb")

    def rows(self, entry_keys: list[str]) -> np.ndarray:
        """Row numbers of `entry_keys` (all must be present)."""
        return np.array([self.index[k][0] for k in entry_keys], dtype=np.int64)

    def _map(self) -> np.ndarray:
        """The rows this process knows, memory-mapped read-only: `(rows, dim)` float16."""
        if not self._end:
            return np.zeros((0, self.dim or 0), dtype=np.float16)
        return np.memmap(self._features, dtype=np.float16, mode="r", shape=(self._end, self.dim))

    def array(self) -> np.ndarray:
        """All rows, memory-mapped read-only: `(rows, dim)` float16, index it with `rows()`.

        Rows other processes committed are read first; rows already handed
        out by `rows()` stay valid in the result even if another process
        clears the cache meanwhile.
        """
        with self._locked(exclusive=False):
            try:
                self._refresh_locked(switch=False)
            except CacheDamaged:
                pass  # the rows known are still readable; the next commit or refresh repairs
        return self._map()

    def verify(self, entry_keys: list[str]) -> None:
        """Check the CRC of the rows behind `entry_keys`; raise CacheDamaged on mismatch."""
        data = self._map()
        for key in entry_keys:
            row, crc = self.index[key]
            if zlib.crc32(np.asarray(data[row]).tobytes()) != crc:
                raise CacheDamaged(f"row {row} does not match its checksum")
