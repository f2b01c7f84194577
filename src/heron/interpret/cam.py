"""Where a classifier looks: class activation maps, Grad-CAM and FCN class maps.

Three ways to get one map `(h, w)` per image for one class, each returned
with the model's probabilities (`ClassMaps`):

- `cam` (Zhou et al. 2016), for a head that is linear in the pooled trunk
  features (heron's `gap` head, a zoo model's GAP + linear top):
  `cam_c(i, j) = sum_k W[c, k] A_k(i, j)` over the trunk's last feature map
  `A (K, h, w)`. Convention: no bias, so the map's spatial mean plus the
  bias `b_c` is the logit. Batch norm in the head is folded into `W` (it is
  affine at evaluation), so the convention holds for `gap --head-bn` too.
- `grad_cam` (Selvaraju et al. 2017), for any `nn.Module`: a forward hook
  keeps layer L's output `A`, autograd gives `dy_c/dA`, the channel weights
  are its spatial mean, and the map is `ReLU(sum_k alpha_k A_k)`. For a
  GAP-linear head `alpha_k = W[c, k] / (h w)`, so Grad-CAM is
  `ReLU(cam) / (h w)`: the same map up to scale (the tests check it).
- `fcn_map`, for `--head fcn`: the head's own last conv, one channel per
  class (`FCNHead.class_map`), optionally without its max pools.

Models this module knows: a `ClassifierModel` (a trained run; images as
floats in [0, 1]) and a zoo `Backbone` built with its top (images already
normalised with the weights' mean/std). `grad_cam` takes any module that
maps a batch to logits. Only the model interface is used (`forward_features`,
`layer_groups()`), never a family's internal names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from heron.transfer.model import ClassifierModel

__all__ = ["ClassMaps", "METHODS", "cam", "grad_cam", "fcn_map", "class_maps", "choose_method",
           "default_layer", "find_layer", "probabilities", "upsample"]

METHODS = ("auto", "cam", "gradcam", "fcn")

ClassIndex = int | Sequence[int] | torch.Tensor | None

# Layers a head may hold and still be affine in the pooled features at evaluation.
_AFFINE_PARTS = (nn.Linear, nn.BatchNorm1d, nn.Dropout, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity)


class ClassMaps(NamedTuple):
    """One map per image, for the class in `classes`, and the model's probabilities."""

    maps: torch.Tensor  # (N, h, w) float32
    probs: torch.Tensor  # (N, num_classes): softmax (sigmoid when multi-label)
    classes: torch.Tensor  # (N,) long: the class each map is of


# ---- the model's parts ----------------------------------------------------------------------
def _parts(model: nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Module, nn.Module]:
    """(normalise, backbone, head) of a trained run's model or of a zoo model with its top."""
    if isinstance(model, ClassifierModel):
        return (lambda x: (x - model.mean) / model.std), model.backbone, model.head
    if hasattr(model, "forward_features") and getattr(model, "head", None) is not None:
        return (lambda x: x), model, model.head
    raise ValueError(f"{type(model).__name__}: CAM and FCN maps need a heron classifier (a run's model or a "
                     "zoo model with its top); use grad_cam for other modules")


def _is_affine_on_pooled(head: nn.Module, channels: int) -> bool:
    """True when `head` is [pool] -> [BN] -> [dropout] -> one linear layer on the `channels` pooled features."""
    parts = [m for m in head.modules() if m is not head]
    linears = [m for m in parts if isinstance(m, nn.Linear)]
    return (bool(parts) and all(isinstance(m, _AFFINE_PARTS) for m in parts) and len(linears) == 1
            and linears[0].in_features == channels)


