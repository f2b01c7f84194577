"""Landmark detection: is the object there (p_c), and where are its K points, one network.

The seeds' output vector `(p_c, l1x, l1y, ..., lKx, lKy)`: the pretrained
trunk's feature map (kept in the feature cache, so training takes seconds)
feeds a small head with 1 + 2K outputs, the presence logit and the points as
fractions of the image (x / width, y / height) squashed into [0, 1] by a
sigmoid. Images are resized whole (no crop), so a fraction of the resized
image is the same fraction of the original. The loss is the seeds': with an
object every term, without one only the presence term,

    L_i = BCE(p_i, y_i) + point_weight * y_i * mean_j (l_ij - t_ij)^2,   loss = mean_i L_i

(binary cross-entropy on the logit for p_c; the squared errors averaged over
the 2K coordinates, so the weight does not depend on K). Scores: presence
accuracy, the mean distance of a predicted point to its true one (pixels and
fraction of the image) and PCK@0.1 (share of points within 10% of the side).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from heron.config import LandmarksConfig
from heron.data.landmarks import landmark_images, landmark_targets, read_landmarks
from heron.data.transforms import Preprocessing
from heron.errors import DataError
from heron.models import save_weights
from heron.train import Checkpoint, Learner, MetricsLogger
from heron.train.learner import resolve_device
from heron.train.run import RunFolder
from heron.transfer.extract import FeatureBatches
from heron.transfer.maps import cached_maps, map_trunk
from heron.transfer.model import ClassifierModel

__all__ = ["LandmarkHead", "LandmarkLoss", "LandmarksRun", "landmarks", "landmark_scores"]


class LandmarkHead(nn.Module):
    """Feature map -> 1x1 conv to `width` channels, BN, ReLU -> flatten -> dropout -> linear -> 1 + 2K.

    The 1x1 convolution keeps where things are (the points need it) while
    cutting the trunk's channels to a few. Takes the map `(N, C, h, w)` or the
    cache's flattened form `(N, C*h*w)`; returns `(N, 1 + 2K)`.
    """

    def __init__(self, map_shape: tuple[int, int, int], points: int, dropout: float = 0.2, width: int = 32) -> None:
        super().__init__()
        self.map_shape, self.points = tuple(map_shape), points
        channels, height, width_px = self.map_shape
        self.reduce = nn.Sequential(nn.Conv2d(channels, width, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(width * height * width_px, 1 + 2 * points)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.view(-1, *self.map_shape)  # (N, C, h, w)
        return self.fc(self.drop(self.reduce(x).flatten(1)))  # (N, 1 + 2K)

    @staticmethod
    def split(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(presence logit (N,), points (N, 2K) as fractions of the image in [0, 1])."""
        return out[:, 0], torch.sigmoid(out[:, 1:])


class LandmarkLoss(nn.Module):
    """The seeds' loss on targets `(N, 1 + 2K)` (p_c, then points as fractions): see the module docstring."""

    def __init__(self, point_weight: float) -> None:
        super().__init__()
        self.point_weight = point_weight

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logit, points = LandmarkHead.split(out.float())  # (N,), (N, 2K)
        present = target[:, 0].float()  # (N,)
        presence = nn.functional.binary_cross_entropy_with_logits(logit, present, reduction="none")  # (N,)
        squared = ((points - target[:, 1:].float()) ** 2).mean(1)  # (N,)
        return (presence + self.point_weight * present * squared).mean()


@dataclass
class LandmarksRun:
    """A finished landmark run: its folder, K and the validation scores."""

    path: Path
    points: int
    metrics: dict
    history: list[dict] = field(default_factory=list)


def _model(config: LandmarksConfig, points: int) -> tuple[ClassifierModel, Preprocessing]:
    backbone, pre, map_shape = map_trunk(config.arch, config.weights, config.size)
    head = LandmarkHead(map_shape, points, config.dropout)
    return ClassifierModel(backbone, head, pre.mean, pre.std, feature_kind="map"), pre


def _loaders(config, features, rows, split_paths, found, k):
    """Per split: FeatureBatches, the paths kept (decoded), targets `(N, 1 + 2K)`, sizes `(N, 2)`."""
    loaders, kept, targets, sizes = {}, {}, {}, {}
    for split, paths in split_paths.items():
        ok = (rows[split] >= 0).all(axis=1)
        kept[split] = [p for p, good in zip(paths, ok) if good]
        targets[split], sizes[split] = landmark_targets(kept[split], found, k)
        loaders[split] = FeatureBatches(features, rows[split][ok], torch.from_numpy(targets[split]),
                                        config.batch_size if split == "train" else 256, shuffle=split == "train")
    return loaders, kept, targets, sizes


