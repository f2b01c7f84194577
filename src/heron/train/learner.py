"""The Learner: a model, its data, a loss and an optimizer, trained epoch by epoch.

`Learner.fit` runs the loop and fires the named events of
`heron.train.callbacks` at each step, passing itself to every callback. After
every epoch it keeps a "good state" (weights, optimizer, schedule step,
history, callback and random-number states) in memory; checkpoints are that
state written to disk. This is what makes the failure paths safe:

- a NaN/inf training loss stops the run, puts the last good weights back,
  saves them, and raises `TrainingError` saying what to do;
- Ctrl-C does the same, so an interrupted run never leaves half an epoch's
  updates posing as a finished epoch;
- `fit(..., resume=dir)` loads such a state and continues to exactly the
  weights an uninterrupted run reaches (same seed, same data).

Several processes (a process group from `heron.train.distributed.init_from_env`,
e.g. under torchrun): `fit` and `lr_find` train through
DistributedDataParallel, each rank on its share of every global batch, and
reach the weights a single process reaches on the same global batches; see
"Several processes" in the Learner's docstring.

Every `fit` builds a fresh optimizer over the parameters trainable at that
moment (or `param_groups`), so freeze -> fit -> unfreeze -> fit needs no extra
step; the one-cycle warm-up makes up for the empty optimizer moments.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from heron.errors import TrainingError
from heron.train import distributed
from heron.train.callbacks import Callback, ProgressBar
from heron.train.checkpoint import Checkpoint, clone_to_cpu, get_rng_state, load_checkpoint, set_rng_state
from heron.train.lr_find import LRFinderResult, lr_find
from heron.train.metrics import resolve_metric
from heron.train.optim import eager_optimizer
from heron.train.schedules import Schedule
from heron.nn.modes import set_train_mode
from heron.nn.precision import precision_dtype, resolve_precision

__all__ = ["Learner", "resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" -> CUDA when available, else the CPU; anything else as torch understands it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class _NonFiniteLoss(Exception):
    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.word = "NaN" if math.isnan(value) else "inf"


class Learner:
    """Trains `model` on `train_dl`, validating on `valid_dl` after every epoch.

    Batches are `(inputs, targets)`. `loss_fn` defaults to cross-entropy
    (binary cross-entropy on logits when `multilabel`). `optimizer` is
    "adamw", "sgd" (momentum 0.9) or a function `param_groups -> Optimizer`.
    `param_groups` are dicts as torch optimizers take them, each with its own
    "lr" (see `heron.transfer.freeze.discriminative_param_groups`); without
    them every trainable parameter is one group at `lr`. `metrics` are names
    from `heron.train.metrics` or functions `(probs, targets) -> float`.
    `precision` ("fp32", "bf16", "fp16", or "auto" resolved by
    `heron.nn.precision.resolve_precision`) runs forward and loss under
    autocast to that dtype, on the CPU as on CUDA; fp16 (CUDA only) adds a
    gradient scaler; "fp32" changes nothing. `amp` is the older switch for
    CUDA alone (bf16 where supported, else fp16), used when `precision` is
    "fp32"; `grad_clip` clips the gradient norm.

    State callbacks read: `model`, `opt`, `phase`, `epoch` (1-based, the one
    running), `epochs`, `start_epoch` (0, or the checkpoint's epoch when
    resuming from `resumed_from`), `iteration` (optimizer steps this fit),
    `batch_idx` (0-based in the epoch), `batch` = (xb, yb), `pred`, `loss`,
    `record` (the epoch's metrics), `history`, `good_state`, `stop_training`,
    `is_main`, `rank`, `world_size`, `global_batch_size` (samples in the
    current step, over all ranks).

    Several processes: when a process group of more than one is running,
    `fit` and `lr_find` wrap the model in DistributedDataParallel for their
    duration; `model` stays the plain module, so state dicts, checkpoints
    and `good_state` have no "module." prefix and are interchangeable with
    single-process ones. Loaders should follow the global-batch split
    (GlobalBatchSampler, FeatureBatches; `heron.train.distributed`); then:
    - every rank's mean loss is weighted by local_n * world / global_n, so
      the averaged gradient is the global batch's mean even when the ranks
      hold different numbers of samples (`loss_fn` must average over the
      batch, as torch's losses do by default); `loss` (and the train loss
      in the record) is the global batch's loss, the same on every rank;
    - validation runs on each rank's share and the predictions are
      gathered back into single-process order (padding dropped), so the
      metrics and `get_preds` equal a single process's, on every rank; a
      loader that is not split is evaluated whole on every rank;
    - the training loader's `set_epoch(epoch)` (its own, or the first of
      `distributed.loader_parts`: batch sampler, sampler, a wrapped
      `.loader`'s) is called with the 1-based epoch before each epoch, so
      the order is the same on every rank and on resume;
    - callbacks with `main_only` run on rank 0 only, the others run
      everywhere and write only where `is_main` (Checkpoint does);
    - `resume` is read by every rank after a barrier; a fit ends with a
      barrier, so rank 0's last checkpoint is complete when any rank goes on;
    - `lr_find` runs the same sweep on every rank (global losses, so the
      same decisions) and returns rank 0's result.
    Batch norm in train mode normalises each rank's share alone unless
    converted (`distributed.convert_sync_batchnorm`); dropout draws its own
    masks on each rank.
    """

    def __init__(
        self,
        model: nn.Module,
        train_dl: Iterable,
        valid_dl: Iterable | None = None,
        loss_fn: Callable | None = None,
        optimizer: str | Callable = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        metrics: Sequence[str | Callable] = ("accuracy",),
        callbacks: Iterable[Callback] = (),
        device: str | torch.device = "cpu",
        param_groups: Iterable[dict] | None = None,
        multilabel: bool = False,
        quiet: bool = False,
        amp: bool = False,
        channels_last: bool = False,
        grad_clip: float | None = None,
        precision: str = "fp32",
    ) -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.channels_last = channels_last
        self.model = model.to(self.device, memory_format=torch.channels_last) if channels_last else model.to(self.device)
        self.train_dl, self.valid_dl = train_dl, valid_dl
        self.multilabel = multilabel
        self.loss_fn = loss_fn or (nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss())
        if not (callable(optimizer) or optimizer in ("adamw", "sgd")):
            raise ValueError(f"optimizer must be 'adamw', 'sgd' or a function, got {optimizer!r}")
        self.optimizer, self.lr, self.weight_decay = optimizer, lr, weight_decay
        self.metrics = [resolve_metric(m, multilabel) for m in metrics]
        callbacks = list(callbacks)
        if not quiet and not any(isinstance(cb, ProgressBar) for cb in callbacks):
            callbacks.append(ProgressBar())
        self.callbacks = sorted(callbacks, key=lambda cb: getattr(cb, "order", 50))
        self.param_groups = None if param_groups is None else [{**g, "params": list(g["params"])} for g in param_groups]
        self.grad_clip = grad_clip
        self.amp_dtype = self._amp_dtype(amp, self.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.opt: torch.optim.Optimizer | None = None
        self.schedule: Schedule | None = None
        self.history: list[dict] = []
        self.phase, self.epoch, self.epochs, self.start_epoch = None, 0, 0, 0
        self.resumed_from: Path | None = None
        self.iteration, self.batch_idx, self.num_batches = 0, 0, 0
        self.xb = self.yb = self.pred = self.loss = None
        self.record: dict = {}
        self.good_state: dict | None = None
        self.stop_training = False
        self.global_batch_size = 0
        self._ddp: nn.Module | None = None  # DistributedDataParallel around `model` while fitting on several ranks

    # ------------------------------------------------------------ setup

    def _amp_dtype(self, amp: bool, precision: str) -> torch.dtype | None:
        if precision != "fp32":
            return precision_dtype(precision)
        if not amp or self.device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    @property
    def batch(self) -> tuple[Any, Any]:
        return self.xb, self.yb

    @property
    def rank(self) -> int:
        """This process's rank in the process group (0 with one process)."""
        return distributed.rank()

    @property
    def world_size(self) -> int:
        """Processes training together (1 without a process group)."""
        return distributed.world_size()

    @property
    def is_main(self) -> bool:
        """True on the one process that writes files and prints (rank 0; always with one process)."""
        return distributed.is_main()

    @property
    def checkpoint_dir(self) -> Path | None:
        """The folder of the first `Checkpoint` callback, if any."""
        return next((cb.dir for cb in self.callbacks if isinstance(cb, Checkpoint)), None)

    def _groups(self, lr: float | None) -> list[dict]:
        if self.param_groups is None:
            params = [p for p in self.model.parameters() if p.requires_grad]
            groups = [{"params": params, "lr": self.lr if lr is None else lr}]
        else:
            groups = [{**g, "params": list(g["params"]), "lr": g.get("lr", self.lr)} for g in self.param_groups]
            if lr is not None:  # the head's peak becomes lr; other groups keep their ratio to it
                scale = lr / groups[-1]["lr"]
                groups = [{**g, "lr": g["lr"] * scale} for g in groups]
        if not any(p.requires_grad for g in groups for p in g["params"]):
            raise TrainingError(f"{type(self.model).__name__} has no trainable parameters; "
                                "unfreeze some layers (heron.transfer.freeze.unfreeze) before training")
        return groups

    def create_opt(self, lr: float | None = None) -> torch.optim.Optimizer:
        """A fresh optimizer over the trainable parameters; each group remembers its peak lr."""
        groups = self._groups(lr)
        if self.optimizer == "adamw":
            opt = eager_optimizer(torch.optim.AdamW)(groups, lr=self.lr, weight_decay=self.weight_decay)
        elif self.optimizer == "sgd":
            opt = eager_optimizer(torch.optim.SGD)(groups, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        else:
            opt = self.optimizer(groups)
        for group in opt.param_groups:
            group["peak_lr"] = group["lr"]
        return opt

    # ------------------------------------------------------------ one step

    def to_device(self, batch: Any) -> tuple[Any, Any]:
        """(inputs, targets) on the learner's device; 4-D inputs channels-last if asked."""
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TrainingError("each batch must be a pair (inputs, targets); check the DataLoader's dataset")
        xb, yb = (self._move(b) for b in batch)
        if self.channels_last and isinstance(xb, torch.Tensor) and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb, yb

    def _move(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            return obj.to(self.device, non_blocking=True)
        if isinstance(obj, (tuple, list)):
            return type(obj)(self._move(o) for o in obj)
        return obj

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def forward_loss(self, xb: Any, yb: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions, loss) for one training batch, under autocast when AMP is on.

        On several processes (inside `fit` and `lr_find`) the forward runs
        through DistributedDataParallel and the loss is the global batch's
        (see the class docstring). Sets `global_batch_size`.
        """
        if self._ddp is not None:
            return self._global_forward_loss(xb, yb)
        self.global_batch_size = _batch_size(xb)
        return self._local_forward_loss(self.model, xb, yb)

    def _local_forward_loss(self, model: nn.Module, xb: Any, yb: Any) -> tuple[torch.Tensor, torch.Tensor]:
        with self._autocast():
            pred = model(xb)
            loss = self.loss_fn(pred, yb)
        return pred, loss

    def _global_forward_loss(self, xb: Any, yb: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's forward; the loss's value is the global batch mean, its gradient local_n * world / global_n."""
        pred, local = self._local_forward_loss(self._ddp, xb, yb)
        n = _batch_size(xb)
        stats = torch.stack([local.detach().double() * n, local.new_tensor(float(n), dtype=torch.float64)])
        total, count = distributed.all_reduce_sum(stats).tolist()
        self.global_batch_size = int(count)
        value = local.new_tensor(total / count)  # bitwise the same on every rank
        return pred, _GlobalMean.apply(local, value, n * self.world_size / count)

    def backward_step(self, loss: torch.Tensor) -> None:
        """Backward pass, optional gradient clipping, optimizer step, gradients cleared."""
        self.scaler.scale(loss).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.opt)
            params = [p for g in self.opt.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)

    # ------------------------------------------------------------ events and state

    def _event(self, name: str) -> None:
        main = self.is_main
        for cb in self.callbacks:
            if getattr(cb, "main_only", False) and not main:
                continue
            method = getattr(cb, name, None)
            if method is not None:
                method(self)

    def _callback_keys(self) -> list[tuple[str, Any]]:
        seen: dict[str, int] = {}
        keys = []
        for cb in self.callbacks:
            name = type(cb).__name__
            seen[name] = seen.get(name, 0) + 1
            keys.append((name if seen[name] == 1 else f"{name}#{seen[name]}", cb))
        return keys

    def _loader_generator(self) -> torch.Generator | None:
        return getattr(self.train_dl, "generator", None)

    def _set_loader_epoch(self) -> None:
        """Tell the training loader (or its batch sampler, sampler, wrapped loader) which epoch runs, if it asks."""
        for obj in distributed.loader_parts(self.train_dl):
            if callable(getattr(obj, "set_epoch", None)):
                obj.set_epoch(self.epoch)
                return

    @contextlib.contextmanager
    def _data_parallel(self):
        """DistributedDataParallel around `model` while the block runs, on several processes; nothing on one.

        Built afresh for every fit because DDP registers the parameters
        that require gradients when it is built, and freeze/unfreeze
        changes them between fits.
        """
        if not distributed.is_distributed():
            yield
            return
        ids = None
        if self.device.type == "cuda":
            ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()]
        self._ddp = DistributedDataParallel(self.model, device_ids=ids)
        try:
            yield
        finally:
            self._ddp = None

    def _snapshot(self, epoch: int) -> dict:
        """Everything needed to continue after `epoch` exactly (tensors copied to the CPU)."""
        return {
            "epoch": epoch, "epochs": self.epochs, "phase": self.phase,
            "model": clone_to_cpu(self.model.state_dict()),
            "optimizer": clone_to_cpu(self.opt.state_dict()),
            "scaler": self.scaler.state_dict(),
            "schedule": self.schedule.state_dict(),
            "history": copy.deepcopy(self.history),
            "callbacks": {key: cb.state_dict() for key, cb in self._callback_keys() if hasattr(cb, "state_dict")},
            "rng": get_rng_state(self._loader_generator()),
        }

    def _restore(self, state: dict, source: str = "the checkpoint") -> None:
        """Put model, optimizer, scaler and history back to `state` (copies; `state` stays intact)."""
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise TrainingError(f"{source}: weights do not fit {type(self.model).__name__} "
                                f"({str(err).strip().splitlines()[0]})") from None
        try:
            self.opt.load_state_dict(clone_to_cpu(state["optimizer"]))
        except ValueError:
            raise TrainingError(f"{source}: optimizer state does not fit the trainable parameters; "
                                "freeze the same layers as the interrupted run before resuming") from None
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.history = copy.deepcopy(state["history"])

    def _restore_extras(self, state: dict) -> None:
        saved = state.get("callbacks", {})
        for key, cb in self._callback_keys():
            if key in saved and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(saved[key])
        set_rng_state(state["rng"], self._loader_generator())

    # ------------------------------------------------------------ fit

    def _count_batches(self) -> int:
        try:
            n = len(self.train_dl)
        except TypeError:
            raise TrainingError("the training loader has no length; use a map-style dataset") from None
        if n == 0:
            raise TrainingError("the training data is empty (0 batches); check the dataset and batch size")
        return n

    def _load_resume(self, resume: str | Path, schedule: Schedule) -> dict:
        distributed.barrier()  # rank 0's checkpoint is complete before any rank reads it
        saved = load_checkpoint(resume)
        expected = (self.phase, self.epochs, schedule.name, schedule.total_steps)
        got = (saved["phase"], saved["epochs"], saved["schedule"]["name"], saved["schedule"]["total_steps"])
        if expected != got:
            raise TrainingError(
                f"{resume}: checkpoint is from phase {got[0]!r}, {got[1]} epochs, {got[2]} schedule over "
                f"{got[3]} steps, not {expected[0]!r}, {expected[1]}, {expected[2]} over {expected[3]}; "
                "resume with the same settings and data")
        self._restore(saved, str(resume))
        self.start_epoch = saved["epoch"]
        return saved

    def fit(self, epochs: int, lr: float | None = None, schedule: str = "one_cycle", pct_start: float = 0.25,
            phase: str = "head", resume: str | Path | None = None) -> list[dict]:
        """Train for `epochs` epochs; return the history (one dict per epoch, every fit so far).

        `lr` is the peak lr (of the last parameter group; the others keep their
        ratio to it); None uses the learner's lr or the groups' own. `schedule`
        is "one_cycle", "cosine" or "constant" (see `heron.train.schedules`).
        `phase` labels the epochs of this fit in the history and metrics.
        `resume` is a checkpoint folder or file from an interrupted fit with
        the same arguments: training continues after its epoch.
        """
        self.phase, self.epochs, self.start_epoch = phase, epochs, 0
        self.resumed_from = Path(resume) if resume is not None else None
        self.num_batches = self._count_batches()
        self.schedule = Schedule(schedule, epochs * self.num_batches, pct_start)
        self.opt = self.create_opt(lr)
        self.stop_training, self.good_state = False, None
        saved = self._load_resume(resume, self.schedule) if resume is not None else None
        self.iteration = self.start_epoch * self.num_batches
        with self._data_parallel():
            self._run_epochs(saved)
        self._event("after_fit")
        distributed.barrier()  # rank 0's last checkpoint and logs are written when any rank goes on
        return list(self.history)

    def _run_epochs(self, saved: dict | None) -> None:
        """before_fit, then the epochs; a failure is cancelled (see the module docstring) and re-raised."""
        try:
            self._event("before_fit")
            if saved is not None:
                self._restore_extras(saved)
            self.good_state = self._snapshot(self.start_epoch)
            for epoch in range(self.start_epoch + 1, self.epochs + 1):
                self.epoch = epoch
                self._one_epoch()
                if self.stop_training:
                    break
        except KeyboardInterrupt:
            self._cancel()
            raise TrainingError(self._interrupt_message()) from None
        except _NonFiniteLoss as err:
            self._cancel()
            distributed.barrier()  # every rank saw the same global loss; wait for rank 0's save
            raise TrainingError(self._nan_message(err.word)) from None
        except BaseException:
            self._event("after_cancel")
            raise

    def _cancel(self) -> None:
        """Back to the last finished epoch, saved by the checkpoint callbacks, then after_cancel."""
        if self.good_state is not None:
            self._restore(self.good_state, "the last finished epoch")
            self._event("on_checkpoint")
        self._event("after_cancel")

    def _interrupt_message(self) -> str:
        what = f"interrupted at epoch {self.epoch}"
        if self.good_state is None:
            return f"{what}; nothing was trained yet"
        if self.checkpoint_dir is not None:
            return f"{what}; progress saved in {self.checkpoint_dir}; continue with --resume"
        return f"{what}; the model holds the weights of epoch {self.good_state['epoch']} (no checkpoint folder)"

    def _nan_message(self, word: str) -> str:
        kept = f"kept the weights of epoch {self.good_state['epoch']}"
        if self.checkpoint_dir is not None:
            kept += f" in {self.checkpoint_dir}"
        return (f"loss became {word} at epoch {self.epoch}, batch {self.batch_idx + 1}; {kept}; "
                "lower the learning rate (try lr_find)")

    def _one_epoch(self) -> None:
        start = time.perf_counter()
        self._event("before_epoch")
        train_loss = self._train_epoch()
        self.record = {"phase": self.phase, "epoch": self.epoch, "train_loss": train_loss}
        if self.valid_dl is not None:
            self._event("before_validate")
            self.record.update(self.validate())
            self._event("after_validate")
        self.record["lr"] = self.opt.param_groups[-1]["lr"]
        self.record["seconds"] = time.perf_counter() - start
        self.history.append(self.record)
        self._event("after_epoch")
        self.good_state = self._snapshot(self.epoch)
        self._event("on_checkpoint")

    def _train_epoch(self) -> float:
        set_train_mode(self.model)
        self._set_loader_epoch()
        self._event("before_train")
        total, count = 0.0, 0
        for self.batch_idx, batch in enumerate(self.train_dl):
            self.xb, self.yb = self.to_device(batch)
            self.schedule.apply(self.opt, self.iteration)
            self._event("before_batch")
            self.pred, self.loss = self.forward_loss(self.xb, self.yb)
            self._event("after_loss")
            value = self.loss.item()
            if not math.isfinite(value):
                raise _NonFiniteLoss(value)
            self.backward_step(self.loss)
            n = self.global_batch_size
            total, count = total + value * n, count + n
            self.iteration += 1
            self._event("after_batch")
        self._event("after_train")
        return total / max(count, 1)

    # ------------------------------------------------------------ evaluation

    def _activation(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)

    def _evaluate(self, dl: Iterable) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(probs, targets, mean loss) over `dl`, in eval mode without autograd."""
        split = distributed.find_split(dl) if distributed.is_distributed() else None
        if split is not None:
            return self._evaluate_split(dl, split.n)
        self.model.eval()
        probs, targets, loss_sum, count = [], [], 0.0, 0
        with torch.inference_mode():
            for batch in dl:
                xb, yb = self.to_device(batch)
                pred, loss = self._local_forward_loss(self.model, xb, yb)
                n = _batch_size(xb)
                loss_sum, count = loss_sum + loss.item() * n, count + n
                probs.append(self._activation(pred.float()).cpu())  # (B, C)
                targets.append(yb.cpu())
        if not probs:
            raise TrainingError("the validation data is empty (0 batches); check the dataset")
        return torch.cat(probs), torch.cat(targets), loss_sum / count

    def _evaluate_split(self, dl: Iterable, n: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """`_evaluate` on this rank's share of every global batch, gathered into single-process order."""
        self.model.eval()
        logits, targets, sizes = [], [], []
        with torch.inference_mode():
            for batch in dl:
                xb, yb = self.to_device(batch)
                with self._autocast():
                    logits.append(self.model(xb).float().cpu())  # (b, C)
                targets.append(yb.cpu())
                sizes.append(_batch_size(xb))
        order, batch_sizes = _split_order(sizes, n)
        if not batch_sizes:
            raise TrainingError("the validation data is empty (0 batches); check the dataset")
        all_logits = distributed.gather_cat(torch.cat(logits))[order]  # (n, C), single-process order
        all_targets = distributed.gather_cat(torch.cat(targets))[order]
        loss_sum = 0.0
        for lg, yb in zip(all_logits.split(batch_sizes), all_targets.split(batch_sizes)):
            with self._autocast():
                loss_sum += self.loss_fn(lg.to(self.device), yb.to(self.device)).item() * len(lg)
        return self._activation(all_logits), all_targets, loss_sum / n

    def validate(self, dl: Iterable | None = None) -> dict:
        """Loss and metrics on `dl` (default the validation data): {"valid_loss": ..., "valid_accuracy": ...}."""
        dl = dl if dl is not None else self.valid_dl
        if dl is None:
            raise TrainingError("no validation data; pass valid_dl to the Learner or a loader to validate()")
        probs, targets, loss = self._evaluate(dl)
        out = {"valid_loss": loss}
        for name, fn in self.metrics:
            out[f"valid_{name}"] = float(fn(probs, targets))
        return out

    def get_preds(self, dl: Iterable | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(probs Tensor[N, C], targets) on `dl`: softmax (sigmoid if multilabel), eval mode, no autograd."""
        dl = dl if dl is not None else self.valid_dl
        if dl is None:
            raise TrainingError("no data to predict on; pass a loader to get_preds()")
        probs, targets, _ = self._evaluate(dl)
        return probs, targets

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_iter: int = 100) -> LRFinderResult:
        """Exponential lr sweep; see `heron.train.lr_find`. Leaves model and optimizer as they were.

        On several processes every rank runs the same sweep over the global
        batches (the losses are global, so every rank stops at the same
        step) and all return rank 0's result.
        """
        with self._data_parallel():
            result = lr_find(self, start_lr=start_lr, end_lr=end_lr, num_iter=num_iter)
        return distributed.broadcast_object(result)


class _GlobalMean(torch.autograd.Function):
    """Forward: the global batch's mean loss (`value`); backward: the local loss's gradient times `weight`.

    With weight = local_n * world / global_n, DDP's average of the ranks'
    gradients is the gradient of the global batch's mean loss.
    """

    @staticmethod
    def forward(ctx, local: torch.Tensor, value: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return value.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return grad * ctx.weight, None, None


def _split_order(sizes: list[int], n: int) -> tuple[torch.Tensor, list[int]]:
    """Where the rows gathered in rank order go in single-process order, and the global batch sizes.

    `sizes` are this rank's batch sizes; every rank's are gathered. Rank q's
    j-th row of batch i held global position offset_i + q + j * world (the
    split rule of `distributed.global_batches`). Returns (indices into the
    rank-order concatenation, sorted by position, padding at position >= n
    left out; the sizes of the global batches without padding).
    """
    world = distributed.world_size()
    counts = distributed.gather_cat(torch.tensor(sizes, dtype=torch.long))
    if counts.numel() != world * len(sizes):
        raise TrainingError("the ranks' validation loaders gave different numbers of batches; "
                            "split validation data with GlobalBatchSampler or FeatureBatches")
    counts = counts.view(world, len(sizes))  # (world, batches)
    per_batch = counts.sum(0)  # (batches,)
    offsets = per_batch.cumsum(0) - per_batch
    positions = torch.cat([torch.zeros(0, dtype=torch.long)] +  # (world * sum of sizes,) in rank order
                          [offsets[i] + q + world * torch.arange(int(counts[q, i]))
                           for q in range(world) for i in range(len(sizes))])
    order = torch.argsort(positions)
    order = order[positions[order] < n]
    real = (torch.minimum(per_batch, n - offsets)).clamp(min=0)
    return order, [int(b) for b in real if b > 0]


def _batch_size(xb: Any) -> int:
    if isinstance(xb, torch.Tensor):
        return xb.shape[0]
    if isinstance(xb, (tuple, list)) and xb:
        return _batch_size(xb[0])
    return 1
