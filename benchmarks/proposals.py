"""Selective search proposals: seconds per image and recall of the true boxes, per mode, on a detection set.

Each image is resized to 416 x 416 (the detectors' input; its boxes scaled
with it) and given to `heron.ops.selective_search` in each mode, and, when
opencv-contrib is installed, to OpenCV's `ximgproc` selective search in the
matching mode, as the baseline measured in the same run. Recall is the share
of true boxes covered at IoU >= 0.5 by the first 100 / 500 / 2000 proposals.
The table is markdown.

    .venv/bin/python benchmarks/proposals.py [DATA] [--images 50] [--modes single fast quality]
    .venv/bin/python benchmarks/proposals.py --synthetic [--images 50]

DATA is any folder `heron.data.detection.load_detection` reads (default
../shared/data/bccd from the repository root); images come from its test
split first, then valid, then train. `--synthetic` writes a set of shapes
(`heron.data.synthetic.write_detection_shapes`, seed 0) to a temporary folder
and uses that instead.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine  # noqa: E402

from heron.data.detection import Annotation, load_detection  # noqa: E402
from heron.ops.selective_search import proposal_recall, selective_search  # noqa: E402

SIZE = 416
COUNTS = (100, 500, 2000)
DEFAULT_DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bccd").resolve()


def load_images(annotations: list[Annotation]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each annotation's image resized to SIZE x SIZE as uint8 RGB, with its boxes scaled to match."""
    out = []
    for ann in annotations:
        with Image.open(ann.path) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            sx, sy = SIZE / im.width, SIZE / im.height
            img = np.asarray(im.resize((SIZE, SIZE), Image.BILINEAR))
        out.append((img, ann.boxes * np.array([sx, sy, sx, sy], np.float32)))
    return out


def opencv_search(mode: str):
    """OpenCV's selective search in `mode` as a function image -> (K, 4) xyxy boxes, or None without opencv-contrib."""
    try:
        import cv2
        cv2.setNumThreads(1)
        make = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation
    except (ImportError, AttributeError):
        return None

    def run(img: np.ndarray) -> np.ndarray:
        search = make()
        search.setBaseImage(np.ascontiguousarray(img[:, :, ::-1]))  # OpenCV wants BGR
        {"single": search.switchToSingleStrategy, "fast": search.switchToSelectiveSearchFast,
         "quality": search.switchToSelectiveSearchQuality}[mode]()
        xywh = np.asarray(search.process(), np.float32).reshape(-1, 4)
        return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)[:max(COUNTS)]
    return run


def measure(name: str, search, images: list[tuple[np.ndarray, np.ndarray]]) -> str:
    """One markdown row: seconds per image, mean proposals, recall at COUNTS for `search` over `images`."""
    proposals, start = [], time.perf_counter()
    for img, _ in images:
        proposals.append(search(img))
    seconds = (time.perf_counter() - start) / len(images)
    recall = proposal_recall(proposals, [boxes for _, boxes in images], counts=COUNTS, iou=0.5)
    mean = np.mean([len(p) for p in proposals])
    cells = " | ".join(f"{recall[c]:.3f}" for c in COUNTS)
    return f"| {name} | {seconds:.2f} | {mean:.0f} | {cells} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--modes", nargs="+", default=["single", "fast", "quality"],
                        choices=["single", "fast", "quality"])
    parser.add_argument("--synthetic", action="store_true", help="use 50 seeded synthetic shape images instead")
    parser.add_argument("--no-opencv", action="store_true", help="skip the OpenCV baseline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic:
            from heron.data.synthetic import write_detection_shapes
            root = write_detection_shapes(Path(tmp) / "shapes", images=args.images, seed=0)
        else:
            root = Path(args.data)
        data = load_detection(root)
        anns = (data.test + data.valid + data.train)[:args.images]
        images = load_images(anns)
    print(machine())
    print(f"{root if not args.synthetic else 'synthetic shapes'}: {len(images)} images at {SIZE}x{SIZE}, "
          f"{sum(len(b) for _, b in images)} true boxes; recall at IoU 0.5\n")
    print("| method | s/image | proposals | " + " | ".join(f"recall@{c}" for c in COUNTS) + " |")
    print("|---|---|---|" + "---|" * len(COUNTS))
    for mode in args.modes:
        print(measure(f"heron {mode}", lambda img: selective_search(img, mode=mode, max_proposals=max(COUNTS)),
                      images), flush=True)
        theirs = None if args.no_opencv else opencv_search(mode)
        if theirs is not None:
            print(measure(f"OpenCV {mode}", theirs, images), flush=True)


if __name__ == "__main__":
    main()
