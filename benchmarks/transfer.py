"""Transfer learning: `heron train` as it was (fp32, eager torch) vs now, and vs a plain PyTorch loop.

Each `heron train` runs as its own command (`python -m heron.cli train ...`),
so its wall time includes starting Python and importing torch, as a user sees it:

- "fp32 eager": `--precision fp32 --engine torch --epochs 5 --lr 3e-3 --figures inline`,
  the path and schedule `heron train` had before the precision and engine settings;
- "now": the defaults (precision and engine chosen for this machine, head
  schedule by step budget with the lr finder, figures in a background process).

(a) cold run (empty feature cache), (b) warm run (every feature cached),
(c) feature extraction images/s with decoding included, (d) optional plain
loop that decodes with PIL and runs the frozen trunk every epoch (`--plain`).

    .venv/bin/python benchmarks/transfer.py [DATA] [--size 224] [--crop-pct 0.875] [--plain]

DATA defaults to the demo's digits (64 px, whole image). A folder of 2,000
full-size photos comes from `benchmarks/make_photos.py`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
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
from heron.interpret.figures_job import wait_for_figures  # noqa: E402
from heron.tasks.classify import build_classifier  # noqa: E402
from heron.transfer.cache import FeatureCache  # noqa: E402
from heron.transfer.engine import resolve_engine  # noqa: E402
from heron.transfer.extract import extract_features  # noqa: E402

EPOCHS = 5
BEFORE = ["--precision", "fp32", "--engine", "torch", "--epochs", str(EPOCHS), "--lr", "3e-3", "--figures", "inline"]


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


def extraction_rate(config: TrainConfig, paths: list[Path], cache_root: Path, engine: str, precision: str) -> float:
    """Images/s of `extract_features`, decoding included, into a fresh feature cache.

    A compiled engine is converted once per machine and kept (the engines
    folder beside the cache); a few images go through first so the rate is
    the steady one, as on every run after the first.
    """
    model, pre = build_classifier(config, 2, config.weights)
    views = {"eval": eval_transform(pre)}
    rate = 0.0
    for name, chunk in (("warm-up", paths[:8]), ("timed", paths)):
        cache = FeatureCache(cache_root / f"extract-{engine}-{precision}-{name}", {"bench": time.time()})
        start = time.perf_counter()
        extract_features(model, chunk, cache, views, min_size=pre.decode_min_size(), progress=False,
                         precision=precision, engine=engine, engine_dir=cache_root / "engines")
        rate = len(chunk) / (time.perf_counter() - start)
    return rate


def plain_rate(config: TrainConfig, paths: list[Path]) -> float:
    """Images/s of the plain way: PIL full decode + resize, NCHW float32, one process."""
    model, pre = build_classifier(config, 2, config.weights)
    backbone = model.backbone.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(paths), 64):
            backbone.forward_features(pil_batch(paths[i : i + 64], pre)).mean(dim=(2, 3))
    return len(paths) / (time.perf_counter() - start)


def heron_cli(data: Path, out: Path, cache: Path, extra: list[str], size, crop, src: str | None = None):
    """(wall seconds, valid accuracy) of one `heron train` command (`src`: another checkout's src/)."""
    import os

    env = {**os.environ, "PYTHONPATH": src} if src else None
    cmd = [sys.executable, "-m", "heron.cli", "train", str(data), "--out", str(out), "--cache-dir", str(cache),
           "--quiet", *extra]
    if size:
        cmd += ["--size", *map(str, size)]
    if crop:
        cmd += ["--crop-pct", str(crop)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    wait_for_figures(out, 120)  # the next command must not share the cores with this one's figure job
    result = json.loads((out / "config.json").read_text())["result"]
    return wall, result["metrics"]["accuracy"]


def import_torch_seconds() -> float:
    """Wall time of `import torch` in a fresh interpreter: the floor under every `heron train`."""
    code = "import time; t = time.perf_counter(); import torch; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", help="dataset folder (default: demo digits)")
    parser.add_argument("--size", type=int, nargs="+")
    parser.add_argument("--crop-pct", type=float)
    parser.add_argument("--plain", action="store_true", help="also time the plain loop (slow on big folders)")
    parser.add_argument("--extract-images", type=int, default=512, help="images for (c)")
    parser.add_argument("--before-src", help="src/ of an older checkout: its `heron train --epochs 5 --lr 3e-3` "
                        "is timed too (e.g. git worktree add /tmp/before 1861fe1)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="heron-bench-"))
    if args.data:
        data_dir, size, crop = Path(args.data), args.size, args.crop_pct
    else:
        data_dir, size, crop = write_digits(work / "digits"), args.size or [64], args.crop_pct or 1.0
    config = TrainConfig(data=str(data_dir), size=size, crop_pct=crop, epochs=EPOCHS, lr=3e-3, quiet=True,
                         cache_dir=str(work / "cache"))
    data = discover(config.data, valid_pct=config.valid_pct, seed=config.seed)
    engine, precision = resolve_engine("auto", "auto", torch.device("cpu"))
    print(f"machine: {machine()}")
    print(f"data: {data_dir} ({len(data.train)} train / {len(data.valid)} valid, {len(data.classes)} classes)")
    print(f"now: engine {engine}, precision {precision}")

    rows = {}
    runs = [("fp32 eager", BEFORE, None), ("now", [], None)]
    if args.before_src:
        runs.insert(0, ("older checkout", ["--epochs", str(EPOCHS), "--lr", "3e-3"], args.before_src))
    for name, extra, src in runs:
        cache = work / f"cache-{name.replace(' ', '-')}"
        cold = heron_cli(data_dir, work / f"{name}-cold", cache, extra, size, crop, src)
        warm = heron_cli(data_dir, work / f"{name}-warm", cache, extra, size, crop, src)
        rows[name] = (cold, warm)
    if args.before_src:
        (o_cold, o_acc), (o_warm, _) = rows["older checkout"]
        print(f"    older checkout: cold {o_cold:7.2f} s (acc {o_acc:.4f})  warm {o_warm:7.2f} s;  now is "
              f"{o_cold / rows['now'][0][0]:.2f}x (cold) and {o_warm / rows['now'][1][0]:.2f}x (warm) faster")
    (b_cold, b_acc), (b_warm, _) = rows["fp32 eager"]
    (n_cold, n_acc), (n_warm, n_wacc) = rows["now"]
    print(f"(a) cold heron train: fp32 eager {b_cold:7.2f} s (acc {b_acc:.4f})  now {n_cold:7.2f} s "
          f"(acc {n_acc:.4f})  ratio {b_cold / n_cold:5.2f}x")
    print(f"(b) warm heron train: fp32 eager {b_warm:7.2f} s  now {n_warm:7.2f} s (acc {n_wacc:.4f})  "
          f"ratio {b_warm / n_warm:5.2f}x;  of which import torch {import_torch_seconds():.2f} s")

    paths = [p for p, _ in data.train][: args.extract_images]
    before = extraction_rate(config, paths, work, "torch", "fp32")
    now = extraction_rate(config, paths, work, engine, precision)
    plain = plain_rate(config, paths[:128])
    print(f"(c) extraction img/s, decode included ({len(paths)} images): fp32 eager {before:.1f}  now {now:.1f}  "
          f"ratio {now / before:.2f}x;  plain PIL loop on the first 128, no warm-up: {plain:.1f}")
    if args.plain:
        t_plain, acc_plain = plain_loop(config, data)
        print(f"(d) plain loop, trunk every epoch ({EPOCHS} epochs): {t_plain:8.2f} s  valid acc {acc_plain:.4f}  "
              f"cold now / plain {t_plain / n_cold:5.1f}x  warm now / plain {t_plain / n_warm:5.1f}x")


if __name__ == "__main__":
    main()
