"""Reading image files into uint8 RGB tensors, with one clear error per bad file.

Photos arrive in every format and mode a camera, a phone, a scanner or a web
page produces. `load_image` turns any of them into the one thing the models
take, a `uint8` tensor `(3, H, W)` in RGB, the way a person looking at the file
would see it:

- EXIF orientation is applied (a phone photo taken in portrait stands upright);
- transparency is composited onto white (what an image viewer shows);
- 16-bit and floating-point images are rescaled to 0..255, not clipped;
- CMYK, palette, grayscale and 1-bit images become RGB.

Anything wrong with a file (missing, empty, not an image, truncated, too many
pixels) raises `heron.errors.ImageError` with one line naming the file and the
fix; `decode_image` does the same, with the same checks and messages, for
bytes in memory or an open binary file (an HTTP upload). Nothing here changes
Pillow's global settings (`ImageFile.LOAD_TRUNCATED_IMAGES` stays off, so a
half-downloaded photo is an error rather than a silently grey picture).

Folder listing (`find_images`) looks at file names only; it never opens a file.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from heron.errors import DataError, ImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "find_images",
    "scan_files",
    "is_image_file",
    "image_size",
    "load_image",
    "decode_image",
    "try_load_image",
]

# Pillow raises DecompressionBombError above 2 * Image.MAX_IMAGE_PIXELS
# (2 * 89_478_485); heron uses the same ceiling by default (a 13_000 x 13_000
# photo is fine, a 50_000 x 50_000 "image" that would need 7.5 GB is not).
DEFAULT_MAX_PIXELS = 2 * 89_478_485

IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg", ".jpeg", ".jpe", ".jfif",
        ".png", ".webp", ".bmp", ".gif",
        ".tif", ".tiff", ".ppm", ".pgm", ".pbm",
    }
)

# Errors Pillow raises (beyond OSError) while parsing a damaged file.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)

_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}  # rotated by 90 degrees: width <-> height
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_UINT16_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


# ----------------------------------------------------------------- listing


def is_image_file(path: str | Path) -> bool:
    """True when the file name has an image extension (case-insensitive); the file is not opened."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _path_order(path: str) -> str:
    """Sort key that orders by path components ('a/b' before 'a-b/c'), as Path sorting does."""
    return path.replace(os.sep, "\0")


def scan_files(folder: str | Path, recursive: bool = True) -> tuple[list[str], list[str]]:
    """List `folder` once: (image files, other visible files) as path strings, each sorted.

    Hidden files and folders (names starting with '.') are skipped, as are
    folders already visited through a symbolic link (no infinite loops).
    Dataset discovery uses the second list to say which files it ignored.
    A missing folder, or a file given instead of one, raises `DataError`.
    Strings rather than Paths because building 100k Path objects costs more
    than the listing itself; `find_images` gives Paths.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{folder}: folder not found; check the path")
    if not folder.is_dir():
        raise DataError(f"{folder}: is a file, not a folder; pass the folder that holds the images")
    images, others = [], []
    seen = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop or a second link to the same folder
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not _is_hidden(d)] if recursive else []
        for name in filenames:
            if not _is_hidden(name):
                is_image = os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
                (images if is_image else others).append(os.path.join(dirpath, name))
    return sorted(images, key=_path_order), sorted(others, key=_path_order)


def find_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under `folder`, sorted, by extension only (nothing is decoded).

    Hidden files and folders (names starting with '.', e.g. `.ipynb_checkpoints`)
    and files without an image extension are skipped. A missing folder raises
    `DataError`.
    """
    return [Path(p) for p in scan_files(folder, recursive)[0]]


# ----------------------------------------------------------------- decoding


def _check_file(path: Path) -> None:
    """Raise ImageError for the problems visible without opening the file."""
    if not path.exists():
        raise ImageError(f"{path}: image file not found; check the path")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file; pass a file, or use find_images for a folder")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: file is empty (0 bytes); copy it again or delete it")


