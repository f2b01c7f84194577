"""`heron faces liveness train|predict`: the live-vs-spoof gate that `verify` and `identify` accept.

A liveness gate is an image classifier with two classes, `live` and `spoof`,
so this module composes the classification task rather than writing a
second trainer: `train DATA` expands any video clips in `DATA/live/` and
`DATA/spoof/` into frames (`heron.data.video.stage_class_folders`: each
clip's frames on one side of the train/valid split), then hands the CSV set
to `heron.tasks.classify.train`. The run folder is an ordinary classifier
run plus `liveness.json` (the threshold and where the frames came from).
`predict RUN IMAGE...` and `check_liveness(run, image)` score photos with it.

Argument parsing imports nothing heavy; torch and numpy load inside `run_*`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from heron.cli.train import _unfreeze as unfreeze_value
from heron.config import FIGURE_MODES, TrainConfig
from heron.errors import DataError, ImageError

__all__ = ["CLASSES", "SPOOF_THRESHOLD", "add_commands", "check_liveness", "train_liveness"]

CLASSES = ("live", "spoof")
SPOOF_THRESHOLD = 0.5  # a photo whose spoof probability is at least this is a spoof
LIVENESS_FILE = "liveness.json"
_WHAT = {"live": "real captures of faces", "spoof": "captures of photos shown on a screen or printed"}
_DEFAULTS = TrainConfig()


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register `liveness train` and `liveness predict` under `heron faces`."""
    p = commands.add_parser("liveness", help="train or apply a live-vs-spoof gate (photos of screens and prints)",
                            description="A live-vs-spoof classifier trained with `heron train`'s recipe; "
                            "`verify` and `identify` take its run with --liveness RUN.")
    sub = p.add_subparsers(dest="liveness_command", metavar="COMMAND", required=True)
    _add_train(sub)
    _add_predict(sub)


