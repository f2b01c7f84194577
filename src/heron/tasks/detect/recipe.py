"""Train, score and use a detector: `heron detect train | predict | evaluate | demo`.

What follows is the one-stage recipe; `--method rcnn | fast-rcnn |
faster-rcnn` swaps the head and its training for a region-based one
(`heron.tasks.detect.two_stage`) and keeps the rest: data, cache, scores,
run folder, predict and evaluate.

The recipe, as classification has it: the pretrained trunk (frozen) runs
once per image and its maps are kept in the feature cache; anchors are
chosen by k-means on the training boxes; the YOLO head trains on the cached
maps in seconds per epoch; the validation images are decoded, filtered by
class-wise NMS and scored (mAP@0.5 and COCO mAP@[.5:.95]); the run folder
gets config.json, model.safetensors, metrics.jsonl, figures and report.html.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from heron.config import DetectConfig
from heron.data.images import image_size
from heron.data.transforms import Preprocessing
from heron.errors import DataError, TrainingError
from heron.models import load_weights, save_weights
from heron.tasks.detect.postprocess import Detection, select_detections
from heron.tasks.detect.truth import annotation_size, input_boxes, labels_of, mirror_boxes, truth_dict
from heron.tasks.detect.yolo import YoloHead, YoloLoss, decode, encode_targets, pack_targets
from heron.train import Checkpoint, Learner, MetricsLogger
from heron.train.learner import resolve_device
from heron.train.run import RunFolder
from heron.transfer.extract import FeatureBatches
from heron.transfer.maps import cached_maps, map_trunk
from heron.transfer.model import ClassifierModel

__all__ = ["DetectRun", "Detector", "train", "load_detector", "predict", "evaluate", "EVAL_SCORE_THRESHOLD"]

EVAL_SCORE_THRESHOLD = 0.001  # mAP integrates over every score: keep the low ones when scoring
MAX_BOXES = 100  # true boxes kept per image for the loss (more are rare; the targets stay a fixed width)


@dataclass
class DetectRun:
    """A finished detection run: its folder, classes and validation scores."""

    path: Path
    classes: list[str]
    metrics: dict
    history: list[dict] = field(default_factory=list)


@dataclass
class Detector:
    """A trained detector: the network (trunk + YOLO head), its anchors, classes and preprocessing."""

    model: ClassifierModel
    anchors: torch.Tensor  # (A, 2) width, height in input pixels
    classes: list[str]
    pre: Preprocessing
    score_threshold: float = 0.3
    iou_threshold: float = 0.45
    precision: str = "fp32"  # resolved: the network runs under bf16 autocast where the CPU has it natively

    def detect_batch(self, images: torch.Tensor, sizes: list[tuple[int, int]], score_threshold: float | None = None
                     ) -> list[Detection]:
        """Detections in original pixels for `images uint8 Tensor[N, 3, H, W]` at the input size.

        `sizes`: each image's original (width, height), to map boxes back.
        """
        from heron.nn.precision import autocast

        self.model.eval()
        with torch.inference_mode(), autocast(self.precision, images.device):
            out = self.model(images.float().div_(255.0)).float()
        return self.detections(out, sizes, score_threshold)

    def detections(self, out: torch.Tensor, sizes: list[tuple[int, int]], score_threshold: float | None = None
                   ) -> list[Detection]:
        """Raw head output `(N, A*(5+C), h, w)` -> one `Detection` per image, in original pixels."""
        threshold = self.score_threshold if score_threshold is None else score_threshold
        boxes, objectness, probs = decode(out, self.anchors, self.pre.size)
        height, width = self.pre.size
        results = []
        for i, (w, h) in enumerate(sizes):
            found = select_detections(boxes[i], objectness[i], probs[i], threshold, self.iou_threshold)
            found.boxes[:, 0::2] = found.boxes[:, 0::2].clamp(0, width)
            found.boxes[:, 1::2] = found.boxes[:, 1::2].clamp(0, height)
            results.append(found.scaled(w / width, h / height))
        return results


# ---- training ------------------------------------------------------------------------------


def choose_anchors(annotations, input_size: tuple[int, int], k: int, seed: int) -> torch.Tensor:
    """Anchor shapes `(k, 2)` in input pixels: k-means (1 - IoU) on the training boxes' widths and heights."""
    from heron.ops.anchors import kmeans_anchors

    boxes = torch.cat([input_boxes(a, input_size) for a in annotations] or [torch.zeros(0, 4)])
    wh = boxes[:, 2:] - boxes[:, :2]
    wh = wh[(wh > 0).all(1)]
    try:
        return kmeans_anchors(wh, k, seed=seed)
    except ValueError as err:
        raise DataError(f"{len(wh)} training boxes cannot give --anchors {k} ({err}); annotate more images or "
                        "lower --anchors") from None