def _affine_weights(head: nn.Module, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The head as `logits = pooled @ W.T + b`: `W (classes, C)`, `b (classes,)`, batch norm folded in.

    Read off by evaluating the (evaluation-mode, affine) head on the zero
    vector and the unit vectors, each given as a 1x1 map.
    """
    basis = torch.cat([torch.zeros(1, channels), torch.eye(channels)]).to(next(head.parameters()))
    with torch.no_grad():
        out = head(basis[:, :, None, None]).float()  # (1 + C, classes)
    bias = out[0]
    return (out[1:] - bias).T, bias


def choose_method(model: nn.Module) -> str:
    """What "auto" means for `model`: "fcn" for an FCN head, "cam" for a GAP-linear head, else "gradcam"."""
    try:
        _, backbone, head = _parts(model)
    except ValueError:
        return "gradcam"
    if callable(getattr(head, "class_map", None)):
        return "fcn"
    channels = getattr(backbone, "num_features", None)
    return "cam" if channels and _is_affine_on_pooled(head, channels) else "gradcam"


# ---- helpers ------------------------------------------------------------------------------
@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Evaluation mode inside the block (no dropout, running BN statistics); each module's mode restored."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`model(x)`; a run's model hands its head the trunk's map `(N, C, h, w)`, not the cached form.

    Every head takes the map, and only the map works at a size other than
    the training size (an FCN head, or a trunk with its last stride dilated).
    """
    if isinstance(model, ClassifierModel):
        return model.head(model.backbone.forward_features((x - model.mean) / model.std))
    return model(x)


def probabilities(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """`(N, C)` logits -> softmax probabilities (sigmoid when multi-label), detached, float32."""
    logits = logits.detach().float()
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)


def _class_indices(class_idx: ClassIndex, probs: torch.Tensor) -> torch.Tensor:
    """`(N,)` class per image: the top class (None), one class for all (int), or one per image."""
    n, classes = probs.shape
    if class_idx is None:
        return probs.argmax(dim=1)
    idx = torch.as_tensor(class_idx, dtype=torch.long, device=probs.device).flatten()
    idx = idx.expand(n) if idx.numel() == 1 else idx
    if idx.numel() != n:
        raise ValueError(f"class_idx: give one class or one per image ({n}), got {idx.numel()}")
    if bool(((idx < 0) | (idx >= classes)).any()):
        raise ValueError(f"class_idx {idx.tolist()} out of range for {classes} classes")
    return idx


def _pick(per_class: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """`(N, classes, h, w)` -> `(N, h, w)`: each image's map of its class."""
    return per_class[torch.arange(per_class.shape[0], device=idx.device), idx].float()


# ---- the three maps -----------------------------------------------------------------------
def cam(model: nn.Module, x: torch.Tensor, class_idx: ClassIndex = None, multilabel: bool = False) -> ClassMaps:
    """Class activation maps `(N, h, w)` of a GAP-linear head on the trunk's last map `A (N, K, h, w)`.

    `maps[n] = sum_k W[c_n, k] A[n, k]`, no bias (`maps[n].mean() + b[c_n]`
    is the logit). `x`: `(N, 3, H, W)`, as the model takes it. `class_idx`:
    None for each image's top class, one class, or one per image.
    """
    normalise, backbone, head = _parts(model)
    channels = getattr(backbone, "num_features", None)
    if not (channels and _is_affine_on_pooled(head, channels)):
        raise ValueError(f"CAM needs a head that is one linear layer on pooled features (`--head gap`), not "
                         f"{type(head).__name__}; use grad_cam (any head) or fcn_map (an FCN head)")
    with _evaluating(model), torch.no_grad():
        fmap = backbone.forward_features(normalise(x)).float()  # (N, K, h, w)
        weight, bias = _affine_weights(head, channels)  # (classes, K), (classes,)
        logits = fmap.mean(dim=(2, 3)) @ weight.T + bias  # (N, classes)
        probs = probabilities(logits, multilabel)
        idx = _class_indices(class_idx, probs)
        maps = torch.einsum("nk,nkhw->nhw", weight[idx], fmap)  # (N, h, w)
    return ClassMaps(maps, probs, idx)


def grad_cam(model: nn.Module, x: torch.Tensor, class_idx: ClassIndex = None,
             layer: nn.Module | str | None = None, multilabel: bool = False) -> ClassMaps:
    """Grad-CAM `(N, h, w)` at `layer` (a module, its name, or None: the trunk's last stage) of any model.

    `maps[n] = ReLU(sum_k alpha_k A_k)` with `A` the layer's output for image
    n and `alpha_k` the spatial mean of `d logit_c / d A_k`. Runs with
    gradients even when called under `torch.no_grad()`; no parameter's
    `.grad` is touched.
    """
    target = find_layer(model, layer) if layer is not None else default_layer(model)
    kept: list[torch.Tensor] = []

    def keep(module: nn.Module, inputs, output) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise ValueError(f"Grad-CAM layer {type(module).__name__} gives {type(output).__name__}, "
                             "not a feature map (N, C, h, w); choose another --layer")
        kept.append(output)

    handle = target.register_forward_hook(keep)
    try:
        with _evaluating(model), torch.inference_mode(False), torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)  # every activation then has a gradient
            logits = _logits(model, x)  # (N, classes)
            probs = probabilities(logits, multilabel)
            idx = _class_indices(class_idx, probs)
            if not kept:
                raise ValueError(f"Grad-CAM layer {type(target).__name__} is not used by the model's forward")
            (grads,) = torch.autograd.grad(logits.gather(1, idx[:, None]).sum(), kept[-1])
    finally:
        handle.remove()
    activation = kept[-1].detach().float()  # (N, K, h, w)
    alpha = grads.float().mean(dim=(2, 3), keepdim=True)  # (N, K, 1, 1)
    return ClassMaps(F.relu((alpha * activation).sum(dim=1)), probs, idx)


def fcn_map(model: nn.Module, x: torch.Tensor, class_idx: ClassIndex = None, pool: bool = True,
            multilabel: bool = False) -> ClassMaps:
    """The FCN head's own map `(N, h', w')` of each image's class; `pool=False` skips its max pools.

    The probabilities are always the model's (with its pools): only the
    drawn map changes resolution.
    """
    normalise, backbone, head = _parts(model)
    if not callable(getattr(head, "class_map", None)):
        raise ValueError(f"{type(head).__name__} has no class map (train with `--head fcn`); use cam or grad_cam")
    with _evaluating(model), torch.no_grad():
        fmap = backbone.forward_features(normalise(x))  # (N, C, h, w)
        probs = probabilities(head(fmap), multilabel)
        idx = _class_indices(class_idx, probs)
        maps = _pick(head.class_map(fmap, pool=pool), idx)  # (N, h', w')
    return ClassMaps(maps, probs, idx)


def class_maps(model: nn.Module, x: torch.Tensor, method: str = "auto", class_idx: ClassIndex = None,
               layer: nn.Module | str | None = None, pool: bool = True, multilabel: bool = False) -> ClassMaps:
    """One entry point: `method` "auto" (`choose_method`), "cam", "gradcam" or "fcn"."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    method = choose_method(model) if method == "auto" else method
    if method == "cam":
        return cam(model, x, class_idx, multilabel)
    if method == "fcn":
        return fcn_map(model, x, class_idx, pool, multilabel)
    return grad_cam(model, x, class_idx, layer, multilabel)


# ---- layers ---------------------------------------------------------------------------------
def _trunk_groups(model: nn.Module) -> "dict[str, nn.Module]":
    """The trunk's named layer groups (stem, stage1.., neck) of a run's model or a zoo model; {} otherwise."""
    backbone = model.backbone if isinstance(model, ClassifierModel) else model
    if not callable(getattr(backbone, "trunk_groups", None)):
        return {}
    return dict(backbone.trunk_groups())


def default_layer(model: nn.Module) -> nn.Module:
    """Grad-CAM's default layer: the trunk's last group (its output is `forward_features`); else the last Conv2d."""
    groups = _trunk_groups(model)
    if groups:
        return list(groups.values())[-1]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer; give Grad-CAM a layer")
    return convs[-1]


def find_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """`layer` itself, a trunk group name ("stage4", "neck"), or a dotted module name ("backbone.body.3")."""
    if isinstance(layer, nn.Module):
        return layer
    groups = _trunk_groups(model)
    if layer in groups:
        return groups[layer]
    roots = [model] + ([model.backbone] if isinstance(model, ClassifierModel) else [])
    for root in roots:
        try:
            return root.get_submodule(layer)
        except AttributeError:
            continue
    names = ", ".join(groups) or "dotted module names"
    raise ValueError(f"no layer {layer!r} in {type(model).__name__}; use one of {names}, "
                     "or a dotted module name such as body.3")


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`(N, h, w)` -> `(N, H, W)`, bilinear: each cell's value lands on the image region it covers."""
    return F.interpolate(maps[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
