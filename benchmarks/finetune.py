"""Fine-tuning speed and accuracy per precision: fp32 vs auto (and bf16 asked for explicitly), same run.

Each precision trains the same `heron.tasks.classify.train` recipe from the
same seed: head on cached features, then every stage unfrozen and fine-tuned.
Printed: median seconds per fine-tuning epoch (validation included), the
final valid accuracy, and the ratio against fp32. "auto" that resolves to fp32
(a CPU without AVX512-BF16/AMX) is the fp32 run and is not repeated. On such a
CPU bf16 is emulated; `--bf16-epochs` shortens that run.

    .venv/bin/python benchmarks/finetune.py [DATA] [--epochs 2] [--bf16-epochs N] [--size 64]

DATA defaults to scikit-learn's digits (`heron.data.samples.write_digits`,
1,797 images, trained at 64 px as `heron demo` does).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine  # noqa: E402

from heron.config import TrainConfig  # noqa: E402
from heron.data.samples import write_digits  # noqa: E402
from heron.nn.precision import cpu_supports_bf16, resolve_precision  # noqa: E402
from heron.tasks.classify import train  # noqa: E402


def config(data: Path, work: Path, precision: str, epochs: int, size: int | None, digits: bool) -> TrainConfig:
    return TrainConfig(
        data=str(data), out=str(work / f"run-{precision}"), cache_dir=str(work / "cache"),
        size=[size] if size else None, crop_pct=1.0 if digits else None, head="gap", dropout=0.0,
        epochs=10, lr=1e-2, unfreeze="all", finetune_epochs=epochs, finetune_lr=1e-3, finetune_batch_size=64,
        augment="light", precision=precision, engine="auto", quiet=True, seed=0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, help="a folder of images (default: the digits)")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (default %(default)s)")
    parser.add_argument("--bf16-epochs", type=int, default=None, help="epochs for bf16 where it is emulated (default: --epochs)")
    parser.add_argument("--size", type=int, default=None, help="input size (default: 64 for the digits, else the weights')")
    args = parser.parse_args()

    native = cpu_supports_bf16()
    print(f"machine: {machine()}; native bf16: {native}; auto -> {resolve_precision('auto', 'cpu')}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        digits = args.data is None
        data = write_digits(work / "digits") if digits else args.data
        size = args.size or (64 if digits else None)
        runs = [("fp32", "fp32")]
        if resolve_precision("auto", "cpu") != "fp32":
            runs.append(("auto", resolve_precision("auto", "cpu")))
        runs.append(("bf16", "bf16"))
        print(f"{'precision':10s} {'runs as':16s} {'epochs':>6s} {'s/epoch':>8s} {'vs fp32':>8s} {'valid acc':>10s} {'total s':>8s}")
        base = None
        for asked, resolved in runs:
            epochs = args.bf16_epochs if resolved == "bf16" and not native and args.bf16_epochs else args.epochs
            start = time.perf_counter()
            run = train(config(data, work, asked, epochs, size, digits))
            total = time.perf_counter() - start
            fine = [h["seconds"] for h in run.history if h.get("phase") == "finetune"]
            per_epoch = statistics.median(fine)
            base = base or per_epoch
            note = " (emulated)" if resolved == "bf16" and not native else ""
            print(f"{asked:10s} {resolved + note:16s} {len(fine):6d} {per_epoch:8.1f} {base / per_epoch:7.2f}x "
                  f"{run.metrics['accuracy']:10.4f} {total:8.1f}")
    if not native:
        print("auto is fp32 on this CPU: bf16 has no native arithmetic here (no AVX512-BF16 or AMX)")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
