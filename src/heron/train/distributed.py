"""Several processes training one model: torchrun's process group, the global-batch split, batch norm across ranks.

A run launched as `torchrun --nproc-per-node N -m heron train ...` starts N
copies of heron; `init_from_env` joins them into one process group (gloo on
the CPU, nccl on CUDA with one GPU per process). Every helper here is correct
and costs nothing with one process and no process group, so code written for
several processes runs unchanged in one.

The split rule of every distributed loader is `heron._distributed.global_batches`
(all ranks cut the same order into the single-process global batches, and
rank r takes positions r::world of each).

Batch norm: each process normalises its own share of a batch, so plain batch
norm in train mode is the one layer whose results depend on the number of
processes. `convert_sync_batchnorm` swaps it for a version whose statistics
are computed over the whole global batch (torch's on CUDA; heron's
`SyncBatchNorm` on the CPU, where torch's refuses to run). Layers in eval
mode (frozen statistics, heron's default when fine-tuning) need nothing.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from heron._distributed import (
    all_reduce_sum, barrier, broadcast_object, broadcast_tensor, gather_cat, gather_objects, global_batches,
    is_distributed, is_main, launched_by_torchrun, local_world_size, rank, shard, world_size,
)
from heron.nn.modes import set_train_mode

__all__ = [
    "GlobalBatchSampler",
    "SyncBatchNorm",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "broadcast_tensor",
    "convert_sync_batchnorm",
    "find_split",
    "gather_cat",
    "gather_objects",
    "global_batches",
    "init_from_env",
    "is_distributed",
    "launched_by_torchrun",
    "is_main",
    "loader_parts",
    "local_world_size",
    "rank",
    "shard",
    "bind_local_cores",
    "shutdown",
    "world_size",
]

_BatchNorm = nn.modules.batchnorm._BatchNorm


# ---------------------------------------------------------------- the process group


def init_from_env(backend: str | None = None, timeout_s: float = 1800.0) -> torch.device | None:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Returns the device this process must use: `cuda:LOCAL_RANK` (made the
    current CUDA device) when CUDA is available, else the CPU; a group that
    already exists is kept. Without WORLD_SIZE > 1 it does nothing and
    returns None (one process: the caller's device choice stands).
    `backend` defaults to nccl with CUDA, gloo without; the group is left
    at exit (`shutdown`). The thread count is left alone: torchrun sets
    OMP_NUM_THREADS=1 per process; see `local_world_size` for sharing the
    cores out.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return None
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = backend or ("nccl" if cuda else "gloo")
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                                device_id=device if backend == "nccl" else None)  # nccl bound to this GPU
        atexit.register(shutdown)
    return device


def bind_local_cores() -> int:
    """Give this process its own share of the machine's cores; returns how many it got.

    Processes on one machine that each use every core run many times slower
    than one (DESIGN.md). With several local processes, each is pinned to
    every LOCAL_WORLD_SIZE-th core from its LOCAL_RANK on, which its decode
    workers inherit, and torch runs that many threads; `available_cores`
    then reports the share, so the thread plans follow. One process: nothing changes.
    """
    from heron.data.loader import available_cores

    local = local_world_size()
    if local <= 1 or not hasattr(os, "sched_setaffinity"):
        return available_cores()
    cores = sorted(os.sched_getaffinity(0))
    mine = cores[int(os.environ.get("LOCAL_RANK", "0")) % local :: local] or cores
    os.sched_setaffinity(0, mine)
    torch.set_num_threads(len(mine))
    return len(mine)


def shutdown() -> None:
    """Leave the process group, if there is one.

    `init_from_env` registers it to run at exit: a process that ends with
    its group still open can abort in the C++ teardown ("terminate called
    without an active exception", exit code -6), and torchrun then reports
    the run as failed.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


_rank, _world_size = rank, world_size  # the sampler's defaults, under names its arguments do not shadow


class GlobalBatchSampler(Sampler[list[int]]):
    """Batches of sample indices for a DataLoader's `batch_sampler`: this rank's part of each global batch.

    The order is the same on every rank: `torch.randperm(n)` from a generator
    seeded with `seed + epoch` when `shuffle`, else 0..n-1; it is cut into
    global batches of `global_batch` and rank r yields positions r::world of
    each (`global_batches`). The union over ranks of step i is the
    single-process batch i; with world=1 this is an ordinary (shuffled)
    batch sampler. `rank` and `world` default to the process group's.

    The order depends only on `seed` and the epoch, never on a random state,
    so a resumed run draws the same batches: the Learner calls
    `set_epoch(epoch)` with its 1-based epoch number before every training
    epoch (and a resumed fit restarts at the checkpoint's epoch + 1). Used
    without the Learner, call `set_epoch` yourself, or every pass repeats
    epoch 0's order.
    """

    def __init__(self, n: int, global_batch: int, shuffle: bool = False, seed: int = 0,
                 rank: int | None = None, world: int | None = None, drop_last: bool = False) -> None:
        if global_batch < 1 or n < 0:
            raise ValueError(f"need n >= 0 and global_batch >= 1, got n={n}, global_batch={global_batch}")
        self.n, self.global_batch, self.shuffle, self.seed = n, global_batch, shuffle, seed
        self.rank = _rank() if rank is None else rank
        self.world = _world_size() if world is None else world
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use epoch `epoch`'s order from the next pass on."""
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        """The global order of this epoch: Tensor[n] of sample indices, the same on every rank."""
        if not self.shuffle:
            return torch.arange(self.n)
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))

    def __iter__(self) -> Iterator[list[int]]:
        for local in global_batches(self.order(), self.global_batch, self.rank, self.world, self.drop_last):
            yield local.tolist()

    def __len__(self) -> int:
        return self.n // self.global_batch if self.drop_last else -(-self.n // self.global_batch)


