"""Checkpoints a run can resume from exactly, written so that a crash never leaves a broken one.

A checkpoint is two files in a folder:
- `last.safetensors`: the model weights (safetensors, no pickle);
- `last.state.pt`: everything else needed to continue bit for bit: optimizer
  and grad-scaler state, schedule settings, the epoch, the history, each
  callback's state and the torch / CUDA / numpy / Python random-number
  states. Only tensors, numbers, strings, lists and dicts, so it loads with
  `torch.load(weights_only=True)`; the history is stored as a JSON string.

Each file is written to a temporary name, synced, then renamed over the old
one (`os.replace`), so a reader sees either the old or the new file. Both
carry the same token; a pair whose tokens differ (a save cut off between the
two renames) is reported as damaged rather than silently mixed.

`Checkpoint(dir)` is the callback that writes the learner's last good state
(the end of the last finished epoch) after every epoch and again when a run
is cancelled, and optionally keeps `best.safetensors` by a monitored metric.
"""

from __future__ import annotations

import json
import time
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from heron._atomic import atomic_save, atomic_write_json

from heron.errors import TrainingError
from heron.train.callbacks import Callback, Monitor

__all__ = [
    "Checkpoint",
    "checkpoint_info",
    "clone_to_cpu",
    "get_rng_state",
    "load_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
    "set_rng_state",
]

FORMAT_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.pt"


def clone_to_cpu(obj: Any) -> Any:
    """A deep copy of nested dicts/lists/tuples with every tensor copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: clone_to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_to_cpu(v) for v in obj)
    return obj


# ---------------------------------------------------------------- RNG states


def get_rng_state(generator: torch.Generator | None = None) -> dict:
    """Every random-number state a training epoch draws from, as tensors and plain numbers.

    `generator` is a DataLoader's own generator, when it has one.
    """
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(cached)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["loader"] = generator.get_state()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    """Restore what `get_rng_state` captured."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "loader" in state:
        generator.set_state(state["loader"])


# ---------------------------------------------------------------- files


