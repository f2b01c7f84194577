"""Atomic file writes: a file is either the old one or the complete new one.

Every file heron writes (weights, checkpoints, figures, reports, cache
indexes) goes through here: bytes go to a temp file in the same folder, are
flushed to disk, and only then renamed over the target. An interrupted run
never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_open", "atomic_save", "atomic_write_json", "atomic_write_text"]

_UMASK = os.umask(0)
os.umask(_UMASK)


def _temp_beside(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual mode
    return tmp


def _commit(tmp: str, path: Path) -> None:
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_save(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call `write(temp_path)` (for libraries that take a file name), then rename into place."""
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        write(tmp)
        _commit(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator:
    """`with atomic_open(p, "w") as fh:` writes a temp file that replaces `p` on success."""
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        with open(tmp, mode, encoding=encoding, newline="\n" if "b" not in mode else None) as fh:
            yield fh
        _commit(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, data, indent: int | None = None) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=indent, default=str) + ("\n" if indent else ""))
