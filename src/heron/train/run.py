"""The run folder: the unit of output of every task.

`runs/<name>-<timestamp>/` (or a folder the user names) holding config.json,
model.safetensors, metrics.jsonl, figures and report.html. Every file is
written atomically (temp file in the same folder, then rename), so an
interrupted run never leaves a half-written file in place of a good one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from heron._atomic import atomic_write_text

__all__ = ["RunFolder"]


class RunFolder:
    """Paths and atomic writes inside one run folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, out: str | Path | None, name: str, root: str | Path = "runs") -> "RunFolder":
        """`out` as given, or `root/<name>-<YYYYmmdd-HHMMSS>` (suffixed if it exists)."""
        if out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            base = Path(root) / f"{name}-{stamp}"
            path, n = base, 1
            while path.exists():
                n += 1
                path = Path(f"{base}-{n}")
        else:
            path = Path(out)
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
