"""YOLO, R-CNN, Fast R-CNN and Faster R-CNN side by side: training time, inference images/s, mAP, one run.

For each data set (the synthetic shapes, written here, and an annotated
folder such as ../shared/data/bccd) and each method, `heron detect train`'s
recipe runs with its defaults (416 px input, frozen EfficientNet-Lite0 trunk)
from an empty feature cache of its own, so each training time includes the
method's own trunk passes and proposals. mAP@0.5 and COCO mAP@[.5:.95] are
the validation scores training reports. Inference images/s is
`heron.tasks.detect.predict` on up to `--timed` validation files, decoding,
proposals and post-processing included, after one warm-up image.

    .venv/bin/python benchmarks/detectors.py [DATA ...] [--synthetic 300] [--methods yolo rcnn ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine  # noqa: E402

from heron.config import DETECT_METHODS, DetectConfig  # noqa: E402
from heron.data.detection import load_detection  # noqa: E402
from heron.data.synthetic import write_detection_shapes  # noqa: E402
from heron.tasks.detect import load_detector, predict, train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def images_per_second(run: Path, paths: list[Path]) -> float:
    detector = load_detector(run)
    list(predict(detector, paths[:1]))  # warm-up: first calls allocate
    started = time.perf_counter()
    for _ in predict(detector, paths, batch_size=8, workers=0):
        pass
    return len(paths) / (time.perf_counter() - started)


def measure(data: Path, method: str, work: Path, timed: int) -> dict:
    config = DetectConfig(data=str(data), method=method, out=str(work / f"run-{method}"), overwrite=True,
                          cache_dir=str(work / f"cache-{method}"), quiet=True, engine="torch")
    started = time.perf_counter()
    run = train(config)
    seconds = time.perf_counter() - started
    split = load_detection(data, valid_pct=config.valid_pct, seed=config.seed)
    paths = [a.path for a in split.valid][:timed]
    return {"method": method, "train_s": seconds, "fps": images_per_second(run.path, paths),
            "map50": run.metrics["map50"], "map": run.metrics["map"]}


def table(name: str, rows: list[dict]) -> str:
    lines = [f"### {name}", "", "| method | training s | inference images/s | mAP@0.5 | COCO mAP |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['train_s']:.0f} | {r['fps']:.2f} | {r['map50']:.3f} | {r['map']:.3f} |"
              for r in rows]
    by = {r["method"]: r for r in rows}
    if all(m in by for m in ("rcnn", "fast-rcnn", "faster-rcnn")):
        fps = [by[m]["fps"] for m in ("rcnn", "fast-rcnn", "faster-rcnn")]
        held = fps[0] < fps[1] < fps[2]
        lines += ["", f"inference speed-ups: fast-rcnn / rcnn {fps[1] / fps[0]:.1f}x, faster-rcnn / fast-rcnn "
                  f"{fps[2] / fps[1]:.1f}x; the seeds' ordering (R-CNN slowest, Faster fastest) "
                  f"{'holds' if held else 'does not hold'}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*", default=[str(REPO.parent / "shared" / "data" / "bccd")])
    parser.add_argument("--synthetic", type=int, default=300, help="synthetic images (0: none)")
    parser.add_argument("--methods", nargs="+", default=list(DETECT_METHODS), choices=DETECT_METHODS)
    parser.add_argument("--timed", type=int, default=16, help="validation images timed per method")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sets = [Path(d) for d in args.data]
        if args.synthetic:
            sets.insert(0, write_detection_shapes(work / "shapes", images=args.synthetic, seed=0))
        for data in sets:
            rows = []
            for method in args.methods:
                rows.append(measure(data, method, work / data.name, args.timed))
                r = rows[-1]
                print(f"  {data.name} {method}: {r['train_s']:.0f} s, {r['fps']:.2f} img/s, "
                      f"mAP@0.5 {r['map50']:.3f}, mAP {r['map']:.3f}", flush=True)
            print(table(f"{data.name} ({'synthetic shapes' if data.name == 'shapes' else data})", rows), flush=True)


if __name__ == "__main__":
    main()
