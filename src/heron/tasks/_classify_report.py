"""What a classification run leaves behind: metrics, figures, errors and the report.

Separate from the training recipe so `classify.py` reads as the recipe alone.
The numbers, errors.txt, config.json and report.html are written at once; the
PNG figures are described in a small job (`heron.interpret.figures_job`) and
drawn either here ("inline") or by a background process ("background"), so a
finished run does not wait for matplotlib. `wait_for_figures(run_dir)` waits
for a background job.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from heron.config import FIGURE_MODES
from heron.interpret.figures_job import (
    TOP_LOSSES,
    planned_figures,
    render_job,
    start_background,
    wait_for_figures,
)
from heron.interpret.report import write_report
from heron.train.metrics import accuracy, confusion_matrix, log_loss, precision_recall_per_class

__all__ = ["write_outputs", "score", "score_run", "describe_figures", "wait_for_figures", "FIGURE_MODES"]



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


def score_run(probs: torch.Tensor, targets: torch.Tensor, data, clip: float | None = None) -> dict:
    """The validation metrics of a run: `score` for one label per image, accuracy and BCE for multi-label."""
    if not data.multilabel:
        return score(probs, targets, data.classes, clip)
    return {
        "accuracy": float(((probs > 0.5).float() == targets.float()).float().mean()),
        "log_loss": float(torch.nn.functional.binary_cross_entropy(probs.clamp(1e-7, 1 - 1e-7), targets.float())),
    }


def _top_losses(classes: list[str], probs: torch.Tensor, targets: torch.Tensor, kept_paths: list[Path]) -> list[dict]:
    """The validation images the model got most wrong, highest loss first (files, not pixels).

    The figure decodes them; one that cannot be read then is skipped.
    """
    picked = probs[torch.arange(len(targets)), targets].clamp_min(1e-12)
    losses = -picked.log()
    order = torch.argsort(losses, descending=True)[:TOP_LOSSES]
    items = []
    for i in order.tolist():
        pred = int(probs[i].argmax())
        path = Path(kept_paths[i])
        items.append({
            "path": str(path.resolve()), "label": classes[int(targets[i])], "pred": classes[pred],
            "prob": float(probs[i, pred]), "loss": float(losses[i]), "name": path.name,
        })
    return items


def _plain(value):
    """`value` with tensors, numpy values and tuples made JSON-ready."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return _plain(value.tolist())
    return value


def describe_figures(data, pre, probs, targets, paths, history, metrics, lr_result) -> dict:
    """What the run's figures need, as plain JSON-ready data (see `heron.interpret.figures_job`)."""
    single_label = "confusion" in metrics
    return {
        "classes": list(data.classes),
        "preprocessing": pre.to_dict(),
        "history": _plain(list(history or [])),
        "confusion": metrics["confusion"] if single_label else None,
        "top_losses": _top_losses(data.classes, probs, targets, paths) if single_label else None,
        "class_counts": _plain(data.class_counts()),
        "lr_find": None if lr_result is None else {
            "lrs": _plain(lr_result.lrs), "losses": _plain(lr_result.losses),
            "suggestion": None if lr_result.suggestion is None else float(lr_result.suggestion),
        },
    }


def _unfreeze_note(config, choices: dict | None) -> str:
    stages = (choices or {}).get("unfreeze", config.unfreeze)
    auto = " (unfreeze auto)" if config.unfreeze == "auto" else ""
    return f", then unfreeze {stages}{auto}" if stages else auto


def _engine_note(choices: dict | None) -> str:
    choices = choices or {}
    return f"engine {choices.get('engine', 'torch')}, precision {choices.get('precision', 'fp32')}"


def _toolkit_notes(config, choices: dict | None) -> dict:
    """Report lines for the settings against overfitting that this run used."""
    choices, notes = choices or {}, {}
    if choices.get("augment"):
        notes["augmentation"] = f"--augment {config.augment}: {choices['augment']}"
    pseudo = choices.get("pseudo")
    if pseudo:
        counts = ", ".join(f"{name} {n}" for name, n in pseudo["per_class"].items())
        notes["pseudo-labels"] = (f"{pseudo['used']} of {pseudo['unlabelled']} unlabelled images at p >= "
                                  f"{pseudo['threshold']:g} ({counts}), {pseudo['ratio']:.0%} of each batch")
    if config.ensemble > 1:
        notes["ensemble"] = f"{config.ensemble} heads, seeded apart; the model averages their probabilities"
    if config.tta:
        notes["test-time augmentation"] = config.tta
    meta = choices.get("metadata")
    if meta:
        notes["metadata input"] = f"{meta['described']} ({meta['columns']} columns, beside the image features)"
        alone, both = meta.get("image_only"), meta.get("with_metadata")
        if alone and both:
            notes["with vs without metadata"] = (
                f"with: accuracy {both['accuracy']:.4f}, log loss {both['log_loss']:.4f}; blanked: accuracy "
                f"{alone['accuracy']:.4f}, log loss {alone['log_loss']:.4f} (same head, same start)")
    return notes


def write_outputs(run, config, data, model, pre, probs, targets, paths, history, errors, lr_result, elapsed,
                  *, metrics: dict | None = None, choices: dict | None = None, diagnosis=None,
                  figures: str | None = None) -> dict:
    """Write errors.txt, config.json (with results), report.html and the figures; return the metrics.

    `metrics` are `score_run`'s (computed here when not given).

    `figures` (default: `config.figures`, else "inline"): "inline" draws the
    PNGs before the report is written; "background" writes the report at once
    and leaves the PNGs to a background process, which fills them into the
    report when they are done (`wait_for_figures(run.path)` waits for it);
    "none" writes no figures.
    """
    figures = figures or config.figures
    if figures not in FIGURE_MODES:
        raise ValueError(f"figures={figures!r}: use one of {', '.join(FIGURE_MODES)}")
    if metrics is None:
        metrics = score_run(probs, targets, data, config.clip)
    job = describe_figures(data, pre, probs, targets, paths, history, metrics, lr_result) if figures != "none" else None

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
    if choices:
        result["choices"] = _plain(choices)
    if diagnosis is not None:
        result["diagnosis"] = diagnosis.to_dict()
    run.write_json("config.json", {**config.to_dict(), "result": result})

    if figures == "inline":
        shown = render_job(job, run.path)
    elif figures == "background":
        shown = planned_figures(job)  # the worker fills in the figures that were drawn
    else:
        shown = []
    summary = {
        "data": str(Path(config.data).resolve()),
        "classes": f"{len(data.classes)} ({', '.join(data.classes[:8])}{', ...' if len(data.classes) > 8 else ''})",
        "images": f"{len(data.train)} train / {len(data.valid)} valid",
        "backbone": f"{config.arch} ({config.weights or 'random init'}), input {pre.size[0]}x{pre.size[1]}",
        "head": config.head + _unfreeze_note(config, choices),
        "trunk inference": _engine_note(choices),
        **_toolkit_notes(config, choices),
        "valid accuracy": round(metrics["accuracy"], 4),
        "valid log loss": round(metrics["log_loss"], 4),
        "time": f"{elapsed:.1f} s",
    }
    write_report(run.path, f"heron train: {Path(config.data).name}", summary, history, metrics.get("per_class"),
                 shown, errors, json.loads(json.dumps(config.to_dict())), diagnosis=diagnosis,
                 figures_pending=figures == "background")
    if figures == "background":
        start_background(job, run.path)
    return metrics
