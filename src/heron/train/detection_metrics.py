"""Detection metrics: COCO-style mAP@[.5:.95] and mAP@0.5, and VOC-style all-point AP.

The COCO numbers follow the COCO bbox evaluation for one area range (all
boxes), no crowd regions, at most `max_dets` detections per image and class:

1. per image and class, detections in decreasing score order (ties keep
   their input order), each matched at every IoU threshold t to the still
   unmatched ground truth box of highest IoU >= t (of equal IoUs, the later
   box), or else a false positive;
2. per class, the detections of all images in decreasing score order give
   cumulative precision and recall; precision is made non-increasing from the
   right and read at 101 recall points 0, 0.01, ..., 1 (0 past the last
   recall reached); AP is the mean of those 101 values;
3. a class's AP is the mean over thresholds; mAP is the mean over the classes
   that have ground truth (a class with none has AP NaN and is left out).

`interpolation="voc"` instead scores each threshold with the all-point area
under the precision envelope (VOC2010 and later), and matches as the VOC
devkit does: a detection goes to the box of highest IoU, and is a true
positive only when that IoU is > t and the box is not taken yet.

Boxes are xyxy in pixels, as everywhere in heron, with x2 >= x1 and y2 >= y1;
IoUs are computed in float64, without VOC's "+1 pixel" convention. VOC
counted every detection; pass a large `max_dets` for that.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from heron.ops.boxes import box_iou

__all__ = ["COCO_IOU_THRESHOLDS", "DetectionScores", "Detections", "GroundTruth", "coco_interpolated_precision",
           "coco_ap", "evaluate_detections", "voc_ap"]

COCO_IOU_THRESHOLDS = tuple(np.linspace(0.5, 0.95, 10).tolist())  # 0.5, 0.55, ..., 0.95
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass
class Detections:
    """One image's predictions: `boxes Tensor[N, 4]` xyxy, `scores Tensor[N]`, `labels Tensor[N]` int64 in [0, C)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


@dataclass
class GroundTruth:
    """One image's annotated objects: `boxes Tensor[M, 4]` xyxy and `labels Tensor[M]` int64 in [0, C)."""

    boxes: torch.Tensor
    labels: torch.Tensor


@dataclass
class DetectionScores:
    """Results of `evaluate_detections`; per-class lists are indexed by class id, NaN where a class has no ground truth.

    `pr_curves[c]` is {"recall": [...], "precision": [...]} at IoU 0.5, one point per detection of class c
    in score order (raw, not interpolated), for plotting; None for a class without ground truth.
    """

    map: float
    map50: float
    ap_per_class: list[float]
    ap50_per_class: list[float]
    counts: list[int]
    class_names: list[str]
    pr_curves: list[dict[str, list[float]] | None] = field(repr=False)
    iou_thresholds: tuple[float, ...] = COCO_IOU_THRESHOLDS
    interpolation: str = "coco"

    def to_dict(self, curves: bool = False) -> dict:
        """JSON-ready dict (NaN becomes None); the PR curves only when `curves`, as they grow with the detections."""
        clean = lambda xs: [None if math.isnan(x) else x for x in xs]  # noqa: E731
        out = {"map": None if math.isnan(self.map) else self.map,
               "map50": None if math.isnan(self.map50) else self.map50,
               "ap_per_class": clean(self.ap_per_class), "ap50_per_class": clean(self.ap50_per_class),
               "counts": list(self.counts), "class_names": list(self.class_names),
               "iou_thresholds": list(self.iou_thresholds), "interpolation": self.interpolation}
        if curves:
            out["pr_curves"] = self.pr_curves
        return out

    def table(self) -> str:
        """Per-class text table (class, ground truth boxes, AP@0.5, AP@[.5:.95]) with the means last."""
        width = max([len("class"), len("all")] + [len(n) for n in self.class_names])
        fmt = lambda x: "   -" if math.isnan(x) else f"{x:.3f}"  # noqa: E731
        lines = [f"{'class':<{width}}  {'gt':>6}  {'AP50':>6}  {'AP':>6}"]
        for name, n, ap50, ap in zip(self.class_names, self.counts, self.ap50_per_class, self.ap_per_class):
            lines.append(f"{name:<{width}}  {n:>6}  {fmt(ap50):>6}  {fmt(ap):>6}")
        lines.append(f"{'all':<{width}}  {sum(self.counts):>6}  {fmt(self.map50):>6}  {fmt(self.map):>6}")
        return "\n".join(lines)


# Interpolation ------------------------------------------------------------------------------------------------

