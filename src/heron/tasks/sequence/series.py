"""Classify 1-D signals (the UCR archive's kind): a network trained from scratch on z-normalised series.

`train_series(SeriesConfig(train="X_TRAIN.tsv", test="X_TEST.tsv"))`:

1. read the training file (`heron.data.series`), map its labels to class
   indices (the names keep the file's spelling), z-normalise every series;
2. hold out a stratified `valid_pct` of the training series (seeded), train
   with the Learner (AdamW, one-cycle) and score the held-out part;
3. `refit` (the default): train a fresh model, same seed and epochs, on every
   training series and keep that one. With 50 training series, a fifth held
   out is a fifth of the data lost; the validation score of step 2 still says
   how well the recipe does on series it has not seen;
4. with a test file, score the kept model on it: `test_accuracy`.

Models (`MODELS`): `fcn` and `resnet1d` (Wang et al. 2017, in
`heron.models.conv_nets` as `fcn` and `conv1d_resnet`), `conv1d_net` (the ECG net there, strided and
pooled) and `gru` (`heron.models.rnn.SequenceModel` over the values one step
at a time, its last state classified). All take `(N, 1, T)`; the GRU wrapper
turns that into `(N, T, 1)`. The default, `conv1d_net`, was the most
accurate and the cheapest on GunPoint (UCR; 50 training series of 150
values) in benchmarks/series.py, one CPU thread: test accuracy 0.993 / 0.993
/ 1.000 over seeds 0-2 in about 12 s each, against 1-NN Euclidean's 0.913;
`fcn` 0.993 / 0.987 / 0.967 in 21 s, `resnet1d` 0.967 / 0.967 / 0.953 in
48 s, `gru` 0.793. It needs series of >= 32 values (five halvings); shorter
ones get a DataError that names `fcn`, which takes any length.

The run folder holds config.json (settings, classes, the model's constructor
arguments, scores), model.safetensors, metrics.jsonl (one line per epoch and a
last `test` line), classes.txt, confusion.png (test set, else the held-out
part) and examples.png (a few training series per class).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from heron.data.series import SeriesSet, read_series, split_series
from heron.errors import DataError, ModelError
from heron.models import build, load_weights, save_weights
from heron.models.rnn import SequenceModel
from heron.train import Learner, MetricsLogger
from heron.train.metrics import confusion_matrix
from heron.train.run import RunFolder

__all__ = ["MODELS", "SeriesConfig", "SeriesGRU", "SeriesRun", "build_series_model", "train_series",
           "load_series_run", "predict_series", "LoadedSeriesRun"]

MODELS = ("fcn", "resnet1d", "conv1d_net", "gru")
# The registry's name where it differs from the choice here ("resnet*" in the registry means the ImageNet ResNets).
_ARCH = {"resnet1d": "conv1d_resnet"}
MIN_LENGTH = {"conv1d_net": 32}  # its stem and four stages halve the length five times


@dataclass
class SeriesConfig:
    """`heron series train`: flags map one-to-one onto these fields."""

    train: str = ""  # UCR-format file: label, then values, per line
    test: str | None = None  # scored after training when given
    out: str | None = None  # run folder (default runs/series-<file>-<time>)
    overwrite: bool = False
    model: str = "conv1d_net"
    epochs: int = 60
    lr: float = 1e-2  # one-cycle peak
    batch_size: int = 16
    weight_decay: float = 1e-2
    valid_pct: float = 0.2
    refit: bool = True  # after validating, train again on every training series and keep that model
    hidden_size: int = 64  # gru only
    seed: int = 0
    quiet: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SeriesRun:
    """A finished run: its folder, class names and scores (valid_accuracy, test_accuracy, seconds ...)."""

    path: Path
    classes: list[str]
    metrics: dict
    history: list[dict] = field(default_factory=list)


class SeriesGRU(nn.Module):
    """`(N, 1, T)` -> a GRU over the T values -> logits `(N, classes)` from the last step's state."""

    def __init__(self, num_classes: int, hidden_size: int = 64, num_layers: int = 1, embed_dim: int = 32,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.rnn = SequenceModel(num_classes, input_size=1, embed_dim=embed_dim, hidden_size=hidden_size,
                                 num_layers=num_layers, cell="gru", dropout=dropout, output="last")
        self.config = self.rnn.config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x.transpose(1, 2))  # (N, 1, T) -> (N, T, 1) -> (N, classes)


