"""Train/eval mode for networks that are partly frozen.

Batch norm keeps learning running statistics in train mode even when its
weights are frozen; a frozen part of a network should keep the statistics it
was trained with, so it stays in eval mode while the rest trains.
"""

from __future__ import annotations

from torch import nn

__all__ = ["batchnorm_eval", "is_frozen", "set_train_mode"]

_BatchNorm = nn.modules.batchnorm._BatchNorm


def is_frozen(module: nn.Module) -> bool:
    """True when `module` has parameters and none of them requires a gradient."""
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)


def batchnorm_eval(module: nn.Module) -> None:
    """Put every batch-norm layer inside `module` in eval mode (running statistics fixed)."""
    for layer in module.modules():
        if isinstance(layer, _BatchNorm):
            layer.eval()


def set_train_mode(model: nn.Module) -> nn.Module:
    """`model.train()`, but batch norm inside fully frozen groups stays in eval mode.

    Without `layer_groups()`, a batch-norm layer whose own parameters are all
    frozen stays in eval mode. Returns the model.
    """
    model.train()
    if callable(getattr(model, "layer_groups", None)):
        frozen = [module for module in model.layer_groups().values() if is_frozen(module)]
    else:
        frozen = [m for m in model.modules() if isinstance(m, _BatchNorm) and is_frozen(m)]
    for module in frozen:
        batchnorm_eval(module)
    return model
