"""Classification with localisation: one network, two outputs, the class of the main object and its box.

The seeds' multi-output model: the pretrained trunk's feature map (kept in
the feature cache, so training takes seconds) feeds one linear layer whose
outputs are the seeds' y vector: the class logits, four box coordinates and
p_c (is there a box). The box is (x1, y1, x2, y2) as fractions of the image,
squashed into [0, 1] by a sigmoid; images are resized whole (no crop), so a
fraction of the resized image is the same fraction of the original. The
loss (`BoxClassLoss`) is cross-entropy + BCE(p_c) + `box_weight` * MSE(box),
the box term only where there is a box. Scores: class accuracy, p_c
accuracy and the mean IoU of the predicted box with the true one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from heron.data.images import image_size
from torch import nn

from heron.config import LocalizeConfig
from heron.data.boxes import largest_boxes, read_boxes
from heron.data.folders import discover
from heron.data.transforms import Preprocessing
from heron.errors import DataError
from heron.models import save_weights
from heron.ops.boxes import paired_iou
from heron.train import Checkpoint, Learner, MetricsLogger
from heron.train.learner import resolve_device
from heron.train.run import RunFolder
from heron.transfer.extract import FeatureBatches
from heron.transfer.maps import cached_maps, map_trunk, squash_transform
from heron.transfer.model import ClassifierModel

__all__ = ["BoxClassHead", "BoxClassLoss", "LocalizeRun", "localize", "squash_transform"]


class BoxClassHead(nn.Module):
    """Feature map -> 1x1 conv to `width` channels, ReLU -> flatten -> dropout -> linear -> the seeds' y vector.

    The 1x1 convolution keeps where things are (the box needs it) while
    cutting the trunk's channels to a few, so a few hundred images can fit
    the linear layer. Takes the map `(N, C, h, w)` or the cache's flattened
    form `(N, C*h*w)`; returns `(N, classes + 5)`: class logits, the box's
    four coordinates, and p_c's logit (is there a box at all).
    """

    def __init__(self, map_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.2,
                 width: int = 32) -> None:
        super().__init__()
        self.map_shape, self.num_classes = tuple(map_shape), num_classes
        channels, height, width_px = self.map_shape
        self.reduce = nn.Sequential(nn.Conv2d(channels, width, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(width * height * width_px, num_classes + 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.view(-1, *self.map_shape)
        return self.fc(self.drop(self.reduce(x).flatten(1)))  # (N, C + 5)

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(class logits (N, C), box (N, 4) as fractions of the image in [0, 1], p_c logit (N,))."""
        c = self.num_classes
        return out[:, :c], torch.sigmoid(out[:, c : c + 4]), out[:, c + 4]


def has_box(target: torch.Tensor) -> torch.Tensor:
    """`(N,)` True where a target row `(class, x1, y1, x2, y2)` holds a box with area (p_c = 1)."""
    return (target[:, 3:5] > target[:, 1:3]).all(1)


class BoxClassLoss(nn.Module):
    """The seeds' loss on the y vector, on targets `(N, 5)`: class id, then the box as fractions (zeros: none).

    Binary cross-entropy of p_c for every image; `box_weight` x the squared
    error of the box only where there is one (p_c = 1: elsewhere the box is
    "don't care"); and the class's cross-entropy for every image, since
    here each image's class is known from its folder.
    """

    def __init__(self, head: BoxClassHead, box_weight: float) -> None:
        super().__init__()
        self.head, self.box_weight = head, box_weight

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, box, presence = self.head.split(out.float())
        target = target.float()
        present = has_box(target)
        classes = nn.functional.cross_entropy(logits, target[:, 0].long())
        p_c = nn.functional.binary_cross_entropy_with_logits(presence, present.float())
        boxes = ((box[present] - target[present, 1:]) ** 2).mean() if present.any() else box.sum() * 0.0
        return classes + p_c + self.box_weight * boxes


def _targets(items, boxes: dict[Path, tuple]) -> tuple[torch.Tensor, int]:
    """`(N, 5)` targets: class, then the largest box as fractions (zeros without one); and how many had a box."""
    rows, found = [], 0
    for path, label in items:
        box = boxes.get(Path(path).resolve())
        if box is None:
            rows.append([label, 0.0, 0.0, 0.0, 0.0])
            continue
        width, height = image_size(path)
        x1, y1, x2, y2 = box
        rows.append([label, x1 / width, y1 / height, x2 / width, y2 / height])
        found += 1
    targets = torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)
    targets[:, 1:].clamp_(0.0, 1.0)  # a box drawn past the image's edge ends at it
    return targets, found


@dataclass
class LocalizeRun:
    """A finished localisation run: its folder and the validation scores."""

    path: Path
    classes: list[str]
    metrics: dict
    history: list[dict] = field(default_factory=list)


def _model(config: LocalizeConfig, num_classes: int) -> tuple[ClassifierModel, Preprocessing]:
    backbone, pre, map_shape = map_trunk(config.arch, config.weights, config.size)
    head = BoxClassHead(map_shape, num_classes, config.dropout)
    return ClassifierModel(backbone, head, pre.mean, pre.std, feature_kind="map"), pre


