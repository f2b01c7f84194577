"""Training data: heron's decode + augment speed against a plain PIL loop, and how long fine-tuning waits for it.

(a) images/s decoding and augmenting the same images with the "photo" preset
    (random resized crop 0.35-1, flip, colour jitter 0.2) at 224 px with
    EfficientNet-Lite0's preprocessing:
    - baseline: one process, `PIL.Image.open` -> `convert("RGB")` -> the same
      torchvision v2 transforms on the PIL image -> uint8 tensor;
    - heron: `ImageFiles` + `image_loader` (JPEG draft decoding, single-threaded
      workers), with 0 workers, heron's default workers and one per core.
(b) fine-tuning 224 px EfficientNet-Lite0 on the CPU (forward + backward of
    the whole network, AdamW, batch 32, channels-last) fed by heron's loader
    with its default workers: the share of each step spent waiting in
    `next(iterator)`, over `--steps` steps after 2 warm-up steps.

    PYTHONPATH=src .venv/bin/python benchmarks/dataloading.py DATA_FOLDER [--images 256] [--steps 10]

DATA_FOLDER is any dataset folder `heron train` reads (its training images
are used), e.g. hymenoptera, or 2,000 full-size photos from
`benchmarks/make_photos.py`. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine, median_seconds  # noqa: E402

from heron.data.augment import build_augment, preset  # noqa: E402
from heron.data.folders import discover  # noqa: E402
from heron.data.loader import ImageFiles, available_cores, default_workers, image_loader  # noqa: E402
from heron.data.transforms import Preprocessing  # noqa: E402
from heron.models import build  # noqa: E402

BATCH = 32


def lite0_preprocessing(size: int) -> Preprocessing:
    """EfficientNet-Lite0's ImageNet preprocessing at `size` px."""
    spec = build("efficientnet_lite0", weights="imagenet", include_top=False).pretrained_cfg
    return Preprocessing.from_spec(spec, size=size)


def read_all(paths: list[Path]) -> None:
    """Read every file once so both sides find them in the page cache."""
    for path in paths:
        path.read_bytes()


def pil_loop(paths: list[Path], pre: Preprocessing) -> None:
    """The baseline: decode with PIL at full size, augment with the same v2 transforms, to uint8 tensors."""
    import torchvision.transforms.v2 as T

    augment, to_tensor = build_augment(preset("photo"), pre), T.PILToTensor()
    for path in paths:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        out = to_tensor(augment(rgb))  # (3, 224, 224) uint8
        assert out.shape[1:] == pre.size


def heron_loop(paths: list[Path], pre: Preprocessing, workers: int) -> None:
    """heron's training loader over `paths`, every batch drawn (workers start inside the timing)."""
    dataset = ImageFiles([(p, 0) for p in paths], build_augment(preset("photo"), pre), min_size=pre.decode_min_size())
    for x, _, _, errors in image_loader(dataset, batch_size=BATCH, workers=workers):
        assert not errors and x.shape[2:] == pre.size


def decode_speed(paths: list[Path], pre: Preprocessing, repeats: int) -> None:
    """(a): images/s of the baseline and of heron's loader with 0, default and one-per-core workers."""
    read_all(paths)
    base = median_seconds(lambda: pil_loop(paths, pre), repeats=repeats)
    print(f"\n(a) decode + augment ('photo', {pre.size[0]} px), {len(paths)} images, median of {repeats}")
    print(f"{'pipeline':40s} {'images/s':>9s} {'vs PIL':>7s}")
    print(f"{'PIL loop, 1 process (baseline)':40s} {len(paths) / base:9.1f} {1.0:6.2f}x")
    for workers in sorted({0, default_workers(), available_cores()}):
        label = f"heron loader, {workers} workers" + (" (default)" if workers == default_workers() else "")
        seconds = median_seconds(lambda: heron_loop(paths, pre, workers), repeats=repeats)
        print(f"{label:40s} {len(paths) / seconds:9.1f} {base / seconds:6.2f}x")


def finetune_model(classes: int) -> torch.nn.Module:
    model = build("efficientnet_lite0", weights="imagenet", num_classes=classes)
    return model.train().to(memory_format=torch.channels_last)


def data_wait(items: list, classes: int, pre: Preprocessing, steps: int, warmup: int = 2) -> None:
    """(b): seconds per fine-tuning step and the share of it spent waiting for the next batch."""
    model = finetune_model(classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    needed = (steps + warmup) * BATCH
    cycled = list(itertools.islice(itertools.cycle(items), needed))  # one epoch holds every step
    dataset = ImageFiles(cycled, build_augment(preset("photo"), pre), min_size=pre.decode_min_size())
    batches = iter(image_loader(dataset, batch_size=BATCH, shuffle=True))
    waited = total = 0.0
    for step in range(steps + warmup):
        start = time.perf_counter()
        x, y, _, _ = next(batches)
        got = time.perf_counter()
        x = ((x.float() / 255.0 - mean) / std).contiguous(memory_format=torch.channels_last)  # (B, 3, H, W)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            waited += got - start
            total += time.perf_counter() - start
    print(f"\n(b) fine-tuning Lite0 at {pre.size[0]} px, batch {BATCH}, AdamW, {torch.get_num_threads()} threads, "
          f"{default_workers()} loader workers (default), {steps} steps after {warmup} warm-up")
    print(f"s/step {total / steps:.2f}   waiting for data {waited / steps:.3f} s/step   "
          f"= {100 * waited / total:.1f}% of the step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="dataset folder (its training images are used)")
    parser.add_argument("--images", type=int, default=256, help="images for (a) (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes for (a), median (default %(default)s)")
    parser.add_argument("--steps", type=int, default=10, help="timed fine-tuning steps for (b) (default %(default)s)")
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()

    splits = discover(args.data)
    items = splits.train
    print(f"machine: {machine()}; {available_cores()} cores; data: {args.data} ({len(items)} training images)")
    pre = lite0_preprocessing(args.size)
    decode_speed([p for p, _ in items[: args.images]], pre, args.repeats)
    data_wait(items, splits.num_classes, pre, args.steps)


if __name__ == "__main__":
    main()