def _add_train(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a gate on DATA/live/ and DATA/spoof/ (photos and/or video clips)",
                       description="Train a live-vs-spoof classifier. DATA holds live/ (real captures) and "
                       "spoof/ (captures of a screen or a print), each with images and/or video clips; a clip "
                       "becomes --frames-per-video frames, all on the same side of the train/valid split.")
    t.add_argument("data", help="folder with live/ and spoof/ sub-folders")
    t.add_argument("--out", help="run folder (default runs/<data>-liveness-<time>)")
    t.add_argument("--overwrite", action="store_true", help="replace the finished run in --out")
    t.add_argument("--frames-per-video", type=int, default=8, metavar="N",
                   help="evenly spaced frames taken from each clip (default %(default)s)")
    t.add_argument("--frames-dir", metavar="FOLDER",
                   help="where clips' frames are written once and reused (default: heron's cache, liveness-frames/)")
    t.add_argument("--arch", default=_DEFAULTS.arch, help="backbone (default %(default)s)")
    t.add_argument("--weights", default=_DEFAULTS.weights, help="'imagenet', a weights file, or 'none'")
    t.add_argument("--size", type=int, nargs="+", metavar="PX", help="input size: 224, or H W")
    t.add_argument("--crop-pct", type=float, default=1.0, help="fraction of the resized image the center crop "
                   "keeps (default %(default)s: the whole frame, since a screen's border is evidence)")
    t.add_argument("--epochs", type=int, help="head epochs (default: about 400 optimizer steps)")
    t.add_argument("--lr", type=float, help="head peak learning rate (default: the lr finder's suggestion)")
    t.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size)
    t.add_argument("--valid-pct", type=float, default=_DEFAULTS.valid_pct,
                   help="share of the photos and clips held out (default %(default)s)")
    t.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    t.add_argument("--unfreeze", type=unfreeze_value, metavar="N|all|auto",
                   help="then fine-tune the last N stages, all, or auto")
    t.add_argument("--finetune-epochs", type=int, default=_DEFAULTS.finetune_epochs)
    t.add_argument("--cache-dir", help="feature cache folder (default ~/.cache/heron/features)")
    t.add_argument("--workers", type=int, help="image decoding processes")
    t.add_argument("--device", default=_DEFAULTS.device, help="cpu, cuda or auto")
    t.add_argument("--engine", choices=("auto", "torch", "openvino", "onnxruntime"), default=_DEFAULTS.engine,
                   help="frozen-trunk inference engine")
    t.add_argument("--figures", choices=FIGURE_MODES, default="background")
    t.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    t.set_defaults(func=run_train)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="live or spoof, and the spoof score, for photos",
                       description="One line per photo: live or spoof, the spoof probability, the file.")
    p.add_argument("run", help="run folder from `heron faces liveness train`")
    p.add_argument("images", nargs="+", help="photos, or folders of them (searched recursively)")
    p.add_argument("--threshold", type=float, default=SPOOF_THRESHOLD,
                   help="spoof probability at or above which a photo is a spoof (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    p.set_defaults(func=run_predict)


# ---- training: stage the clips, then the classification task --------------------------------------
def _check_layout(data: Path) -> None:
    """DataError (one line, naming the fix) unless DATA holds both live/ and spoof/."""
    if not data.is_dir():
        raise DataError(f"{data}: folder not found; pass a folder holding live/ and spoof/")
    missing = [f"{name}/" for name in CLASSES if not (data / name).is_dir()]
    if missing:
        raise DataError(f"{data}: no {' or '.join(missing)} folder; a liveness set needs live/ (real captures) "
                        "and spoof/ (photos of screens or prints) side by side")


def _frames_root(frames_dir: str | None) -> Path:
    from heron.models._weights import cache_dir

    return Path(frames_dir) if frames_dir else cache_dir() / "liveness-frames"


_TRAIN_FLAGS = ("overwrite", "arch", "weights", "size", "crop_pct", "epochs", "lr", "batch_size", "valid_pct", "seed",
                "unfreeze", "finetune_epochs", "cache_dir", "workers", "device", "engine", "figures", "quiet")


def train_liveness(data: str | Path, out: str | Path | None = None, frames_per_video: int = 8,
                   frames_dir: str | Path | None = None, **options):
    """Train a live-vs-spoof gate on `data/live/` and `data/spoof/`; returns the classification `Run`.

    Clips become `frames_per_video` frames each, staged once under
    `frames_dir` (default: heron's cache, liveness-frames/) with each clip on
    one side of the split; `options` are `TrainConfig` fields (epochs, lr,
    size, valid_pct, seed, ...). The run folder gets `liveness.json` beside
    the classifier's files.
    """
    from heron.data.video import stage_class_folders
    from heron.tasks.classify import train
    from heron.train.run import RunFolder

    data = Path(data)
    _check_layout(data)
    if frames_per_video < 1:
        raise DataError(f"--frames-per-video {frames_per_video}: give 1 or more frames per clip")
    config = TrainConfig(**{"crop_pct": 1.0, **options})
    staged = stage_class_folders(data, list(CLASSES), _frames_root(frames_dir), frames_per_video,
                                 config.valid_pct, config.seed)
    for message in staged.skipped:
        print(f"heron: {message}", file=sys.stderr)
    empty = [name for name in CLASSES if not staged.rows.get(name)]
    if empty:
        raise DataError(f"{data / empty[0]}: no images or readable video clips; add {_WHAT[empty[0]]} there")
    if not config.quiet and staged.videos:
        print(f"{staged.videos} clip(s) -> {staged.frames} frames in {staged.root}")
    made = None if out else RunFolder.create(None, f"{data.resolve().name or 'data'}-liveness").path
    config.data, config.image_root, config.out = str(staged.csv), str(staged.root), str(out or made)
    try:
        result = train(config)
    except BaseException:
        if made is not None and made.is_dir() and not any(made.iterdir()):
            made.rmdir()  # the default folder made for a run that did not start
        raise
    RunFolder(result.path).write_json(LIVENESS_FILE, {
        "positive": "spoof", "threshold": SPOOF_THRESHOLD, "frames_per_video": frames_per_video,
        "split": "per photo or clip", "staged": staged.summary()})
    return result


def run_train(args: argparse.Namespace) -> int:
    options = {name: getattr(args, name) for name in _TRAIN_FLAGS}
    if options["weights"] == "none":
        options["weights"] = None
    result = train_liveness(args.data, args.out, args.frames_per_video, args.frames_dir, **options)
    print(result.path)
    return 0


# ---- using a gate ------------------------------------------------------------------------------------
def _spoof_probability(prediction, run_path) -> float:
    """The spoof probability of one `classify.Prediction`; errors name the photo or the run."""
    if prediction.error:
        raise ImageError(prediction.error)
    probs = {entry["label"]: entry["prob"] for entry in prediction.top}
    if set(probs) != set(CLASSES):
        raise DataError(f"{run_path}: not a liveness run (its classes are {sorted(probs)}); "
                        "train one with `heron faces liveness train DATA`")
    return float(probs["spoof"])


def _predictions(run_path, paths: list[Path]):
    from heron.tasks.classify import predict_images

    return predict_images(paths, run=run_path, topk=len(CLASSES), engine="torch", precision="fp32")


def check_liveness(run_path: str | Path, image_path: str | Path) -> tuple[str, float]:
    """("live" | "spoof", spoof probability) of one photo, by the gate in `run_path`.

    A spoof when the probability is at least `SPOOF_THRESHOLD` (0.5).
    ImageError for an unreadable photo, DataError for a run that is not a gate.
    """
    (prediction,) = list(_predictions(run_path, [Path(image_path)]))
    score = _spoof_probability(prediction, run_path)
    return ("spoof" if score >= SPOOF_THRESHOLD else "live"), score


def run_predict(args: argparse.Namespace) -> int:
    """One line per photo; exit 2 when a file named on the command line could not be scored."""
    from heron.cli.predict import files_to_read

    files, named, failed = files_to_read(args.images, "nothing to check; give photos or folders of photos")
    for prediction in _predictions(args.run, files):
        try:
            score = _spoof_probability(prediction, args.run)
        except ImageError as err:
            print(f"heron: error: {err}", file=sys.stderr)
            failed |= prediction.path in named
            continue
        label = "spoof" if score >= args.threshold else "live"
        if args.json:
            print(json.dumps({"file": str(prediction.path), "answer": label, "spoof_score": score}))
        else:
            print(f"{label}\t{score:.4f}\t{prediction.path}")
    return 2 if failed else 0
