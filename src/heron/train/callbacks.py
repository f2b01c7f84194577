"""Training events and the callbacks that ship with the Learner.

A callback is an object with a method per event it cares about; the Learner
calls `cb.<event>(learner)` for every callback, in order of `cb.order`, and the
callback reads (and may change) the learner's public state: `epoch`,
`iteration`, `batch`, `loss`, `record`, `history`, `phase`, `stop_training`,
`model`, `opt`. Nothing is patched onto other classes and nothing is global.

Events, in the order they happen:
    before_fit
      before_epoch
        before_train
          before_batch  after_loss  after_batch     (for every batch)
        after_train
        before_validate  after_validate             (when there is validation data)
      after_epoch          (learner.record holds the epoch's metrics)
      on_checkpoint        (learner.good_state holds the finished epoch)
    after_fit
A run that stops early (Ctrl-C, a NaN loss, an exception) restores the last
finished epoch, calls `on_checkpoint` again, then `after_cancel` instead of
`after_fit`.

With several processes (`heron.train.distributed`) every rank runs the same
events on the same reduced records; only rank 0 writes. A callback whose
every effect is output (a file, the terminal) sets `main_only = True` and
runs on rank 0 alone; one that also keeps state the ranks must share (a
best value, a patience counter) runs everywhere and checks
`learner.is_main` before writing.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from heron.errors import TrainingError

__all__ = ["EVENTS", "Callback", "EarlyStopping", "MetricsLogger", "Monitor", "ProgressBar", "TimeBudget"]

EVENTS = (
    "before_fit", "before_epoch", "before_train", "before_batch", "after_loss", "after_batch",
    "after_train", "before_validate", "after_validate", "after_epoch", "on_checkpoint",
    "after_cancel", "after_fit",
)


class Callback:
    """Base class: every event is a no-op; override the ones you need.

    `order` sorts callbacks (low runs first). `main_only` callbacks run on
    rank 0 only (see the module docstring). `state_dict`/`load_state_dict`
    let a callback's own counters survive a checkpoint and resume.
    """

    order: int = 50
    main_only: bool = False

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def before_fit(self, learner) -> None: ...
    def before_epoch(self, learner) -> None: ...
    def before_train(self, learner) -> None: ...
    def before_batch(self, learner) -> None: ...
    def after_loss(self, learner) -> None: ...
    def after_batch(self, learner) -> None: ...
    def after_train(self, learner) -> None: ...
    def before_validate(self, learner) -> None: ...
    def after_validate(self, learner) -> None: ...
    def after_epoch(self, learner) -> None: ...
    def on_checkpoint(self, learner) -> None: ...
    def after_cancel(self, learner) -> None: ...
    def after_fit(self, learner) -> None: ...


class Monitor:
    """Tracks the best value of one metric; "auto" mode minimises losses and errors."""

    def __init__(self, name: str, mode: str = "auto", min_delta: float = 0.0) -> None:
        if mode == "auto":
            mode = "min" if ("loss" in name or "error" in name) else "max"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.name, self.mode, self.min_delta = name, mode, abs(min_delta)
        self.best: float | None = None

    def value(self, record: dict, who: str) -> float:
        if record.get(self.name) is None:
            keys = ", ".join(k for k, v in record.items() if isinstance(v, (int, float)))
            raise TrainingError(f"{who} monitors {self.name!r} but the epoch record has only {keys}; "
                                "pass validation data or monitor one of those")
        return float(record[self.name])

    def improved(self, value: float) -> bool:
        """True (and remember `value`) when it beats the best by more than min_delta."""
        if math.isnan(value):
            return False
        better = (self.best is None or
                  (value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta))
        if better:
            self.best = value
        return better

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best")


class EarlyStopping(Callback):
    """Stops training when `monitor` has not improved for `patience` epochs.

    The epoch in progress always finishes; the learner stops before the next.
    """

    order = 60

    def __init__(self, monitor: str = "valid_loss", patience: int = 3, min_delta: float = 0.0,
                 mode: str = "auto") -> None:
        self.monitor = Monitor(monitor, mode, min_delta)
        self.patience = patience
        self.wait = 0
        self.stopped_epoch: int | None = None

    def before_fit(self, learner) -> None:
        self.monitor.best, self.wait, self.stopped_epoch = None, 0, None

    def after_epoch(self, learner) -> None:
        if self.monitor.improved(self.monitor.value(learner.record, "EarlyStopping")):
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            learner.stop_training = True
            self.stopped_epoch = learner.epoch

    def state_dict(self) -> dict:
        return {**self.monitor.state_dict(), "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        self.monitor.load_state_dict(state)
        self.wait = int(state.get("wait", 0))


class TimeBudget(Callback):
    """Stops training at an epoch's end when another epoch would pass `minutes` since the fit began.

    Another epoch is judged to take as long as the mean so far, so a budget is
    kept, not overrun by a whole epoch; `hit` says whether it stopped the run.
    The finished epochs are kept, as with any early stop.
    """

    def __init__(self, minutes: float) -> None:
        if minutes <= 0:
            raise TrainingError(f"a time budget of {minutes} minutes: give more than 0")
        self.seconds = minutes * 60.0
        self.started = 0.0
        self.hit = False

    def before_fit(self, learner) -> None:
        self.started = time.perf_counter()

    def after_epoch(self, learner) -> None:
        elapsed = time.perf_counter() - self.started
        done = learner.epoch - learner.start_epoch
        if learner.epoch < learner.epochs and elapsed + elapsed / max(done, 1) > self.seconds:
            learner.stop_training = self.hit = True


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLogger(Callback):
    """Appends one JSON object per epoch to `metrics.jsonl` (in `path`, or `path` itself if it ends in .jsonl).

    Every line is written and flushed as soon as the epoch ends, so a crashed
    or killed process loses nothing already logged; the file is fsync'ed when
    the fit ends or is cancelled (once, not after each of a head's hundred
    millisecond epochs). NaN/inf values are written as null. On
    resume, lines the interrupted run wrote past the checkpoint's epoch are
    dropped so every epoch appears once.
    """

    order = 20
    main_only = True

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        self.path = path if path.suffix == ".jsonl" else path / "metrics.jsonl"

    def before_fit(self, learner) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if learner.resumed_from is not None and self.path.is_file():
            self._drop_after(learner.phase, learner.start_epoch)

    def _drop_after(self, phase: str, epoch: int) -> None:
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut off by a crash
                continue
            if not (row.get("phase") == phase and row.get("epoch", 0) > epoch):
                kept.append(line)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def after_epoch(self, learner) -> None:
        line = json.dumps({k: _json_safe(v) for k, v in learner.record.items()})
        with open(self.path, "a") as fh:
            fh.write(line + "\n")

    def _sync(self, learner) -> None:
        if self.path.is_file():
            with open(self.path, "a") as fh:
                os.fsync(fh.fileno())

    after_fit = _sync
    after_cancel = _sync


class ProgressBar(Callback):
    """tqdm bars over epochs and batches, and a summary line per epoch (on stderr).

    Past `MAX_LINES` epochs (a head on cached features may train 100), only
    the first, the last and evenly spaced epochs print their line.
    """

    order = 10
    main_only = True
    MAX_LINES = 10

    def __init__(self, file: TextIO | None = None) -> None:
        self.file = file
        self.epoch_bar = None
        self.batch_bar = None

    def before_fit(self, learner) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.epoch_bar = tqdm(total=learner.epochs, initial=learner.start_epoch, desc=str(learner.phase),
                              unit="epoch", file=self._out(), dynamic_ncols=True)

    def _out(self) -> TextIO:
        return self.file or sys.stderr

    def before_train(self, learner) -> None:
        self.batch_bar = self._tqdm(total=learner.num_batches, leave=False, unit="batch", file=self._out(),
                                    desc=f"epoch {learner.epoch}/{learner.epochs}", dynamic_ncols=True)

    def after_batch(self, learner) -> None:
        self.batch_bar.update(1)
        self.batch_bar.set_postfix(loss=f"{learner.loss.item():.4f}", refresh=False)

    def after_train(self, learner) -> None:
        self._close_batches()

    def after_epoch(self, learner) -> None:
        self.epoch_bar.update(1)
        every = -(-learner.epochs // self.MAX_LINES)  # a long fit prints about MAX_LINES epoch lines
        if learner.epoch % every == 0 or learner.epoch in (1, learner.epochs) or learner.stop_training:
            self.epoch_bar.write(format_record(learner.record, learner.epochs), file=self._out())

    def _close_batches(self) -> None:
        if self.batch_bar is not None:
            self.batch_bar.close()
            self.batch_bar = None

    def _close(self, learner) -> None:
        self._close_batches()
        if self.epoch_bar is not None:
            self.epoch_bar.close()
            self.epoch_bar = None

    after_fit = _close
    after_cancel = _close


def format_record(record: dict, epochs: int) -> str:
    """One line per epoch: `head 2/5  train_loss 0.41  valid_loss 0.38  valid_accuracy 0.912  lr 1e-03  3.1s`."""
    parts = [f"{record.get('phase')} {record.get('epoch')}/{epochs}"]
    for key, value in record.items():
        if key in ("phase", "epoch", "seconds"):
            continue
        if isinstance(value, float):
            parts.append(f"{key} {value:.2e}" if key == "lr" else f"{key} {value:.4f}")
    parts.append(f"{record.get('seconds', 0.0):.1f}s")
    return "  ".join(parts)