def _too_large(path: Path | str, width: int, height: int, max_pixels: int) -> ImageError:
    return ImageError(
        f"{path}: {width}x{height} = {width * height:,} pixels is over the limit of {max_pixels:,} "
        f"(a possible decompression bomb); shrink the image or pass a larger max_pixels"
    )


def _over_pillow_limit(path: Path | str, exc: Exception) -> ImageError:
    return ImageError(
        f"{path}: over Pillow's pixel limit ({exc}); shrink the image or raise PIL.Image.MAX_IMAGE_PIXELS"
    )


def _open(source: Path | BinaryIO, path: Path | str) -> Image.Image:
    """Image.open of a file or a binary stream, with heron's error messages naming `path`;
    Pillow's bomb warning is left to our own check."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(source)
    except Image.DecompressionBombError as exc:
        raise _over_pillow_limit(path, exc) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{path}: not an image file Pillow can read (wrong extension or damaged header); "
            f"replace or delete it"
        ) from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied; make the file readable") from None
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{path}: cannot be read ({exc}); replace or delete it") from None


def _as_hw(min_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(min_size, int):
        return min_size, min_size
    height, width = min_size
    return int(height), int(width)


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except _DECODE_ERRORS + (TypeError, KeyError):
        return 1


def _request_draft(img: Image.Image, min_size: int | tuple[int, int]) -> None:
    """Ask a JPEG decoder for the smallest DCT scale (1/2, 1/4, 1/8) still >= min_size.

    `min_size` is (height, width) of the final, upright image; for a photo
    stored sideways (EXIF orientation 5-8) the request is swapped to match the
    stored pixels. Pillow only picks a scale whose result covers the request on
    both sides, so the output is never smaller than `min_size` (unless the file
    itself is).
    """
    height, width = _as_hw(min_size)
    if _orientation(img) in _TRANSPOSED_ORIENTATIONS:
        height, width = width, height
    img.draft("RGB", (max(width, 1), max(height, 1)))


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a damaged EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(img)
    except _DECODE_ERRORS + (TypeError, KeyError):
        return img


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _rescale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """High bit-depth grayscale -> uint8 (H, W) without clipping.

    `I;16` spans 0..65535 (65535 -> 255). For 32-bit `I` and float `F`, whose
    range the file does not state: values already in 0..255 are kept, `F` in
    0..1 is multiplied by 255, `I` in 0..65535 is treated as 16-bit, anything
    else is stretched from its own minimum to its maximum.
    """
    values = values.astype(np.float64)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode in _UINT16_MODES:
        scaled = values / 257.0
    elif mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled = values * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = values
    elif mode == "I" and lo >= 0.0 and hi <= 65535.0:
        scaled = values / 257.0
    else:
        span = hi - lo
        scaled = (values - lo) * (255.0 / span) if span > 0 else np.zeros_like(values)
    return np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> uint8 array (H, W, 3) in RGB."""
    mode = img.mode
    if mode in _UINT16_MODES or mode in ("I", "F"):
        gray = _rescale_to_uint8(np.asarray(img), mode)  # (H, W)
        return np.repeat(gray[:, :, None], 3, axis=2)  # (H, W, 3)
    if mode in _ALPHA_MODES or "transparency" in img.info:
        img = _composite_on_white(img)
    elif mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)  # (H, W, 3)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the upright image from its header only (no pixel decode).

    EXIF orientations 5-8 swap the two, as `load_image` does. Raises
    `ImageError` for a missing, empty or unreadable file.
    """
    path = Path(path)
    _check_file(path)
    img = _open(path, path)
    try:
        width, height = img.size
        return (height, width) if _orientation(img) in _TRANSPOSED_ORIENTATIONS else (width, height)
    finally:
        img.close()


def load_image(
    path: str | Path,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    min_size: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """Read an image file as a uint8 RGB tensor `(3, H, W)`, upright.

    Reads JPEG, PNG, WebP, BMP, GIF (first frame), TIFF (first page) and PNM,
    in modes 1, L, LA, P (with or without transparency), RGB, RGBA, CMYK,
    I;16, I and F. Transparent pixels become white; 16-bit images are scaled
    to 8 bits (see `_rescale_to_uint8`); EXIF orientation is applied.

    Args:
        path: the image file.
        max_pixels: refuse images with more than this many pixels (width *
            height, read from the header before any decoding); None for no
            limit of heron's own (Pillow's `2 * Image.MAX_IMAGE_PIXELS` still
            applies).
        min_size: fast path for JPEGs that will be shrunk anyway (feature
            extraction on full-size photos): `int` or `(height, width)` of the
            upright image. The decoder then works at the smallest of 1/1, 1/2,
            1/4, 1/8 scale whose result is still at least `min_size` on both
            sides, several times faster than a full decode. Other formats are
            decoded at full size. None (default) always decodes at full size.

    Raises:
        ImageError: missing file, a folder, an empty file, not an image,
            truncated or corrupt data, or more than `max_pixels` pixels.
    """
    path = Path(path)
    _check_file(path)
    return _decode(path, path, max_pixels, min_size)


def _stream_size(stream: BinaryIO) -> int:
    """Bytes from the stream's position to its end; the position is kept."""
    start = stream.tell()
    end = stream.seek(0, io.SEEK_END)
    stream.seek(start)
    return end - start


