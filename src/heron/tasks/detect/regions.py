"""Region proposals for the two-stage detectors, and the regions each training image teaches.

R-CNN and Fast R-CNN classify proposed regions instead of grid cells. The
proposals come from selective search (`heron.ops.selective_search`) on the
image as the network sees it (squashed to the input size), so their boxes
are in input pixels; they are computed once per image and kept on disk
beside the feature cache (a changed file gets new ones).

Training follows Fast R-CNN: the true boxes join an image's proposals; a
region overlapping a true box by IoU >= 0.5 learns that box's class and the
deltas onto it, one overlapping at most [0.1, 0.5) is background; a fixed
number of regions per image is drawn, a quarter of them objects where the
image has enough. The draw is made once per image (and mirror image) with
the run's seed, so cached features of the regions stay valid.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
import torch

from heron.ops.boxes import box_iou, encode_deltas

__all__ = ["REGION_FIELDS", "image_proposals", "search_boxes", "sample_regions", "mirror_regions", "proposal_key"]

REGION_FIELDS = 10  # per sampled region: x1, y1, x2, y2, label (0 = background), dx, dy, dw, dh, used (1/0)
PROPOSALS_KEPT = 2000  # proposals stored per image; a method uses its first `proposals`
_VERSION = 1


def proposal_key(size: tuple[int, int], interpolation: str, mode: str) -> dict:
    """What the stored proposals depend on: the input size, how images are resized, the search mode."""
    return {"size": list(size), "interpolation": interpolation, "mode": mode, "kept": PROPOSALS_KEPT,
            "version": _VERSION}


def search_boxes(image: np.ndarray, mode: str, seed: int) -> np.ndarray:
    """The `PROPOSALS_KEPT` best selective-search boxes `(P, 4)` float32 of one uint8 `(H, W, 3)` image."""
    from heron.ops.selective_search import selective_search

    return selective_search(image, mode=mode, max_proposals=PROPOSALS_KEPT, seed=seed).astype(np.float32)


def _store(folder: Path, digest: str, boxes: np.ndarray) -> None:
    tmp = folder / f".{digest}.{os.getpid()}.npy"
    np.save(tmp, boxes)
    os.replace(tmp, folder / f"{digest}.npy")


def image_proposals(paths: list[Path], pre, mode: str = "single", cache_dir: str | Path | None = None,
                    workers: int | None = None, quiet: bool = False, seed: int = 0
                    ) -> tuple[list[np.ndarray | None], list[str]]:
    """Selective-search proposals `(P, 4)` float32 in input pixels per path (None where unreadable), errors.

    Searches run in `workers` processes (default: one per core) for the
    images whose proposals are not stored yet.
    """
    from tqdm.auto import tqdm

    from heron.data.loader import available_cores, file_loader
    from heron.models._weights import cache_dir as default_cache
    from heron.transfer.cache import FileHashes, fingerprint
    from heron.transfer.maps import squash_transform

    folder = (Path(cache_dir) if cache_dir else default_cache() / "features") / "proposals" / fingerprint(
        proposal_key(pre.size, pre.interpolation, mode))
    folder.mkdir(parents=True, exist_ok=True)
    hashes = FileHashes(folder / "file_hashes.json", folder / "lock")
    found: list[np.ndarray | None] = [None] * len(paths)
    digests, errors, todo = {}, [], []
    for i, path in enumerate(paths):
        try:
            digests[i] = hashes.keys([Path(path)])[0]
        except OSError as err:
            errors.append(f"{path}: cannot read ({err.strerror or err}); check that it exists and is readable")
            continue
        stored = folder / f"{digests[i]}.npy"
        if stored.exists():
            found[i] = np.load(stored)
        else:
            todo.append(i)
    hashes.save()
    if not todo:
        return found, errors
    processes = workers if workers else available_cores()
    _, loader, _ = file_loader([paths[i] for i in todo], squash_transform(pre), 8, 0)
    bar = tqdm(total=len(todo), desc="region proposals", unit="img", disable=quiet, leave=False)
    # forked like heron's decode workers (the children run numpy and scikit-image only, no torch)
    context = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(processes, mp_context=context) if processes > 1 and len(todo) > 4 else None
    try:
        for x, _, idx, batch_errors in loader:
            errors.extend(message for _, message in batch_errors)
            bar.update(len(batch_errors))
            if x is None:
                continue
            images = [img.permute(1, 2, 0).numpy() for img in x]
            results = pool.map(search_boxes, images, [mode] * len(images), [seed] * len(images)) if pool else \
                (search_boxes(img, mode, seed) for img in images)
            for j, boxes in zip(idx.tolist(), results):
                item = todo[j]
                found[item] = boxes
                _store(folder, digests[item], boxes)
                bar.update(1)
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)
    return found, errors


def sample_regions(proposals: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, count: int,
                   generator: torch.Generator, fg_fraction: float = 0.25, fg_iou: float = 0.5,
                   bg_iou: tuple[float, float] = (0.1, 0.5)) -> torch.Tensor:
    """`count` training regions `(count, REGION_FIELDS)` of one image.

    `proposals (P, 4)` and true `boxes (n, 4)` in input pixels, `labels (n,)`
    0-based (stored +1: 0 is background). Objects: IoU >= `fg_iou` with some
    true box (the true boxes themselves among them), at most `fg_fraction`
    of `count`; background: IoU in `bg_iou` (down to 0 when too few
    overlap a little); rows left over are marked unused.
    """
    boxes = boxes.float().reshape(-1, 4)
    keep = (boxes[:, 2:] > boxes[:, :2]).all(1)
    boxes, labels = boxes[keep], labels.reshape(-1)[keep]
    candidates = torch.cat([proposals.float().reshape(-1, 4), boxes])
    candidates = candidates[(candidates[:, 2:] - candidates[:, :2] >= 1).all(1)]
    if len(boxes):
        best, match = box_iou(candidates, boxes).max(1)
    else:
        best, match = candidates.new_zeros(len(candidates)), torch.zeros(len(candidates), dtype=torch.long)
    fg = (best >= fg_iou).nonzero().flatten()
    bg = ((best < bg_iou[1]) & (best >= bg_iou[0])).nonzero().flatten()
    fg = fg[torch.randperm(len(fg), generator=generator)[: int(round(count * fg_fraction))]]
    if len(bg) < count - len(fg):
        bg = (best < bg_iou[1]).nonzero().flatten()
    bg = bg[torch.randperm(len(bg), generator=generator)[: count - len(fg)]]
    chosen = torch.cat([fg, bg])
    rows = torch.zeros(count, REGION_FIELDS)
    n_fg = len(fg)
    rows[: len(chosen), :4] = candidates[chosen]
    if n_fg:
        rows[:n_fg, 4] = labels[match[fg]].float() + 1
        rows[:n_fg, 5:9] = encode_deltas(candidates[fg], boxes[match[fg]])
    rows[: len(chosen), 9] = 1.0
    return rows


def mirror_regions(rows: torch.Tensor, width: int) -> torch.Tensor:
    """The regions `(..., REGION_FIELDS)` of the horizontally mirrored image `width` pixels wide.

    The boxes flip; the x shift of the deltas changes sign, the rest stays
    (unused rows flip too, and stay unused).
    """
    from heron.tasks.detect.truth import mirror_boxes

    out = rows.clone()
    out[..., :4] = mirror_boxes(rows[..., :4], width)
    out[..., 5] = -rows[..., 5]
    return out
