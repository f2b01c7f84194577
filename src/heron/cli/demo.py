"""`heron demo`: the whole recipe offline, on data heron's dependencies ship.

1. ImageNet predictions on two real photos with the bundled EfficientNet-Lite0.
2. Transfer learning on scikit-learn's handwritten digits: a head on cached
   trunk features first, then a short fine-tune of the unfrozen network.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="predict two photos, then train on bundled digits (offline)")
    p.add_argument("--out", help="run folder (default runs/digits-<time>)")
    p.add_argument("--workdir", default=None, help="where demo data is written (default ~/.cache/heron/demo)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def demo_config(data: Path, out: str | None, quiet: bool):
    """The demo's settings: 64 px digits, GAP head on cached features, then unfreeze all.

    Six fine-tuning epochs with small random crops: measured over two splits
    (seeds 0 and 1) they end at 0.975 and 0.983; five epochs without crops
    ranged from 0.964 to 0.983.
    """
    from heron.config import TrainConfig

    return TrainConfig(
        data=str(data), out=out, size=[64], crop_pct=1.0, head="gap", dropout=0.0, epochs=10, lr=1e-2,
        unfreeze="all", finetune_epochs=6, finetune_lr=1e-3, finetune_batch_size=64, augment="light", quiet=quiet,
    )


def run(args: argparse.Namespace) -> int:
    from heron.data.samples import write_digits, write_sample_photos
    from heron.models._weights import cache_dir
    from heron.tasks.classify import predict_images

    work = Path(args.workdir) if args.workdir else cache_dir() / "demo"
    print("== 1. ImageNet predictions (EfficientNet-Lite0, bundled weights) ==")
    for result in predict_images(write_sample_photos(work / "photos"), topk=3):
        print(result.path.name + ":  " + ",  ".join(f"{e['label']} {e['prob']:.2f}" for e in result.top))

    print("\n== 2. Transfer learning on handwritten digits (scikit-learn, 1,797 images, 10 classes) ==")
    from heron.tasks.classify import train

    result = train(demo_config(write_digits(work / "digits"), args.out, args.quiet))
    head = [h for h in result.history if h.get("phase") == "head"]
    fine = [h for h in result.history if h.get("phase") == "finetune"]
    if head:
        print(f"head on cached features: valid accuracy {head[-1]['valid_accuracy']:.4f}")
    if fine:
        print(f"after fine-tuning:       valid accuracy {fine[-1]['valid_accuracy']:.4f}")
    print(f"report: {result.path / 'report.html'}")
    print(result.path)
    return 0
