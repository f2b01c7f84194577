"""A Keras-style table of a model: layers, output shapes, parameters and multiply-accumulates.

`summary(model, (3, 224, 224))` runs one forward pass with hooks on the layers
and returns a `ModelSummary`; `print()` it for the table. Parameter totals
come from `model.parameters()` itself, so they are exact however the model is
built. Two totals are given because frameworks disagree: PyTorch counts only
parameters, Keras also counts batch norm's moving mean and variance as
non-trainable parameters (MobileNet v1: 4,231,976 vs 4,253,864).

Multiply-accumulates (MACs) count the multiplications of convolutions and
dense layers, the course's cost measure; biases, norms, activations and
pooling are not counted:
- convolution: out_h * out_w * out_c * (in_c / groups) * k_h * k_w
- dense: in_features * out_features (per position, for inputs with extra dims)
- recurrent: per time step, gates * hidden * (input + hidden) per layer and direction
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from heron.errors import ModelError

__all__ = ["LayerRow", "ModelSummary", "summary"]

_GATES = {nn.RNN: 1, nn.GRU: 3, nn.LSTM: 4}
_COUNTED = (nn.modules.conv._ConvNd, nn.Linear, nn.RNN, nn.GRU, nn.LSTM)


@dataclass
class LayerRow:
    """One line of the table: a layer call (or, with `depth`, a group of layers)."""

    name: str
    type: str
    output_shape: tuple | None  # None: not called in the forward pass (e.g. a training-only branch)
    params: int
    trainable: int
    macs: int


@dataclass
class ModelSummary:
    """The numbers behind the table; `str()` renders it."""

    model_name: str
    input_shape: tuple
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    total_macs: int = 0  # per sample, over every conv/dense/recurrent call
    bn_moving_stats: int = 0

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def keras_total_params(self) -> int:
        """Parameters as Keras counts them: plus batch norm's moving mean and variance."""
        return self.total_params + self.bn_moving_stats

    @property
    def keras_non_trainable_params(self) -> int:
        return self.non_trainable_params + self.bn_moving_stats

    def __str__(self) -> str:
        return _render(self)


def summary(
    model: nn.Module,
    input_size: Sequence[int] | None = None,
    *,
    batch_size: int = 1,
    input_data: torch.Tensor | None = None,
    depth: int | None = None,
) -> ModelSummary:
    """Run `model` once on a `(batch_size, *input_size)` input and tabulate its layers.

    `input_size` is one sample's shape, e.g. `(3, 224, 224)`; pass
    `input_data` instead for inputs that are not float images (token ids).
    `depth=None` lists every leaf layer; `depth=d` groups layers under their
    ancestor `d` names deep (`depth=2`: `body.stage1`). MACs are per sample.
    The model runs in eval mode without gradients and is restored after.
    A model built under `with torch.device("meta"):` gives the same table
    without allocating weights or computing anything.
    """
    x = _make_input(model, input_size, batch_size, input_data)
    shown = _shown_modules(model, depth)
    rows, total_macs = _trace(model, x, shown)
    called = {row.name for row in rows}
    rows += [_row(name, module) for name, module in shown.items() if _label(name) not in called]
    _assign_params(model, shown, rows)
    params = list(model.parameters())
    return ModelSummary(
        model_name=type(model).__name__,
        input_shape=tuple(x.shape),
        rows=rows,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        total_macs=total_macs,
        bn_moving_stats=_bn_moving_stats(model),
    )


# ---------------------------------------------------------------- tracing


def _make_input(model: nn.Module, input_size, batch_size: int, input_data) -> torch.Tensor:
    if input_data is not None:
        return input_data
    if input_size is None:
        raise ValueError("give input_size (one sample's shape, e.g. (3, 224, 224)) or input_data")
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    generator = torch.Generator().manual_seed(0)
    return torch.randn((batch_size, *input_size), generator=generator, dtype=dtype).to(device)


def _shown_modules(model: nn.Module, depth: int | None) -> dict[str, nn.Module]:
    """The modules that get a row: leaves (or groups `depth` deep), plus any module holding its own weights.

    `nn.Identity` placeholders (a conv without norm, a model without neck) get none.
    """
    shown = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Identity):
            continue  # a placeholder (no norm, no neck): nothing to show
        if not name:
            if _has_own_tensors(module):
                shown[name] = module
            continue
        level = name.count(".") + 1
        is_leaf = next(module.children(), None) is None
        if depth is None:
            if is_leaf or _has_own_tensors(module):
                shown[name] = module
        elif level == depth or (level < depth and (is_leaf or _has_own_tensors(module))):
            shown[name] = module
    return shown


