"""`heron detect train | predict | evaluate | demo`: the one-stage detector on annotated photos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from heron.config import DetectConfig

_DEFAULTS = DetectConfig()
DEMO_IMAGES = 500  # synthetic images written for `heron detect demo` (a fifth of them validate)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="object detection: train, predict, evaluate (YOLO, R-CNN, Fast/Faster R-CNN)",
                       description="Detectors on annotated photos: YOLO-style (a grid, k-means anchors) or region-"
                       "based (R-CNN, Fast R-CNN, Faster R-CNN); class-wise NMS, mAP.")
    commands = p.add_subparsers(dest="detect_command", metavar="COMMAND", required=True)
    _add_train(commands)
    _add_predict(commands)
    _add_evaluate(commands)
    _add_demo(commands)


def _training_flags(p: argparse.ArgumentParser) -> None:
    from heron.config import DETECT_METHODS

    p.add_argument("--method", choices=DETECT_METHODS, default=_DEFAULTS.method,
                   help="yolo: one stage on a grid (default); rcnn: each proposal warped and run through the "
                   "trunk; fast-rcnn: proposals RoI-pooled from one map; faster-rcnn: a region proposal network")
    p.add_argument("--proposals", type=int, default=_DEFAULTS.proposals,
                   help="rcnn, fast-rcnn: selective-search proposals scored per image (default %(default)s)")
    p.add_argument("--regions", type=int, default=_DEFAULTS.regions,
                   help="rcnn, fast-rcnn: training regions drawn per image (default %(default)s)")
    p.add_argument("--search", choices=("single", "fast", "quality"), default=_DEFAULTS.search,
                   help="selective search strategies (default %(default)s)")
    p.add_argument("--crop", type=int, default=_DEFAULTS.crop, help="rcnn: region side after warping, px")
    p.add_argument("--out", help="run folder (default runs/detect-<data>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace the finished run in --out")
    p.add_argument("--arch", default=_DEFAULTS.arch, help="backbone (default %(default)s)")
    p.add_argument("--weights", default=_DEFAULTS.weights, help="'imagenet', a weights file, or 'none'")
    p.add_argument("--size", type=int, nargs="+", metavar="PX", default=None,
                   help="network input: one side or H W; images are resized whole (default 416)")
    p.add_argument("--anchors", type=int, default=_DEFAULTS.anchors, metavar="K",
                   help="anchor shapes chosen by k-means on the training boxes (default %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="head epochs (default: yolo 30, rcnn and fast-rcnn 10, faster-rcnn 15)")
    p.add_argument("--lr", type=float, default=None, help="head peak learning rate (default: yolo 3e-3, others 1e-3)")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size)
    p.add_argument("--width", type=int, default=_DEFAULTS.width, help="channels of the head's 3x3 convolutions")
    p.add_argument("--noobj-weight", type=float, default=_DEFAULTS.noobj_weight,
                   help="weight of the empty cells' objectness loss (default %(default)s)")
    p.add_argument("--unfreeze", metavar="N|all",
                   help="after the head, fine-tune the last N trunk stages on augmented images")
    p.add_argument("--finetune-epochs", type=int, default=_DEFAULTS.finetune_epochs)
    p.add_argument("--finetune-lr", type=float, default=_DEFAULTS.finetune_lr)
    p.add_argument("--no-hflip", dest="hflip", action="store_false", help="no mirrored copies in training")
    p.add_argument("--stride", type=int, choices=(16, 32), default=_DEFAULTS.stride,
                   help="grid cell in pixels: 32, or 16 with the trunk's last stage dilated (small objects)")
    p.add_argument("--score-threshold", type=float, default=_DEFAULTS.score_threshold,
                   help="detections drawn in the figures and by predict (default %(default)s)")
    p.add_argument("--iou-threshold", type=float, default=_DEFAULTS.iou_threshold, help="class-wise NMS IoU")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    p.add_argument("--cache-dir", help="feature cache folder (default ~/.cache/heron/features)")
    p.add_argument("--workers", type=int, help="image decoding processes")
    p.add_argument("--engine", choices=("auto", "torch", "openvino", "onnxruntime"), default=_DEFAULTS.engine)
    p.add_argument("--quiet", action="store_true")


def _add_train(commands) -> None:
    p = commands.add_parser("train", help="train a detector on annotated images",
                            description="DATA holds images/ plus annotations/ (VOC XML), labels/ (YOLO txt) or "
                            "one COCO JSON, or a VOC devkit (JPEGImages/, Annotations/, ImageSets/Main/).")
    p.add_argument("data", help="annotated dataset folder")
    p.add_argument("--valid", metavar="DIR", help="a second annotated folder to validate on")
    p.add_argument("--valid-pct", type=float, default=_DEFAULTS.valid_pct,
                   help="share held out when DATA has no split of its own (default %(default)s)")
    _training_flags(p)
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.set_defaults(func=run_train)


def _add_predict(commands) -> None:
    p = commands.add_parser("predict", help="draw a run's detections on images, with a JSON per image")
    p.add_argument("run", help="run folder from `heron detect train`")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("-o", "--out", required=True, help="folder for <image>.png and <image>.json")
    p.add_argument("--score-threshold", type=float, help="lowest score kept (default: the run's)")
    p.set_defaults(func=run_predict)


def _add_evaluate(commands) -> None:
    p = commands.add_parser("evaluate", help="mAP of a run on an annotated folder")
    p.add_argument("run", help="run folder from `heron detect train`")
    p.add_argument("data", help="annotated folder (its valid split if it has one, else all of it)")
    p.add_argument("--pr", metavar="PNG", help="precision-recall figure (default RUN/pr_curves_eval.png)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_evaluate)


def _add_demo(commands) -> None:
    p = commands.add_parser("demo", help="train and score on synthetic shapes (offline, a few minutes)")
    p.add_argument("--workdir", help="where the synthetic set is written (default ~/.cache/heron/demo)")
    p.add_argument("--images", type=int, default=DEMO_IMAGES)
    _training_flags(p)
    p.set_defaults(func=run_demo)


def _config(args: argparse.Namespace, data: str, **overrides) -> DetectConfig:
    values = {k: v for k, v in vars(args).items() if k in DetectConfig.__dataclass_fields__ and v is not None}
    values.update(data=data, **overrides)
    if values.get("weights") == "none":
        values["weights"] = None
    return DetectConfig(**values)


def run_train(args: argparse.Namespace) -> int:
    from heron.errors import TrainingError
    from heron.tasks.detect import train
    from heron.train.run import RunFolder

    if args.resume:
        if not args.out or not RunFolder(args.out).exists("config.json"):
            raise TrainingError("--resume needs --out RUN_FOLDER holding an interrupted run's config.json")
        config = DetectConfig.from_dict(RunFolder(args.out).read_json("config.json"))
        config.quiet = args.quiet
        result = train(config, resume=True)
    else:
        result = train(_config(args, args.data))
    print(result.path)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from heron.data.synthetic import write_detection_shapes
    from heron.models._weights import cache_dir
    from heron.tasks.detect import train

    work = Path(args.workdir) if args.workdir else cache_dir() / "demo"
    folder = work / f"detect-shapes-{args.images}"
    if not (folder / "annotations").is_dir():
        write_detection_shapes(folder, images=args.images, seed=0, fmt="voc")
    result = train(_config(args, str(folder)))  # the defaults: 416 px, 30 epochs (see DetectConfig)
    m = result.metrics
    print(f"synthetic shapes: {m['train_images']} train / {m['valid_images']} valid images")
    print(f"mAP@0.5 = {m['map50']:.4f}  mAP@[.5:.95] = {m['map']:.4f}  time {m['seconds']:.1f} s")
    print(result.path)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    import json

    from heron.cli.predict import expand, report_expanded
    from heron.interpret.detection_figure import draw_detections
    from heron.tasks.detect import load_detector, predict

    files, missing, skipped = expand(args.images)
    report_expanded(missing, skipped)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    detector = load_detector(args.run)
    classes = detector.classes
    failed = bool(missing)
    for path, found, error in predict(detector, files, args.score_threshold):
        if error:
            print(f"heron: error: {error}", file=sys.stderr)
            failed = True
            continue
        stem = out / Path(path).stem
        draw_detections(path, found, classes, stem.with_suffix(".png"))
        items = [{"label": classes[int(c)], "score": round(float(s), 4), "box": [round(float(v), 1) for v in b]}
                 for b, s, c in zip(found.boxes, found.scores, found.labels)]
        stem.with_suffix(".json").write_text(json.dumps({"file": str(path), "detections": items}, indent=1) + "\n")
        print(f"{path}: {len(items)} objects " + ", ".join(f"{d['label']} {d['score']:.2f}" for d in items[:8]))
    return 2 if failed else 0


def run_evaluate(args: argparse.Namespace) -> int:
    import json

    from heron.tasks.detect import evaluate

    png = Path(args.pr) if args.pr else Path(args.run) / "pr_curves_eval.png"
    scores = evaluate(args.run, args.data, png)
    if args.json:
        print(json.dumps(scores))
        return 0
    print(f"mAP@0.5 = {scores['map50']:.4f}")
    print(f"mAP@[.5:.95] = {scores['map']:.4f}")
    for name, ap50 in scores["ap50"].items():
        ap = scores["ap"][name]
        shown = "n/a (no true boxes)" if ap50 is None else f"AP@0.5 {ap50:.4f}  AP@[.5:.95] {ap:.4f}"
        print(f"  {name:<20} {shown}")
    print(f"{scores['images']} images; precision-recall curves in {png}")
    for message in scores["errors"]:
        print(f"skipped: {message}")
    return 0
