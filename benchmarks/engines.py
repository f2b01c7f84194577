"""Frozen-trunk throughput per engine and precision, against torch fp32 eager in the same run.

(a) trunk only: the EfficientNet-Lite0 trunk as transfer learning runs it
    (`ClassifierModel.features`: normalise, trunk, pool), uint8 batches already
    in memory, decoding excluded. Engines: torch fp32 eager (batch norm folded,
    channels_last, inference mode; the baseline), torch bf16 (emulated, and
    slow, on CPUs without AVX512-BF16/AMX), openvino and onnxruntime when
    installed (bf16 too where the CPU runs it natively).
(b) with PHOTOS: `extract_features` over the photos into a fresh cache,
    decoding included, with the thread plan (`heron.data.loader.plan_threads`);
    the baseline is torch fp32 with the previous plan (one decode worker fewer
    than the cores, torch's own thread count). Engines are converted (or
    loaded from table (a)'s engine cache) before timing, and that first call
    is printed apart.

    .venv/bin/python benchmarks/engines.py [PHOTOS] [--batch-size 32] [--size 224] [--threads 2] [--limit 384] [--no-trunk]

Numbers on a shared machine move with other people's work: the share of the
CPU other processes used during each measurement is printed beside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine  # noqa: E402

from heron.data.images import find_images  # noqa: E402
from heron.data.loader import default_workers, plan_threads  # noqa: E402
from heron.data.transforms import Preprocessing, eval_transform  # noqa: E402
from heron.models import build  # noqa: E402
from heron.nn.precision import cpu_supports_bf16  # noqa: E402
from heron.transfer.cache import FeatureCache  # noqa: E402
from heron.transfer.engine import EngineError, create_engine, resolve_engine  # noqa: E402
from heron.transfer.extract import extract_features  # noqa: E402
from heron.transfer.model import ClassifierModel  # noqa: E402


class CpuShare:
    """Share of all cores that other processes used between start() and stop() (Linux; else None)."""

    def _read(self):
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:9]]
        t = os.times()
        busy = sum(values) - values[3] - values[4]
        return busy, sum(values), t.user + t.system + t.children_user + t.children_system

    def __enter__(self):
        try:
            self.start = self._read()
        except OSError:
            self.start = None
        return self

    def __exit__(self, *exc):
        self.others = None
        if self.start is not None:
            busy, total, mine = (b - a for a, b in zip(self.start, self._read()))
            hz = os.sysconf("SC_CLK_TCK")
            self.others = max(0.0, busy / hz - mine) / max(total / hz, 1e-9)


def trunk_model() -> ClassifierModel:
    backbone = build("efficientnet_lite0", weights="imagenet", include_top=False)
    spec = backbone.pretrained_cfg
    return ClassifierModel(backbone, torch.nn.Identity(), spec.mean, spec.std).eval()


def candidates() -> list[tuple[str, str]]:
    """(engine, precision) pairs worth measuring here; the first is the baseline."""
    pairs = [("torch", "fp32"), ("torch", "bf16"), ("openvino", "fp32"), ("onnxruntime", "fp32")]
    if cpu_supports_bf16():
        pairs.append(("openvino", "bf16"))
    return pairs


def label(engine: str, precision: str) -> str:
    note = " (emulated)" if precision == "bf16" and not cpu_supports_bf16() else ""
    return f"{engine} {precision}{note}"


def build_engine(model, engine, precision, engine_dir, threads):
    """(engine, conversion seconds) or (None, reason) when it cannot run here."""
    try:
        resolve_engine(engine, precision, "cpu")
    except EngineError as err:
        return None, str(err)
    start = time.perf_counter()
    built = create_engine(model, engine, precision, "cpu", cache_dir=engine_dir, threads=threads)
    return built, time.perf_counter() - start


def trunk_table(model, args, engine_dir: Path) -> None:
    x = torch.randint(0, 256, (args.batch_size, 3, args.size, args.size), dtype=torch.uint8)
    print(f"\n(a) trunk only, batch {args.batch_size} at {args.size}x{args.size}, {args.threads} threads, no decoding")
    print(f"{'engine':28s} {'img/s':>8s} {'vs torch fp32':>14s} {'first call s':>13s} {'others':>7s}")
    base = None
    for engine, precision in candidates():
        built, info = build_engine(model, engine, precision, engine_dir, args.threads)
        if built is None:
            print(f"{label(engine, precision):28s}  skipped: {info}")
            continue
        start = time.perf_counter()
        built(x)  # converts (compiled engines) and warms up
        first = time.perf_counter() - start + info
        repeats = args.repeats if first < 10 else 1  # emulated bf16 is slow: one timing is enough
        with CpuShare() as share:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                built(x)
                times.append(time.perf_counter() - start)
        ips = args.batch_size / statistics.median(times)
        base = base or ips
        print(f"{label(engine, precision):28s} {ips:8.1f} {ips / base:13.2f}x {first:13.1f} {share.others or 0:6.0%}")


def extraction_table(model, args, engine_dir: Path) -> None:
    photos = find_images(args.photos)[: args.limit]
    if not photos:
        raise SystemExit(f"{args.photos}: no images")
    pre = Preprocessing(size=(args.size, args.size))
    views = {"eval": eval_transform(pre)}
    plan = plan_threads()
    previous = default_workers()
    print(f"\n(b) extraction with decoding, {len(photos)} photos from {args.photos}, batch {args.batch_size}, "
          f"{args.size}x{args.size}")
    print(f"plan: {plan.workers} decode workers + {plan.threads} compute threads "
          f"(previous: {previous} workers + {torch.get_num_threads()} torch threads)")
    print(f"{'engine':28s} {'plan':>6s} {'img/s':>8s} {'vs before':>10s} {'first call s':>13s} {'others':>7s}")
    rows = [("torch", "fp32", previous)] + [(e, p, None) for e, p in candidates() if (e, p) != ("torch", "bf16")]
    base = None
    for engine, precision, workers in rows:
        built, info = build_engine(model, engine, precision, engine_dir, plan.threads)
        if built is None:
            print(f"{label(engine, precision):28s}  skipped: {info}")
            continue
        start = time.perf_counter()
        built(torch.zeros(2, 3, args.size, args.size, dtype=torch.uint8))  # conversion or loading: not timed below
        info += time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp, CpuShare() as share:
            cache = FeatureCache(tmp, {"engine": engine, "precision": precision})
            start = time.perf_counter()
            ext = extract_features(model, photos, cache, views, min_size=pre.decode_min_size(),
                                   batch_size=args.batch_size, workers=workers, progress=False,
                                   precision=precision, engine=engine, engine_dir=engine_dir)
            seconds = time.perf_counter() - start
        ips = ext.forwards / seconds
        base = base or ips
        shown = f"{workers}+{torch.get_num_threads()}" if workers is not None else f"{plan.workers}+{plan.threads}"
        print(f"{label(engine, precision):28s} {shown:>6s} {ips:8.1f} {ips / base:9.2f}x {info:13.1f} "
              f"{share.others or 0:6.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="?", type=Path, help="a folder of photos for table (b)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=None, help="compute threads (default: every core)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=384, help="photos used in table (b)")
    parser.add_argument("--no-trunk", action="store_true", help="skip table (a)")
    args = parser.parse_args()
    args.threads = args.threads or plan_threads().threads
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; native bf16: {cpu_supports_bf16()}; "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}")
    model = trunk_model()
    with tempfile.TemporaryDirectory() as engine_dir:
        if not args.no_trunk:
            trunk_table(model, args, Path(engine_dir))
        if args.photos:
            extraction_table(model, args, Path(engine_dir))


if __name__ == "__main__":
    main()