def localize(config: LocalizeConfig) -> LocalizeRun:
    """Train the class + box model of `config` on cached features; returns the run (its folder holds it all)."""
    from heron.transfer.engine import resolve_engine

    started = time.time()
    torch.manual_seed(config.seed)
    data = discover(config.data, valid_pct=config.valid_pct, seed=config.seed)
    if data.multilabel:
        raise DataError(f"{config.data}: localisation takes one class per image, not multi-label data")
    boxes = largest_boxes(read_boxes(config.boxes, config.image_root))
    run = RunFolder.create(config.out, f"localize-{Path(config.data).resolve().name}", overwrite=config.overwrite)
    run.write_json("config.json", config.to_dict())
    device = resolve_device("auto")
    engine, precision = resolve_engine(config.engine, config.precision, device)
    model, pre = _model(config, len(data.classes))
    split_items = {"train": data.train, "valid": data.valid}
    features, rows, errors = cached_maps(model, pre, config.arch, {s: [p for p, _ in it] for s, it in split_items.items()},
                                         cache_dir=config.cache_dir, workers=config.workers, device=device,
                                         engine=engine, precision=precision, quiet=config.quiet)
    loaders, kept, counts = {}, {}, {}
    for split, items in split_items.items():
        ok = (rows[split] >= 0).all(axis=1)
        kept[split] = [item for item, good in zip(items, ok) if good]
        targets, counts[split] = _targets(kept[split], boxes)
        loaders[split] = FeatureBatches(features, rows[split][ok], targets, config.batch_size if split == "train"
                                        else 256, shuffle=split == "train")
    if counts["train"] == 0:
        raise DataError(f"{config.boxes}: no box matches a training image; the names are relative to "
                        f"{config.image_root or Path(config.boxes).parent} (set --image-root)")
    head = model.head
    learner = Learner(head, loaders["train"], loaders["valid"], loss_fn=BoxClassLoss(head, config.box_weight),
                      lr=config.lr, weight_decay=config.weight_decay, metrics=(), device=device, quiet=config.quiet,
                      callbacks=[MetricsLogger(run / "metrics.jsonl"), Checkpoint(run / "checkpoints" / "head")])
    torch.manual_seed(config.seed)
    history = learner.fit(config.epochs, lr=config.lr, phase="head")
    probs, pred_boxes, presence, targets = _predict(head, loaders["valid"], device)
    metrics = _scores(probs, pred_boxes, presence, targets)
    metrics.update(images_with_boxes=counts, seconds=round(time.time() - started, 2))
    _write(run, config, data.classes, pre, model, metrics, errors, kept["valid"], probs, pred_boxes, targets,
           presence)
    if not config.quiet:
        print(f"valid accuracy {metrics['accuracy']:.4f}  p_c accuracy {metrics['presence_accuracy']:.4f}  "
              f"mean box IoU {metrics['mean_iou']:.4f}  ({metrics['seconds']:.1f}s)")
    return LocalizeRun(run.path, data.classes, metrics, history)


def _predict(head: BoxClassHead, loader, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class probabilities (N, C), boxes (N, 4) as fractions, p_c (N,), and the targets (N, 5) of `loader`."""
    head.eval().to(device)
    probs, boxes, presence, targets = [], [], [], []
    with torch.inference_mode():
        for x, y in loader:
            logits, box, p_c = head.split(head(x.to(device)).float())
            probs.append(torch.softmax(logits, 1).cpu())
            boxes.append(box.cpu())
            presence.append(torch.sigmoid(p_c).cpu())
            targets.append(y)
    return torch.cat(probs), torch.cat(boxes), torch.cat(presence), torch.cat(targets)


def _scores(probs: torch.Tensor, boxes: torch.Tensor, presence: torch.Tensor, targets: torch.Tensor) -> dict:
    """Accuracy of the class and of p_c, and mean IoU of the box (over the images that have a box)."""
    present = has_box(targets)
    iou = paired_iou(boxes[present], targets[present, 1:])
    return {"accuracy": float((probs.argmax(1) == targets[:, 0].long()).float().mean()),
            "presence_accuracy": float(((presence >= 0.5) == present).float().mean()),
            "mean_iou": float(iou.mean()) if len(iou) else float("nan"),
            "iou_at_0.5": float((iou >= 0.5).float().mean()) if len(iou) else float("nan")}


def _write(run: RunFolder, config, classes, pre, model, metrics, errors, items, probs, boxes, targets,
           presence) -> None:
    from heron.interpret.boxes_figure import draw_box_predictions

    result = {"classes": classes, "preprocessing": pre.to_dict(), "metrics": metrics, "skipped_files": len(errors)}
    run.write_json("config.json", {**config.to_dict(), "result": result})
    run.write_text("errors.txt", "".join(f"{e}\n" for e in errors))
    save_weights(model, run / "model.safetensors", metadata={"format": "heron.LocalizeModel"})
    labels = [classes[i] for i in probs.argmax(1).tolist()]
    truth = [classes[int(i)] for i in targets[:, 0].tolist()]
    confidence = probs.max(1).values.tolist()
    iou = paired_iou(boxes, targets[:, 1:]).tolist()
    draw_box_predictions([p for p, _ in items], boxes.numpy(), targets[:, 1:].numpy(), labels, truth, confidence,
                         iou, run / "boxes.png", presence=presence.tolist())