def decode_image(
    data: bytes | bytearray | memoryview | BinaryIO,
    name: str = "upload",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    min_size: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """`load_image` for an image that is not a file on disk: bytes, or a seekable binary file object.

    The same decoding, checks and one-line messages as `load_image`, with
    `name` (the upload's file name, say) where those name the path. Used
    for images that arrive over the network, which never touch the disk.

    Raises:
        ImageError: empty data, not an image, truncated or corrupt data, or
            more than `max_pixels` pixels.
    """
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if _stream_size(stream) == 0:
        raise ImageError(f"{name}: file is empty (0 bytes); copy it again or delete it")
    return _decode(stream, name, max_pixels, min_size)


def _decode(
    source: Path | BinaryIO,
    path: Path | str,
    max_pixels: int | None,
    min_size: int | tuple[int, int] | None,
) -> torch.Tensor:
    """The decoding `load_image` and `decode_image` share; messages name `path`."""
    img = _open(source, path)
    try:
        width, height = img.size
        if max_pixels is not None and width * height > max_pixels:
            raise _too_large(path, width, height, max_pixels)
        if min_size is not None and img.format == "JPEG":
            _request_draft(img, min_size)
        try:
            img.load()  # full decode: a truncated or corrupt file fails here
        except Image.DecompressionBombError as exc:
            raise _over_pillow_limit(path, exc) from None
        except _DECODE_ERRORS as exc:
            raise ImageError(f"{path}: truncated or corrupt image data ({exc}); replace or delete it") from None
        upright = _upright(img)
        try:
            array = _to_rgb_array(upright)  # (H, W, 3)
        except ValueError as exc:  # e.g. LAB or HSV, which Pillow cannot turn into RGB
            message = f"colour mode {upright.mode} has no RGB conversion ({exc}); save it as RGB"
            raise ImageError(f"{path}: {message}") from None
    finally:
        img.close()
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()  # (3, H, W)


def try_load_image(
    path: str | Path,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    min_size: int | tuple[int, int] | None = None,
) -> tuple[torch.Tensor | None, str | None]:
    """`load_image` for "skip and report" callers: (tensor, None) or (None, one-line reason).

    Only `ImageError` is turned into a message; anything else (a bug, out of
    memory) still raises.
    """
    try:
        return load_image(path, max_pixels=max_pixels, min_size=min_size), None
    except ImageError as exc:
        return None, str(exc)