def _targets(annotations, anchors: torch.Tensor, grid: tuple[int, int], input_size: tuple[int, int],
             max_boxes: int, copies: int = 1) -> torch.Tensor:
    """Packed targets `(N, copies, D)`: per image, of the image and (copy 1) its mirror image.

    One row per copy as `heron.tasks.detect.yolo.pack_targets` packs it.
    """
    rows = []
    for a in annotations:
        boxes, labels = input_boxes(a, input_size), labels_of(a)
        views = [boxes, mirror_boxes(boxes, input_size[1])][:copies]
        rows.append(torch.stack([pack_targets(encode_targets(b, labels, anchors, grid, input_size), b, max_boxes)
                                 for b in views]))
    return torch.stack(rows) if rows else torch.zeros(0, copies, 1)


def _network(config: DetectConfig, num_classes: int, num_anchors: int) -> tuple[ClassifierModel, Preprocessing]:
    """Pretrained trunk without its top + a YOLO head, and the squash preprocessing at `config.size`."""
    if config.stride not in (16, 32):
        raise TrainingError(f"--stride {config.stride}: the grid's cell is 32 px (the trunk's own) or 16 (its last "
                            "stage dilated)")
    backbone, pre, map_shape = map_trunk(config.arch, config.weights, config.size, dilate=config.stride == 16)
    head = YoloHead(map_shape, num_anchors, num_classes, config.width)
    return ClassifierModel(backbone, head, pre.mean, pre.std, feature_kind="map"), pre


def _usable(annotations, rows: np.ndarray) -> tuple[list, np.ndarray]:
    """The annotations whose image was read, and their cache rows."""
    ok = (rows >= 0).all(axis=1)
    return [a for a, good in zip(annotations, ok) if good], rows[ok]


def train(config: DetectConfig, resume: bool = False) -> DetectRun:
    """Train the detector of `config` on cached trunk maps; returns the run (its folder holds everything).

    `resume`: continue the interrupted run in `config.out` from its last checkpoint (the anchors, the
    split and the cached maps come out the same from the same data and seed).
    """
    from heron.data.detection import load_detection
    from heron.transfer.engine import resolve_engine

    started = time.time()
    if config.unfreeze not in (None, "all") and not str(config.unfreeze).isdigit():
        raise TrainingError(f"--unfreeze {config.unfreeze}: give a number of trunk stages, or 'all'")
    if config.unfreeze and config.method != "yolo":
        raise TrainingError(f"--unfreeze fine-tunes --method yolo; {config.method} trains its head on the frozen trunk")
    torch.manual_seed(config.seed)
    data = load_detection(config.data, valid=config.valid, valid_pct=config.valid_pct, seed=config.seed)
    if not data.train or not data.valid:
        raise DataError(f"{config.data}: needs training and validation images ({len(data.train)} / "
                        f"{len(data.valid)}); add images or give --valid DIR")
    run = RunFolder.create(config.out, f"detect-{Path(config.data).resolve().name}", overwrite=config.overwrite,
                           resume=resume)
    if not resume:
        run.write_json("config.json", config.to_dict())
    say = (lambda text: None) if config.quiet else print
    for line in data.problems:
        say(f"warning: {line}")
    device = resolve_device("auto")
    engine, precision = resolve_engine(config.engine, config.precision, device)
    if config.method == "yolo":
        detector, history, train_count, valid_items, found, errors = _train_yolo(config, data, run, device, engine,
                                                                                 precision, resume)
    else:
        from heron.tasks.detect.two_stage import train_regions

        detector, history, valid_items, found, errors = train_regions(
            config, data, run, device, engine, precision, lambda phase: _callbacks(run, phase),
            lambda phase: _checkpoint(run, phase, resume))
        train_count = len(data.train)
    scores = _score(found, [truth_dict(a) for a in valid_items], data.classes)
    metrics = {"map50": scores.map50, "map": scores.map, "ap50": _per_class(scores.ap50_per_class, data.classes),
               "valid_images": len(valid_items), "train_images": train_count,
               "seconds": round(time.time() - started, 2)}
    _write(run, config, data, detector, metrics, scores, history, errors, valid_items, found)
    say(f"mAP@0.5 = {scores.map50:.4f}  mAP@[.5:.95] = {scores.map:.4f}  ({metrics['seconds']:.1f}s)")
    return DetectRun(run.path, data.classes, metrics, history)


