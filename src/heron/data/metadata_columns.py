"""A file's metadata as the second input of a model: `heron train --metadata size,aspect,...`.

The seeds' fisheries model took the image size next to the image, one-hot
encoded, and concatenated it to the convolutional features before the last
dense layer. `MetadataEncoder` turns the header fields of
`heron.data.metadata` (read without decoding pixels) into such a column block:

- a categorical field (size "WxH", format, mode, camera, dpi, header blocks)
  becomes one-hot columns for the values at least `min_count` training images
  share (the `max_values` most common), plus one column for every other value:
  a value seen once cannot be learned and would only widen the layer;
- a numeric field (width, height, aspect ratio, file size, bytes per pixel,
  JPEG quality, timestamp) becomes one standardised column (sizes on a log
  scale, as they span orders of magnitude), with a second column flagging a
  missing value where a field can be absent (no EXIF time, not a JPEG).

It is fitted on the training files alone and saved with the run
(`to_dict`), so prediction encodes a new file exactly as training did.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from heron.data.metadata import CATEGORICAL_FIELDS, NUMERIC_FIELDS, FileMeta, scan_headers

__all__ = ["FIELDS", "ALIASES", "parse_fields", "MetadataEncoder"]

FIELDS = tuple(NUMERIC_FIELDS) + tuple(CATEGORICAL_FIELDS)
ALIASES = {"aspect": "aspect_ratio", "bpp": "bytes_per_pixel", "quality": "jpeg_quality", "time": "timestamp",
           "exif": "camera", "blocks": "header_blocks", "filesize": "file_size"}
_LOG_SCALED = {"width", "height", "file_size", "bytes_per_pixel"}
_OPTIONAL = {"timestamp", "jpeg_quality", "aspect_ratio", "bytes_per_pixel"}  # may be missing: a flag column
_OTHER = "(other)"


def parse_fields(text: str | Sequence[str]) -> list[str]:
    """'size,aspect' (or a list) -> canonical field names, in order, without repeats; ValueError on unknown."""
    names = text.split(",") if isinstance(text, str) else list(text)
    fields: list[str] = []
    for raw in names:
        name = ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if not name:
            continue
        if name not in FIELDS:
            raise ValueError(f"unknown metadata field {raw.strip()!r}; choose from {', '.join(FIELDS)} "
                             f"(or {', '.join(ALIASES)})")
        if name not in fields:
            fields.append(name)
    if not fields:
        raise ValueError("no metadata field given; for example --metadata size,aspect")
    return fields


@dataclass
class MetadataEncoder:
    """Header fields -> float32 columns `(N, width)`; fitted on the training files (`fit`)."""

    fields: list[str]
    numeric: dict[str, list[float]] = field(default_factory=dict)  # name -> [mean, std] of the scaled value
    vocab: dict[str, list[str]] = field(default_factory=dict)  # name -> the values with their own column
    min_count: int = 2
    max_values: int = 32

    @classmethod
    def fit(cls, fields: Sequence[str], metas: Sequence[FileMeta], min_count: int = 2,
            max_values: int = 32) -> "MetadataEncoder":
        """The columns the training files' values call for (`fields`: names or aliases, see `parse_fields`)."""
        encoder = cls(parse_fields(fields), min_count=min_count, max_values=max_values)
        for name in encoder.fields:
            if name in NUMERIC_FIELDS:
                values = encoder._scaled(name, metas)
                seen = values[~np.isnan(values)]
                mean = float(seen.mean()) if len(seen) else 0.0
                std = float(seen.std()) if len(seen) else 0.0
                encoder.numeric[name] = [mean, std if std > 1e-12 else 1.0]
            else:
                counts = Counter(CATEGORICAL_FIELDS[name](m) for m in metas)
                common = [v for v, n in counts.most_common(max_values) if n >= min_count]
                encoder.vocab[name] = sorted(common)
        return encoder

    @staticmethod
    def _scaled(name: str, metas: Sequence[FileMeta]) -> np.ndarray:
        values = np.array([NUMERIC_FIELDS[name](m) if m.error is None else math.nan for m in metas], dtype=np.float64)
        return np.log1p(np.maximum(values, 0.0)) if name in _LOG_SCALED else values

    def columns(self) -> list[str]:
        """The name of each output column, e.g. "size=640x480", "size=(other)", "aspect_ratio", "timestamp:missing"."""
        names: list[str] = []
        for name in self.fields:
            if name in self.numeric:
                names += [name] + ([f"{name}:missing"] if name in _OPTIONAL else [])
            else:
                names += [f"{name}={v}" for v in self.vocab[name]] + [f"{name}={_OTHER}"]
        return names

    @property
    def width(self) -> int:
        return len(self.columns())

    def transform(self, metas: Sequence[FileMeta]) -> np.ndarray:
        """float32 `(len(metas), width)`; a file whose header could not be read is all zeros."""
        blocks = []
        for name in self.fields:
            if name in self.numeric:
                mean, std = self.numeric[name]
                values = (self._scaled(name, metas) - mean) / std
                missing = np.isnan(values)
                blocks.append(np.where(missing, 0.0, values)[:, None])
                if name in _OPTIONAL:
                    blocks.append(missing[:, None].astype(np.float64))
            else:
                index = {v: i for i, v in enumerate(self.vocab[name])}
                hot = np.zeros((len(metas), len(index) + 1))
                for row, m in enumerate(metas):
                    if m.error is None:
                        hot[row, index.get(CATEGORICAL_FIELDS[name](m), len(index))] = 1.0
                blocks.append(hot)
        return np.concatenate(blocks, axis=1).astype(np.float32) if blocks else np.zeros((len(metas), 0), np.float32)

    def encode_paths(self, paths: Sequence[str | os.PathLike], progress: bool = False) -> np.ndarray:
        """`transform` of the files' headers, read one at a time (no pixel is decoded)."""
        return self.transform(list(scan_headers(paths, progress=progress)))

    def describe(self) -> str:
        """'size (5 values + other), aspect_ratio': what the model was given, for reports."""
        parts = []
        for name in self.fields:
            count = len(self.vocab.get(name, ()))
            parts.append(name if name in self.numeric else f"{name} ({count} value{'s' * (count != 1)} + other)")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {"fields": self.fields, "numeric": self.numeric, "vocab": self.vocab, "min_count": self.min_count,
                "max_values": self.max_values}

    @classmethod
    def from_dict(cls, data: dict) -> "MetadataEncoder":
        return cls(list(data["fields"]), {k: list(v) for k, v in data.get("numeric", {}).items()},
                   {k: list(v) for k, v in data.get("vocab", {}).items()}, int(data.get("min_count", 2)),
                   int(data.get("max_values", 32)))
