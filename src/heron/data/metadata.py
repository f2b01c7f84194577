"""What a dataset's files say besides their pixels: a streaming scan for leakage checks.

Two passes, both one file at a time, so 100k files need no more memory than
their records:

- `read_header` opens a file lazily (Pillow reads the header only): size,
  format, colour mode, file size, EXIF camera make/model and timestamp, and
  what betrays the software that wrote it (JPEG quality, dpi, which header
  blocks are present). No pixel is decoded, so a truncated photo still has
  its header fields.
- `pixel_stats` decodes each file once, at JPEG draft scale, in single-threaded
  DataLoader workers, for what needs pixels: the mean colour, a 64-bit
  perceptual hash (DCT hash, `phash`) that survives resizing and re-encoding,
  and a digest of the file's bytes (identical copies).

`scan_metadata` runs both and returns one `FileMeta` per path; files Pillow
cannot open carry `error`, files whose pixels cannot be decoded carry
`pixel_error`, and neither stops the scan.
"""

from __future__ import annotations

import calendar
import math
import hashlib
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from heron.data.images import _DECODE_ERRORS, _EXIF_ORIENTATION, _TRANSPOSED_ORIENTATIONS, try_load_image
from heron.data.loader import _single_thread_worker, default_workers

__all__ = ["FileMeta", "NUMERIC_FIELDS", "CATEGORICAL_FIELDS", "HASH_BITS", "hamming", "phash", "image_phash", "read_header", "scan_headers",
           "pixel_stats", "scan_metadata"]

HASH_BITS = 64
_HASH_SIDE = 32  # the hash looks at a 32x32 grey thumbnail; JPEGs decode at the draft scale just above it
_FLAT_STD = 1.0  # a grey thumbnail flatter than this (0..255) has no structure to hash
_OPEN_ERRORS = _DECODE_ERRORS + (TypeError, KeyError)

# EXIF tags (TIFF 6.0 / EXIF 2.3 numbers)
_MAKE, _MODEL, _DATETIME = 0x010F, 0x0110, 0x0132
_EXIF_IFD, _DATETIME_ORIGINAL = 0x8769, 0x9003

# The IJG (libjpeg) luminance table at quality 50; every quality scales it (Annex K of ITU T.81).
_IJG_LUMA_SUM = sum((
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
))
_BLOCKS = (("jfif", "jfif"), ("exif", "exif"), ("adobe", "adobe"), ("photoshop", "photoshop"),
           ("icc_profile", "icc"), ("xmp", "xmp"), ("comment", "comment"), ("progressive", "progressive"))


@dataclass(slots=True)
class FileMeta:
    """One file's metadata. `width`/`height` are of the upright image (EXIF orientation applied).

    Header fields come from `read_header`; `mean_rgb`, `phash`, `digest` and
    `pixel_error` from `pixel_stats` (None until it ran, or when it failed).
    """

    path: str
    file_size: int = 0
    width: int = 0
    height: int = 0
    format: str = ""
    mode: str = ""
    make: str | None = None
    model: str | None = None
    taken: str | None = None  # EXIF DateTimeOriginal, else DateTime, as written ("2019:05:01 12:00:00")
    jpeg_quality: float | None = None  # estimated from the luminance quantization table (IJG scale 1..100)
    dpi: str | None = None  # "72x72" as the header states it
    blocks: str = ""  # header blocks present, e.g. "jfif+exif+icc": a fingerprint of the software that wrote it
    error: str | None = None  # the header could not be read: nothing else is known
    mean_rgb: tuple[float, float, float] | None = None
    phash: int | None = None
    digest: str | None = None
    pixel_error: str | None = None

    @property
    def taken_at(self) -> float | None:
        """`taken` as seconds since 1970 (the camera's clock, read as UTC); None if absent or malformed."""
        if not self.taken:
            return None
        try:
            return float(calendar.timegm(time.strptime(self.taken.strip()[:19], "%Y:%m:%d %H:%M:%S")))
        except ValueError:
            return None

    @property
    def camera(self) -> str | None:
        """'Make Model' from EXIF (make left out when the model already starts with it), None without either."""
        make, model = self.make or "", self.model or ""
        if model.lower().startswith(make.lower()):
            make = ""
        text = f"{make} {model}".strip()
        return text or None


