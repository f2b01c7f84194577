"""`heron faces train DATA` and `heron faces evaluate RUN DATA`: build and score a face-embedding run.

Parsing imports nothing heavy; torch and the faces task load in the run functions.
"""

from __future__ import annotations

import argparse


def add_commands(commands) -> None:
    """Register `train` and `evaluate` under `heron faces`."""
    _add_train(commands)
    _add_evaluate(commands)


def _add_train(commands) -> None:
    p = commands.add_parser(
        "train", help="train a face encoder (triplet loss on P x K batches) and its threshold tau",
        description="DATA holds one folder per person. Some people are held out to choose tau for a target "
        "false-accept rate on people the encoder never saw.")
    p.add_argument("data", help="folder with one sub-folder of images per person")
    p.add_argument("--out", metavar="RUN", help="run folder (default runs/<data>-<time>)")
    p.add_argument("--arch", default="efficientnet_lite0", help="zoo trunk (default efficientnet_lite0)")
    p.add_argument("--weights", default="imagenet", help="'imagenet' (default), 'none' or a weights file")
    p.add_argument("--dim", type=int, default=128, help="embedding size (default 128)")
    p.add_argument("--loss", choices=("triplet", "contrastive", "binary"), default="triplet",
                   help="triplet (default), contrastive, or binary (the verification head on pairs)")
    p.add_argument("--mining", choices=("batch_hard", "batch_all", "semi_hard"), default="batch_hard",
                   help="triplet mining inside each batch (default batch_hard)")
    p.add_argument("--margin", type=float, help="loss margin (default 0.2 triplet, 1.0 contrastive)")
    p.add_argument("--p", type=int, default=8, help="people per batch (default 8)")
    p.add_argument("--k", type=int, default=4, help="images per person in a batch (default 4)")
    p.add_argument("--epochs", type=int, default=30, help="epochs on cached trunk features (default 30)")
    p.add_argument("--finetune-epochs", type=int, default=0,
                   help="then unfreeze the trunk's last group for this many epochs on images (default 0)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate on cached features (default 1e-3)")
    p.add_argument("--finetune-lr", type=float, default=1e-4, help="peak learning rate when fine-tuning")
    p.add_argument("--size", type=int, help="input side in pixels (default: the weights' own)")
    p.add_argument("--valid-people", type=int, help="people held out for the threshold (default a quarter, at least 3)")
    p.add_argument("--target-far", type=float, default=1e-3, help="false-accept rate tau is chosen for (1e-3)")
    p.add_argument("--threshold", choices=("far", "accuracy"), default="far",
                   help="tau for the target FAR (default) or for the best accuracy")
    p.add_argument("--no-augment", action="store_true", help="no flip / small-crop copies")
    p.add_argument("--crop-faces", action="store_true", help="detect and crop the face first (OpenCV Haar cascade)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, help="stop training at an epoch's end within this budget")
    p.add_argument("--cache-dir", help="feature cache folder (default heron's cache)")
    p.add_argument("--workers", type=int, help="image decoding processes (default: one per core)")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run_train)


def _add_evaluate(commands) -> None:
    p = commands.add_parser(
        "evaluate", help="score a face run on people: ROC AUC, TAR at FAR, rank-1 with one enrolment image",
        description="DATA holds one folder per person (people the run did not train on, for an honest score).")
    p.add_argument("run", help="face run folder (from `heron faces train`)")
    p.add_argument("data", help="folder with one sub-folder of images per person")
    p.add_argument("--out", help="folder for evaluation.json and roc.png (default: the run folder)")
    p.add_argument("--strangers", type=float, default=0.25,
                   help="share of the people left out of the gallery to test rejection (default 0.25)")
    p.add_argument("--seed", type=int, default=0, help="which image of each person is enrolled")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=run_evaluate)


def _config(args: argparse.Namespace):
    from heron.tasks.faces.train import FaceConfig

    weights = None if args.weights in ("none", "None", "") else args.weights
    return FaceConfig(
        data=args.data, out=args.out, arch=args.arch, weights=weights, dim=args.dim, loss=args.loss,
        mining=args.mining, margin=args.margin, p=args.p, k=args.k, epochs=args.epochs,
        finetune_epochs=args.finetune_epochs, lr=args.lr, finetune_lr=args.finetune_lr, size=args.size,
        valid_people=args.valid_people, target_far=args.target_far, threshold=args.threshold,
        augment=not args.no_augment, crop_faces=args.crop_faces, seed=args.seed, max_minutes=args.max_minutes,
        overwrite=args.overwrite, quiet=args.quiet, cache_dir=args.cache_dir, workers=args.workers,
    )


def run_train(args: argparse.Namespace) -> int:
    from heron.tasks.faces.train import train_faces

    path = train_faces(_config(args), resume=args.resume)
    print(f"run: {path}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import json

    from heron.tasks.faces.evaluate import evaluate_faces, format_table

    metrics = evaluate_faces(args.run, args.data, seed=args.seed, out=args.out, strangers=args.strangers)
    print(json.dumps(metrics, indent=2) if args.json else format_table(metrics))
    return 0
