"""ONNX Runtime vs PyTorch fp32 images/s for a run exported by `heron export --format onnx`.

The run is taken from RUN (a run folder), or trained first on DATA (a folder
of class sub-folders; default the hymenoptera photos when present, else
synthetic shapes) with the default recipe: pretrained EfficientNet-Lite0 at
224x224, a head on cached features. It is exported (the export's own check
runs), then the same uint8 batches of the validation photos, decoded and
resized beforehand (decoding excluded), run through:

- torch fp32, the plain network (the baseline): the run's
  `ClassifierModel` as trained, channels_last, inference mode, softmax;
- torch fp32 with batch norm folded (`heron.transfer.engine.inference_copy`),
  the torch engine's form, as `heron predict --model RUN` runs it;
- ONNX Runtime on the exported file (`heron.serve.onnx_model.OnnxClassifier`),
  at torch's thread count.

Each is warmed up, then timed over every batch, `--repeats` times, the three
taking turns; the median is printed with the ratio to the baseline, and the
share of the CPU other processes used during the measurements.

    .venv/bin/python benchmarks/export.py [RUN | DATA] [--batch-size 32] [--batches 4] [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine, parse_timing_args, timing_parser  # noqa: E402
from engines import CpuShare  # noqa: E402

from heron.config import TrainConfig  # noqa: E402
from heron.data.images import find_images, try_load_image  # noqa: E402
from heron.data.transforms import eval_transform  # noqa: E402
from heron.serve.export import export_onnx  # noqa: E402
from heron.serve.onnx_model import OnnxClassifier  # noqa: E402
from heron.tasks.classify import load_run, train  # noqa: E402
from heron.transfer.engine import inference_copy  # noqa: E402

HYMENOPTERA = Path("/work/shared/data/hymenoptera")


def _run_folder(source: Path | None, workdir: Path, epochs: int) -> Path:
    """`source` when it is a run folder; else a run trained on `source` (or the default data) in `workdir`."""
    if source is not None and (source / "config.json").is_file():
        return source
    if source is None and HYMENOPTERA.is_dir():
        source = HYMENOPTERA
    if source is None:
        from heron.data.synthetic import write_shapes

        write_shapes(workdir / "shapes", per_class=40, size=160)  # shapes/<shape>/<n>.png
        source = workdir / "shapes"
    print(f"training a run on {source} (efficientnet_lite0, 224x224, head only) ...", flush=True)
    config = TrainConfig(data=str(source), out=str(workdir / "run"), epochs=epochs, quiet=True, figures="none",
                         seed=0)
    return train(config).path


def _batches(run: Path, pre, batch_size: int, count: int) -> list[np.ndarray]:
    """`count` uint8 batches of the run's data's photos (valid/ first), decoded and resized as predict does."""
    data = Path(load_run(run).config.data)
    files = find_images(data / "valid") if (data / "valid").is_dir() else find_images(data)
    files = files + (find_images(data) if len(files) < batch_size * count else [])
    transform, images = eval_transform(pre), []
    for path in files:
        image, _ = try_load_image(path, min_size=pre.decode_min_size())
        if image is not None:
            images.append(transform(image).numpy())
        if len(images) == batch_size * count:
            break
    while len(images) < batch_size * count:  # a small folder: go round again
        images += images[: batch_size * count - len(images)]
    stacked = np.stack(images)  # (count * B, 3, H, W) uint8
    return [stacked[i * batch_size : (i + 1) * batch_size] for i in range(count)]


def _torch_runner(model: torch.nn.Module):
    model = model.eval().to(memory_format=torch.channels_last)

    def run(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).float().div_(255.0).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return torch.softmax(model(x), dim=1).numpy()

    return run


def _measure(runners: list[tuple[str, object]], batches: list[np.ndarray], repeats: int) -> list[tuple[float, object]]:
    """(images/s, other processes' CPU share) of each runner over all batches, median of `repeats`.

    The runners take turns, one pass each per repeat, so a change in the
    machine's load falls on all of them alike rather than on whichever ran then.
    """
    images = sum(len(b) for b in batches)
    times: list[list[float]] = [[] for _ in runners]
    shares: list[list[float]] = [[] for _ in runners]
    for _, run_batch in runners:  # warm-up
        run_batch(batches[0])
    for _ in range(repeats):
        for k, (_, run_batch) in enumerate(runners):
            with CpuShare() as share:
                start = time.perf_counter()
                for batch in batches:
                    run_batch(batch)
                times[k].append(time.perf_counter() - start)
            if share.others is not None:
                shares[k].append(share.others)
    return [(images / statistics.median(t), statistics.mean(s) if s else None) for t, s in zip(times, shares)]


def main() -> None:
    parser = timing_parser(__doc__)
    parser.add_argument("source", nargs="?", type=Path, help="a run folder, or a data folder to train one on")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=4, help="batches timed per repeat (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=5, help="head epochs when a run is trained first")
    args = parse_timing_args(parser)
    with tempfile.TemporaryDirectory(prefix="heron-bench-export-") as tmp:
        run = _run_folder(args.source, Path(tmp), args.epochs)
        out = Path(tmp) / "model.onnx"
        export_onnx(run, out, say=lambda line: print(line))
        loaded = load_run(run)
        batches = _batches(run, loaded.pre, args.batch_size, args.batches)
        onnx_model = OnnxClassifier(out, threads=torch.get_num_threads())
        runners = [("torch fp32, plain network", _torch_runner(loaded.model)),
                   ("torch fp32, batch norm folded (heron predict)", _torch_runner(inference_copy(loaded.model))),
                   ("onnxruntime fp32 (exported model.onnx)", onnx_model.predict)]
        reference = runners[0][1](batches[0])
        print(f"run {run} ({loaded.config.arch}, input {tuple(loaded.pre.size)}, {len(loaded.classes)} classes); "
              f"{args.batches} batches of {args.batch_size}, decoding excluded")
        gap = np.abs(onnx_model.predict(batches[0]) - reference).max()
        print(f"max |onnxruntime - torch| probability on a batch: {gap:.1e}")
        print(machine())
        print(f"{'runtime':42s} {'img/s':>8s} {'ratio':>7s}  other processes' CPU share")
        results = _measure(runners, batches, args.repeats)
        baseline = results[0][0]
        for (name, _), (rate, others) in zip(runners, results):
            load = f"{others:.0%}" if others is not None else "?"
            print(f"{name:42s} {rate:8.1f} {rate / baseline:6.2f}x  {load}")


if __name__ == "__main__":
    main()
