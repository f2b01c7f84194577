"""Region of interest pooling: every proposed box cut from one shared feature map to a fixed grid.

Fast R-CNN's trick: the convolutional trunk runs once per image, and each
proposal becomes an `output_size` grid of maxima over its part of the map,
so one head classifies all proposals at once. The arithmetic is the original
layer's (and torchvision's `roi_pool`): box corners scaled by
`spatial_scale` and rounded to map cells, the box at least one cell on each
side, bin edges at floor/ceil of equal fractions, and an empty bin (a box
past the map's edge) 0. Vectorised over boxes: a few thousand proposals
pool (and back-propagate) in one call.
"""

from __future__ import annotations

import torch

__all__ = ["roi_pool"]


def _cells(rois: torch.Tensor, spatial_scale: float) -> torch.Tensor:
    """Box corners `(K, 4)` in map cells, rounded half away from zero as the original layer does."""
    scaled = rois[:, 1:].double() * spatial_scale
    return torch.sign(scaled) * torch.floor(scaled.abs() + 0.5)


def _bin_edges(starts: torch.Tensor, lengths: torch.Tensor, bins: int, extent: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First and past-last map cell `(K, bins)` of each bin along one axis, cut to the map `extent`.

    Bin i of a box `lengths` cells long starting at cell `starts` covers
    floor(i L / bins) .. ceil((i + 1) L / bins) - 1.
    """
    i = torch.arange(bins, device=starts.device)
    lo = starts[:, None] + (i[None] * lengths[:, None]) // bins
    hi = starts[:, None] + ((i[None] + 1) * lengths[:, None] + bins - 1) // bins
    return lo.clamp(0, extent), hi.clamp(0, extent)


def _shifted_max(values: torch.Tensor, where: torch.Tensor | None, step: int, dim: int
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """max(x[i], x[i + step]) along `dim`, and (if tracked) the map cell it came from; past the end x[i] stays.

    On a tie the earlier cell wins, as a scan in row-major order finds it.
    """
    values = values.clone()
    keep = values.shape[dim] - step
    if keep <= 0:
        return values, where
    here_v, ahead_v = values.narrow(dim, 0, keep), values.narrow(dim, step, keep)
    if where is not None:
        where = where.clone()
        here_w = where.narrow(dim, 0, keep)
        here_w.copy_(torch.where(ahead_v > here_v, where.narrow(dim, step, keep), here_w))
    here_v.copy_(torch.maximum(here_v, ahead_v))
    return values, where


def _sparse_table(features: torch.Tensor, track: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Range maxima `(LR, LC, N, H, W, C)` of `features (N, H, W, C)` and, if `track`, where they lie
    (cell y * W + x, int32).

    Entry [a, b, n, r, s] is the maximum over rows r .. r + 2^a - 1 and
    columns s .. s + 2^b - 1, for 2^a <= H and 2^b <= W (a range-maximum
    table in two dimensions). Windows are only asked for inside the map.
    """
    height, width = features.shape[1:3]
    cells = torch.arange(height * width, dtype=torch.int32, device=features.device).view(1, height, width, 1)
    columns = [(features, cells.expand_as(features).contiguous() if track else None)]
    for level in range(1, width.bit_length()):
        columns.append(_shifted_max(*columns[-1], 1 << (level - 1), 2))
    values, where = [], []
    for by_column in columns:
        rows = [by_column]
        for level in range(1, height.bit_length()):
            rows.append(_shifted_max(*rows[-1], 1 << (level - 1), 1))
        values.append(torch.stack([v for v, _ in rows]))
        if track:
            where.append(torch.stack([w for _, w in rows]))
    return torch.stack(values, 1), torch.stack(where, 1) if track else None


def _log2_floor(lengths: torch.Tensor) -> torch.Tensor:
    """floor(log2(n)) of positive integer lengths, exactly (no float rounding)."""
    levels = torch.zeros_like(lengths)
    for level in range(1, int(lengths.max()).bit_length()):
        levels += (lengths >= (1 << level)).long()
    return levels


def roi_pool(features: torch.Tensor, rois: torch.Tensor, output_size: int | tuple[int, int],
             spatial_scale: float = 1.0) -> torch.Tensor:
    """Max-pool each box of `rois Tensor[K, 5]` (batch index, x1, y1, x2, y2 in image pixels) on
    `features Tensor[N, C, H, W]` into `Tensor[K, C, out_h, out_w]`.

    `spatial_scale`: map cells per image pixel (1/32 for a stride-32 trunk).
    A bin is a rectangle of map cells; its maximum is that of four
    overlapping power-of-two windows looked up in a range-maximum table of
    the map (`_sparse_table`, O(C H W log H log W) per image, once for all
    boxes), so thousands of boxes pool in a few gathers. The part of a box
    past the map's edge holds no cell; a bin with no cell comes out 0.
    Differentiable: the value is read at each bin's maximal cell (the first
    in row-major order on a tie), so the gradient goes there alone.
    """
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    k, (_, c, height, width) = len(rois), features.shape
    if k == 0:
        return features.new_zeros(0, c, out_h, out_w)
    cells = _cells(rois, spatial_scale).long().to(features.device)  # (K, 4) x1, y1, x2, y2 in cells
    lengths = (cells[:, 2:] - cells[:, :2] + 1).clamp(min=1)  # (K, 2) box width, height in cells
    top, bottom = _bin_edges(cells[:, 1], lengths[:, 1], out_h, height)  # (K, out_h)
    left, right = _bin_edges(cells[:, 0], lengths[:, 0], out_w, width)  # (K, out_w)
    empty = (bottom <= top)[:, :, None] | (right <= left)[:, None, :]  # (K, out_h, out_w)
    level_r = _log2_floor((bottom - top).clamp(min=1))  # (K, out_h)
    level_c = _log2_floor((right - left).clamp(min=1))
    levels_c, n = width.bit_length(), features.shape[0]
    image = rois[:, 0].long().to(features.device)
    differentiable = features.requires_grad and torch.is_grad_enabled()
    with torch.no_grad():  # find each bin's maximum (and, for the gradient, its cell, where it is then read)
        maps = features.detach().permute(0, 2, 3, 1).contiguous()  # (N, H, W, C): a cell's channels side by side
        table, cell_of = _sparse_table(maps, track=differentiable)
        table = table.reshape(-1, c)
        cell_of = None if cell_of is None else cell_of.reshape(-1, c)
        base = ((level_r[:, :, None] * levels_c + level_c[:, None, :]) * n + image[:, None, None]) * height
        best, cell = None, None
        for r in (top.clamp(max=height - 1), (bottom - (1 << level_r)).clamp(min=0)):
            for s in (left.clamp(max=width - 1), (right - (1 << level_c)).clamp(min=0)):
                index = ((base + r[:, :, None]) * width + s[:, None, :]).reshape(-1)
                value = table.index_select(0, index)  # (K * out_h * out_w, C)
                at = None if cell_of is None else cell_of.index_select(0, index)
                if best is not None and at is not None:
                    better = (value > best) | ((value == best) & (at < cell))
                    at = torch.where(better, at, cell)
                best = value if best is None else torch.maximum(best, value)
                cell = at
        if differentiable:
            channel = torch.arange(c, device=features.device)
            flat = (image.repeat_interleave(out_h * out_w)[:, None] * c + channel) * (height * width) + cell.long()
    pooled = features.reshape(-1)[flat.view(-1)] if differentiable else best
    pooled = pooled.view(k, out_h, out_w, c).masked_fill(empty[..., None], 0.0)
    return pooled.permute(0, 3, 1, 2).contiguous()
