"""Transfer learning: `heron train` (cached features) vs a plain PyTorch loop, same run.

(a) cold `heron train`, feature extraction included, vs a plain loop that runs
    the frozen trunk every epoch; 5 epochs each, the same GAP head, the same
    optimiser and one-cycle schedule; final validation accuracies side by side.
(b) a warm second `heron train` (every feature from the cache) vs that loop.
(c) feature extraction images/s, decoding included: heron (worker decoding,
    JPEG draft mode, channels_last, inference mode) vs a plain eager loop
    (PIL full decode + resize, NCHW float32, one process).

    .venv/bin/python benchmarks/transfer.py [DATA] [--size 224] [--crop-pct 0.875]

DATA defaults to the demo's digits (64 px, whole image).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine  # noqa: E402

from heron.config import TrainConfig  # noqa: E402
from heron.data.folders import discover  # noqa: E402
from heron.data.samples import write_digits  # noqa: E402
from heron.data.transforms import Preprocessing, eval_transform  # noqa: E402
from heron.tasks.classify import build_classifier, train  # noqa: E402
from heron.transfer.cache import FeatureCache  # noqa: E402
from heron.transfer.extract import extract_features  # noqa: E402

EPOCHS = 5


def pil_batch(paths: list[Path], pre: Preprocessing) -> torch.Tensor:
    """The plain way: PIL decode at full size, resize the short side, center crop, float NCHW."""
    out = []
    resize_to = pre.resize_size()
    for path in paths:
        img = Image.open(path).convert("RGB")
        scale = max(resize_to[0] / img.height, resize_to[1] / img.width)
        img = img.resize((max(resize_to[1], round(img.width * scale)), max(resize_to[0], round(img.height * scale))), Image.BILINEAR)
        left, top = (img.width - pre.size[1]) // 2, (img.height - pre.size[0]) // 2
        img = img.crop((left, top, left + pre.size[1], top + pre.size[0]))
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        out.append((x - torch.tensor(pre.mean).view(3, 1, 1)) / torch.tensor(pre.std).view(3, 1, 1))
    return torch.stack(out)


def plain_loop(config: TrainConfig, data, batch_size: int = 64) -> tuple[float, float]:
    """Frozen trunk run every epoch, then the head: returns (seconds, valid accuracy)."""
    torch.manual_seed(config.seed)
    model, pre = build_classifier(config, len(data.classes), config.weights)
    backbone, head = model.backbone.eval(), model.head
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = EPOCHS * -(-len(data.train) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.25)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(EPOCHS):
        order = torch.randperm(len(data.train)).tolist()
        head.train()
        for i in range(0, len(order), batch_size):
            chunk = [data.train[j] for j in order[i : i + batch_size]]
            x = pil_batch([p for p, _ in chunk], pre)
            with torch.no_grad():
                feats = backbone.forward_features(x).mean(dim=(2, 3))
            loss = loss_fn(head(feats), torch.tensor([t for _, t in chunk]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    head.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(data.valid), batch_size):
            chunk = data.valid[i : i + batch_size]
            logits = head(backbone.forward_features(pil_batch([p for p, _ in chunk], pre)).mean(dim=(2, 3)))
            correct += (logits.argmax(1) == torch.tensor([t for _, t in chunk])).sum().item()
    return time.perf_counter() - start, correct / len(data.valid)


def extraction_rates(config: TrainConfig, data, cache_root: Path, limit: int = 256) -> tuple[float, float]:
    """Images/s of feature extraction, decode included: heron vs the plain PIL loop."""
    model, pre = build_classifier(config, len(data.classes), config.weights)
    paths = [p for p, _ in data.train][:limit]
    cache = FeatureCache(cache_root / "extract-bench", {"bench": time.time()})
    start = time.perf_counter()
    extract_features(model, paths, cache, {"eval": eval_transform(pre)}, min_size=pre.decode_min_size(), progress=False)
    ours = len(paths) / (time.perf_counter() - start)
    backbone = model.backbone.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(paths), 64):
            backbone.forward_features(pil_batch(paths[i : i + 64], pre)).mean(dim=(2, 3))
    plain = len(paths) / (time.perf_counter() - start)
    return ours, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", help="dataset folder (default: demo digits)")
    parser.add_argument("--size", type=int, nargs="+")
    parser.add_argument("--crop-pct", type=float)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="heron-bench-"))
    if args.data:
        data_dir, size, crop = Path(args.data), args.size, args.crop_pct
    else:
        data_dir, size, crop = write_digits(work / "digits"), args.size or [64], args.crop_pct or 1.0
    config = TrainConfig(data=str(data_dir), size=size, crop_pct=crop, epochs=EPOCHS, quiet=True,
                         cache_dir=str(work / "cache"))
    data = discover(config.data, valid_pct=config.valid_pct, seed=config.seed)
    print(f"machine: {machine()}")
    print(f"data: {data_dir} ({len(data.train)} train / {len(data.valid)} valid, {len(data.classes)} classes)")

    start = time.perf_counter()
    cold = train(TrainConfig(**{**config.to_dict(), "out": str(work / "cold")}))
    t_cold = time.perf_counter() - start
    start = time.perf_counter()
    warm = train(TrainConfig(**{**config.to_dict(), "out": str(work / "warm")}))
    t_warm = time.perf_counter() - start
    t_plain, acc_plain = plain_loop(config, data)
    print(f"plain loop, trunk every epoch ({EPOCHS} epochs): {t_plain:8.2f} s  valid acc {acc_plain:.4f}")
    print(f"(a) heron train, cold cache:                 {t_cold:8.2f} s  valid acc {cold.metrics['accuracy']:.4f}  ratio {t_plain / t_cold:6.1f}x")
    print(f"(b) heron train, warm cache:                 {t_warm:8.2f} s  valid acc {warm.metrics['accuracy']:.4f}  ratio {t_plain / t_warm:6.1f}x")
    ours, plain = extraction_rates(config, data, work)
    print(f"(c) extraction img/s: heron {ours:.1f}  plain {plain:.1f}  ratio {ours / plain:.2f}x")


if __name__ == "__main__":
    main()
