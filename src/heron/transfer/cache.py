"""The feature cache: backbone outputs computed once, kept on disk, memory-mapped.

A cache directory belongs to one (backbone weights, preprocessing, feature
kind) key. Inside, rows of float16 features live in `features.f16` (appended,
read through `numpy.memmap`, so RAM does not grow with the dataset), and
`index.json` maps each entry key (a file's content hash plus the view, e.g.
"eval" or "aug3") to its row and the row's CRC32. A changed file has a new
content hash, so only it is recomputed; a row whose CRC does not match, a
short file or an unreadable index marks the cache damaged and it is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from heron._atomic import atomic_write_json

__all__ = ["FeatureCache", "CacheDamaged", "content_hash", "fingerprint", "weights_fingerprint"]

_HASH_CHUNK = 1 << 20


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


class FeatureCache:
    """Rows of features by entry key, for one backbone/preprocessing key."""

    def __init__(self, root: str | Path, key: dict) -> None:
        self.key = key
        self.dir = Path(root) / fingerprint(key)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.features_path = self.dir / "features.f16"
        self.index_path = self.dir / "index.json"
        self.hashes_path = self.dir / "file_hashes.json"
        self.dim: int | None = None
        self.index: dict[str, list[int]] = {}
        self._file_hashes: dict[str, list] = {}
        self.rebuilt = False
        self._hashes_dirty = False
        self._open()

    # ---- opening, damage detection -------------------------------------------------
    def _open(self) -> None:
        try:
            self._load_index()
        except CacheDamaged:
            self.clear()
            self.rebuilt = True
        self._file_hashes = self._read_json(self.hashes_path, default={})

    def _load_index(self) -> None:
        if not self.index_path.exists():
            if self.features_path.exists():
                raise CacheDamaged("features without index")
            return
        data = self._read_json(self.index_path, default=None)
        if not isinstance(data, dict) or data.get("key") != fingerprint(self.key) or "rows" not in data:
            raise CacheDamaged("unreadable index")
        self.dim = data["dim"]
        self.index = data["rows"]
        expected = len(self.index) * (self.dim or 0) * 2
        size = self.features_path.stat().st_size if self.features_path.exists() else 0
        if size < expected:
            raise CacheDamaged("features file is short")
        if size > expected:  # rows appended by a run that died before its index: drop them
            with open(self.features_path, "r+b") as fh:
                fh.truncate(expected)

    @staticmethod
    def _read_json(path: Path, default):
        try:
            with open(path) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return default

    def clear(self) -> None:
        for path in (self.features_path, self.index_path):
            path.unlink(missing_ok=True)
        self.index, self.dim = {}, None

    # ---- file hashes, remembered by (path, size, mtime) ------------------------------
    def file_keys(self, paths: list[Path]) -> list[str]:
        """Content hash of each file; unchanged files (same size and mtime) are not re-read."""
        keys = []
        for path in paths:
            st = path.stat()
            stamp = [st.st_size, st.st_mtime_ns]
            known = self._file_hashes.get(str(path))
            if known and known[:2] == stamp:
                keys.append(known[2])
                continue
            digest = content_hash(path)
            self._file_hashes[str(path)] = stamp + [digest]
            self._hashes_dirty = True
            keys.append(digest)
        return keys

    def save_file_hashes(self) -> None:
        """Persist the (path, size, mtime) -> hash memo if it changed."""
        if self._hashes_dirty:
            atomic_write_json(self.hashes_path, self._file_hashes)
            self._hashes_dirty = False

    # ---- rows ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index)

    def missing(self, entry_keys: list[str]) -> list[int]:
        """Positions of `entry_keys` not in the cache."""
        return [i for i, k in enumerate(entry_keys) if k not in self.index]

    def add(self, entry_keys: list[str], features: np.ndarray, commit: bool = True) -> None:
        """Append rows (float16); with `commit`, then write the index that points at them.

        Rows written but not yet in a committed index are dropped when the
        cache is next opened, so a crash between the two loses only them.
        """
        feats = np.ascontiguousarray(features, dtype=np.float16).reshape(len(entry_keys), -1)
        if self.dim is None:
            self.dim = feats.shape[1]
        if feats.shape[1] != self.dim:
            raise ValueError(f"feature width {feats.shape[1]} != cache width {self.dim}")
        start = len(self.index)
        with open(self.features_path, "ab") as fh:
            fh.write(feats.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        for offset, (key, row) in enumerate(zip(entry_keys, feats)):
            self.index[key] = [start + offset, zlib.crc32(row.tobytes())]
        if commit:
            self.commit()

    def commit(self) -> None:
        """Write the index atomically (after the rows it points at are on disk)."""
        atomic_write_json(self.index_path, {"key": fingerprint(self.key), "dim": self.dim, "rows": self.index})

    def rows(self, entry_keys: list[str]) -> np.ndarray:
        """Row numbers of `entry_keys` (all must be present)."""
        return np.array([self.index[k][0] for k in entry_keys], dtype=np.int64)

    def array(self) -> np.memmap:
        """All rows, memory-mapped read-only: `(len(self), dim)` float16."""
        return np.memmap(self.features_path, dtype=np.float16, mode="r", shape=(len(self.index), self.dim))

    def verify(self, entry_keys: list[str]) -> None:
        """Check the CRC of the rows behind `entry_keys`; raise CacheDamaged on mismatch."""
        data = self.array()
        for key in entry_keys:
            row, crc = self.index[key]
            if zlib.crc32(np.asarray(data[row]).tobytes()) != crc:
                raise CacheDamaged(f"row {row} does not match its checksum")