def _train_yolo(config: DetectConfig, data, run: RunFolder, device, engine: str, precision: str, resume: bool):
    """The one-stage detector's head on cached maps (and, with --unfreeze, fine-tuning on images).

    Returns (detector, history, training images, valid items scored, their detections, errors).
    """
    model, pre = _network(config, len(data.classes), config.anchors)
    anchors = choose_anchors(data.train, pre.size, config.anchors, config.seed)
    features, rows, errors = cached_maps(model, pre, config.arch, {"train": [a.path for a in data.train],
                                                                   "valid": [a.path for a in data.valid]},
                                         cache_dir=config.cache_dir, workers=config.workers, device=device,
                                         engine=engine, precision=precision, quiet=config.quiet,
                                         flipped=("train",) if config.hflip else (),
                                         variant="dilated" if config.stride == 16 else "")
    train_items, train_rows = _usable(data.train, rows["train"])
    valid_items, valid_rows = _usable(data.valid, rows["valid"])
    head = model.head
    grid = head.map_shape[1:]
    max_boxes = min(MAX_BOXES, max([len(a.boxes) for a in train_items + valid_items] + [1]))
    loss = YoloLoss(anchors, len(data.classes), grid, pre.size, max_boxes, noobj_weight=config.noobj_weight)
    copies = train_rows.shape[1]
    loaders = {
        "train": FeatureBatches(features, train_rows, _targets(train_items, anchors, grid, pre.size, max_boxes, copies),
                                config.batch_size, shuffle=True),
        "valid": FeatureBatches(features, valid_rows, _targets(valid_items, anchors, grid, pre.size, max_boxes)[:, 0],
                                64),
    }
    learner = Learner(head, loaders["train"], loaders["valid"], loss_fn=loss, lr=config.lr,
                      weight_decay=config.weight_decay, metrics=(), device=device, quiet=config.quiet,
                      callbacks=_callbacks(run, "head"))
    torch.manual_seed(config.seed)
    history = learner.fit(config.epochs, lr=config.lr, phase="head", resume=_checkpoint(run, "head", resume))
    detector = Detector(model, anchors, data.classes, pre, config.score_threshold, config.iou_threshold)
    if config.unfreeze:
        from heron.tasks.detect.finetune import finetune

        torch.manual_seed(config.seed + 1)
        history += finetune(detector, loss, train_items, valid_items, config, device, _callbacks(run, "finetune"),
                            errors, resume=_checkpoint(run, "finetune", resume))
        found, valid_items = _image_detections(detector, valid_items, config.workers)
    else:
        found = _cached_detections(detector, features, valid_rows, [annotation_size(a) for a in valid_items], device)
    return detector, history, len(train_items), valid_items, found, errors


def _checkpoint(run: RunFolder, phase: str, resume: bool) -> Path | None:
    """The phase's checkpoint folder when resuming and one was written, else None (start the phase afresh)."""
    path = run / "checkpoints" / phase
    return path if resume and path.exists() else None


def _callbacks(run: RunFolder, phase: str) -> list:
    return [MetricsLogger(run / "metrics.jsonl"), Checkpoint(run / "checkpoints" / phase)]


def _image_detections(detector: Detector, items, workers: int | None) -> tuple[list[Detection], list]:
    """The whole (fine-tuned) network on the images of `items`: detections, and the items that were read."""
    by_path = {Path(a.path): a for a in items}
    found, kept = [], []
    for path, detection, error in _detect_paths(detector, [a.path for a in items], EVAL_SCORE_THRESHOLD, 16, workers):
        if error is None:
            found.append(detection)
            kept.append(by_path[Path(path)])
    return found, kept


