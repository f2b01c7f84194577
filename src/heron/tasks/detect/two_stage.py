"""The region-based detectors behind `heron detect train --method rcnn | fast-rcnn | faster-rcnn`.

All three share the one-stage recipe's data, feature cache, run folder,
scores and figures (`heron.tasks.detect.recipe`); they differ in where the
regions come from and how each is seen:

- rcnn: selective-search proposals, each warped and run through the trunk
  on its own (`heron.tasks.detect.rcnn`);
- fast-rcnn: the same proposals RoI-pooled from one trunk map per image
  (`heron.tasks.detect.fast_rcnn`);
- faster-rcnn: a region proposal network on that map proposes them, and
  RoI heads classify them (`heron.tasks.detect.faster_rcnn`, torchvision's).

The trunk stays frozen: its maps (or, for R-CNN, its region features) are
computed once into the feature cache and the heads train on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from heron.tasks.detect.postprocess import Detection
from heron.tasks.detect.truth import annotation_size, input_boxes, labels_of, mirror_boxes

__all__ = ["RegionDetector", "region_network", "train_regions"]


@dataclass
class RegionDetector:
    """A trained region-based detector: trunk + head, classes, preprocessing and the proposal settings."""

    method: str
    model: torch.nn.Module  # ClassifierModel: backbone (frozen trunk) + the method's head
    classes: list[str]
    pre: object
    score_threshold: float = 0.3
    iou_threshold: float = 0.45
    precision: str = "fp32"
    proposals: int = 300  # selective-search proposals scored per image (rcnn, fast-rcnn)
    search: str = "single"
    crop: int = 128  # R-CNN's warped region side

    def propose(self, image: torch.Tensor) -> torch.Tensor:
        """The first `proposals` selective-search boxes `(P, 4)` of `image uint8 (3, H, W)`."""
        from heron.tasks.detect.regions import search_boxes

        return torch.from_numpy(search_boxes(image.permute(1, 2, 0).numpy(), self.search, 0)[: self.proposals])

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """What the head reads, from uint8 images: pooled vectors (rcnn's warped regions) or flattened maps."""
        from heron.nn.precision import autocast

        with autocast(self.precision, images.device):
            return self.model.features(images.float().div_(255.0)).float()

    def _scaled(self, found: list[Detection], sizes: list[tuple[int, int]]) -> list[Detection]:
        """Detections in input pixels -> in each image's original (width, height)."""
        height, width = self.pre.size
        return [d.scaled(w / width, h / height) for d, (w, h) in zip(found, sizes)]

    def detect_maps(self, maps: torch.Tensor, sizes: list[tuple[int, int]], proposals: list[torch.Tensor] | None,
                    score_threshold: float) -> list[Detection]:
        """Detections in original pixels from the trunk's maps, flattened or not (fast-rcnn: and the proposals)."""
        from heron.tasks.detect.region_head import region_detections

        head = self.model.head
        if self.method == "faster-rcnn":
            found = [Detection(b, s, l) for b, s, l in head.detect(maps)]
        else:
            outputs = head.region_outputs(maps, proposals).split([len(p) for p in proposals])
            found = [region_detections(out, p, self.pre.size, score_threshold, self.iou_threshold)
                     for out, p in zip(outputs, proposals)]
        return self._scaled(found, sizes)

    def detect_batch(self, images: torch.Tensor, sizes: list[tuple[int, int]], score_threshold: float | None = None,
                     proposals: list[torch.Tensor] | None = None) -> list[Detection]:
        """Detections in original pixels for `images uint8 (N, 3, H, W)` at the input size.

        `sizes`: each image's original (width, height); `proposals`: boxes
        already found for the images (default: selective search now).
        """
        from heron.tasks.detect.rcnn import region_features
        from heron.tasks.detect.region_head import region_detections

        threshold = self.score_threshold if score_threshold is None else score_threshold
        self.model.eval()
        with torch.inference_mode():
            if self.method != "faster-rcnn" and proposals is None:
                proposals = [self.propose(img) for img in images]
            if self.method != "rcnn":
                return self.detect_maps(self.features(images), sizes, proposals, threshold)
            found = [region_detections(self.model.head(region_features(self.features, img, p, self.crop)), p,
                                       self.pre.size, threshold, self.iou_threshold)
                     for img, p in zip(images, proposals)]
        return self._scaled(found, sizes)


def region_network(config, num_classes: int):
    """(ClassifierModel of the frozen trunk + the method's head, preprocessing) for `config.method`."""
    from heron.transfer.maps import map_trunk
    from heron.transfer.model import ClassifierModel

    if config.method == "rcnn":
        backbone, pre, map_shape = map_trunk(config.arch, config.weights, config.size)
        from heron.tasks.detect.rcnn import RCNNHead

        head = RCNNHead(map_shape[0], num_classes)
        return ClassifierModel(backbone, head, pre.mean, pre.std, feature_kind="pooled"), pre
    backbone, pre, map_shape = map_trunk(config.arch, config.weights, config.size, dilate=config.stride == 16)
    if config.method == "fast-rcnn":
        from heron.tasks.detect.fast_rcnn import FastRCNNHead

        head = FastRCNNHead(map_shape, num_classes, pre.size, width=config.width)
    else:
        from heron.tasks.detect.faster_rcnn import FasterRCNNHead

        head = FasterRCNNHead(map_shape, num_classes, pre.size, width=config.width,
                              iou_threshold=config.iou_threshold, representation=512)
    return ClassifierModel(backbone, head, pre.mean, pre.std, feature_kind="map"), pre


def _truth_rows(annotations, input_size, max_boxes: int) -> torch.Tensor:
    """`(N, max_boxes, 5)`: each image's true boxes in input pixels and labels, padded with label -1."""
    from heron.tasks.detect.faster_rcnn import pack_truth

    return torch.stack([pack_truth(input_boxes(a, input_size), labels_of(a), max_boxes)
                        for a in annotations]) if annotations else torch.zeros(0, max_boxes, 5)


def _regions(annotations, proposals, input_size, count: int, seed: int) -> torch.Tensor:
    """`(N, count, REGION_FIELDS)` training regions per image, drawn once with `seed`."""
    from heron.tasks.detect.regions import REGION_FIELDS, sample_regions

    generator = torch.Generator().manual_seed(seed)
    rows = [sample_regions(torch.from_numpy(p), input_boxes(a, input_size), labels_of(a), count, generator)
            for a, p in zip(annotations, proposals)]
    return torch.stack(rows) if rows else torch.zeros(0, count, REGION_FIELDS)


def train_regions(config, data, run, device, engine: str, precision: str, callbacks, resume_from) -> tuple:
    """Train `config.method`'s head on the frozen trunk.

    Returns (detector, history, the valid items scored, their detections in
    original pixels, errors). `callbacks(phase)` gives the Learner's
    callbacks, `resume_from(phase)` a checkpoint folder or None.
    """
    from heron.tasks.detect.recipe import EVAL_SCORE_THRESHOLD, MAX_BOXES
    from heron.tasks.detect.regions import image_proposals
    from heron.train import Learner
    from heron.transfer.maps import cached_maps

    model, pre = region_network(config, len(data.classes))
    items = {"train": list(data.train), "valid": list(data.valid)}
    errors: list[str] = []
    proposals = {}
    if config.method != "faster-rcnn":
        found, errs = image_proposals([a.path for a in items["train"] + items["valid"]], pre, config.search,
                                      config.cache_dir, config.workers, config.quiet, config.seed)
        errors += errs
        proposals = {"train": found[: len(items["train"])], "valid": found[len(items["train"]) :]}
    if config.method == "rcnn":
        loaders, loss, features, rows = _rcnn_batches(config, model, pre, items, proposals, device, engine,
                                                      precision)
    else:
        features, rows, errs = cached_maps(model, pre, config.arch, {k: [a.path for a in v] for k, v in items.items()},
                                           cache_dir=config.cache_dir, workers=config.workers, device=device,
                                           engine=engine, precision=precision, quiet=config.quiet,
                                           flipped=("train",) if config.hflip else (),
                                           variant="dilated" if config.stride == 16 else "")
        errors += errs
        for split in items:
            ok = (rows[split] >= 0).all(axis=1)
            if proposals:
                ok &= np.asarray([p is not None for p in proposals[split]], dtype=bool)
                proposals[split] = [p for p, good in zip(proposals[split], ok) if good]
            items[split], rows[split] = [a for a, good in zip(items[split], ok) if good], rows[split][ok]
        loaders, loss = _map_batches(config, features, rows, items, proposals, pre, len(data.classes), MAX_BOXES)
    learner = Learner(model.head, loaders["train"], loaders["valid"], loss_fn=loss, lr=config.lr,
                      weight_decay=config.weight_decay, metrics=(), device=device, quiet=config.quiet,
                      callbacks=callbacks("head"))
    torch.manual_seed(config.seed)
    history = learner.fit(config.epochs, lr=config.lr, phase="head", resume=resume_from("head"))
    model.head.to("cpu")
    detector = RegionDetector(config.method, model.eval(), data.classes, pre, config.score_threshold,
                              config.iou_threshold, precision, config.proposals, config.search, config.crop)
    valid = items["valid"]
    valid_props = [torch.from_numpy(p[: config.proposals]) for p in proposals.get("valid", [])] or None
    if config.method == "rcnn":
        found = _rcnn_detections(detector, valid, valid_props, EVAL_SCORE_THRESHOLD, config.quiet)
    else:
        found = []
        for start in range(0, len(valid), 16):
            maps = torch.from_numpy(np.asarray(features[rows["valid"][start : start + 16, 0]], dtype=np.float32))
            part = None if valid_props is None else valid_props[start : start + 16]
            with torch.inference_mode():
                found += detector.detect_maps(maps, [annotation_size(a) for a in valid[start : start + 16]], part,
                                              EVAL_SCORE_THRESHOLD)
    return detector, history, valid, found, errors


def _mirror_rows(rows: torch.Tensor, width: int) -> torch.Tensor:
    """Rows `(..., F)` whose first four columns are boxes, for the mirror image (padding rows stay unused)."""
    out = rows.clone()
    out[..., :4] = mirror_boxes(rows[..., :4], width)
    return out


def _copies(targets: torch.Tensor, mirror, copies: int) -> torch.Tensor:
    """`(N, copies, ...)`: the targets of each cached view, the image's and (copy 1) its mirror image's."""
    return torch.stack([targets, mirror(targets)][:copies], 1)


def _map_batches(config, features, rows, items, proposals, pre, num_classes: int, max_boxes: int):
    """Loaders over the cached maps and the loss, for fast-rcnn (sampled regions) or faster-rcnn (true boxes)."""
    from heron.transfer.extract import FeatureBatches

    loaders = {}
    if config.method == "fast-rcnn":
        from heron.tasks.detect.region_head import RegionLoss
        from heron.tasks.detect.regions import mirror_regions

        for split, seed in (("train", config.seed), ("valid", config.seed + 1)):
            regions = _regions(items[split], proposals[split], pre.size, config.regions, seed)
            regions = _copies(regions, lambda r: mirror_regions(r, pre.size[1]), rows[split].shape[1])
            loaders[split] = FeatureBatches(features, rows[split], regions, config.batch_size, shuffle=split == "train",
                                            extra=regions, per_copy=True)
        return loaders, RegionLoss(num_classes)
    from heron.tasks.detect.faster_rcnn import faster_rcnn_loss

    most = min(max_boxes, max([len(a.boxes) for a in items["train"] + items["valid"]] + [1]))
    for split in ("train", "valid"):
        truth = _copies(_truth_rows(items[split], pre.size, most), lambda t: _mirror_rows(t, pre.size[1]),
                        rows[split].shape[1])
        loaders[split] = FeatureBatches(features, rows[split], truth, config.batch_size, shuffle=split == "train",
                                        extra=truth, per_copy=True)
    return loaders, faster_rcnn_loss


def _rcnn_batches(config, model, pre, items, proposals, device, engine, precision):
    """Loaders over the cached features of every image's sampled regions, the loss, the features and rows."""
    from heron.tasks.detect.rcnn import cached_region_features
    from heron.tasks.detect.region_head import RegionLoss
    from heron.transfer.extract import FeatureBatches

    loaders, rows = {}, {}
    features = None
    for split, seed in (("train", config.seed), ("valid", config.seed + 1)):
        keep = [i for i, p in enumerate(proposals[split]) if p is not None]
        items[split] = [items[split][i] for i in keep]
        proposals[split] = [proposals[split][i] for i in keep]
        regions = _regions(items[split], proposals[split], pre.size, config.regions, seed)
        used = [r[r[:, 9] > 0] for r in regions]
        features, per_image = cached_region_features(model, pre, config.arch, config.crop,
                                                     [a.path for a in items[split]], [u[:, :4] for u in used],
                                                     cache_dir=config.cache_dir, device=device, engine=engine,
                                                     precision=precision, quiet=config.quiet)
        rows[split] = np.concatenate(per_image) if per_image else np.zeros(0, np.int64)
        targets = torch.cat(used)[:, None] if used else torch.zeros(0, 1, 10)
        loaders[split] = FeatureBatches(features, rows[split], targets, config.batch_size * 16,
                                        shuffle=split == "train", per_copy=True)
    return loaders, RegionLoss(model.head.num_classes), features, rows


def _rcnn_detections(detector: RegionDetector, items, proposals, score_threshold: float, quiet: bool = False
                     ) -> list[Detection]:
    """R-CNN on the valid images: every proposal cropped from the image and run through the trunk."""
    from heron.data.loader import file_loader
    from heron.transfer.maps import squash_transform

    from tqdm.auto import tqdm

    _, loader, _ = file_loader([a.path for a in items], squash_transform(detector.pre), 4, 0)
    found = []
    with tqdm(total=len(items), desc="rcnn: scoring valid", unit="img", disable=quiet, leave=False) as bar:
        for x, _, idx, _ in loader:
            batch = idx.tolist()
            found += detector.detect_batch(x, [annotation_size(items[i]) for i in batch], score_threshold,
                                           [proposals[i] for i in batch])
            bar.update(len(batch))
    return found