def landmarks(config: LandmarksConfig) -> LandmarksRun:
    """Train the presence + K points model of `config` on cached features; returns the run."""
    from heron.transfer.engine import resolve_engine

    started = time.time()
    torch.manual_seed(config.seed)
    found, k = read_landmarks(config.points, config.image_root)
    train, valid = landmark_images(config.data, config.valid_pct, config.seed)
    run = RunFolder.create(config.out, f"landmarks-{Path(config.data).resolve().name}", overwrite=config.overwrite)
    run.write_json("config.json", config.to_dict())
    device = resolve_device("auto")
    engine, precision = resolve_engine(config.engine, config.precision, device)
    model, pre = _model(config, k)
    split_paths = {"train": train, "valid": valid}
    features, rows, errors = cached_maps(model, pre, config.arch, split_paths, cache_dir=config.cache_dir,
                                         workers=config.workers, device=device, engine=engine,
                                         precision=precision, quiet=config.quiet)
    loaders, kept, targets, sizes = _loaders(config, features, rows, split_paths, found, k)
    if not targets["train"][:, 0].any():
        raise DataError(f"{config.points}: no row with points matches a training image; the names are relative "
                        f"to {config.image_root or Path(config.points).parent} (set --image-root)")
    head = model.head
    learner = Learner(head, loaders["train"], loaders["valid"], loss_fn=LandmarkLoss(config.point_weight),
                      lr=config.lr, weight_decay=config.weight_decay, metrics=(), device=device, quiet=config.quiet,
                      callbacks=[MetricsLogger(run / "metrics.jsonl"), Checkpoint(run / "checkpoints" / "head")])
    torch.manual_seed(config.seed)
    history = learner.fit(config.epochs, lr=config.lr, phase="head")
    prob, points = _predict(head, loaders["valid"], device)
    metrics = landmark_scores(prob, points, targets["valid"], sizes["valid"])
    metrics.update(images_with_object={s: int(t[:, 0].sum()) for s, t in targets.items()},
                   images={s: len(t) for s, t in targets.items()}, seconds=round(time.time() - started, 2))
    _write(run, config, k, pre, model, metrics, errors, kept["valid"], prob, points, targets["valid"])
    if not config.quiet:
        print(f"valid presence accuracy {metrics['presence_accuracy']:.4f}  PCK@0.1 {metrics['pck_at_0.1']:.4f}  "
              f"mean point error {metrics['mean_point_error_px']:.2f} px "
              f"({metrics['mean_point_error']:.4f} of the side)  ({metrics['seconds']:.1f}s)")
    return LandmarksRun(run.path, k, metrics, history)


def _predict(head: LandmarkHead, loader, device) -> tuple[np.ndarray, np.ndarray]:
    """Presence probabilities `(N,)` and points `(N, 2K)` as fractions, over `loader` in order."""
    head.eval().to(device)
    probs, points = [], []
    with torch.inference_mode():
        for x, _ in loader:
            logit, pts = head.split(head(x.to(device)).float())
            probs.append(torch.sigmoid(logit).cpu())
            points.append(pts.cpu())
    return torch.cat(probs).numpy(), torch.cat(points).numpy()


def landmark_scores(prob: np.ndarray, points: np.ndarray, targets: np.ndarray, sizes: np.ndarray) -> dict:
    """Presence accuracy (threshold 0.5) over all images; point errors over the images with an object.

    `prob` `(N,)`, `points` `(N, 2K)` and `targets[:, 1:]` as fractions, `sizes` `(N, 2)` (width, height).
    The error of a point is its distance to the true one: in pixels of the
    original image, and in fractions of the sides (`hypot(dx / width, dy / height)`,
    the same as pixels / side for a square image); PCK@0.1 is the share of
    points whose fractional error is at most 0.1.
    """
    present = targets[:, 0] > 0.5  # (N,)
    scores = {"presence_accuracy": float(((prob >= 0.5) == present).mean())}
    n, k = int(present.sum()), (targets.shape[1] - 1) // 2
    if n == 0:
        return {**scores, "mean_point_error": float("nan"), "mean_point_error_px": float("nan"),
                "pck_at_0.1": float("nan")}
    delta = (points[present] - targets[present, 1:]).reshape(n, k, 2)  # (n, K, 2) fractions
    frac = np.hypot(delta[..., 0], delta[..., 1])  # (n, K)
    px = np.hypot(delta[..., 0] * sizes[present, None, 0], delta[..., 1] * sizes[present, None, 1])  # (n, K)
    return {**scores, "mean_point_error": float(frac.mean()), "mean_point_error_px": float(px.mean()),
            "pck_at_0.1": float((frac <= 0.1).mean())}


def _write(run: RunFolder, config, k, pre, model, metrics, errors, paths, prob, points, targets) -> None:
    from heron.interpret.landmarks_figure import draw_landmark_predictions

    result = {"points": k, "preprocessing": pre.to_dict(), "metrics": metrics, "skipped_files": len(errors)}
    run.write_json("config.json", {**config.to_dict(), "result": result})
    run.write_text("errors.txt", "".join(f"{e}\n" for e in errors))
    save_weights(model, run / "model.safetensors", metadata={"format": "heron.LandmarksModel"})
    draw_landmark_predictions(paths, points.reshape(-1, k, 2), targets[:, 1:].reshape(-1, k, 2), targets[:, 0] > 0.5,
                              prob, run / "landmarks.png")