def _cached_detections(detector: Detector, features: np.ndarray, rows: np.ndarray, sizes, device) -> list[Detection]:
    """The head on the cached valid maps, decoded at the evaluation threshold, in original pixels."""
    head = detector.model.head.eval().to(device)
    found = []
    with torch.inference_mode():
        for start in range(0, len(rows), 64):
            x = torch.from_numpy(np.asarray(features[rows[start : start + 64, 0]], dtype=np.float32)).to(device)
            found += detector.detections(head(x).cpu(), sizes[start : start + 64], EVAL_SCORE_THRESHOLD)
    return found



def _score(found: list[Detection], truths: list[dict], classes: list[str]):
    from heron.train.detection_metrics import evaluate_detections

    return evaluate_detections([d.as_dict() for d in found], truths, len(classes), class_names=classes)


def _per_class(values, classes: list[str]) -> dict:
    return dict(zip(classes, _nan_none(values)))


def _write(run: RunFolder, config, data, detector: Detector, metrics: dict, scores, history, errors, items,
           found) -> None:
    """config.json (with the result), model.safetensors, errors.txt, figures and report.html."""
    from heron.interpret.detection_figure import draw_detection_grid, draw_pr_curves
    from heron.interpret.report import write_report

    result = {"classes": data.classes, "method": config.method, "preprocessing": detector.pre.to_dict(),
              "metrics": metrics, "format": data.format, "problems": data.problems}
    if config.method == "yolo":
        result.update(anchors=detector.anchors.tolist(), map_shape=list(detector.model.head.map_shape))
    run.write_json("config.json", {**config.to_dict(), "result": result})
    run.write_text("errors.txt", "".join(f"{e}\n" for e in errors))
    save_weights(detector.model, run / "model.safetensors", metadata={"format": f"heron.detect.{config.method}"})
    draw_detection_grid([a.path for a in items], [truth_dict(a) for a in items], found, data.classes,
                        run / "detections.png", score_threshold=config.score_threshold)
    draw_pr_curves(scores.pr_curves, data.classes, run / "pr_curves.png")
    summary = {"data": config.data, "format": data.format, "classes": f"{len(data.classes)} ({', '.join(data.classes)})",
               "images": f"{metrics['train_images']} train / {metrics['valid_images']} valid",
               "backbone": f"{config.arch} ({config.weights or 'random init'}), input {detector.pre.size[1]}x"
                           f"{detector.pre.size[0]}, frozen",
               "method": _method_summary(config, detector),
               "mAP@0.5": round(metrics["map50"], 4), "mAP@[.5:.95]": round(metrics["map"], 4),
               "time": f"{metrics['seconds']:.1f} s"}
    per_class = [{"class": name, "boxes": int(n), "AP@0.5": ap50, "AP@[.5:.95]": ap}
                 for name, n, ap50, ap in zip(data.classes, scores.counts, _nan_none(scores.ap50_per_class),
                                              _nan_none(scores.ap_per_class))]
    figures = [("Validation images: predictions (yellow, with class and score) and true boxes (red)", "detections.png"),
               ("Precision-recall at IoU 0.5, per class", "pr_curves.png")]
    write_report(run.path, f"heron detect: {Path(config.data).name}", summary, history, per_class, figures,
                 list(errors) + list(data.problems), config.to_dict())


def _method_summary(config, detector) -> str:
    if config.method == "yolo":
        return "yolo, anchors " + ", ".join(f"{w:.0f}x{h:.0f}" for w, h in detector.anchors.tolist())
    if config.method == "faster-rcnn":
        return "faster-rcnn: region proposal network (3 scales x 3 ratios) + RoI heads"
    seen = f"{config.proposals} selective-search proposals ({config.search}) per image"
    return f"{config.method}: {seen}, " + (f"each warped to {config.crop} px" if config.method == "rcnn"
                                           else "RoI-pooled from one map")


def _nan_none(values) -> list:
    return [None if v is None or v != v else round(float(v), 4) for v in values]


