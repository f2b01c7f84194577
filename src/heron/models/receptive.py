"""Receptive fields of a model's layers: which input pixels each position of a feature map sees.

Per axis (rows, then columns) three numbers describe a layer's output map:

- `size`: how many input pixels one position sees;
- `jump`: input pixels between two neighbouring positions (the effective stride);
- `start`: the input index of the first pixel seen by position 0 (negative
  when it lies in the padding).

Position `i` sees input pixels `[start + i * jump, start + i * jump + size)`,
cut to `[lo, hi)`, the pixels that reach the map at all: the image, less
the edge pixels a window with stride dropped (AlexNet's 3x3/2 pools on an
odd map) and whatever a later layer's padding stands in for.

They come from running the model once on a zero image with hooks on every
module and composing, in the order the layers are called, the arithmetic of
each convolution and pooling window (kernel k, stride s, dilation d, padding
p before the first pixel):

    size' = size + (k - 1) * d * jump
    jump' = jump * s
    start' = start - p * jump
    lo', hi' = the pixels of the first and last input positions any window uses

The padding is the one the layer applies to the input it was given, so
TensorFlow "SAME" convolutions (`Conv2dSame`, which pad by the input size and
put the odd pixel at the bottom/right) are exact at any input size. Layers
without a window (norms, activations, dropout) keep their input's geometry.

Branches. A tensor made by an operation that is not a module (`x + shortcut`,
`torch.cat`) is given the union of the maps of the same size computed inside
the enclosing module's call, its input included. For a residual block the
main path dominates: its window contains the shortcut's (identity or strided
1x1), so the union is the main path's receptive field. For an Inception-style
concatenation the union is the widest branch's: exact for the block's output
as a whole, a superset for a channel of a narrower branch. A module called
twice is described by its first call.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import torch
from torch import nn

from heron.errors import ModelError
from heron.nn.layers import Conv2dSame

__all__ = ["ReceptiveField", "receptive_fields", "receptive_field"]

Axis = tuple[int, int, int, int, int]  # (size, jump, start, lo, hi) along one axis
Geometry = tuple[Axis, Axis]  # (rows, columns)
Window = tuple[int, int, int, int]  # (kernel, stride, dilation, padding before) along one axis
Box = tuple[int, int, int, int]  # (x1, y1, x2, y2) in input pixels, x2/y2 exclusive



@dataclass(frozen=True)
class ReceptiveField:
    """Where one layer's output map lies over an input of `input_size` (rows, columns per field)."""

    size: tuple[int, int]  # (h, w) input pixels one position sees
    jump: tuple[int, int]  # (h, w) input pixels between neighbouring positions
    start: tuple[int, int]  # (row, column) of the first pixel position (0, 0) sees
    map_size: tuple[int, int]  # (h, w) of the layer's output map
    input_size: tuple[int, int]  # (H, W) of the input this was computed for
    bounds: tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right)): pixels reaching the map
    channels: int = 0  # units (channels) of the layer's output map

    def box(self, position: tuple[int, int], clip: bool = True) -> Box:
        """`(x1, y1, x2, y2)` of the pixels position `(i, j)` (row, column) sees; `img[:, y1:y2, x1:x2]`.

        `clip=True` cuts the box to the pixels that reach the map (inside the
        image); `clip=False` keeps the part that lies in padding.
        """
        i, j = position
        if not (0 <= i < self.map_size[0] and 0 <= j < self.map_size[1]):
            raise ValueError(f"position {position} is outside the {self.map_size[0]}x{self.map_size[1]} map")
        y1, x1 = self.start[0] + i * self.jump[0], self.start[1] + j * self.jump[1]
        y2, x2 = y1 + self.size[0], x1 + self.size[1]
        if not clip:
            return (x1, y1, x2, y2)
        (top, bottom), (left, right) = self.bounds
        return (max(x1, left), max(y1, top), min(x2, right), min(y2, bottom))

    def describe(self) -> str:
        """One short line: `35x35 px, jump 8, start -12` (h x w where the axes differ)."""

        def pair(values: tuple[int, int]) -> str:
            return str(values[0]) if values[0] == values[1] else f"{values[0]}x{values[1]}"

        return f"{self.size[0]}x{self.size[1]} px, jump {pair(self.jump)}, start {pair(self.start)}"


