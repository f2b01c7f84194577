"""Finding and cropping the face in a photo with a bundled cascade detector.

`heron faces train --crop-faces` crops the biggest face before embedding it,
so the encoder sees faces at one scale whatever the framing of the photo.
The detector is the Viola-Jones frontal-face Haar cascade that OpenCV 4.x
wheels ship (`cv2.data.haarcascades`, no download). OpenCV 5 wheels ship no
cascade files; there, and without OpenCV, the frontal-face LBP cascade that
scikit-image ships runs through `skimage.feature.Cascade` (same boxes on the
Yale faces, about 3x slower). The detector is loaded once per process.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
from PIL import Image, ImageOps

from heron.errors import DataError, ImageError

__all__ = ["CASCADE_FILE", "crop_face", "detector_name", "find_faces", "widen"]

CASCADE_FILE = "haarcascade_frontalface_default.xml"
DETECT_MAX_SIDE = 640  # larger photos are shrunk to this for detection (boxes are scaled back): same faces, faster
SLOW_DETECT_MAX_SIDE = 320  # the same for the slower scikit-image cascade
MIN_FACE = (24, 24)  # smallest face searched for, in pixels of the (shrunk) image
Box = tuple[int, int, int, int]


@lru_cache(maxsize=1)
def _detector():
    """("opencv", CascadeClassifier) when OpenCV ships the Haar file, else ("skimage", Cascade); loaded once."""
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        path = os.path.join(getattr(getattr(cv2, "data", None), "haarcascades", ""), CASCADE_FILE)
        if os.path.isfile(path):
            cascade = cv2.CascadeClassifier(path)
            if not cascade.empty():
                return "opencv", cascade
    try:
        from skimage.data import lbp_frontal_face_cascade_filename
        from skimage.feature import Cascade
    except ImportError:
        raise DataError("face cropping needs OpenCV's face cascade: pip install 'heron[faces]'") from None
    return "skimage", Cascade(lbp_frontal_face_cascade_filename())


def detector_name() -> str:
    """Which cascade `find_faces` uses here: "opencv" (Haar) or "skimage" (LBP)."""
    return _detector()[0]


def _grey(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W) luminance of an (H, W, 3) RGB or (H, W) grey image."""
    image = np.asarray(rgb)
    if image.ndim == 3:
        image = image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8))


def _shrink(grey: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image at most `max_side` on its long side, and the factor that maps boxes back."""
    scale = max_side / max(grey.shape)
    if scale >= 1:
        return grey, 1.0
    size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
    small = Image.fromarray(grey).resize(size, Image.BOX)
    return np.asarray(small), 1.0 / scale


def _equalize(grey: np.ndarray) -> np.ndarray:
    """Histogram equalisation: the cascades were trained on contrast-normalised windows."""
    return np.asarray(ImageOps.equalize(Image.fromarray(grey)))


def _detect(grey: np.ndarray) -> np.ndarray:
    """(n, 4) boxes as (x, y, w, h) in `grey`'s pixels, any order."""
    kind, cascade = _detector()
    if kind == "opencv":
        found = cascade.detectMultiScale(_equalize(grey), scaleFactor=1.1, minNeighbors=5, minSize=MIN_FACE)
        return np.asarray(found, dtype=np.int64).reshape(-1, 4)
    found = cascade.detect_multi_scale(img=grey, scale_factor=1.2, step_ratio=1, min_size=MIN_FACE,
                                       max_size=grey.shape, min_neighbor_number=4)
    return np.array([(f["c"], f["r"], f["width"], f["height"]) for f in found], dtype=np.int64).reshape(-1, 4)


def find_faces(rgb: np.ndarray) -> list[Box]:
    """Faces in an (H, W, 3) uint8 RGB image as `(x1, y1, x2, y2)` pixel boxes, biggest first.

    An empty list when the cascade finds none. Grey (H, W) images work too.
    """
    max_side = DETECT_MAX_SIDE if _detector()[0] == "opencv" else SLOW_DETECT_MAX_SIDE
    full = _grey(rgb)
    grey, back = _shrink(full, max_side)
    height, width = full.shape
    boxes = [(max(0, round(x * back)), max(0, round(y * back)), min(width, round((x + w) * back)),
              min(height, round((y + h) * back))) for x, y, w, h in _detect(grey)]
    return _one_per_face(sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True))


def _one_per_face(boxes: list[Box]) -> list[Box]:
    """Drop a box whose centre lies inside a bigger kept box (one face found at two scales)."""
    kept: list[Box] = []
    for box in boxes:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if not any(k[0] <= cx <= k[2] and k[1] <= cy <= k[3] for k in kept):
            kept.append(box)
    return kept


def widen(box: Box, margin: float, width: int, height: int) -> Box:
    """`box` grown by `margin` of its own width/height on every side, clipped to the image."""
    x1, y1, x2, y2 = box
    dx, dy = round((x2 - x1) * margin), round((y2 - y1) * margin)
    return max(0, x1 - dx), max(0, y1 - dy), min(width, x2 + dx), min(height, y2 + dy)


def crop_face(rgb: np.ndarray, margin: float = 0.2, path_for_errors: str = "") -> np.ndarray:
    """The biggest face of an (H, W, 3) uint8 RGB image, widened by `margin`, as a new array.

    Raises ImageError naming `path_for_errors` when no face is found.
    """
    image = np.asarray(rgb)
    faces = find_faces(image)
    if not faces:
        where = path_for_errors or "image"
        raise ImageError(f"{where}: no face found by the face detector; "
                         "pass a photo with a visible face or drop --crop-faces")
    x1, y1, x2, y2 = widen(faces[0], margin, image.shape[1], image.shape[0])
    return np.ascontiguousarray(image[y1:y2, x1:x2])