def loader_parts(loader: Any) -> list[Any]:
    """`loader`, its `batch_sampler` and `sampler`, and the same of a wrapped `loader.loader` (e.g. ImageBatches).

    Where the Learner looks for `set_epoch` and for the split (`find_split`).
    """
    parts = []
    for obj in (loader, getattr(loader, "loader", None)):
        if obj is not None:
            parts += [obj, getattr(obj, "batch_sampler", None), getattr(obj, "sampler", None)]
    return [p for p in parts if p is not None]


def find_split(loader: Any) -> Any | None:
    """The object that says `loader` follows the global-batch split, or None.

    That is the first of `loader_parts(loader)` with attributes `world` > 1
    and `n` (the sample count before padding): FeatureBatches and
    GlobalBatchSampler have them.
    """
    for obj in loader_parts(loader):
        if isinstance(getattr(obj, "world", None), int) and obj.world > 1 and hasattr(obj, "n"):
            return obj
    return None


# ---------------------------------------------------------------- batch norm across ranks


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: the gradient of each rank's input is the sum of all ranks' output grads.

    torch.distributed.nn.functional.all_reduce does the same but is deprecated
    (torch 2.14) in favour of a private module; this is its five lines on the
    public `dist.all_reduce`.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _AllReduceSum.apply(grad.contiguous(), ctx.group), None


class SyncBatchNorm(_BatchNorm):
    """Batch norm whose training statistics cover the whole global batch, on any device and backend (gloo too).

    In train mode with several processes: the per-channel mean is an
    all-reduce of sums and counts, the variance a second all-reduce of the
    squared deviations from that mean (more accurate than E[x^2] - E[x]^2),
    both differentiable, so the gradients are those of batch norm over the
    concatenated batch. Running statistics are updated as nn.BatchNorm does
    (unbiased variance, `momentum`, or a cumulative average when it is None).
    In eval mode, or without a process group, it is plain batch norm.
    Inputs are (N, C, ...) of any rank; a rank's share may be empty.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group: Any = None, device=None, dtype=None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def _group_size(self) -> int:
        if not (dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.process_group)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        batch_stats = self.training or self.running_mean is None
        if not (batch_stats and self._group_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        return self._synced(input)

    def _synced(self, x: torch.Tensor) -> torch.Tensor:
        dims = [0, *range(2, x.dim())]  # every axis but the channels
        shape = (1, -1) + (1,) * (x.dim() - 2)
        xf = x.float()
        count = torch.full((1,), x.numel() // max(x.shape[1], 1), dtype=torch.float32, device=x.device)
        sums = _AllReduceSum.apply(torch.cat([xf.sum(dims), count]), self.process_group)  # (C + 1,)
        total = sums[-1].detach()
        if total <= 1:
            raise ValueError(f"expected more than 1 value per channel when training, got {int(total)} in all")
        mean = sums[:-1] / total  # (C,)
        centred = xf - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims), self.process_group) / total  # (C,) biased
        if self.training and self.track_running_stats:
            self._update_running(mean.detach(), var.detach(), total)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, total: torch.Tensor) -> None:
        """Exactly nn.BatchNorm's update: momentum (or 1/batches seen when None) and the unbiased variance."""
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (total / (total - 1))
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)


def _stays_in_eval(module: nn.Module) -> set[nn.Module]:
    """The batch-norm layers that `set_train_mode` leaves in eval mode (frozen statistics); modes are put back."""
    modes = {m: m.training for m in module.modules()}
    try:
        set_train_mode(module)
        return {m for m in module.modules() if isinstance(m, _BatchNorm) and not m.training}
    finally:
        for m, mode in modes.items():
            m.training = mode


def _sync_layer(bn: _BatchNorm, cuda: bool, process_group: Any) -> nn.Module:
    """A synced copy of `bn` sharing its parameters and buffers (so optimizers and param groups still hold)."""
    cls = nn.SyncBatchNorm if cuda else SyncBatchNorm
    new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, process_group=process_group)
    new.weight, new.bias = bn.weight, bn.bias  # the same Parameter objects, requires_grad included
    new.running_mean, new.running_var = bn.running_mean, bn.running_var
    new.num_batches_tracked = bn.num_batches_tracked
    new.train(bn.training)
    return new


def _bn_on_cuda(bn: _BatchNorm) -> bool:
    tensors = [t for t in (bn.weight, bn.running_mean) if t is not None]
    return bool(tensors) and tensors[0].device.type == "cuda"


def convert_sync_batchnorm(module: nn.Module, process_group: Any = None,
                           device: str | torch.device | None = None) -> nn.Module:
    """Replace the batch-norm layers that train their statistics with synced ones; returns `module` (or its new self).

    Layers that `heron.nn.modes.set_train_mode` keeps in eval mode (a
    ClassifierModel's trunk with `freeze_bn_stats`, fully frozen groups) are
    left as they are: they use running statistics and need no syncing. So
    convert after freezing and unfreezing for the fit at hand. On CUDA
    (`device`, or where the layer's tensors are) the replacement is
    torch.nn.SyncBatchNorm, elsewhere heron's `SyncBatchNorm`; parameters,
    buffers, requires_grad and the train/eval flag are kept.
    """
    skip = _stays_in_eval(module)
    cuda = None if device is None else torch.device(device).type == "cuda"

    def convert(m: nn.Module) -> nn.Module:
        if isinstance(m, _BatchNorm) and not isinstance(m, (SyncBatchNorm, nn.SyncBatchNorm)) and m not in skip:
            return _sync_layer(m, _bn_on_cuda(m) if cuda is None else cuda, process_group)
        for name, child in m.named_children():
            setattr(m, name, convert(child))
        return m

    return convert(module)

