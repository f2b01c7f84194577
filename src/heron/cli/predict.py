"""`heron predict IMAGE...`: top-k labels for photos, from ImageNet, a trained run, or its ONNX export."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from heron.errors import ImageError

DEFAULT_ARCH = "efficientnet_lite0"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="top-k labels for images (ImageNet, or a trained run with --model)",
                       description="Predict the top-k labels of images or folders of images.")
    p.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--model", metavar="RUN", help="a run folder from `heron train`, or a .onnx file from "
                   "`heron export` (run by onnxruntime); default: ImageNet EfficientNet-Lite0")
    p.add_argument("--arch", default=DEFAULT_ARCH, help="ImageNet architecture when no --model (default %(default)s)")
    p.add_argument("--weights", default="imagenet", help="'imagenet' or a weights file for --arch")
    p.add_argument("--topk", type=int, default=5, help="labels to show per image (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto: bf16 on CPUs that run it natively (AVX512-BF16, AMX), else fp32 (fp16 needs a GPU)")
    p.add_argument("--engine", choices=("auto", "torch", "openvino", "onnxruntime"), default="auto",
                   help="auto: torch for a few images, else the fastest installed (pip install 'heron[fast]')")
    p.set_defaults(func=run)


def expand(paths: list[str]) -> tuple[list[Path], list[str], list[str]]:
    """Files from the arguments, folders expanded: (files, messages for arguments that are not
    there, messages for the files of a folder skipped for having no image extension)."""
    from heron.data.images import scan_files

    files, errors, skipped = [], [], []
    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            images, others = scan_files(path)
            if not images:
                errors.append(f"{path}: no image files in this folder")
            files.extend(Path(p) for p in images)
            skipped += [f"{p}: skipped, {Path(p).suffix or 'no extension'} is not an image extension"
                        for p in others]
        elif path.exists():
            files.append(path)
        else:
            errors.append(f"{path}: no such file; check the path")
    return files, errors, skipped


def report_expanded(missing: list[str], skipped: list[str]) -> None:
    """One line on stderr for each argument not found and each file a folder's listing skipped."""
    for message in missing:
        print(f"heron: error: {message}", file=sys.stderr)
    for message in skipped:
        print(f"heron: {message}", file=sys.stderr)
    if skipped:
        from heron.data.images import IMAGE_EXTENSIONS

        print(f"heron: the image extensions read are {', '.join(sorted(IMAGE_EXTENSIONS))}", file=sys.stderr)


def files_to_read(arguments: list[str], nothing: str) -> tuple[list[Path], set[Path], bool]:
    """The arguments' image files, folders expanded and what was skipped said on stderr:
    (files, the files named on the command line, whether a named argument was missing).

    ImageError "`arguments`: `nothing`" when no file is left to read.
    """
    files, missing, skipped = expand(arguments)
    report_expanded(missing, skipped)
    if not files:
        raise ImageError(f"{' '.join(arguments)}: {nothing}")
    return files, {Path(a) for a in arguments if Path(a).is_file()}, bool(missing)


def run(args: argparse.Namespace) -> int:
    """Print predictions; exit 2 when a file named on the command line could not be used.

    A bad file inside a folder is reported on stderr and the rest are predicted.
    The engine and precision used are said on stderr before the first prediction.
    """
    from heron.serve.onnx_model import is_onnx_path

    files, named, failed_named = files_to_read(args.images, "nothing to predict; give image files or folders of images")
    if is_onnx_path(args.model):
        engine, precision, results = _onnx_predictions(args, files)
    else:
        from heron.tasks.classify import predict_images, prediction_engine

        engine, precision = prediction_engine(len(files), args.engine, args.precision)
        results = predict_images(files, run=args.model, arch=args.arch, weights=args.weights,
                                 topk=args.topk, batch_size=args.batch_size, progress=len(files) > 64,
                                 precision=precision, engine=engine)
    announced = False  # which engine ran is said once, with the first prediction it made
    for result in results:
        if not (result.error or announced):
            print(f"heron: engine {result.engine or engine + ', precision ' + precision}", file=sys.stderr, flush=True)
            announced = True
        if result.error:
            print(f"heron: error: {result.error}", file=sys.stderr)
            failed_named |= result.path in named
            if args.json:
                print(json.dumps({"file": str(result.path), "error": result.error}))
        elif args.json:
            print(json.dumps({"file": str(result.path), "predictions": result.top}))
        else:
            print(result.path)
            for entry in result.top:
                print(f"  {entry['prob']:.3f}  {entry['label']}")
    return 2 if failed_named else 0


def _onnx_predictions(args: argparse.Namespace, files: list[Path]):
    """(engine, precision, predictions) of an exported .onnx model, run by onnxruntime in fp32.

    Files are decoded and resized by heron's decoder and eval transform, as
    for a run folder, so the top-k labels are the same.
    """
    from heron.errors import ModelError
    from heron.serve.onnx_model import OnnxClassifier

    if args.engine not in ("auto", "onnxruntime") or args.precision not in ("auto", "fp32"):
        raise ModelError(f"{args.model}: an .onnx model runs in onnxruntime at fp32; "
                         "drop --engine/--precision or give the run folder instead")
    classifier = OnnxClassifier(args.model)
    results = classifier.predict_images(files, topk=args.topk, batch_size=args.batch_size,
                                        progress=len(files) > 64)
    return "onnxruntime", "fp32", results
