"""Face finding and cropping: the astronaut photo bundled with scikit-image has one face.

Both detectors are checked where they can run: OpenCV's Haar cascade when the
installed wheel ships it (OpenCV 4.x wheels do, 5.x wheels do not), and the
scikit-image LBP cascade used otherwise.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from heron.errors import DataError, ImageError
from heron.tasks.faces import crop

# The astronaut's face, marked by hand on the 512 x 512 photo: (x1, y1, x2, y2).
FACE = (175, 60, 265, 170)


@pytest.fixture
def astronaut():
    import skimage.data

    return skimage.data.astronaut()


def _haar_available() -> bool:
    try:
        import cv2
    except ImportError:
        return False
    import os

    return os.path.isfile(os.path.join(cv2.data.haarcascades, crop.CASCADE_FILE))


@pytest.fixture(params=["opencv", "skimage"])
def detector(request, monkeypatch):
    """Run the test with each detector: OpenCV hidden for the scikit-image one."""
    if request.param == "opencv" and not _haar_available():
        pytest.skip("the installed OpenCV ships no Haar cascade files (OpenCV 5 wheels do not); "
                    "pip install 'opencv-python-headless<5' to test that detector")
    if request.param == "skimage":
        monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 raises ImportError
    crop._detector.cache_clear()
    yield request.param
    crop._detector.cache_clear()


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_finds_the_astronauts_face(astronaut, detector):
    faces = crop.find_faces(astronaut)
    assert crop.detector_name() == detector
    assert faces and _iou(faces[0], FACE) > 0.5
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in faces]
    assert areas == sorted(areas, reverse=True)


def test_crop_face_returns_the_widened_biggest_face(astronaut, detector):
    x1, y1, x2, y2 = crop.find_faces(astronaut)[0]
    face = crop.crop_face(astronaut, margin=0.2)
    dx, dy = round((x2 - x1) * 0.2), round((y2 - y1) * 0.2)
    assert face.shape == (y2 - y1 + 2 * dy, x2 - x1 + 2 * dx, 3) and face.dtype == np.uint8
    np.testing.assert_array_equal(face, astronaut[y1 - dy:y2 + dy, x1 - dx:x2 + dx])


def test_a_photo_with_no_face_names_the_file_and_the_fix(detector):
    noise = np.random.default_rng(0).integers(0, 256, (160, 200, 3), dtype=np.uint8)
    with pytest.raises(ImageError) as err:
        crop.crop_face(noise, path_for_errors="holiday/beach.png")
    assert str(err.value).startswith("holiday/beach.png: no face found")
    assert "drop --crop-faces" in str(err.value)
    assert crop.find_faces(np.full((120, 120, 3), 128, np.uint8)) == []


def test_grey_and_large_photos_find_the_same_face(astronaut, detector):
    from PIL import Image

    grey = np.asarray(Image.fromarray(astronaut).convert("L"))
    assert _iou(crop.find_faces(grey)[0], FACE) > 0.5
    big = np.asarray(Image.fromarray(astronaut).resize((1024, 1024)))  # shrunk for detection, boxes scaled back
    box = crop.find_faces(big)[0]
    assert _iou(tuple(v / 2 for v in box), FACE) > 0.5


def test_widen_clips_to_the_image():
    assert crop.widen((0, 10, 50, 60), 0.2, 100, 70) == (0, 0, 60, 70)


def test_without_any_detector_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    monkeypatch.setitem(sys.modules, "skimage.feature", None)
    crop._detector.cache_clear()
    try:
        with pytest.raises(DataError, match=r"pip install 'heron\[faces\]'"):
            crop.find_faces(np.zeros((50, 50, 3), np.uint8))
    finally:
        crop._detector.cache_clear()
