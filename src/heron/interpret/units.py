"""What a layer's units respond to: the image patches that activate each unit most (Zeiler & Fergus).

`top_patches` makes one streaming pass over a loader of images and keeps, for
every unit (channel) of a layer, a running top-k of its activations over
every spatial position of every image: memory is O(units * k), not O(dataset).
The layer's output is captured by a forward hook that stops the forward pass
there, so an early layer costs only the layers before it. Without chosen
units it ranks all of them by mean activation and keeps the 9 most active.

`crop_patches` then re-decodes only the winning images and cuts out each
winner's receptive field (`heron.models.receptive`), and `plot_unit_grid`
draws them: one row per unit, one column per patch, best first.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from heron.errors import ModelError
from heron.models.receptive import ReceptiveField

__all__ = ["Patch", "TopPatches", "top_patches", "normalizer", "crop_patches", "plot_unit_grid"]

DEFAULT_UNITS = 9
Prepare = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Patch:
    """One winner: the unit's activation at `position` (row, column of the layer's map) of image `image`."""

    activation: float
    image: int  # index into the loader's dataset
    position: tuple[int, int]


@dataclass
class TopPatches:
    """The result of one pass: per chosen unit its best patches, highest activation first."""

    layer: str
    units: list[int]
    patches: list[list[Patch]]  # aligned with `units`
    map_size: tuple[int, int]
    mean_activation: torch.Tensor  # (C,) every unit's mean over all images and positions
    images: int  # images seen
    errors: list[str] = field(default_factory=list)  # files that could not be read


def normalizer(mean: Sequence[float], std: Sequence[float]) -> Prepare:
    """uint8 `(N, 3, H, W)` batch -> float `(x / 255 - mean) / std`, what an ImageNet trunk takes."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return (x.float().div(255.0) - mean_t.to(x.device)) / std_t.to(x.device)

    return prepare


# ---------------------------------------------------------------- the pass