def _write_weights(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    tensors = {k: v.contiguous() for k, v in state.items()}
    atomic_save(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _write_state(state: dict, path: Path) -> None:
    atomic_save(path, lambda tmp: torch.save(state, tmp))


def save_checkpoint(directory: str | Path, snapshot: dict, name: str = "last") -> Path:
    """Write a learner snapshot as `<name>.safetensors` + `<name>.state.pt` in `directory`.

    Returns the state file's path. See the module docstring for the format.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    meta = {"token": token, "epoch": str(snapshot["epoch"]), "phase": str(snapshot["phase"])}
    _write_weights(snapshot["model"], directory / f"{name}{WEIGHTS_SUFFIX}", meta)
    state = {k: v for k, v in snapshot.items() if k not in ("model", "history")}
    state.update(format=FORMAT_VERSION, token=token, history=json.dumps(_plain(snapshot["history"])))
    state_path = directory / f"{name}{STATE_SUFFIX}"
    _write_state(state, state_path)
    return state_path


def _plain(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars to floats, NaN/inf to None."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """(weights file, state file) for a checkpoint folder or either of its two files."""
    path = Path(path)
    if path.is_dir():
        path = path / f"last{STATE_SUFFIX}"
    if path.name.endswith(STATE_SUFFIX):
        state = path
        weights = path.with_name(path.name[: -len(STATE_SUFFIX)] + WEIGHTS_SUFFIX)
    elif path.name.endswith(WEIGHTS_SUFFIX):
        weights = path
        state = path.with_name(path.name[: -len(WEIGHTS_SUFFIX)] + STATE_SUFFIX)
    else:
        raise TrainingError(f"{path}: not a checkpoint; pass the checkpoint folder or its last.state.pt")
    for file in (weights, state):
        if not file.is_file():
            raise TrainingError(f"{file}: checkpoint file is missing; pass the folder a run saved its checkpoint in")
    return weights, state


def _read_state(state_path: Path) -> dict:
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file raises many types
        raise TrainingError(f"{state_path}: cannot read the checkpoint ({type(err).__name__}); "
                            "it is damaged: start the run again") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise TrainingError(f"{state_path}: not a heron checkpoint of format {FORMAT_VERSION}")
    return state


def checkpoint_info(path: str | Path) -> dict:
    """The phase, epoch, epochs and schedule a checkpoint was saved at, without loading weights.

    `finished` says whether that phase had run all its epochs, so a caller
    resuming a multi-phase run knows which phase to continue.
    """
    _, state_path = resolve_checkpoint(path)
    state = _read_state(state_path)
    return {"phase": state["phase"], "epoch": state["epoch"], "epochs": state["epochs"],
            "schedule": state["schedule"]["name"], "finished": state["epoch"] >= state["epochs"]}


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint back into the snapshot dict `save_checkpoint` wrote (tensors on the CPU)."""
    weights_path, state_path = resolve_checkpoint(path)
    state = _read_state(state_path)
    try:
        from safetensors import safe_open

        with safe_open(str(weights_path), framework="pt") as fh:
            token = (fh.metadata() or {}).get("token")
        model = load_file(str(weights_path))
    except Exception as err:
        raise TrainingError(f"{weights_path}: cannot read the checkpoint weights ({type(err).__name__}); "
                            "it is damaged: start the run again") from None
    if token != state["token"]:
        raise TrainingError(f"{weights_path}: weights and {state_path.name} come from different saves "
                            "(the save was cut off); start the run again")
    snapshot = {k: v for k, v in state.items() if k not in ("format", "token")}
    snapshot["model"] = model
    snapshot["history"] = json.loads(state["history"])
    return snapshot


# ---------------------------------------------------------------- callback


class Checkpoint(Callback):
    """Saves the last finished epoch to `dir`: every `every_seconds` at most, at the end, and when cancelled.

    A head on cached features finishes an epoch in milliseconds; writing a
    checkpoint after each of 100 such epochs would cost more than training.
    So an epoch is saved when `every_seconds` have passed since the last save
    (0: every epoch); the last epoch, an early stop and a cancelled run
    (Ctrl-C, NaN loss) are always saved, so only a killed process loses the
    epochs since the last save.

    With `save_best=True` it also writes `best.safetensors` (and `best.json`
    with the epoch and value) whenever `monitor` improves. The best value is
    kept across the fits that use this callback and saved in the checkpoint,
    so a resumed run keeps comparing against it.

    With several processes it runs on every rank (the best value stays the
    same everywhere) and only rank 0 writes; the Learner waits for that
    write (a barrier) before any rank reads a checkpoint back.
    """

    order = 90

    def __init__(self, dir: str | Path, monitor: str = "valid_loss", save_best: bool = False,
                 mode: str = "auto", min_delta: float = 0.0, every_seconds: float = 10.0) -> None:
        self.dir = Path(dir)
        self.save_best = save_best
        self.monitor = Monitor(monitor, mode, min_delta)
        self.every_seconds = every_seconds
        self._last_save: float | None = None
        self._saved: tuple | None = None  # (phase, epoch) last written, so a cancel does not write it twice

    def state_dict(self) -> dict:
        return self.monitor.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.monitor.load_state_dict(state)

    def after_epoch(self, learner) -> None:
        if not self.save_best:
            return
        value = self.monitor.value(learner.record, "Checkpoint")
        if self.monitor.improved(value) and learner.is_main:
            self._write_best(learner, value)

    def _write_best(self, learner, value: float) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().to("cpu", copy=True) for k, v in learner.model.state_dict().items()}
        meta = {"epoch": str(learner.epoch), "phase": str(learner.phase), "monitor": self.monitor.name}
        _write_weights(weights, self.dir / f"best{WEIGHTS_SUFFIX}", meta)
        info = {"monitor": self.monitor.name, "value": value, "epoch": learner.epoch, "phase": learner.phase}
        atomic_write_json(self.dir / "best.json", info)

    def before_fit(self, learner) -> None:
        self._last_save = time.monotonic()

    def on_checkpoint(self, learner) -> None:
        state = learner.good_state
        due = self._last_save is None or time.monotonic() - self._last_save >= self.every_seconds
        if due or learner.stop_training or state["epoch"] >= learner.epochs:
            self._save(learner, state)

    def after_cancel(self, learner) -> None:
        state = learner.good_state
        if state is not None and self._saved != (state["phase"], state["epoch"]):
            self._save(learner, state)

    def _save(self, learner, state: dict) -> None:
        if learner.is_main:
            save_checkpoint(self.dir, state)
        self._last_save, self._saved = time.monotonic(), (state["phase"], state["epoch"])
