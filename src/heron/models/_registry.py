"""One registry of model builders: `register`, `build`, `names`.

`build(name, weights=...)` is the single way heron makes a model: it looks up
the builder, loads weights from a spec, a safetensors file or a torchvision
`.pth`, resets the classifier and adapts the first convolution when asked.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from pathlib import Path

from torch import nn

from heron.errors import ModelError
from heron.models._weights import (
    WeightSpec,
    adapt_first_conv,
    download,
    load_state_dict_file,
    load_torchvision,
    resolve_weights_file,
)

__all__ = ["register", "build", "names", "weight_spec"]

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_WEIGHTS: dict[str, WeightSpec] = {}


def register(name: str, weights: WeightSpec | None = None):
    """Decorator: register `fn(num_classes, in_chans, include_top, **kw)` under `name`."""

    def decorate(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"model name {name!r} is already registered")
        _BUILDERS[name] = fn
        if weights is not None:
            _WEIGHTS[name] = weights
        return fn

    return decorate


def names(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    _import_families()
    return sorted(n for n in _BUILDERS if fnmatch.fnmatch(n, pattern))


def weight_spec(name: str) -> WeightSpec | None:
    """The pretrained-weights spec registered for `name`, if any."""
    _import_families()
    return _WEIGHTS.get(name)


def build(
    name: str,
    weights: str | Path | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    include_top: bool = True,
    weights_sha256: str | None = None,
    **kwargs,
) -> nn.Module:
    """Build model `name`; `weights` is None, "imagenet" or a path to a weights file.

    A URL is downloaded once into the cache (checked against
    `weights_sha256` when given) and read from there afterwards.
    `num_classes` / `in_chans` left as None keep the architecture's own
    defaults (1000 classes and RGB for ImageNet nets; 10 and grey for LeNet-5).

    Pretrained weights load into the architecture they were made for; then the
    classifier is replaced when `num_classes` differs and the first conv is
    adapted when `in_chans != 3`. The spec travels as `model.pretrained_cfg`.
    """
    _import_families()
    if name not in _BUILDERS:
        close = difflib.get_close_matches(name, _BUILDERS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else " See `heron summary --list`."
        raise ModelError(f"unknown architecture {name!r}.{hint}")
    builder = _BUILDERS[name]
    spec = _WEIGHTS.get(name) if weights == "imagenet" else None
    if weights == "imagenet" and spec is None:
        raise ModelError(f"no ImageNet weights are registered for {name!r}; pass a weights file instead")
    if weights is None:
        given = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None}
        model = builder(include_top=include_top, **given, **kwargs)
        model.pretrained_cfg = None
        return model

    if spec is not None:
        path = resolve_weights_file(spec)
    elif str(weights).startswith(("http://", "https://")):
        path = download(str(weights), weights_sha256)  # cached, resumable, checksummed
    else:
        path = Path(weights)
    state = load_state_dict_file(path)
    if spec is not None and spec.convert is not None:
        state = spec.convert(state)
    pretrained_classes = _classes_in(state, builder)
    model = builder(num_classes=pretrained_classes, in_chans=3, include_top=True, **kwargs)
    _load_into(model, state, path)
    if not include_top:
        model.head = None
    elif num_classes is not None and num_classes != pretrained_classes:
        model.reset_classifier(num_classes)
    if in_chans is not None and in_chans != 3:
        adapt_first_conv(model, in_chans)
    model.pretrained_cfg = spec
    return model


def _classes_in(state: dict, builder) -> int:
    """Number of classes the weights were trained for: rows of the last 2-D tensor.

    Every model here (and in torchvision) ends in its classifier, so the last
    matrix of a state dict is the classifier's weight, whatever it is called.
    """
    heron_key = "head.fc.weight"
    if heron_key in state:
        return int(state[heron_key].shape[0])
    matrices = [v for v in state.values() if getattr(v, "ndim", 0) == 2]
    if not matrices:
        raise ModelError("the weights file holds no classifier matrix; is it a model's state dict?")
    return int(matrices[-1].shape[0])


def _load_into(model: nn.Module, state: dict, path: Path) -> None:
    own = model.state_dict()
    if set(state) == set(own):
        model.load_state_dict(state)
    else:
        try:
            load_torchvision(model, state)
        except (NotImplementedError, ModelError) as err:
            raise ModelError(
                f"{path}: its keys fit neither heron's {type(model).__name__} nor torchvision's ({err})"
            ) from None


def _import_families() -> None:
    """Import every family module so their @register calls have run."""
    import heron.models  # noqa: F401  (its __init__ imports the families)