def build_series_model(name: str, num_classes: int, hidden_size: int = 64) -> tuple[nn.Module, dict]:
    """(model, spec): the spec (name + constructor arguments) rebuilds it; see `_from_spec`."""
    if name not in MODELS:
        raise ModelError(f"unknown series model {name!r}; choose one of {', '.join(MODELS)}")
    if name == "gru":
        spec = {"name": "gru", "kwargs": {"num_classes": num_classes, "hidden_size": hidden_size}}
    else:
        spec = {"name": name, "arch": _ARCH.get(name, name), "kwargs": {"num_classes": num_classes, "in_chans": 1}}
    model = _from_spec(spec)
    if name == "gru":
        spec["sequence_model"] = model.config  # SequenceModel's own arguments, for readers of config.json
    return model, spec


def _from_spec(spec: dict) -> nn.Module:
    if spec["name"] == "gru":
        return SeriesGRU(**spec["kwargs"])
    return build(spec.get("arch", spec["name"]), **spec["kwargs"])


# ---------------------------------------------------------------- data


def _tensors(data: SeriesSet, classes: list[str] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs `(N, 1, T)` float32 (z-normalised, zero-padded) and targets `(N,)` (zeros when unlabelled)."""
    x = torch.from_numpy(data.to_array())[:, None, :]  # (N, 1, T)
    if classes is None or data.labels is None:
        return x, torch.zeros(len(data), dtype=torch.long)
    return x, torch.from_numpy(data.targets(classes))


def _check_length(model: str, data: SeriesSet, length: int) -> None:
    need = MIN_LENGTH.get(model, 1)
    if length < need:
        raise DataError(f"{data.path}, line {data.line_numbers[0]}: series of {length} values are too short for "
                        f"{model} (needs >= {need}); choose --model fcn, resnet1d or gru")


def _loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int | None = None) -> DataLoader:
    """Training (`seed` given): shuffled, seeded, the last short batch dropped; else in order, whole.

    Dropping the remainder matters with batch norm on small sets: 50 series in
    batches of 16 would end every epoch on a batch of 2, whose statistics are
    mostly noise (a different 2 are left out each epoch, so all are seen).
    """
    if seed is None:
        return DataLoader(TensorDataset(x, y), batch_size=256)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=generator,
                      drop_last=len(x) > batch_size)


# ---------------------------------------------------------------- training


def _fit(config: SeriesConfig, num_classes: int, train: tuple, valid: tuple | None, logger: MetricsLogger,
         phase: str) -> tuple[nn.Module, dict, Learner]:
    torch.manual_seed(config.seed)
    model, spec = build_series_model(config.model, num_classes, config.hidden_size)
    valid_dl = _loader(*valid, config.batch_size) if valid is not None else None
    learner = Learner(model, _loader(*train, config.batch_size, config.seed), valid_dl, lr=config.lr,
                      weight_decay=config.weight_decay, callbacks=[logger], quiet=config.quiet)
    learner.fit(config.epochs, lr=config.lr, phase=phase)
    return model, spec, learner


def _probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Softmax `(N, classes)` in eval mode, in batches."""
    model.eval()
    with torch.inference_mode():
        return torch.cat([torch.softmax(model(xb).float(), dim=1) for xb in x.split(256)])


def train_series(config: SeriesConfig) -> SeriesRun:
    """Train `config.model` on `config.train` (see the module docstring); returns the run."""
    started = time.time()
    data = read_series(config.train)
    classes = data.require_classes(2)
    test = read_series(config.test) if config.test else None  # a bad test file fails before training
    x, y = _tensors(data, classes)
    _check_length(config.model, data, x.shape[-1])
    test_xy = _tensors(test, classes) if test is not None else None
    run = RunFolder.create(config.out, f"series-{Path(config.train).stem}", overwrite=config.overwrite)
    run.write_json("config.json", config.to_dict())
    logger = MetricsLogger(run / "metrics.jsonl")

    train_idx, valid_idx = split_series(y.numpy(), config.valid_pct, config.seed)
    valid = (x[valid_idx], y[valid_idx]) if len(valid_idx) else None
    model, spec, learner = _fit(config, len(classes), (x[train_idx], y[train_idx]), valid, logger, "train")
    history = list(learner.history)
    metrics: dict = {"model": config.model, "train_series": len(train_idx), "valid_series": len(valid_idx),
                     "length": int(x.shape[-1])}
    valid_pred = None
    if valid is not None:
        valid_pred = _probs(model, valid[0]).argmax(1)
        metrics["valid_accuracy"] = float((valid_pred == valid[1]).float().mean())
    if config.refit and valid is not None:
        model, spec, learner = _fit(config, len(classes), (x, y), None, logger, "refit")
        history += learner.history
    metrics["train_seconds"] = round(time.time() - started, 2)

    if test_xy is not None:
        test_pred = _probs(model, test_xy[0]).argmax(1)
        metrics["test_accuracy"] = float((test_pred == test_xy[1]).float().mean())
        metrics["test_series"] = len(test)
        _append_line(run / "metrics.jsonl", {"phase": "test", "test_accuracy": metrics["test_accuracy"],
                                             "test_series": len(test)})
        shown = ("test", test_xy[1], test_pred)
    else:
        shown = ("valid", valid[1], valid_pred) if valid is not None else None
    metrics["confusion_of"] = shown[0] if shown is not None else None  # which series confusion.png counts
    metrics["seconds"] = round(time.time() - started, 2)
    _write(run, config, classes, spec, model, metrics, data, shown)
    return SeriesRun(run.path, classes, metrics, history)


def _append_line(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def _write(run: RunFolder, config: SeriesConfig, classes: list[str], spec: dict, model: nn.Module,
           metrics: dict, data: SeriesSet, shown) -> None:
    from heron.interpret.plots import plot_confusion

    save_weights(model, run / "model.safetensors", metadata={"format": "heron.series"})
    run.write_text("classes.txt", "".join(f"{c}\n" for c in classes))
    run.write_json("config.json", {**config.to_dict(), "classes": classes, "model_spec": spec,
                                   "counts": data.counts(), "result": metrics})
    if shown is not None:
        split, truth, pred = shown
        matrix = confusion_matrix(pred, truth, num_classes=len(classes))  # rows actual, columns predicted
        plot_confusion(matrix, classes, run / "confusion.png")
    plot_examples(data, classes, run / "examples.png")


def plot_examples(data: SeriesSet, classes: list[str], path: Path, per_class: int = 5) -> Path:
    """One panel per class with its first `per_class` series overlaid (z-normalised), side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from heron.interpret.plots import save_png

    shown = classes[:12]
    fig = Figure(figsize=(min(3.2 * len(shown), 16), 2.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(shown), sharey=True, squeeze=False)[0]
    values = data.to_array()
    for k, (ax, cls) in enumerate(zip(axes, shown)):
        members = [i for i, label in enumerate(data.labels) if label == cls][:per_class]
        for i in members:
            ax.plot(values[i, : data.lengths[i]], color=f"C{k % 10}", linewidth=0.9, alpha=0.8)
        ax.set_title(f"class {str(cls)[:16]}".replace("$", r"\$") + f" ({len(members)} shown)", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    axes[0].set_ylabel("z-normalised value", fontsize=8)
    more = f"; {len(classes) - len(shown)} more classes not shown" if len(classes) > len(shown) else ""
    fig.suptitle(f"{data.path.name}: the first {per_class} series of each class{more}", fontsize=10)
    return save_png(fig, path)


# ---------------------------------------------------------------- predicting


@dataclass
class LoadedSeriesRun:
    """A run's model (eval mode), class names and saved settings."""

    model: nn.Module
    classes: list[str]
    config: dict


def load_series_run(path: str | Path) -> LoadedSeriesRun:
    """Rebuild a `train_series` run's model from its config.json and model.safetensors."""
    run = RunFolder(path)
    if not run.exists("config.json") or not run.exists("model.safetensors"):
        raise DataError(f"{path}: not a finished series run (needs config.json and model.safetensors); "
                        "give the folder `heron series train` printed")
    config = run.read_json("config.json")
    if "model_spec" not in config or "classes" not in config:
        raise DataError(f"{path}/config.json: has no model_spec or classes; is it a `heron series train` run?")
    model = load_weights(_from_spec(config["model_spec"]), run / "model.safetensors")
    return LoadedSeriesRun(model.eval(), list(config["classes"]), config)


def predict_series(run_path: str | Path, file: str | Path, labelled: bool = True) -> tuple[list[str], float | None]:
    """(predicted class name per series of `file`, accuracy when its labels are all known classes, else None).

    `labelled`: the file's first field is a label (UCR files); False: every field is a value.
    """
    loaded = load_series_run(run_path)
    data = read_series(file, labelled=labelled)
    x, _ = _tensors(data, None)
    _check_length(loaded.config["model_spec"]["name"], data, x.shape[-1])
    pred = _probs(loaded.model, x).argmax(1).tolist()
    names = [loaded.classes[i] for i in pred]
    accuracy = None
    if data.labels is not None and set(data.labels) <= set(loaded.classes):
        accuracy = float(np.mean([p == t for p, t in zip(names, data.labels)]))
    return names, accuracy
