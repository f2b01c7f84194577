"""One photo in, its class map laid over it out, as PNG bytes: the heatmap a web page shows.

`heron heatmap` draws a figure (titles, colour bar) into a file; a service
answers with the overlay alone, in memory, and says the class and method
beside it. Both take the same steps, which live in `cam` and `heatmap`:
the evaluation transform makes the network's input, `class_maps` computes
the map (CAM, Grad-CAM or the FCN head's own), and `blend` lays it over
`network_view`, the region the network saw at display resolution.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from heron.data.transforms import Preprocessing, eval_transform
from heron.errors import ModelError
from heron.interpret.cam import class_maps, choose_method
from heron.interpret.heatmap import DISPLAY_SIDE, blend, network_view

__all__ = ["Overlay", "find_class", "model_input", "overlay_image", "png_bytes"]


@dataclass
class Overlay:
    """The blended picture and what it shows."""

    picture: np.ndarray  # (H, W, 3) float32 in [0, 1]
    probs: torch.Tensor  # (num_classes,) the model's probabilities for the photo
    index: int  # the class the map is of
    method: str  # "cam", "gradcam" or "fcn"

    def png(self) -> bytes:
        return png_bytes(self.picture)


def model_input(image: torch.Tensor, pre: Preprocessing,
                prepare: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """`image (3, H, W) uint8` -> the batch of one `(1, 3, h, w)` the model takes: evaluation transform,
    floats in [0, 1], then `prepare` (a zoo model's mean/std) when given."""
    x = eval_transform(pre)(image)[None].float().div_(255.0)  # (1, 3, h, w)
    return prepare(x) if prepare is not None else x


def overlay_image(model: nn.Module, pre: Preprocessing, image: torch.Tensor, method: str = "auto",
                  class_index: int | None = None, alpha: float = 0.5, multilabel: bool = False,
                  layer: nn.Module | str | None = None, longest: int = DISPLAY_SIDE,
                  prepare: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Overlay:
    """The class map of `image (3, H, W) uint8` for `class_index` (None: the top class), over the photo.

    `method` as `class_maps` takes it ("auto" follows the head). The picture
    is the network's view of the photo with its longer side `longest`.
    Raises ValueError for a method the model cannot give.
    """
    method = choose_method(model) if method == "auto" else method
    result = class_maps(model, model_input(image, pre, prepare), method, class_index, layer, multilabel=multilabel)
    picture = blend(network_view(image, pre, longest), result.maps[0], alpha)  # (H, W, 3)
    return Overlay(picture, result.probs[0], int(result.classes[0]), method)


def png_bytes(picture: np.ndarray) -> bytes:
    """`(H, W, 3)` floats in [0, 1] (or uint8) as PNG bytes."""
    from PIL import Image

    if picture.dtype != np.uint8:
        picture = np.clip(np.rint(picture * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def find_class(name: str | None, labels: list[str], asked_as: str = "class") -> int | None:
    """The index of the class to map: `name` exactly, else case-insensitively, else a class number;
    None when no class is asked for (the most probable one is mapped).

    ModelError naming `asked_as` (the flag or parameter) and the model's classes for an unknown name.
    """
    if name is None or name == "":
        return None
    if name in labels:
        return labels.index(name)
    folded = [label.lower() for label in labels]
    if name.lower() in folded:
        return folded.index(name.lower())
    if name.isdigit() and int(name) < len(labels):
        return int(name)
    shown = ", ".join(labels[:10]) + (", ..." if len(labels) > 10 else "")
    raise ModelError(f"{asked_as} {name}: not a class of this model; its classes: {shown}")

