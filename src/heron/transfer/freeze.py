"""Freezing and discriminative learning rates over a model's named layer groups.

The transfer recipe: train only the new head on a frozen pretrained trunk,
then unfreeze the last groups (or all) and train them with smaller learning
rates for earlier layers, whose features are the most general. A model takes
part by providing `layer_groups()`: an ordered mapping of names to modules,
input to output, with the classifier last under the name `"head"` (every
`heron.models.Backbone` does).

Frozen means `requires_grad=False` on every parameter of a group. Batch norm
also learns through its running statistics, which `model.train()` would keep
updating; `set_train_mode` keeps batch norm inside frozen groups in eval mode
so a frozen group really stays as it was.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from heron.errors import ModelError
from heron.nn.modes import is_frozen, set_train_mode  # noqa: F401  (set_train_mode re-exported)

__all__ = ["discriminative_param_groups", "freeze", "frozen_groups", "set_train_mode", "unfreeze"]

HEAD = "head"


def _groups(model: nn.Module) -> "OrderedDict[str, nn.Module]":
    if not callable(getattr(model, "layer_groups", None)):
        raise ModelError(f"{type(model).__name__} has no layer_groups(); freezing needs a heron Backbone "
                         "or a model that names its layer groups")
    return model.layer_groups()


def _set_trainable(module: nn.Module, trainable: bool) -> None:
    for param in module.parameters():
        param.requires_grad_(trainable)


def _body_names(groups: "OrderedDict[str, nn.Module]") -> list[str]:
    return [name for name in groups if name != HEAD]


def freeze(model: nn.Module) -> nn.Module:
    """Make every group except the head untrainable (the first phase of transfer learning)."""
    return unfreeze(model, 0)


def unfreeze(model: nn.Module, n: int | str = "all") -> nn.Module:
    """Make the last `n` groups before the head trainable, plus the head; freeze the rest.

    `n="all"` makes everything trainable; `n=0` is `freeze`. Returns the model.
    """
    groups = _groups(model)
    body = _body_names(groups)
    if n == "all":
        n = len(body)
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"unfreeze takes a group count >= 0 or 'all', got {n!r}")
    trainable = set(body[len(body) - min(n, len(body)):]) | {HEAD}
    for name, module in groups.items():
        _set_trainable(module, name in trainable)
    return model


def frozen_groups(model: nn.Module) -> list[str]:
    """Names of the groups whose parameters are all frozen, input to output."""
    return [name for name, module in _groups(model).items() if is_frozen(module)]


def discriminative_param_groups(model: nn.Module, lr: float, lr_ratio: float = 0.1,
                                lrs: Sequence[float] | dict[str, float] | None = None) -> list[dict]:
    """Optimizer parameter groups with learning rates rising from input to head.

    Only trainable groups take part. By default the lrs are spaced
    geometrically from `lr * lr_ratio` (earliest trainable group) to `lr`
    (the head). `lrs` sets them explicitly: a sequence with one lr per
    trainable group, or a dict from group name to lr. Trainable parameters
    outside every group join the last group. Each dict has `params`, `lr` and
    `name`, ready for any torch optimizer or `Learner(param_groups=...)`.
    """
    groups = _groups(model)
    named = [(name, [p for p in module.parameters() if p.requires_grad]) for name, module in groups.items()]
    named = [(name, params) for name, params in named if params]
    if not named:
        raise ModelError(f"{type(model).__name__} has no trainable parameters; call unfreeze(model) first")
    grouped = {id(p) for module in groups.values() for p in module.parameters()}
    stray = [p for p in model.parameters() if p.requires_grad and id(p) not in grouped]
    named[-1] = (named[-1][0], named[-1][1] + stray)
    group_lrs = _group_lrs([name for name, _ in named], lr, lr_ratio, lrs)
    return [{"params": params, "lr": group_lr, "name": name}
            for (name, params), group_lr in zip(named, group_lrs)]


def _group_lrs(names: list[str], lr: float, lr_ratio: float,
               lrs: Sequence[float] | dict[str, float] | None) -> list[float]:
    if isinstance(lrs, dict):
        missing = [name for name in names if name not in lrs]
        if missing:
            raise ValueError(f"no learning rate for trainable groups {missing}")
        return [float(lrs[name]) for name in names]
    if lrs is not None:
        if len(lrs) != len(names):
            raise ValueError(f"{len(lrs)} learning rates for {len(names)} trainable groups {names}")
        return [float(x) for x in lrs]
    k = len(names)
    if k == 1:
        return [float(lr)]
    return [float(lr * lr_ratio ** ((k - 1 - i) / (k - 1))) for i in range(k)]
