"""torch's optimizers, minus the 1.3 s import of torch.compile's machinery on an eager run.

`torch.optim.Optimizer` marks `step`, `zero_grad`, `add_param_group`,
`state_dict` and `load_state_dict` for torch.compile, and the marker imports
`torch._dynamo` on first use: on a 2-core CPU that import costs more than
training a head on cached features. Nothing can be compiled while
`torch._dynamo` is not loaded, so until it is, the subclasses made here call
the same unmarked functions directly (the step under `no_grad`, as torch does);
once it is loaded they defer to torch's marked methods. The arithmetic is
torch's own, so weights and optimizer state are exactly those of the stock
class, and state dicts move freely between the two.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable

import torch

__all__ = ["eager_optimizer"]

_MARKED = ("zero_grad", "add_param_group", "state_dict", "load_state_dict")


def _compiling_possible() -> bool:
    return "torch._dynamo" in sys.modules


def _unhooked(step: Callable) -> Callable:
    """`step` without the profiling wrapper torch puts on a class's step at first construction."""
    while getattr(step, "hooked", False) and hasattr(step, "__wrapped__"):
        step = step.__wrapped__
    return step


def _bypass(marked: Callable) -> Callable:
    raw = inspect.unwrap(marked)

    def method(self, *args, **kwargs):
        return (marked if _compiling_possible() else raw)(self, *args, **kwargs)

    method.__name__, method.__doc__ = raw.__name__, raw.__doc__
    return method


@functools.cache
def eager_optimizer(base: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """A subclass of `base` (e.g. `torch.optim.AdamW`) that imports nothing of torch.compile."""
    marked_step = _unhooked(base.step)
    raw_step = inspect.unwrap(marked_step)

    def step(self, closure=None):
        if _compiling_possible():
            return marked_step(self, closure)
        with torch.set_grad_enabled(bool(self.defaults.get("differentiable", False))):
            return raw_step(self, closure)

    namespace = {name: _bypass(getattr(base, name)) for name in _MARKED}
    namespace.update(step=step, __module__=__name__, __doc__=base.__doc__)
    return type(base.__name__, (base,), namespace)