def top_patches(
    model: nn.Module,
    layer: str,
    loader: Iterable,
    units: Sequence[int] | None = None,
    k: int = 9,
    prepare: Prepare | None = None,
    per_image: bool = False,
) -> TopPatches:
    """The `k` highest activations of each unit of `layer` over every image and position, in one pass.

    `loader` yields `heron.data.loader` batches `(x uint8 (N, 3, H, W) | None,
    y, indices (N,), errors)`; `indices` name the images in its dataset.
    `prepare` turns `x` into the model's input (default `x / 255`; see
    `normalizer`). `units=None` keeps a running top-k for every unit and
    returns the `DEFAULT_UNITS` with the highest mean activation.
    `per_image=True` lets each image give at most one patch per unit (its
    best position), so neighbouring positions of one photo do not fill a
    row. Values are exact; among equal activations the earlier batch wins.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    prepare = prepare or (lambda x: x.float().div(255.0))
    capture = _LayerCapture(model, layer)
    state: _RunningTopK | None = None
    errors: list[str] = []
    seen = 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for x, _, indices, batch_errors in loader:
                errors.extend(message for _, message in batch_errors)
                if x is None:
                    continue
                fmap = capture.run(prepare(x.to(capture.device)))  # (N, C, h, w)
                state = state or _RunningTopK(fmap.shape[1], k, units, per_image)
                state.update(fmap, indices)
                seen += len(indices)
    finally:
        capture.close()
        model.train(was_training)
    if state is None:
        raise ModelError("no image could be read, so no unit was measured; check the data folder")
    return state.result(layer, seen, errors)


class _Stop(Exception):
    """Raised by the capture hook: nothing after the layer needs computing."""


class _LayerCapture:
    """Runs the model up to `layer` and returns that layer's output map."""

    def __init__(self, model: nn.Module, layer: str) -> None:
        modules = dict(model.named_modules())
        if not layer or layer not in modules:
            close = difflib.get_close_matches(layer, list(modules), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ModelError(f"unknown layer {layer!r}: layer names are module paths of model.named_modules().{hint}")
        self.model, self.layer = model, layer
        first = next(model.parameters(), None)
        self.device = first.device if first is not None else torch.device("cpu")
        self.output: torch.Tensor | None = None
        self.handle = modules[layer].register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        self.output = output[0] if isinstance(output, (tuple, list)) else output
        raise _Stop

    def run(self, x: torch.Tensor) -> torch.Tensor:
        self.output = None
        try:
            self.model(x)
        except _Stop:
            pass
        out = self.output
        if out is None:
            raise ModelError(f"layer {self.layer!r} is not called in the model's forward pass; pick another")
        if out.dim() != 4:
            raise ModelError(f"layer {self.layer!r} gives {tuple(out.shape)}, not an (N, C, h, w) map; pick a conv layer")
        return out.float()

    def close(self) -> None:
        self.handle.remove()


class _RunningTopK:
    """Per unit, the k best (activation, image, flat position) so far; plus every unit's running sum."""

    def __init__(self, channels: int, k: int, units: Sequence[int] | None, per_image: bool = False) -> None:
        self.channels, self.k, self.per_image = channels, k, per_image
        self.units = None if units is None else _checked_units(units, channels)
        tracked = channels if self.units is None else len(self.units)
        self.values = torch.empty(tracked, 0)
        self.images = torch.empty(tracked, 0, dtype=torch.long)
        self.flat = torch.empty(tracked, 0, dtype=torch.long)
        self.total = torch.zeros(channels, dtype=torch.float64)
        self.count = 0
        self.map_size: tuple[int, int] = (0, 0)

    def update(self, fmap: torch.Tensor, indices: torch.Tensor) -> None:
        """Merge one batch `fmap (N, C, h, w)` of images `indices (N,)` into the running top-k."""
        n, _, h, w = fmap.shape
        self.map_size = (h, w)
        self.total += fmap.sum(dim=(0, 2, 3), dtype=torch.float64).cpu()
        self.count += n * h * w
        chosen = fmap if self.units is None else fmap[:, self.units]
        scores = chosen.transpose(0, 1).reshape(chosen.shape[1], n, h * w).cpu()  # (U, N, h*w)
        indices = indices.cpu().long()
        if self.per_image:
            best, flat = scores.max(dim=2)  # (U, N): each image's best position
            values, pick = best.topk(min(self.k, n), dim=1)  # (U, k')
            self._merge(values, indices[pick], flat.gather(1, pick))
            return
        values, where = scores.flatten(1).topk(min(self.k, n * h * w), dim=1)  # (U, k')
        self._merge(values, indices[where // (h * w)], where % (h * w))

    def _merge(self, values: torch.Tensor, images: torch.Tensor, flat: torch.Tensor) -> None:
        values = torch.cat([self.values, values], dim=1)  # (U, k + k'), earlier entries first
        order = values.sort(dim=1, descending=True, stable=True).indices[:, : self.k]
        self.values = values.gather(1, order)
        self.images = torch.cat([self.images, images], dim=1).gather(1, order)
        self.flat = torch.cat([self.flat, flat], dim=1).gather(1, order)

    def result(self, layer: str, seen: int, errors: list[str]) -> TopPatches:
        """The chosen units (or the most active) with their patches, best first."""
        mean = (self.total / max(self.count, 1)).float()
        if self.units is None:
            units = _most_active(mean, DEFAULT_UNITS)
            row_of = {u: u for u in units}  # every unit was tracked, in channel order
        else:
            units = self.units
            row_of = {u: i for i, u in enumerate(units)}
        patches = [self._patches(row_of[u]) for u in units]
        return TopPatches(layer, list(units), patches, self.map_size, mean, seen, errors)

    def _patches(self, row: int) -> list[Patch]:
        width = self.map_size[1]
        return [Patch(float(v), int(img), (int(f) // width, int(f) % width))
                for v, img, f in zip(self.values[row], self.images[row], self.flat[row])]


def _checked_units(units: Sequence[int], channels: int) -> list[int]:
    units = [int(u) for u in units]
    if not units:
        raise ModelError("give at least one unit, or none to take the most active")
    bad = [u for u in units if not 0 <= u < channels]
    if bad:
        raise ModelError(f"unit {bad[0]} does not exist: the layer has {channels} units (0-{channels - 1})")
    return units


def _most_active(mean: torch.Tensor, count: int) -> list[int]:
    """The `count` units with the highest mean activation, highest first (lower index on ties)."""
    order = mean.sort(descending=True, stable=True).indices
    return [int(u) for u in order[:count]]


# ---------------------------------------------------------------- patches


def crop_patches(result: TopPatches, dataset, field_: ReceptiveField) -> list[list[torch.Tensor]]:
    """The winners' receptive-field crops, uint8 `(3, h, w)` each, aligned with `result.patches`.

    `dataset[i]` must return the image `(3, H, W)` exactly as the pass saw it
    first (an `ImageFiles` with the same transform); each winning image is
    decoded once, however many patches it gave; an image that can no longer
    be read gives grey crops.
    """
    positions: dict[int, set[tuple[int, int]]] = {}
    for p in (p for row in result.patches for p in row):
        positions.setdefault(p.image, set()).add(p.position)
    crops: dict[tuple[int, tuple[int, int]], torch.Tensor] = {}
    for index, where in sorted(positions.items()):
        image = dataset[index][0]  # (3, H, W); None if the file became unreadable since the pass
        for position in where:
            x1, y1, x2, y2 = field_.box(position)
            crops[(index, position)] = (torch.full((3, y2 - y1, x2 - x1), 128, dtype=torch.uint8) if image is None
                                        else image[:, y1:y2, x1:x2].clone())
    return [[crops[(p.image, p.position)] for p in row] for row in result.patches]


def _on_field(crop: torch.Tensor, field_: ReceptiveField, position: tuple[int, int], limit: int) -> torch.Tensor:
    """The crop placed where it lies in the unit's full receptive field, grey outside the image.

    Every patch of a layer is then shown at the same scale, centred on the
    unit; a field larger than the image is cut to `limit` pixels around the centre.
    """
    x1, y1, x2, y2 = field_.box(position, clip=False)
    cx1, cy1, _, _ = field_.box(position)
    canvas = torch.full((3, y2 - y1, x2 - x1), 128, dtype=torch.uint8)
    top, left = cy1 - y1, cx1 - x1
    canvas[:, top : top + crop.shape[1], left : left + crop.shape[2]] = crop
    return _centre(canvas, limit)


def _centre(canvas: torch.Tensor, limit: int) -> torch.Tensor:
    """The central `limit` x `limit` pixels (at most) of `canvas (3, h, w)`."""
    h, w = canvas.shape[1:]
    top, left = max(0, (h - limit) // 2), max(0, (w - limit) // 2)
    return canvas[:, top : top + min(h, limit), left : left + min(w, limit)]


# ---------------------------------------------------------------- figure


def plot_unit_grid(
    result: TopPatches,
    crops: list[list[torch.Tensor]],
    field_: ReceptiveField,
    path: str | os.PathLike,
    label: str = "",
) -> Path:
    """Draw the patches (rows = units, columns = patches, best first) and save a PNG atomically at `path`.

    Each patch sits where it lies in the unit's full receptive field (grey
    outside the image), its activation above it; `label` (a model name)
    starts the title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = len(result.units)
    cols = max(1, max((len(row) for row in crops), default=1))
    fig = Figure(figsize=(1.25 * cols + 0.9, 1.3 * rows + 0.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    limit = max(field_.input_size)
    for r, (unit, patches, row) in enumerate(zip(result.units, result.patches, crops)):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.set_axis_off()
                continue
            shown = _on_field(row[c], field_, patches[c].position, limit)
            ax.imshow(shown.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(f"{patches[c].activation:.2f}", fontsize=7, pad=2)
        axes[r][0].set_ylabel(f"unit {unit}", fontsize=9)
    fig.suptitle(_title(result, field_, label), fontsize=10)
    from heron.interpret.plots import save_png

    return save_png(fig, path, dpi="figure")


def _title(result: TopPatches, field_: ReceptiveField, label: str) -> str:
    units = ", ".join(str(u) for u in result.units)
    where = f"{label} layer" if label else "layer"
    return (f"{where} {result.layer}: top {max(len(p) for p in result.patches)} patches of units {units}\n"
            f"over {result.images} images; receptive field {field_.describe()} (grey: outside the image)")