def receptive_fields(model: nn.Module, input_size: tuple[int, int], in_chans: int | None = None) -> dict[str, ReceptiveField]:
    """The receptive field of every module with a spatial output map, in `model.named_modules()` order.

    `input_size` is the image's `(H, W)`; `in_chans` defaults to the first
    convolution's input channels. Names are module paths as in
    `named_modules()` (`"body.3.1.conv_dw"`); modules whose output is not an
    `(N, C, h, w)` map, or whose geometry is unknown (transposed convs, adaptive
    pools with uneven bins), are left out. The model runs once in eval mode
    without gradients and is restored after.
    """
    x = _zero_image(model, input_size, in_chans)
    tracer = _Tracer(x)
    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(tracer.before))
        handles.append(module.register_forward_hook(_after(tracer, name)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    order = [name for name, _ in model.named_modules() if name in tracer.fields]
    return {name: tracer.fields[name] for name in order}


def receptive_field(model: nn.Module, layer: str, input_size: tuple[int, int], in_chans: int | None = None) -> ReceptiveField:
    """The receptive field of the module named `layer`; `ModelError` for a name that has none."""
    fields = receptive_fields(model, input_size, in_chans)
    if layer in fields:
        return fields[layer]
    modules = dict(model.named_modules())
    if layer in modules and layer:
        raise ModelError(f"layer {layer!r} has no spatial output map at input {input_size}; pick a convolutional layer")
    close = difflib.get_close_matches(layer, list(fields), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ModelError(f"unknown layer {layer!r}: layer names are module paths of model.named_modules().{hint}")


# ---------------------------------------------------------------- tracing


def _zero_image(model: nn.Module, input_size: tuple[int, int], in_chans: int | None) -> torch.Tensor:
    """A zero `(1, C, H, W)` input on the model's device and dtype."""
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    if in_chans is None:
        conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        in_chans = conv.in_channels if conv is not None else 3
    height, width = int(input_size[0]), int(input_size[1])
    return torch.zeros(1, in_chans, height, width, device=device, dtype=dtype)


def _after(tracer: "_Tracer", name: str):
    def hook(module, inputs, output):
        tracer.after(name, module, output)

    return hook


def _first_tensor(value) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((t for t in map(_first_tensor, value) if t is not None), None)
    return None


def _map_size(t: torch.Tensor | None) -> tuple[int, int] | None:
    return (int(t.shape[-2]), int(t.shape[-1])) if t is not None and t.dim() == 4 else None


class _Tracer:
    """Follows the geometry of every feature map through one forward pass.

    `known` maps tensors (by identity, kept alive) to their geometry;
    `records` lists every map produced, in order, so a tensor no hook saw can
    be given the union of the maps of its size made inside the open call.
    """

    def __init__(self, x: torch.Tensor) -> None:
        self.known: dict[int, tuple[torch.Tensor, Geometry]] = {}
        self.records: list[tuple[tuple[int, int], Geometry]] = []
        self.calls: list[tuple[int, Geometry | None, tuple[int, int] | None]] = []  # open calls
        self.fields: dict[str, ReceptiveField] = {}
        self.input_size = _map_size(x)
        height, width = self.input_size
        self._note(x, ((1, 1, 0, 0, height), (1, 1, 0, 0, width)))

    def before(self, module: nn.Module, inputs: tuple) -> None:
        x = _first_tensor(inputs)
        size = _map_size(x)
        geometry = self._lookup(x, size) if size is not None else None
        self.calls.append((len(self.records), geometry, size))

    def after(self, name: str, module: nn.Module, output) -> None:
        marker, geometry_in, size_in = self.calls.pop()
        out = _first_tensor(output)
        size_out = _map_size(out)
        if size_out is None or geometry_in is None:
            return
        if next(module.children(), None) is None:
            geometry = _through_layer(module, geometry_in, size_in, size_out)
        else:
            geometry = self._merge(marker, geometry_in, size_in, out, size_out)
        if geometry is None:
            return
        self._note(out, geometry)
        if name and name not in self.fields:
            self.fields[name] = _field(geometry, size_out, self.input_size, int(out.shape[1]))

    def _note(self, t: torch.Tensor, geometry: Geometry) -> None:
        self.known[id(t)] = (t, geometry)
        self.records.append((_map_size(t), geometry))

    def _lookup(self, t: torch.Tensor, size: tuple[int, int]) -> Geometry | None:
        """A tensor's geometry: its own, else the union of same-size maps of the innermost open call that has any."""
        hit = self.known.get(id(t))
        if hit is not None and hit[0] is t:
            return hit[1]
        for marker, geometry_in, size_in in reversed(self.calls):
            found = [g for s, g in self.records[marker:] if s == size]
            found += [geometry_in] if size_in == size and geometry_in is not None else []
            if found:
                return _union(found)
        found = [g for s, g in self.records if s == size]
        return _union(found) if found else None

    def _merge(self, marker: int, geometry_in: Geometry, size_in, out: torch.Tensor, size_out) -> Geometry | None:
        """A container's output: the union of the same-size maps made in its call (and its input)."""
        found = [g for s, g in self.records[marker:] if s == size_out]
        found += [geometry_in] if size_in == size_out else []
        hit = self.known.get(id(out))
        if hit is not None and hit[0] is out:
            found.append(hit[1])
        return _union(found) if found else None


# ---------------------------------------------------------------- arithmetic


def _through_layer(module: nn.Module, geometry: Geometry, size_in, size_out) -> Geometry | None:
    """A leaf layer's output geometry: through its window, kept (same size, no window) or unknown."""
    windows = _windows(module, size_in)
    if windows is None:
        return geometry if size_in == size_out else None
    return tuple(  # type: ignore[return-value]
        _through(axis, window, n_in, n_out) for axis, window, n_in, n_out in zip(geometry, windows, size_in, size_out)
    )


def _through(axis: Axis, window: Window, n_in: int, n_out: int) -> Axis:
    """One axis through a window layer taking `n_in` positions to `n_out`."""
    size, jump, start, lo, hi = axis
    kernel, stride, dilation, pad = window
    first = max(0, -pad)  # the first and last real (not padding) input positions any window touches
    last = min(n_in - 1, (n_out - 1) * stride - pad + (kernel - 1) * dilation)
    lo, hi = max(lo, start + first * jump), min(hi, start + last * jump + size)
    return (size + (kernel - 1) * dilation * jump, jump * stride, start - pad * jump, lo, hi)


def _union(geometries: list[Geometry]) -> Geometry:
    """Per axis, the smallest window (and pixel range) holding every geometry with the last one's jump."""
    return tuple(_union_axis([g[a] for g in geometries]) for a in range(2))  # type: ignore[return-value]


def _union_axis(axes: list[Axis]) -> Axis:
    jump = axes[-1][1]
    same = [a for a in axes if a[1] == jump]
    start = min(a[2] for a in same)
    end = max(a[2] + a[0] for a in same)
    return (end - start, jump, start, min(a[3] for a in same), max(a[4] for a in same))


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _windows(module: nn.Module, size_in: tuple[int, int]) -> tuple[Window, Window] | None:
    """`(kernel, stride, dilation, padding before)` per axis of a conv or pool; None for other layers."""
    if isinstance(module, nn.Conv2d):
        return _conv_windows(module, size_in)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        kernel = _pair(module.kernel_size)
        stride = _pair(module.stride or module.kernel_size)
        dilation = _pair(getattr(module, "dilation", 1))
        pad = _pair(module.padding)
        return tuple(zip(kernel, stride, dilation, pad))  # type: ignore[return-value]
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return _adaptive_windows(module, size_in)
    return None


def _conv_windows(conv: nn.Conv2d, size_in: tuple[int, int]) -> tuple[Window, Window]:
    kernel, stride, dilation = _pair(conv.kernel_size), _pair(conv.stride), _pair(conv.dilation)
    if isinstance(conv, Conv2dSame):  # pads by the input size; the odd pixel goes after
        pad = tuple(Conv2dSame._same_pad(n, k, s, d) // 2 for n, k, s, d in zip(size_in, kernel, stride, dilation))
    elif conv.padding == "valid":
        pad = (0, 0)
    elif conv.padding == "same":  # PyTorch's: the odd pixel goes after too
        pad = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    else:
        pad = _pair(conv.padding)
    return tuple(zip(kernel, stride, dilation, pad))  # type: ignore[return-value]


def _adaptive_windows(pool: nn.Module, size_in: tuple[int, int]) -> tuple[Window, Window] | None:
    """An adaptive pool is a plain window when its bins divide the input evenly; else None."""
    wanted = pool.output_size if isinstance(pool.output_size, (tuple, list)) else (pool.output_size,) * 2
    windows = []
    for n, out in zip(size_in, wanted):
        out = n if out is None else int(out)
        if n % out:
            return None
        windows.append((n // out, n // out, 1, 0))
    return tuple(windows)  # type: ignore[return-value]


def _field(geometry: Geometry, map_size: tuple[int, int], input_size: tuple[int, int], channels: int) -> ReceptiveField:
    (size_h, jump_h, start_h, top, bottom), (size_w, jump_w, start_w, left, right) = geometry
    return ReceptiveField((size_h, size_w), (jump_h, jump_w), (start_h, start_w), map_size, input_size,
                          ((top, bottom), (left, right)), channels)
