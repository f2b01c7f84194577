"""heron's series classifiers against the UCR archive's baseline, 1-NN with Euclidean distance, in one run.

    python benchmarks/series.py DATA_DIR [--models fcn gru ...] [--epochs N]

DATA_DIR holds one UCR data set: a `*_TRAIN*` and a `*_TEST*` file (label,
then values, per line). Both methods see the same z-normalised series
(`heron.data.series`); the 1-NN classifier is scikit-learn's
KNeighborsClassifier(n_neighbors=1) (Euclidean). Each heron model is trained
with `train_series` at its defaults (held-out check, then refit on all the
training series). Prints, per method, the test accuracy, wall and CPU seconds,
and the accuracy difference to 1-NN.

Measured (GunPoint, `--threads 1 --seeds 0 1 2`, a shared 2-core machine):
1-NN 0.9133; conv1d_net 0.9933 / 0.9933 / 1.0000 (12-13 s CPU each); fcn
0.9933 / 0.9867 / 0.9667 (21 s); resnet1d 0.9667 / 0.9667 / 0.9533 (46-52 s);
gru 0.7933 (seed 0, 15 s). On a machine other processes also load, give
--threads 1: two threads fighting for busy cores ran several times slower.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine, parse_timing_args, timing_parser  # noqa: E402


def find_split_files(folder: Path) -> tuple[Path, Path]:
    """The `*_TRAIN*` and `*_TEST*` files of a UCR data set folder."""
    def one(tag: str) -> Path:
        found = sorted(p for p in folder.iterdir() if p.is_file() and f"_{tag}" in p.name.upper()
                       and p.suffix.lower() in (".tsv", ".txt", ".csv", ""))
        if not found:
            sys.exit(f"{folder}: no *_{tag}* file (a UCR data set folder holds X_TRAIN.tsv and X_TEST.tsv)")
        return found[0]
    return one("TRAIN"), one("TEST")


def nearest_neighbour_accuracy(train_file: Path, test_file: Path) -> tuple[float, float]:
    """(test accuracy, seconds) of 1-NN Euclidean on the z-normalised series, zero-padded to a common length."""
    from sklearn.neighbors import KNeighborsClassifier

    from heron.data.series import read_series

    start = time.perf_counter()
    train, test = read_series(train_file), read_series(test_file)
    length = int(max(train.lengths.max(), test.lengths.max()))
    knn = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(train.to_array(length), train.labels)
    accuracy = float((knn.predict(test.to_array(length)) == test.labels).mean())
    return accuracy, time.perf_counter() - start


def heron_accuracy(train_file: Path, test_file: Path, model: str, epochs: int | None, seed: int,
                   refit: bool = True) -> dict:
    from heron.tasks.sequence.series import SeriesConfig, train_series

    config = SeriesConfig(train=str(train_file), test=str(test_file), model=model, seed=seed, refit=refit,
                          quiet=True)
    if epochs is not None:
        config.epochs = epochs
    wall, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="heron-series-bench-") as tmp:
        config.out = str(Path(tmp) / "run")
        run = train_series(config)
    return {"accuracy": run.metrics["test_accuracy"], "valid": run.metrics.get("valid_accuracy"),
            "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def main() -> None:
    parser = timing_parser(__doc__)
    parser.add_argument("data", type=Path, help="UCR data set folder (X_TRAIN and X_TEST files)")
    parser.add_argument("--models", nargs="+", default=["conv1d_net"],
                        help="heron models to train: fcn resnet1d conv1d_net gru (default conv1d_net)")
    parser.add_argument("--epochs", type=int, help="epochs per fit (default: SeriesConfig's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one training run per seed")
    parser.add_argument("--no-refit", dest="refit", action="store_false",
                        help="keep the model trained without the held-out fifth (as `heron series train --no-refit`)")
    args = parse_timing_args(parser)
    train_file, test_file = find_split_files(args.data)
    print(f"{train_file.name} / {test_file.name}; {machine()}")
    knn, knn_seconds = nearest_neighbour_accuracy(train_file, test_file)
    print(f"1-NN Euclidean (sklearn)  test accuracy = {knn:.4f}  ({knn_seconds:.2f} s)")
    for model in args.models:
        for seed in args.seeds:
            r = heron_accuracy(train_file, test_file, model, args.epochs, seed, args.refit)
            valid = f"valid {r['valid']:.2f}  " if r["valid"] is not None else ""
            tag = "" if args.refit else " no-refit"
            print(f"heron {model:<10} seed {seed}{tag}  test accuracy = {r['accuracy']:.4f}  {valid}"
                  f"({r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU)  vs 1-NN {r['accuracy'] - knn:+.4f}", flush=True)


if __name__ == "__main__":
    main()
