"""A frozen feature extractor for style transfer: a zoo backbone cut after the deepest layer used.

Style transfer evaluates the network hundreds of times on one image, so every
layer after the deepest content or style layer is wasted work. The extractor
copies only the backbone's steps up to that layer (stem, then one step per
block of every stage, then the neck), freezes them, folds batch norm into the
convolutions, switches in-place activations off (the captured activations are
kept for backward) and runs channels_last.

Layer names are the zoo's module paths: a stage (`body.2`, its output), a
block (`body.2.1`), or any module inside one (`body.2.1.conv_dw`). VGG also
answers to the names the literature uses, `conv1_1` .. `conv5_4` (the
activation after that convolution's ReLU, which is what Caffe's in-place ReLU
left in the blob Gatys et al. read) and `pool1` .. `pool5`.

Layer choices (`LayerChoice`) per architecture:

- VGG-16/19: content `conv4_2`; style `conv1_1, conv2_1, conv3_1, conv4_1,
  conv5_1` with equal weights (Gatys et al. 2015).
- EfficientNet-Lite0 (bundled weights): content `body.3` (stride 16, 80
  channels); style the ends of the stem and of `body.0`..`body.2` (strides 2
  to 8). The early stages answer edges, colours and textures, the style;
  `body.3` is the middle of the network. Measured (`benchmarks/style.py
  --content-layers`, 256 px, 100 L-BFGS steps from the photo): `body.1` to
  `body.4` keep the layout alike (SSIM of the blurred grey result against
  the photo 0.891, 0.874, 0.869, 0.867) and take as much style (2.4-2.8% of
  the starting style cost left): from the photo the choice matters little.
  `body.3` is kept, the notes' middle layer, and the trunk stops there, a
  stage before `body.4`.
  With the TF-style one-sided padding of the published Lite weights, the
  optimised pixels grow a stripe of noise along the top edge, so
  `build_extractor` builds EfficientNets with symmetric padding.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from heron.errors import ModelError
from heron.models._base import Backbone
from heron.models.vgg import VGG
from heron.nn.fuse import fold_batchnorm

__all__ = ["DEFAULT_LAYERS", "FeatureExtractor", "LayerChoice", "build_extractor", "default_layers", "layer_names"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LayerChoice:
    """The content layer, the style layers and their weights lambda_l (equal when None)."""

    content: str
    style: tuple[str, ...]
    style_weights: tuple[float, ...] | None = None

    def weights(self) -> dict[str, float]:
        """lambda_l by style layer: the given weights, else 1 / L each."""
        lams = self.style_weights or (1.0 / len(self.style),) * len(self.style)
        if len(lams) != len(self.style):
            raise ModelError(f"{len(lams)} style layer weights for {len(self.style)} style layers; give one each")
        return dict(zip(self.style, lams))


_VGG_LAYERS = LayerChoice("conv4_2", ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"))
DEFAULT_LAYERS: dict[str, LayerChoice] = {
    "efficientnet_lite0": LayerChoice("body.3", ("stem", "body.0", "body.1", "body.2")),
    **{name: _VGG_LAYERS for name in ("vgg16", "vgg19", "vgg16_bn", "vgg19_bn")},
}


def default_layers(model: nn.Module, arch: str | None = None) -> LayerChoice:
    """The layers for `arch` (or for VGG by its class); otherwise the middle stage and the ones before it."""
    if arch in DEFAULT_LAYERS:
        return DEFAULT_LAYERS[arch]
    if isinstance(model, VGG):
        return _VGG_LAYERS
    stages = len(model.body)
    middle = max(1, stages // 2)
    return LayerChoice(f"body.{middle - 1}", ("stem",) + tuple(f"body.{i}" for i in range(middle - 1)))


def _steps(model: Backbone) -> list[tuple[str, nn.Module]]:
    """The trunk as a flat sequence: stem, every block of every stage, neck; run in order they are forward_features."""
    steps = [("stem", model.stem)]
    for i, stage in enumerate(model.body):
        blocks = list(stage.named_children()) if isinstance(stage, nn.Sequential) else [("", stage)]
        steps += [(f"body.{i}.{j}" if j else f"body.{i}", block) for j, block in blocks]
    steps.append(("neck", model.neck))
    return steps


def _vgg_aliases(model: VGG) -> dict[str, str]:
    """`conv<b>_<k>` -> `body.<b-1>.<k-1>` (conv, [BN], ReLU) and `pool<b>` -> that block's max pool."""
    aliases = {}
    for b, stage in enumerate(model.body):
        convs = [j for j, layer in enumerate(stage) if not isinstance(layer, nn.MaxPool2d)]
        aliases.update({f"conv{b + 1}_{k + 1}": f"body.{b}.{j}" for k, j in enumerate(convs)})
        aliases[f"pool{b + 1}"] = f"body.{b}.{len(stage) - 1}"
    return aliases


