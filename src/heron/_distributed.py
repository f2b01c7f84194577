"""The process-group primitives every floor of heron may use: who am I, how many are we, share a tensor.

With several processes (a torchrun launch, see `heron.train.distributed`,
which joins the group and re-exports all of this) they call
torch.distributed; with one process and no group each is free and returns
its input, so code written for several processes runs unchanged in one.
They sit at the bottom of the package because loaders on every floor
(`heron.transfer.extract.FeatureBatches`, the pseudo-label batches) split
their batches by the same rule.

The split rule every distributed loader in heron follows (GlobalBatchSampler,
`heron.transfer.extract.FeatureBatches`): all ranks draw the same order of the
samples, cut it into the same global batches a single process would use, and
rank r takes positions r, r + world, r + 2 world ... of each global batch. So
step i of an N-process run trains on exactly the samples of step i of the
single-process run, every rank runs the same number of steps, and
`Learner.validate` can put the ranks' predictions back into the
single-process order. A last global batch smaller than `world` is padded with
the first samples of the order so that no rank is left without one (a rank
with an empty batch could not step with the others); the Learner drops the
padding from validation results, and in training it is the only case where
the data differ from a single-process run (only when the sample count modulo
the batch size is between 1 and world - 1).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "launched_by_torchrun", "is_distributed", "rank", "world_size", "local_world_size", "is_main", "barrier",
    "all_reduce_sum", "broadcast_tensor", "gather_cat", "broadcast_object", "gather_objects", "shard",
    "global_batches",
]

T = TypeVar("T")


def launched_by_torchrun() -> bool:
    """True in a process torchrun started (any number of them): its environment names the world."""
    return "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def is_distributed() -> bool:
    """True when a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_world_size() -> int:
    """Processes on this machine (torchrun's LOCAL_WORLD_SIZE, else 1): divide the cores by it."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def is_main() -> bool:
    """True on rank 0, the one process that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here (e.g. after rank 0 wrote a file the others read)."""
    if is_distributed():
        dist.barrier()


def _comm_device() -> torch.device:
    """Where collectives need their tensors: the current GPU for nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of `tensor` over all processes, on `tensor`'s device (the input itself with one)."""
    if not is_distributed():
        return tensor
    out = tensor.detach().to(_comm_device(), copy=True)
    dist.all_reduce(out)
    return out.to(tensor.device)


def broadcast_tensor(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Rank `src`'s `tensor` on every process (same shape and dtype everywhere; the input itself with one)."""
    if not is_distributed():
        return tensor
    out = tensor.detach().to(_comm_device(), copy=True)
    dist.broadcast(out, src)
    return out.to(tensor.device)


def gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's `tensor` (Tensor[n_r, ...], n_r may differ) concatenated in rank order: Tensor[sum n_r, ...].

    Trailing dimensions and dtype must agree across ranks. With one process
    the input itself comes back.
    """
    if not is_distributed():
        return tensor
    device = _comm_device()
    local = tensor.detach().to(device).contiguous()
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], device=device))
    longest = int(max(s.item() for s in sizes))
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)]).to(tensor.device)


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank `src`'s picklable `obj` on every process (`obj` itself with one process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def gather_objects(obj: T) -> list[T]:
    """Every rank's picklable `obj`, in rank order (`[obj]` with one process): e.g. each rank's bad-file messages."""
    if not is_distributed():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def shard(items: Sequence[T]) -> Sequence[T]:
    """This rank's items: `items[rank::world]` (all of them with one process).

    For work every rank can do apart and share afterwards, e.g. feature
    extraction into the shared cache: extract `shard(paths)`, `barrier()`,
    then read every path's features (now all cached).
    """
    if not is_distributed():
        return items
    return items[rank()::world_size()]


# ---------------------------------------------------------------- the global-batch split


def global_batches(order: torch.Tensor, batch_size: int, rank: int, world: int,
                   drop_last: bool = False) -> Iterator[torch.Tensor]:
    """This rank's part of every global batch of `order` (Tensor[N] of sample indices).

    Global batch i is `order[i*batch_size : (i+1)*batch_size]`; rank r gets
    its positions r::world. A last batch shorter than `world` is padded with
    the first indices of `order` (see the module docstring); with
    `drop_last` a short last batch is dropped instead, as a DataLoader does.
    With world=1 these are exactly the single-process batches.
    """
    n = len(order)
    for start in range(0, n, batch_size):
        batch = order[start : start + batch_size]
        if drop_last and len(batch) < batch_size:
            return
        if len(batch) < world:
            batch = torch.cat([batch, order.repeat(-(-world // n))[: world - len(batch)]])
        yield batch[rank::world]