# ---- using a finished run --------------------------------------------------------------------
def load_detector(path: str | Path, precision: str = "auto") -> Detector:
    """Rebuild the detector of a run folder from its config.json and model.safetensors.

    `precision` "auto": bf16 on CPUs that run it natively (AMX, AVX512-BF16),
    else fp32 (`benchmarks/detect.py` measures both).
    """
    from heron.nn.precision import resolve_precision

    run = RunFolder(path)
    if not run.exists("config.json") or not run.exists("model.safetensors"):
        raise DataError(f"{path}: not a finished heron detect run (needs config.json and model.safetensors)")
    saved = run.read_json("config.json")
    result = saved.get("result") or {}
    method = result.get("method", "yolo")
    if "classes" not in result or (method == "yolo" and "anchors" not in result):
        raise DataError(f"{path}: not a detection run (no classes or anchors in config.json); use a "
                        "`heron detect train` folder")
    config = DetectConfig.from_dict(saved)
    config.weights = None
    if method != "yolo":
        return _load_region_detector(run, config, result, resolve_precision(precision, "cpu"))
    anchors = torch.tensor(result["anchors"], dtype=torch.float32)
    model, _ = _network(config, len(result["classes"]), len(anchors))
    load_weights(model, run / "model.safetensors")
    pre = Preprocessing.from_dict(result["preprocessing"])
    return Detector(model.eval(), anchors, result["classes"], pre, config.score_threshold, config.iou_threshold,
                    resolve_precision(precision, "cpu"))


def _load_region_detector(run: RunFolder, config: DetectConfig, result: dict, precision: str):
    from heron.tasks.detect.two_stage import RegionDetector, region_network

    model, _ = region_network(config, len(result["classes"]))
    load_weights(model, run / "model.safetensors")
    pre = Preprocessing.from_dict(result["preprocessing"])
    return RegionDetector(config.method, model.eval(), result["classes"], pre, config.score_threshold,
                          config.iou_threshold, precision, config.proposals, config.search, config.crop)


def _detect_paths(detector: Detector, paths: list[Path], score_threshold: float | None, batch_size: int,
                  workers: int | None):
    """Yield `(path, Detection | None, error | None)` per image: decoded squashed to the input size, detected."""
    from heron.data.loader import file_loader
    from heron.transfer.maps import squash_transform

    _, loader, _ = file_loader(paths, squash_transform(detector.pre), batch_size, workers)
    for x, _, idx, errors in loader:
        for _, message in errors:
            yield None, None, message
        if x is None:
            continue
        batch = [paths[i] for i in idx.tolist()]
        found = detector.detect_batch(x, [image_size(p) for p in batch], score_threshold)
        yield from ((path, detection, None) for path, detection in zip(batch, found))


def predict(run: str | Path | Detector, paths: list[Path], score_threshold: float | None = None, batch_size: int = 8,
            workers: int | None = 0, precision: str = "auto"):
    """Yield `(path, Detection | None, error | None)` for each image, boxes in the image's own pixels.

    `run`: a run folder, or a detector already loaded from one (`load_detector`).
    """
    detector = load_detector(run, precision) if isinstance(run, (str, Path)) else run
    yield from _detect_paths(detector, list(paths), score_threshold, batch_size, workers)


def evaluate(run: str | Path, data: str | Path, out_png: str | Path | None = None) -> dict:
    """mAP@0.5, COCO mAP and per-class AP of a finished run on an annotated folder (its valid split, else all)."""
    from heron.data.detection import load_detection

    detector = load_detector(run)
    loaded = load_detection(data, valid_pct=0.0)
    items = loaded.valid or loaded.train + loaded.test
    unknown = sorted(set(loaded.classes) - set(detector.classes))
    if unknown:
        raise DataError(f"{data}: classes {unknown} were not in the trained run {run}")
    remap = np.asarray([detector.classes.index(c) for c in loaded.classes], dtype=np.int64)
    found, truths, errors = [], [], []
    by_path = {Path(a.path): a for a in items}
    for path, detection, error in predict(detector, [a.path for a in items], EVAL_SCORE_THRESHOLD):
        if error:
            errors.append(error)
            continue
        found.append(detection)
        truths.append(truth_dict(by_path[Path(path)], remap))
    if not truths:
        raise TrainingError(f"{data}: no image could be read to evaluate on")
    scores = _score(found, truths, detector.classes)
    if out_png:
        from heron.interpret.detection_figure import draw_pr_curves

        draw_pr_curves(scores.pr_curves, detector.classes, Path(out_png))
    return {"map50": scores.map50, "map": scores.map, "ap50": _per_class(scores.ap50_per_class, detector.classes),
            "ap": _per_class(scores.ap_per_class, detector.classes), "images": len(truths), "errors": errors}