# What a file's metadata says, as named columns: numbers, and values to count.
NUMERIC_FIELDS: dict[str, Callable[[FileMeta], float]] = {
    "width": lambda m: m.width,
    "height": lambda m: m.height,
    "aspect_ratio": lambda m: m.width / m.height if m.height else math.nan,
    "file_size": lambda m: m.file_size,
    "bytes_per_pixel": lambda m: m.file_size / (m.width * m.height) if m.width * m.height else math.nan,
    "timestamp": lambda m: math.nan if m.taken_at is None else m.taken_at,
    "jpeg_quality": lambda m: math.nan if m.jpeg_quality is None else m.jpeg_quality,
}
CATEGORICAL_FIELDS: dict[str, Callable[[FileMeta], str]] = {
    "size": lambda m: f"{m.width}x{m.height}",
    "format": lambda m: m.format or "unknown",
    "mode": lambda m: m.mode or "unknown",
    "camera": lambda m: m.camera or "(no EXIF camera)",
    "dpi": lambda m: m.dpi or "(none)",
    "header_blocks": lambda m: m.blocks,
}


# ------------------------------------------------------------------ headers


def _text(value: object) -> str | None:
    """An EXIF string field, cleaned (NULs and padding removed, at most 64 characters)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = str(value).replace("\x00", " ").strip()
    return text[:64] or None


def _exif_fields(img: Image.Image) -> tuple[str | None, str | None, str | None, int]:
    """(make, model, timestamp, orientation) from the header's EXIF, without decoding pixels.

    PNG keeps EXIF in an eXIf chunk; Pillow's `getexif` would decode the whole
    image to look for one after the pixel data, so a PNG counts only the
    chunks read with the header.
    """
    if img.format == "PNG" and "exif" not in img.info and "Raw profile type exif" not in img.info:
        return None, None, None, 1
    try:
        exif = img.getexif()
        taken = exif.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
        orientation = int(exif.get(_EXIF_ORIENTATION, 1) or 1)
    except _OPEN_ERRORS:
        return None, None, None, 1
    return _text(exif.get(_MAKE)), _text(exif.get(_MODEL)), _text(taken), orientation


def _jpeg_quality(img: Image.Image) -> float | None:
    """The IJG quality (1..100) whose scaled table has the luminance table's sum; None without one.

    Quality q scales the base table by s = 5000/q (q < 50) or 200 - 2q, in
    percent; the sum ratio gives s, whatever order the table is stored in.
    """
    tables = getattr(img, "quantization", None)
    if not tables or 0 not in tables:
        return None
    scale = 100.0 * sum(tables[0]) / _IJG_LUMA_SUM
    quality = 100.0 - scale / 2.0 if scale <= 100.0 else 5000.0 / scale
    return round(min(100.0, max(1.0, quality)), 1)


def _dpi(img: Image.Image) -> str | None:
    dpi = img.info.get("dpi")
    try:
        return f"{round(float(dpi[0]))}x{round(float(dpi[1]))}" if dpi else None
    except (TypeError, ValueError, IndexError):
        return None


def _blocks(img: Image.Image) -> str:
    """Which optional header blocks the file carries, joined by '+', as one fingerprint."""
    return "+".join(name for key, name in _BLOCKS if img.info.get(key)) or "none"


def read_header(path: str | os.PathLike) -> FileMeta:
    """The header fields of one file; a file Pillow cannot open comes back with `error` set."""
    path = os.fspath(path)
    meta = FileMeta(path)
    try:
        meta.file_size = os.stat(path).st_size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # lazy: reads the header, not the pixels
                width, height = img.size
                meta.format, meta.mode = img.format or "", img.mode
                meta.make, meta.model, meta.taken, orientation = _exif_fields(img)
                meta.jpeg_quality, meta.dpi, meta.blocks = _jpeg_quality(img), _dpi(img), _blocks(img)
    except UnidentifiedImageError:
        meta.error = f"{path}: not an image file Pillow can read (wrong extension or damaged header)"
        return meta
    except (Image.DecompressionBombError, *_OPEN_ERRORS) as exc:
        meta.error = f"{path}: cannot be read ({exc})"
        return meta
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    meta.width, meta.height = width, height
    return meta


def scan_headers(paths: Sequence[str | os.PathLike], progress: bool = False) -> Iterator[FileMeta]:
    """`read_header` over `paths`, lazily, in order (a progress bar on stderr when `progress`)."""
    from tqdm.auto import tqdm

    for path in tqdm(paths, desc="headers", unit="file", disable=not progress, leave=False):
        yield read_header(path)


# ------------------------------------------------------------ perceptual hash


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix (n, n): `C @ x` is the DCT of a column vector x."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT = _dct_matrix(_HASH_SIDE)


def phash(gray: np.ndarray) -> int:
    """64-bit DCT hash of a (32, 32) grey image: which low frequencies are above their median.

    The 2-D DCT's 8x8 corner of lowest frequencies, without the constant term
    (63 values) and with frequency (0, 8), are compared with their median;
    bit 63 is the first. Low frequencies are what survives resizing, JPEG
    re-encoding and small colour changes, so near-duplicates differ in a few
    bits while unrelated images differ in about half of them.
    """
    if gray.shape != (_HASH_SIDE, _HASH_SIDE):
        raise ValueError(f"phash needs a ({_HASH_SIDE}, {_HASH_SIDE}) image, got {gray.shape}")
    coeffs = _DCT @ gray.astype(np.float64) @ _DCT.T  # (32, 32)
    low = np.concatenate([coeffs[:8, :8].ravel()[1:], coeffs[:1, 8]])  # (64,)
    bits = low > np.median(low)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _grey_thumbnail(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float (32, 32) luma, by area averaging."""
    img = Image.fromarray(rgb).convert("L").resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.float64)


