"""`heron train DATA` and `heron evaluate RUN DATA`: the transfer-learning job."""

from __future__ import annotations

import argparse
from dataclasses import fields

from heron.cli.augment import PRESET_NAMES, add_augment_flags, augment_overrides
from heron.config import FIGURE_MODES, TrainConfig

_DEFAULTS = TrainConfig()


def _unfreeze(value: str) -> str:
    if value not in ("all", "auto") and not value.isdigit():
        raise argparse.ArgumentTypeError("use a number of stages, 'all' or 'auto'")
    return value


def _field_list(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give comma-separated metadata fields, such as size,aspect")
    return names


def tta_mode(value: str) -> str:
    """`--tta flip | multicrop | random:N`."""
    if value in ("flip", "multicrop"):
        return value
    count = value.partition("random:")[2]
    if value.startswith("random:") and count.isdigit() and int(count) > 0:
        return value
    raise argparse.ArgumentTypeError("use flip, multicrop or random:N (N random augmented views, such as random:8)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="transfer learning on a folder of images",
        description="Train a classifier on DATA: DATA/train/<class>/ + DATA/valid/<class>/, "
        "one folder of class sub-folders (split with --valid-pct), or a CSV of path,label.",
    )
    p.add_argument("data", help="dataset folder or CSV file")
    p.add_argument("--image-root", metavar="FOLDER", help="folder a CSV's relative paths start from (default: the CSV's folder)")
    p.add_argument("--out", help="run folder (default runs/<data>-<time>); an existing run there is refused")
    p.add_argument("--overwrite", action="store_true", help="replace the finished run in --out")
    p.add_argument("--arch", default=_DEFAULTS.arch, help="backbone (default %(default)s; see `heron summary --list`)")
    p.add_argument("--weights", default=_DEFAULTS.weights, help="'imagenet', a weights file, or 'none'")
    p.add_argument("--size", type=int, nargs="+", metavar="PX", help="input size: 224, or H W such as 360 640")
    p.add_argument("--crop-pct", type=float, help="fraction of the resized image kept by the center crop (1.0: all)")
    p.add_argument("--head", choices=("gap", "linear", "dense", "fcn"), default=_DEFAULTS.head,
                   help="gap: pool+linear (default); linear: on the whole map; dense: BN/dropout/dense layers; "
                   "fcn: conv layers (--hidden widths) ending in a conv per class, any input size")
    p.add_argument("--hidden", type=int, nargs="+", help="dense head widths (default 512), or fcn conv widths (128)")
    p.add_argument("--dropout", type=float, nargs="+", metavar="P",
                   help="head dropout: one value, or one per dropout layer (dense: one per hidden layer, then the last)")
    p.add_argument("--head-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="batch norm in the head (default: in the dense head only)")
    p.add_argument("--label-smoothing", type=float, default=_DEFAULTS.label_smoothing, metavar="S",
                   help="train against targets with S of the probability spread over all classes (e.g. 0.1)")
    p.add_argument("--epochs", type=int, help="head epochs (default: about 400 optimizer steps, 5 to 200 epochs)")
    p.add_argument("--lr", type=float, help="head peak learning rate, one-cycle (default: the lr finder's suggestion)")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size)
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default=_DEFAULTS.optimizer)
    p.add_argument("--weight-decay", type=float, default=_DEFAULTS.weight_decay)
    p.add_argument("--valid-pct", type=float, default=_DEFAULTS.valid_pct, help="held out when there is no valid/ folder")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    p.add_argument("--no-precompute", dest="precompute", action="store_false",
                   help="run the frozen trunk every epoch instead of caching its features")
    p.add_argument("--precompute-aug", type=int, default=0, metavar="K", help="cache K augmented copies of each training image")
    p.add_argument("--unfreeze", type=_unfreeze, metavar="N|all|auto",
                   help="then fine-tune the last N stages, all, or auto: by dataset size (head alone below "
                   "500 images, the last 2 stages below 5,000, else all)")
    p.add_argument("--finetune-epochs", type=int, default=_DEFAULTS.finetune_epochs)
    p.add_argument("--finetune-lr", type=float, default=_DEFAULTS.finetune_lr)
    p.add_argument("--lr-ratio", type=float, default=_DEFAULTS.lr_ratio, help="earliest group's lr / last group's lr")
    p.add_argument("--augment", choices=PRESET_NAMES, default=_DEFAULTS.augment,
                   help="training augmentation preset (when fine-tuning, and for --precompute-aug copies): photo "
                   "(crops, mirror images, mild colour; default), light (small crops), strong (photo + rotation, "
                   "shear, zoom, PCA colour), none; the flags below change one setting of it")
    p.add_argument("--update-bn", dest="freeze_bn", action="store_false",
                   help="let the trunk's batch-norm statistics follow the new data while fine-tuning")
    p.add_argument("--finetune-optimizer", choices=("adamw", "sgd"), help="default: the same as --optimizer")
    p.add_argument("--tta", type=tta_mode, metavar="flip|multicrop|random:N",
                   help="test-time augmentation for the final scores")
    p.add_argument("--pseudo-label", metavar="FOLDER",
                   help="unlabelled images: the first model labels them, the confident ones join training")
    p.add_argument("--pseudo-threshold", type=float, default=_DEFAULTS.pseudo_threshold, metavar="P",
                   help="top probability an unlabelled image needs (default %(default)s)")
    p.add_argument("--pseudo-ratio", type=float, default=_DEFAULTS.pseudo_ratio, metavar="R",
                   help="share of each batch that is pseudo-labelled (default %(default)s)")
    p.add_argument("--metadata", type=_field_list, metavar="FIELDS",
                   help="give the head the files' metadata beside the image, e.g. size,aspect (fields: width, "
                   "height, size, aspect, file_size, bytes_per_pixel, jpeg_quality, timestamp, format, mode, "
                   "camera, dpi, header_blocks); the report compares it with the image alone")
    p.add_argument("--ensemble", type=int, default=_DEFAULTS.ensemble, metavar="K",
                   help="train K heads with different seeds on the cached features; the model averages them")
    p.add_argument("--sync-bn", action="store_true",
                   help="under torchrun: batch-norm statistics over all processes' batches")
    p.add_argument("--clip", type=float, help="clip probabilities to [c, 1-c] for log loss")
    p.add_argument("--patience", type=int, help="early stopping patience (epochs)")
    p.add_argument("--lr-find", action="store_true", help="run the learning-rate finder first and plot it")
    p.add_argument("--cache-dir", help="feature cache folder (default ~/.cache/heron/features)")
    p.add_argument("--workers", type=int, help="image decoding processes")
    p.add_argument("--device", default=_DEFAULTS.device, help="cpu, cuda or auto")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=_DEFAULTS.precision,
                   help="auto: bf16 where the CPU or GPU runs it natively (AMX/AVX512-BF16, CUDA), else fp32")
    p.add_argument("--engine", choices=("auto", "torch", "openvino", "onnxruntime"), default=_DEFAULTS.engine,
                   help="frozen-trunk inference engine; auto: the fastest installed (pip install 'heron[fast]')")
    p.add_argument("--figures", choices=FIGURE_MODES, default="background",
                   help="PNG figures: rendered by a background process after the result (default), inline, or none")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    add_augment_flags(p)
    p.set_defaults(func=run_train)

    e = sub.add_parser("evaluate", help="score a trained run on a labelled folder")
    e.add_argument("run", help="run folder from `heron train`")
    e.add_argument("data", help="labelled folder (class sub-folders, or train/valid layout: valid is scored)")
    e.add_argument("--tta", type=tta_mode, metavar="flip|multicrop|random:N")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=run_evaluate)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    if values.get("weights") == "none":
        values["weights"] = None
    values["augment_options"] = augment_overrides(args)
    if values.get("dropout") is not None and len(values["dropout"]) == 1:
        values["dropout"] = values["dropout"][0]
    return TrainConfig(**values)


def run_train(args: argparse.Namespace) -> int:
    from heron.errors import TrainingError
    from heron.tasks.classify import train
    from heron.train.run import RunFolder

    if args.resume:
        if not args.out:
            raise TrainingError("--resume needs --out RUN_FOLDER (the interrupted run)")
        run = RunFolder(args.out)
        if not run.exists("config.json"):
            raise TrainingError(f"{args.out}: no config.json; nothing to resume (start a new run without --resume)")
        config = TrainConfig.from_dict(run.read_json("config.json"))
        config.quiet, config.figures = args.quiet, args.figures
    else:
        config = config_from_args(args)
    result = train(config, resume=args.resume)
    from heron.train import distributed

    if distributed.is_main():  # under torchrun, one line from rank 0
        print(result.path)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import json

    from heron.tasks.classify import evaluate

    scores = evaluate(args.run, args.data, tta=args.tta)
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"images {scores['images']}  accuracy {scores['accuracy']:.4f}  log loss {scores['log_loss']:.4f}")
        for message in scores["errors"]:
            print(f"skipped: {message}")
    return 0
