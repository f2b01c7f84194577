"""What a classification run leaves behind: metrics, figures, errors and the report.

Separate from the training recipe so `classify.py` reads as the recipe alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from heron.data.images import load_image
from heron.data.transforms import eval_transform
from heron.errors import ImageError
from heron.interpret import (
    plot_class_balance,
    plot_confusion,
    plot_history,
    plot_lr_find,
    plot_top_losses,
    write_report,
)
from heron.train.metrics import accuracy, confusion_matrix, log_loss, precision_recall_per_class

__all__ = ["write_outputs", "score"]

TOP_LOSSES = 12


def score(probs: torch.Tensor, targets: torch.Tensor, classes: list[str], clip: float | None = None) -> dict:
    """Accuracy, log loss (optionally clipped), per-class precision/recall, confusion matrix."""
    num_classes = len(classes)
    clip_range = (clip, 1 - clip) if clip else None
    pr = precision_recall_per_class(probs, targets, num_classes)
    return {
        "accuracy": float(accuracy(probs, targets)),
        "log_loss": float(log_loss(probs, targets, clip=clip_range)),
        "per_class": [
            {"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, pr["precision"], pr["recall"], pr["f1"], pr["support"])
        ],
        "confusion": np.asarray(confusion_matrix(probs, targets, num_classes)).tolist(),
    }


def _top_losses(data, pre, probs: torch.Tensor, targets: torch.Tensor, kept_paths: list[Path]) -> list[dict]:
    """The validation images the model got most wrong, decoded for the figure."""
    picked = probs[torch.arange(len(targets)), targets].clamp_min(1e-12)
    losses = -picked.log()
    order = torch.argsort(losses, descending=True)[:TOP_LOSSES]
    show = eval_transform(pre)
    items = []
    for i in order.tolist():
        try:
            image = show(load_image(kept_paths[i]))
        except ImageError:
            continue
        pred = int(probs[i].argmax())
        items.append({
            "image": image, "label": data.classes[int(targets[i])], "pred": data.classes[pred],
            "prob": float(probs[i, pred]), "loss": float(losses[i]), "name": kept_paths[i].name,
        })
    return items


def write_outputs(run, config, data, model, pre, probs, targets, paths, history, errors, lr_result, elapsed) -> dict:
    """Write metrics, figures, errors.txt, config.json (with results) and report.html."""
    metrics = score(probs, targets, data.classes, config.clip) if not data.multilabel else {
        "accuracy": float(((probs > 0.5).float() == targets.float()).float().mean()),
        "log_loss": float(torch.nn.functional.binary_cross_entropy(probs.clamp(1e-7, 1 - 1e-7), targets.float())),
    }
    figures = []
    if history:
        figures.append(("Loss and accuracy per epoch", plot_history(history, run / "history.png").name))
    if "confusion" in metrics:
        figures.append(("Confusion matrix (validation)", plot_confusion(np.array(metrics["confusion"]), data.classes, run / "confusion.png").name))
        items = _top_losses(data, pre, probs, targets, paths)
        if items:
            figures.append(("Top losses: the validation images the model got most wrong", plot_top_losses(items, run / "top_losses.png").name))
    figures.append(("Images per class", plot_class_balance(data.class_counts(), run / "class_balance.png").name))
    if lr_result is not None:
        figures.append(("Learning-rate finder", plot_lr_find(lr_result.lrs, lr_result.losses, lr_result.suggestion, run / "lr_find.png").name))

    run.write_text("errors.txt", "".join(f"{e}\n" for e in errors))
    result = {
        "classes": data.classes,
        "multilabel": data.multilabel,
        "preprocessing": pre.to_dict(),
        "feature_kind": model.feature_kind,
        "metrics": {k: v for k, v in metrics.items() if k in ("accuracy", "log_loss")},
        "seconds": round(elapsed, 2),
        "skipped_files": len(errors),
    }
    run.write_json("config.json", {**config.to_dict(), "result": result})
    summary = {
        "data": str(Path(config.data).resolve()),
        "classes": f"{len(data.classes)} ({', '.join(data.classes[:8])}{', ...' if len(data.classes) > 8 else ''})",
        "images": f"{len(data.train)} train / {len(data.valid)} valid",
        "backbone": f"{config.arch} ({config.weights or 'random init'}), input {pre.size[0]}x{pre.size[1]}",
        "head": config.head + (f", then unfreeze {config.unfreeze}" if config.unfreeze else ""),
        "valid accuracy": round(metrics["accuracy"], 4),
        "valid log loss": round(metrics["log_loss"], 4),
        "time": f"{elapsed:.1f} s",
    }
    write_report(run.path, f"heron train: {Path(config.data).name}", summary, history,
                 metrics.get("per_class"), figures, errors, json.loads(json.dumps(config.to_dict())))
    return metrics
