"""Sliding windows, naive and convolutional (the seeds' OverFeat example, Sermanet et al. 2014).

`WindowClassifier` is the seeds' small ConvNet for 14x14x3 windows:
conv 5x5 (16) -> 10x10x16, max pool 2x2 -> 5x5x16, FC 400, FC 400, FC 4.
`sliding_window_scores` runs it on every window of a larger image, one crop
at a time (batched): the slow way. `convolutionalize` turns the FC layers
into convolutions over the same weights (FC 400 on a 5x5x16 map is a 5x5
conv with 400 filters, the later FCs are 1x1 convs), so one pass over the
whole image gives every window's scores at once: on 16x16 a 2x2 grid, on
28x28 an 8x8 grid, the windows' stride being the pool's stride (2).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

__all__ = ["WindowClassifier", "sliding_window_scores", "convolutionalize"]


class WindowClassifier(nn.Module):
    """The seeds' 14x14x3 window classifier; returns logits `(N, classes)` (softmax outside).

    `features`: conv 5x5 -> ReLU -> max pool 2x2, `(N, 3, 14, 14)` -> `(N, 16, 5, 5)`;
    `classifier`: flatten -> FC 400 -> ReLU -> FC 400 -> ReLU -> FC classes.
    """

    def __init__(self, num_classes: int = 4, window: int = 14, channels: int = 16, hidden: int = 400) -> None:
        super().__init__()
        self.window = window
        self.features = nn.Sequential(nn.Conv2d(3, channels, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        side = (window - 4) // 2  # 14 -> 10 -> 5
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(channels * side * side, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (N, 3, 14, 14) -> (N, classes)


def sliding_window_scores(model: nn.Module, image: torch.Tensor, window: int = 14, stride: int = 2,
                          batch_size: int = 4096) -> torch.Tensor:
    """Classify every `window`x`window` crop of `image` Tensor[N, 3, H, W] -> Tensor[N, classes, rows, cols].

    The naive way: every crop (`rows = (H - window) // stride + 1`, the same
    for columns) goes through `model` on its own, in batches of `batch_size`
    crops; the scores are the model's outputs, placed on the grid of windows.
    """
    n = image.shape[0]
    crops = image.unfold(2, window, stride).unfold(3, window, stride)  # (N, 3, rows, cols, w, w)
    rows, cols = crops.shape[2:4]
    crops = crops.permute(0, 2, 3, 1, 4, 5).reshape(-1, image.shape[1], window, window)  # (N*rows*cols, 3, w, w)
    scores = torch.cat([model(chunk) for chunk in crops.split(batch_size)])  # (N*rows*cols, classes)
    return scores.view(n, rows, cols, -1).permute(0, 3, 1, 2)  # (N, classes, rows, cols)


def _as_conv(linear: nn.Linear, in_channels: int, kernel: tuple[int, int]) -> nn.Conv2d:
    """A conv whose weight and bias are the Linear's own storage, viewed as `(out, in_channels, kh, kw)`.

    The Linear read its input flattened in (C, H, W) order, so the view puts
    every weight on the pixel it multiplied. The parameters alias the Linear's
    memory: an in-place change to one (an optimizer step) is seen by the other.
    """
    conv = nn.Conv2d(in_channels, linear.out_features, kernel, bias=linear.bias is not None,
                     device=linear.weight.device, dtype=linear.weight.dtype)
    conv.weight = nn.Parameter(linear.weight.data.view(linear.out_features, in_channels, *kernel))
    if linear.bias is not None:
        conv.bias = nn.Parameter(linear.bias.data)
    return conv


def convolutionalize(model: nn.Module) -> nn.Sequential:
    """The fully convolutional twin of `model` (a `WindowClassifier`): `features` then FCs as convs.

    The first Linear after the flatten becomes a conv with the feature map's
    size as kernel (5x5x16 -> 400 filters of 5x5), every later Linear a 1x1
    conv; ReLU and dropout stay. The result maps `(N, 3, H, W)` to
    `(N, classes, (H - 14) // 2 + 1, (W - 14) // 2 + 1)`, the scores of every
    window at stride 2, equal to `sliding_window_scores`. Weights are shared,
    not copied; the state dict keys are `features.*` as in `model`, then
    `classifier.<i>.*` at the same indices (the flatten's slot holds an Identity).
    """
    with torch.no_grad():
        fmap = model.features(torch.zeros(1, 3, model.window, model.window,
                                          device=next(model.parameters()).device))  # (1, C, h, w)
    channels, kernel = fmap.shape[1], tuple(fmap.shape[2:])
    layers: list[nn.Module] = []
    for layer in model.classifier:
        if isinstance(layer, nn.Flatten):
            layers.append(nn.Identity())
        elif isinstance(layer, nn.Linear):
            layers.append(_as_conv(layer, channels, kernel))
            channels, kernel = layer.out_features, (1, 1)
        else:
            layers.append(layer)
    return nn.Sequential(OrderedDict(features=model.features, classifier=nn.Sequential(*layers)))