def _has_own_tensors(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def _trace(model: nn.Module, x: torch.Tensor, shown: dict[str, nn.Module]) -> tuple[list[LayerRow], int]:
    """One forward pass; each call of a shown module becomes a row with the MACs spent inside it.

    Returns the rows in call order and the total MACs of every conv, dense
    and recurrent call (rows can nest, so their MACs are not summed).
    """
    rows: list[LayerRow] = []
    macs_log: list[int] = []  # MACs of every conv/dense/recurrent call, in call order
    open_calls: list[tuple[LayerRow, int]] = []  # shown modules running now, with where their MACs start
    handles = []

    def count(module, inputs, output):
        macs_log.append(_macs(module, inputs, output))

    def before(name):
        def hook(module, inputs):
            row = _row(name, module)
            rows.append(row)
            open_calls.append((row, len(macs_log)))
        return hook

    def after(module, inputs, output):
        row, start = open_calls.pop()  # hooks nest: the call ending now is the last one opened
        row.output_shape = _shape_of(output)
        row.macs = sum(macs_log[start:])

    for module in model.modules():
        if isinstance(module, _COUNTED):
            handles.append(module.register_forward_hook(count))
    for name, module in shown.items():
        handles.append(module.register_forward_pre_hook(before(name)))
        handles.append(module.register_forward_hook(after))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    except RuntimeError as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelError(
            f"{type(model).__name__} cannot run on input {tuple(x.shape)} ({first}); "
            "give an input size and channel count the model accepts"
        ) from None
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return rows, sum(macs_log)


def _label(name: str) -> str:
    return name or "(model)"


def _row(name: str, module: nn.Module) -> LayerRow:
    return LayerRow(_label(name), type(module).__name__, None, 0, 0, 0)


def _assign_params(model: nn.Module, shown: dict[str, nn.Module], rows: list[LayerRow]) -> None:
    """Give each parameter to the deepest shown module that owns it, on that module's first row."""
    first_row: dict[str, LayerRow] = {}
    for row in rows:
        first_row.setdefault(row.name, row)
    owners = sorted((name for name in shown if name), key=len, reverse=True)
    for pname, param in model.named_parameters():
        owner = _label(next((o for o in owners if pname.startswith(o + ".")), ""))
        if owner not in first_row:  # a parameter of a module that gets no row of its own
            first_row[owner] = LayerRow(owner, type(model).__name__, None, 0, 0, 0)
            rows.append(first_row[owner])
        row = first_row[owner]
        row.params += param.numel()
        row.trainable += param.numel() if param.requires_grad else 0


def _shape_of(output) -> tuple | None:
    """The output's shape; for tuples (RNNs, multi-output layers) the first tensor's shape."""
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, (tuple, list)) and output:
        return _shape_of(output[0])
    if isinstance(output, dict) and output:
        return _shape_of(next(iter(output.values())))
    return ()


def _bn_moving_stats(model: nn.Module) -> int:
    return sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.running_mean is not None
    )


# ---------------------------------------------------------------- MACs


def _macs(module: nn.Module, inputs: tuple, output) -> int:
    """Multiplications of one call of a conv, dense or recurrent layer, per sample."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        x = inputs[0]
        per_input = module.out_channels // module.groups * math.prod(module.kernel_size)
        return x[0].numel() * per_input
    if isinstance(module, nn.modules.conv._ConvNd):
        per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        return output[0].numel() * per_output
    if isinstance(module, nn.Linear):
        return output[0].numel() * module.in_features
    return _rnn_macs(module, inputs[0])


def _rnn_macs(rnn: nn.RNNBase, x) -> int:
    """Per sample: steps * directions * sum over layers of gates*hidden*(input + hidden) (+ LSTM projection)."""
    if not isinstance(x, torch.Tensor):
        return 0  # a PackedSequence: steps differ per sample
    steps = x.shape[1] if x.dim() == 3 and rnn.batch_first else x.shape[0]
    directions = 2 if rnn.bidirectional else 1
    proj = getattr(rnn, "proj_size", 0)
    out_size = proj or rnn.hidden_size
    per_step = 0
    for layer in range(rnn.num_layers):
        in_size = rnn.input_size if layer == 0 else out_size * directions
        per_step += _GATES[type(rnn)] * rnn.hidden_size * (in_size + out_size) + rnn.hidden_size * proj
    return steps * directions * per_step


# ---------------------------------------------------------------- table


def _render(s: ModelSummary) -> str:
    header = ("Layer (type)", "Output Shape", "Param #", "MACs")
    body = [
        (
            f"{r.name} ({r.type})",
            "--" if r.output_shape is None else _fmt_shape(r.output_shape),
            f"{r.params:,}",
            f"{r.macs:,}" if r.macs else "--" if r.output_shape is None else "0",
        )
        for r in s.rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(4)]
    width = sum(widths) + 3 * 3

    def line(cells):
        return "   ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths))
        ).rstrip()

    out = [f'Model: "{s.model_name}"   input {_fmt_shape(s.input_shape)}', "=" * width, line(header), "=" * width]
    out += [line(cells) for cells in body]
    if any(r.output_shape is None for r in s.rows):
        out.append("(-- : not called in an eval-mode forward pass, e.g. a training-only side branch)")
    out += [
        "=" * width,
        f"Total params: {s.total_params:,}",
        f"Trainable params: {s.trainable_params:,}",
        f"Non-trainable params: {s.non_trainable_params:,}",
        f"Keras-style total (counts BN moving mean/var): {s.keras_total_params:,}"
        f"  (non-trainable {s.keras_non_trainable_params:,})",
        f"Total MACs per sample: {s.total_macs:,} ({_humanize(s.total_macs)})",
        "=" * width,
    ]
    return "\n".join(out)


def _fmt_shape(shape: tuple) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _humanize(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}MACs"
    return f"{n} MACs"