def _envelope(precision: np.ndarray) -> np.ndarray:
    """Precision made non-increasing: each value raised to the best precision at any higher recall."""
    return np.maximum.accumulate(precision[::-1])[::-1]


def coco_interpolated_precision(recall: np.ndarray, precision: np.ndarray,
                                points: np.ndarray = RECALL_POINTS) -> np.ndarray:
    """Envelope precision `ndarray[R]` at each recall point: at the first detection whose recall reaches it.

    `recall` and `precision` are `ndarray[D]`, cumulative over detections in score order; a recall
    point beyond the last recall reached gets precision 0.
    """
    recall, precision = np.asarray(recall, dtype=np.float64), np.asarray(precision, dtype=np.float64)
    out = np.zeros(len(points))
    if len(recall):
        at = np.searchsorted(recall, points, side="left")  # (R,) first detection with recall >= point
        reached = at < len(recall)
        out[reached] = _envelope(precision)[at[reached]]
    return out


def coco_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """COCO's 101-point interpolated AP: the mean of `coco_interpolated_precision`."""
    return float(coco_interpolated_precision(recall, precision).mean())


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (VOC2010+): the area under the precision envelope, as a step function of recall.

    `recall` and `precision` are `ndarray[D]`, cumulative over detections in score order.
    """
    rec = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    pre = _envelope(np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]]))
    steps = np.nonzero(rec[1:] != rec[:-1])[0]  # where recall moves
    return float(np.sum((rec[steps + 1] - rec[steps]) * pre[steps + 1]))


# Matching -----------------------------------------------------------------------------------------------------

def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU `ndarray[D, G]` of xyxy boxes `a ndarray[D, 4]` and `b ndarray[G, 4]`, in float64 (`heron.ops.boxes.box_iou`)."""
    return box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def _match_coco(iou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """True positives `ndarray[T, D]` bool for detections (rows of `iou ndarray[D, G]`, in score order).

    At each threshold a detection takes the unmatched box of highest IoU >= the threshold (the last of ties).
    """
    taken = np.zeros((len(thresholds), iou.shape[1]), dtype=bool)  # (T, G)
    hits = np.zeros((len(thresholds), iou.shape[0]), dtype=bool)  # (T, D)
    limit = np.minimum(thresholds, 1 - 1e-10)[:, None]  # an IoU of exactly 1 still matches at t = 1
    rows = np.arange(len(thresholds))
    for d in range(iou.shape[0]):
        cand = ~taken & (iou[d][None, :] >= limit)  # (T, G)
        best = iou.shape[1] - 1 - np.where(cand, iou[d][None, :], -1.0)[:, ::-1].argmax(axis=1)  # last max
        ok = cand.any(axis=1)
        hits[:, d] = ok
        taken[rows[ok], best[ok]] = True
    return hits


def _match_voc(iou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """True positives `ndarray[T, D]`: the box of highest IoU (the first of ties), if IoU > t and not yet taken."""
    taken = np.zeros((len(thresholds), iou.shape[1]), dtype=bool)
    hits = np.zeros((len(thresholds), iou.shape[0]), dtype=bool)
    rows = np.arange(len(thresholds))
    for d in range(iou.shape[0]):
        best = int(iou[d].argmax())
        ok = (iou[d, best] > thresholds) & ~taken[:, best]  # (T,)
        hits[:, d] = ok
        taken[rows[ok], best] = True
    return hits


# Evaluation ---------------------------------------------------------------------------------------------------

def _numpy(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return x.double().numpy().astype(dtype) if x.is_floating_point() else x.numpy().astype(dtype)
    return np.asarray(x, dtype=dtype)


def _fields(item, names: tuple[str, ...]) -> list[np.ndarray]:
    """The named fields of a dataclass or a dict as numpy arrays (boxes reshaped to (N, 4))."""
    get = item.__getitem__ if isinstance(item, Mapping) else lambda k: getattr(item, k)
    out = []
    for name in names:
        dtype = np.int64 if name == "labels" else np.float64
        value = _numpy(get(name), dtype)
        out.append(value.reshape(-1, 4) if name == "boxes" else value.reshape(-1))
    return out


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{where}: labels must be class ids in [0, {num_classes}); "
                         f"got {labels.min()}..{labels.max()}")


def _per_class_results(predictions: Sequence, targets: Sequence, num_classes: int, thresholds: np.ndarray,
                       max_dets: int, voc: bool) -> tuple[list, list, np.ndarray]:
    """Per class: (scores, true-positive `ndarray[T, D]`) chunks in image order, and gt counts `ndarray[C]`."""
    scores = [[] for _ in range(num_classes)]
    hits = [[] for _ in range(num_classes)]
    counts = np.zeros(num_classes, dtype=np.int64)
    match = _match_voc if voc else _match_coco
    for i, (pred, target) in enumerate(zip(predictions, targets)):
        boxes, conf, labels = _fields(pred, ("boxes", "scores", "labels"))
        gt_boxes, gt_labels = _fields(target, ("boxes", "labels"))
        _check_labels(labels, num_classes, f"predictions[{i}]")
        _check_labels(gt_labels, num_classes, f"targets[{i}]")
        counts += np.bincount(gt_labels, minlength=num_classes)
        for c in np.unique(labels):
            mine = np.nonzero(labels == c)[0]
            mine = mine[np.argsort(-conf[mine], kind="stable")][:max_dets]  # (D,) best first
            gts = gt_boxes[gt_labels == c]
            iou = _iou(boxes[mine], gts) if len(gts) else np.zeros((len(mine), 0))
            hit = match(iou, thresholds) if len(gts) else np.zeros((len(thresholds), len(mine)), dtype=bool)
            scores[c].append(conf[mine])
            hits[c].append(hit)
    return scores, hits, counts


def _pr(scores: list, hits: list, n_gt: int, n_thresholds: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative recall and precision `ndarray[T, D]` over one class's detections of all images, best first."""
    if not scores:
        return np.zeros((n_thresholds, 0)), np.zeros((n_thresholds, 0))
    order = np.argsort(-np.concatenate(scores), kind="stable")  # ties: image order, then score order
    tp = np.concatenate(hits, axis=1)[:, order]  # (T, D)
    tp_sum = np.cumsum(tp, axis=1, dtype=np.float64)
    fp_sum = np.cumsum(~tp, axis=1, dtype=np.float64)
    return tp_sum / n_gt, tp_sum / (tp_sum + fp_sum + np.spacing(1))


def evaluate_detections(predictions: Sequence, targets: Sequence, num_classes: int,
                        iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS, max_dets: int = 100,
                        class_names: Sequence[str] | None = None, interpolation: str = "coco") -> DetectionScores:
    """COCO mAP@[.5:.95] and mAP@0.5 (or VOC all-point AP) of per-image `predictions` against `targets`.

    `predictions[i]` is a `Detections` (or a dict with "boxes", "scores", "labels") and `targets[i]` a
    `GroundTruth` (or a dict with "boxes", "labels") for the same image i; boxes xyxy, labels in
    [0, num_classes). `max_dets` caps the detections per image and class (highest scores kept).
    `interpolation` is "coco" (101 recall points) or "voc" (all points, VOC matching); `map50` uses
    the threshold 0.5, which must be among `iou_thresholds`. See the module docstring for the rules.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"evaluate_detections: {len(predictions)} predictions for {len(targets)} images of targets")
    if interpolation not in ("coco", "voc"):
        raise ValueError(f"interpolation must be 'coco' or 'voc'; got {interpolation!r}")
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    at50 = np.nonzero(np.isclose(thresholds, 0.5))[0]
    if not len(at50):
        raise ValueError(f"iou_thresholds must include 0.5 (for map50); got {list(iou_thresholds)}")
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class_names for num_classes={num_classes}")
    scores, hits, counts = _per_class_results(predictions, targets, num_classes, thresholds, max_dets,
                                              interpolation == "voc")
    area = voc_ap if interpolation == "voc" else coco_ap
    ap = np.full((num_classes, len(thresholds)), np.nan)  # (C, T)
    curves = []
    for c in range(num_classes):
        if not counts[c]:  # no ground truth: no recall, no AP, no curve
            curves.append(None)
            continue
        recall, precision = _pr(scores[c], hits[c], int(counts[c]), len(thresholds))
        curves.append({"recall": recall[at50[0]].tolist(), "precision": precision[at50[0]].tolist()})
        ap[c] = [area(recall[t], precision[t]) for t in range(len(thresholds))]
    ap_class, ap50_class = ap.mean(axis=1), ap[:, at50[0]]
    has_gt = counts > 0
    mean = lambda x: float(x[has_gt].mean()) if has_gt.any() else float("nan")  # noqa: E731
    return DetectionScores(map=mean(ap_class), map50=mean(ap50_class), ap_per_class=ap_class.tolist(),
                           ap50_per_class=ap50_class.tolist(), counts=counts.tolist(), class_names=names,
                           pr_curves=curves, iou_thresholds=tuple(thresholds.tolist()), interpolation=interpolation)