def image_phash(rgb: np.ndarray) -> int | None:
    """`phash` of a uint8 RGB image (H, W, 3); None for a flat image, which has nothing to hash."""
    gray = _grey_thumbnail(rgb)
    if gray.std() < _FLAT_STD:
        return None
    return phash(gray)


def hamming(a: int, b: int) -> int:
    """Bits in which two hashes differ."""
    return (a ^ b).bit_count()


# --------------------------------------------------------------- pixel pass


def _file_digest(path: str) -> str:
    """blake2b-128 of the file's bytes: equal digests are identical files."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _PixelPass(Dataset):
    """Item i -> (i, mean RGB | None, phash | None, digest | None, error | None); one decode per file."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        try:
            digest = _file_digest(path)
        except OSError as exc:
            return index, None, None, None, f"{path}: cannot be read ({exc})"
        img, error = try_load_image(path, min_size=_HASH_SIDE)  # JPEG: draft-decoded near 32 px
        if img is None:
            return index, None, None, digest, error
        rgb = img.permute(1, 2, 0).numpy()  # (H, W, 3)
        mean = tuple(float(v) for v in rgb.reshape(-1, 3).mean(axis=0))
        return index, mean, image_phash(rgb), digest, None


def pixel_stats(paths: Sequence[str | os.PathLike], workers: int | None = None, batch_size: int = 64,
                progress: bool = False) -> Iterator[tuple[int, tuple | None, int | None, str | None, str | None]]:
    """(index, mean RGB, phash, digest, error) for every path, in order, decoded in worker processes.

    `workers` None: one fewer than the cores (`default_workers`); fewer than
    two batches decode in this process, which is quicker than starting workers.
    """
    from tqdm.auto import tqdm

    dataset = _PixelPass([os.fspath(p) for p in paths])
    workers = default_workers() if workers is None else workers
    if len(dataset) <= batch_size:
        workers = 0
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=list,
                        worker_init_fn=_single_thread_worker if workers else None,
                        prefetch_factor=4 if workers else None)
    with tqdm(total=len(dataset), desc="pixels", unit="img", disable=not progress, leave=False) as bar:
        for batch in loader:
            yield from batch
            bar.update(len(batch))


def scan_metadata(paths: Sequence[str | os.PathLike], workers: int | None = None, pixels: bool = True,
                  progress: bool = False) -> list[FileMeta]:
    """One `FileMeta` per path: the header scan, then (if `pixels`) the pixel pass on readable files."""
    metas = list(scan_headers(paths, progress=progress))
    if not pixels:
        return metas
    readable = [m for m in metas if m.error is None]
    for index, mean, hash_, digest, error in pixel_stats([m.path for m in readable], workers, progress=progress):
        meta = readable[index]
        meta.mean_rgb, meta.phash, meta.digest, meta.pixel_error = mean, hash_, digest, error
    return metas