def layer_names(model: Backbone) -> list[str]:
    """Names `FeatureExtractor` accepts at block level or above (any module path inside a block works too)."""
    names = [name for name, _ in _steps(model)]
    names += [f"body.{i}" for i in range(len(model.body))]
    if isinstance(model, VGG):
        names += list(_vgg_aliases(model))
    return sorted(set(names), key=names.index)


def _locate(steps: list[tuple[str, nn.Module]], path: str) -> tuple[int, str]:
    """(index of the step whose output, or one of whose modules, is `path`; the path inside that step)."""
    for i, (name, _) in enumerate(steps):
        if path == name:
            return i, ""
        if path.startswith(name + "."):
            return i, path[len(name) + 1:]
    stage = [i for i, (name, _) in enumerate(steps) if name.startswith(path + ".")]
    if stage:  # a stage name: the output of its last block
        return stage[-1], ""
    raise ModelError(f"layer {path!r} is not in this network; use stem, body.<i>, body.<i>.<j>, neck "
                     "(or conv<b>_<k> for VGG)")


class FeatureExtractor(nn.Module):
    """`(N, 3, H, W)` pixels in [0, 1] -> {layer name: activation `(N, C, h, w)`}, frozen.

    Normalises with the weights' mean and std, then runs the copied trunk
    prefix, returning the requested layers' activations.
    """

    def __init__(self, model: Backbone, layers: Sequence[str], fold_bn: bool = True, channels_last: bool = True):
        super().__init__()
        if not isinstance(model, Backbone):
            raise ModelError(f"{type(model).__name__}: style transfer needs a zoo backbone (heron.models.build)")
        steps = _steps(model)
        aliases = _vgg_aliases(model) if isinstance(model, VGG) else {}
        located = {name: _locate(steps, aliases.get(name, name)) for name in dict.fromkeys(layers)}
        last = max(index for index, _ in located.values())
        self.trunk = nn.ModuleList(copy.deepcopy(module) for _, module in steps[: last + 1])
        self.layers = tuple(located)
        self._at_step = {name: index for name, (index, inner) in located.items() if not inner}
        self._inner = {name: (index, inner) for name, (index, inner) in located.items() if inner}
        spec = getattr(model, "pretrained_cfg", None)
        mean, std = (spec.mean, spec.std) if spec is not None else (IMAGENET_MEAN, IMAGENET_STD)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.channels_last = channels_last
        self._freeze(fold_bn)

    def _freeze(self, fold_bn: bool) -> None:
        self.eval().requires_grad_(False)
        for module in self.trunk.modules():
            if getattr(module, "inplace", False):
                module.inplace = False  # a captured activation must not be overwritten before backward
        if fold_bn:
            fold_batchnorm(self.trunk)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True) -> "FeatureExtractor":
        """Always evaluation mode: batch norm uses its running statistics (and may be folded)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - self.mean) / self.std  # (N, 3, H, W)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        captured: dict[str, torch.Tensor] = {}
        handles = [
            self.trunk[index].get_submodule(inner).register_forward_hook(
                lambda _m, _i, out, name=name: captured.__setitem__(name, out))
            for name, (index, inner) in self._inner.items()
        ]
        try:
            for index, step in enumerate(self.trunk):
                x = step(x)
                captured.update({name: x for name, at in self._at_step.items() if at == index})
        finally:
            for handle in handles:
                handle.remove()
        return {name: captured[name] for name in self.layers}


def build_extractor(
    arch: str = "efficientnet_lite0",
    weights: str | None = "imagenet",
    layers: LayerChoice | None = None,
    **kwargs,
) -> tuple[FeatureExtractor, LayerChoice]:
    """A zoo network by name (`heron.models.build`), cut after `layers` (default: `default_layers`)."""
    from heron.models import build

    # TensorFlow "same" padding pads strided convolutions on one side only; the optimised
    # pixels then grow a stripe of noise along the other edge. Symmetric padding does not.
    build_kwargs = {"padding": "symmetric"} if arch.startswith("efficientnet") else {}
    model = build(arch, weights=weights, include_top=False, **build_kwargs)
    layers = layers or default_layers(model, arch)
    return FeatureExtractor(model, (layers.content, *layers.style), **kwargs), layers
