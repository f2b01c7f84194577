"""The run folder: the unit of output of every task.

`runs/<name>-<timestamp>/` (or a folder the user names) holding config.json,
model.safetensors, metrics.jsonl, figures and report.html. Every file is
written atomically (temp file in the same folder, then rename), so an
interrupted run never leaves a half-written file in place of a good one.

A folder holds one run. Naming a folder that already holds one is refused
unless the caller resumes it or asks to overwrite it: a second run never
mixes its epochs into the first one's metrics or replaces its model silently.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from heron._atomic import atomic_write_text
from heron.errors import TrainingError

__all__ = ["RunFolder"]


class RunFolder:
    """Paths and atomic writes inside one run folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, out: str | Path | None, name: str, root: str | Path = "runs",
               overwrite: bool = False, resume: bool = False) -> "RunFolder":
        """`out` as given, or `root/<name>-<YYYYmmdd-HHMMSS>` (suffixed if it exists).

        An `out` that already holds files is refused (TrainingError naming
        --resume and --overwrite) unless `resume` continues it or `overwrite`
        empties it first; only a heron run folder (one with config.json) is
        ever emptied.
        """
        if out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            base = Path(root) / f"{name}-{stamp}"
            path, n = base, 1
            while path.exists():
                n += 1
                path = Path(f"{base}-{n}")
        else:
            path = Path(out)
            if not resume and _holds_files(path):
                _make_room(path, overwrite)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write_text(self.path / name, text)

    def write_json(self, name: str, data) -> Path:
        return self.write_text(name, json.dumps(data, indent=2, default=str) + "\n")

    def read_json(self, name: str):
        with open(self.path / name, encoding="utf-8") as fh:
            return json.load(fh)

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()


def _holds_files(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _make_room(path: Path, overwrite: bool) -> None:
    """Empty a finished or interrupted run folder when asked to; refuse anything else."""
    is_run = (path / "config.json").is_file()
    if not overwrite:
        what = "a run" if is_run else "files"
        raise TrainingError(f"{path}: already holds {what}; continue it with --resume, replace it with "
                            "--overwrite, or pick another --out")
    if not is_run:
        raise TrainingError(f"{path}: holds files but no config.json, so it is not a heron run folder; "
                            "--overwrite only replaces run folders; pick another --out")
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
