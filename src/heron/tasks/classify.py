"""Image classification: transfer learning on a folder of images, then prediction.

The seeds' recipe as one function, `train(config)`:
1. read and check the dataset (`heron.data.folders.discover`);
2. cut the top off a pretrained network and run its trunk once over every
   image, keeping the features in the on-disk cache (`heron.transfer`);
3. train a small head on the cached features in seconds;
4. optionally unfreeze the last stages and fine-tune end to end with
   discriminative learning rates, the head's weights carried over;
5. score the validation set (optionally with test-time augmentation) and
   write the run folder: model, metrics, figures and report.
`load_run`, `predict` and `evaluate` use a finished run folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from heron.config import TrainConfig
from heron.data.folders import discover
from heron.data.loader import ImageFiles, image_loader
from heron.data.transforms import Preprocessing, augmentation, eval_transform, train_transform, tta_views
from heron.errors import DataError
from heron.models import build, load_weights, save_weights
from heron.train import Checkpoint, EarlyStopping, Learner, MetricsLogger
from heron.train.learner import resolve_device
from heron.train.run import RunFolder
from heron.transfer.cache import FeatureCache, weights_fingerprint
from heron.transfer.extract import FeatureBatches, SeededView, extract_features
from heron.transfer.freeze import discriminative_param_groups, freeze, unfreeze
from heron.transfer.heads import feature_kind, make_head
from heron.transfer.model import ClassifierModel

from heron.tasks._classify_report import write_outputs

__all__ = ["Run", "Prediction", "train", "load_run", "predict_images", "predict_files", "evaluate", "build_classifier"]


@dataclass
class Run:
    """A finished training run: where it is and what it measured."""

    path: Path
    classes: list[str]
    metrics: dict
    history: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def build_classifier(config: TrainConfig, num_classes: int, weights: str | None = None) -> tuple[ClassifierModel, Preprocessing]:
    """Pretrained trunk without its top + a new head, and the preprocessing its weights expect."""
    backbone = build(config.arch, weights=weights, include_top=False)
    pre = Preprocessing.from_spec(getattr(backbone, "pretrained_cfg", None), config.size, config.crop_pct)
    with torch.no_grad():
        backbone.eval()
        fmap = backbone.forward_features(torch.zeros(1, 3, *pre.size))  # (1, C, h, w)
    channels, map_size = fmap.shape[1], tuple(fmap.shape[2:])
    kind = feature_kind(config.head)
    head = make_head(config.head, channels, num_classes, map_size, config.dropout, config.hidden)
    return ClassifierModel(backbone, head, pre.mean, pre.std, kind), pre


class ImageBatches:
    """Adapts an image DataLoader to `(x float [0,1], y)` batches; bad files go to `errors`."""

    def __init__(self, loader, errors: list[str]) -> None:
        self.loader, self.errors = loader, errors

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y, _, errors in self.loader:
            self._note(errors)
            if x is not None:
                yield x.float().div_(255.0), y

    def _note(self, errors: list[tuple[int, str]]) -> None:
        for _, message in errors:
            if message not in self.errors:
                self.errors.append(message)


# ---- the recipe -------------------------------------------------------------------------
def train(config: TrainConfig, resume: bool = False) -> Run:
    """Train a classifier on `config.data`; returns the run (its folder holds everything)."""
    started = time.time()
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    data = discover(config.data, valid_pct=config.valid_pct, seed=config.seed)
    if not data.valid:
        raise DataError(f"{config.data}: no validation images; add a valid/ folder or raise --valid-pct")
    run = RunFolder.create(config.out, Path(config.data).resolve().name or "data")
    if not resume:
        run.write_json("config.json", config.to_dict())
    _say(config, data.balance_table())
    for warning in data.warnings:
        _say(config, f"warning: {warning}")

    device = resolve_device(config.device)
    model, pre = build_classifier(config, len(data.classes), config.weights)
    errors: list[str] = []
    history: list[dict] = []
    lr_result = None

    if config.precompute:
        head_learner, valid_feats = _precomputed_head(config, model, pre, data, errors, device, run)
        _reseed(config.seed)  # a cold cache draws random numbers while extracting; a warm one does not
        if config.lr_find:
            lr_result = head_learner.lr_find()
        history += head_learner.fit(
            config.epochs, lr=config.lr, phase="head",
            resume=_resume_path(run, "head") if resume else None,
        )
    else:
        valid_feats = None

    if config.unfreeze or not config.precompute:
        _reseed(config.seed + 1)
        history += _finetune(config, model, pre, data, errors, device, run, resume)
        valid_feats = None

    probs, targets, scored = _valid_predictions(config, model, pre, data, valid_feats, device, errors)
    elapsed = time.time() - started
    metrics = write_outputs(run, config, data, model, pre, probs, targets, scored, history, errors, lr_result, elapsed)
    save_weights(model, run / "model.safetensors", metadata={"format": "heron.ClassifierModel"})
    if data.test:
        path = _write_test_predictions(run, model, pre, data, config)
        _say(config, f"test: {len(data.test)} images predicted into {path.name}")
    _say(config, f"valid accuracy {metrics['accuracy']:.4f}  log loss {metrics['log_loss']:.4f}  ({elapsed:.1f}s)")
    return Run(run.path, data.classes, metrics, history, errors)


def _items(data, split: str) -> list[tuple[Path, object]]:
    """`(path, target)` of a split; multi-label targets become multi-hot float vectors."""
    items = getattr(data, split)
    if not getattr(data, "multilabel", False):
        return items
    width = len(data.classes)
    return [(path, tuple(1.0 if c in set(labels) else 0.0 for c in range(width))) for path, labels in items]


def _reseed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _say(config: TrainConfig, text: str) -> None:
    if not config.quiet:
        print(text)


def _resume_path(run: RunFolder, phase: str) -> Path | None:
    path = run / "checkpoints" / phase
    return path if path.exists() else None


def _learner_callbacks(config: TrainConfig, run: RunFolder, phase: str) -> list:
    callbacks = [MetricsLogger(run / "metrics.jsonl"), Checkpoint(run / "checkpoints" / phase)]
    if config.patience:
        callbacks.append(EarlyStopping(monitor="valid_loss", patience=config.patience))
    return callbacks


def _feature_cache(config: TrainConfig, model: ClassifierModel, pre: Preprocessing) -> FeatureCache:
    from heron.models._weights import cache_dir

    key = {
        "arch": config.arch,
        "weights": weights_fingerprint(model.backbone),
        "preprocessing": pre.to_dict(),
        "kind": model.feature_kind,
    }
    root = Path(config.cache_dir) if config.cache_dir else cache_dir() / "features"
    return FeatureCache(root, key)


def _views(config: TrainConfig, pre: Preprocessing, split: str) -> dict:
    if split == "train" and config.precompute_aug > 0:
        augment = train_transform(pre)
        return {f"aug{i}": SeededView(augment, i) for i in range(config.precompute_aug)}
    if split == "valid" and config.tta:
        return {f"{config.tta}{i}": view for i, view in enumerate(tta_views(pre, config.tta))}
    return {"eval": eval_transform(pre)}


def _precomputed_head(config, model, pre, data, errors, device, run):
    """Extract (or reuse) trunk features; return a Learner for the head and the valid features."""
    cache = _feature_cache(config, model, pre)
    if cache.rebuilt:
        _say(config, f"feature cache in {cache.dir} was damaged; rebuilding it")
    splits = {}
    for split, items in (("train", _items(data, "train")), ("valid", _items(data, "valid"))):
        paths = [p for p, _ in items]
        ext = extract_features(
            model, paths, cache, _views(config, pre, split), min_size=pre.decode_min_size(),
            batch_size=64, workers=config.workers, device=device, progress=not config.quiet, desc=f"{split} features",
        )
        errors.extend(e for e in ext.errors if e not in errors)
        ok = ext.ok()
        targets = torch.as_tensor([t for (_, t), good in zip(items, ok) if good])
        splits[split] = (ext.rows[ok], targets, [p for p, good in zip(paths, ok) if good])
        views = f" x {len(ext.views)} views" if len(ext.views) > 1 else ""
        cached = int(ok.sum()) * len(ext.views) - ext.forwards
        _say(config, f"{split}: {int(ok.sum())} images{views}, {ext.forwards} computed, {cached} from cache")
    features = cache.array()
    train_rows, train_y, _ = splits["train"]
    valid_rows, valid_y, valid_paths = splits["valid"]
    train_dl = FeatureBatches(features, train_rows, train_y, config.batch_size, shuffle=True)
    # Validation during the head phase uses the first (un-augmented) view.
    valid_dl = FeatureBatches(features, valid_rows[:, :1], valid_y, 256)
    learner = Learner(
        model.head, train_dl, valid_dl, optimizer=config.optimizer, lr=config.lr,
        weight_decay=config.weight_decay, callbacks=_learner_callbacks(config, run, "head"),
        device=device, multilabel=data.multilabel, quiet=config.quiet,
    )
    return learner, (features, valid_rows, valid_y, valid_paths)


def _image_loader(items, transform, pre, batch_size, shuffle, config, errors):
    dataset = ImageFiles(items, transform, min_size=pre.decode_min_size())
    return ImageBatches(image_loader(dataset, batch_size=batch_size, shuffle=shuffle, workers=config.workers), errors)


def _finetune(config, model, pre, data, errors, device, run, resume) -> list[dict]:
    """Unfreeze the last stages (or train the head on images when nothing is cached) and fit."""
    model.freeze_bn_stats = config.freeze_bn
    if not config.freeze_bn:
        _fast_bn_momentum(model.backbone)
    freeze(model)
    if config.unfreeze:
        unfreeze(model, "all" if config.unfreeze == "all" else int(config.unfreeze))
    else:
        unfreeze(model, 0)
    augment = augmentation(pre, config.augment)
    train_dl = _image_loader(_items(data, "train"), augment, pre, config.finetune_batch_size, True, config, errors)
    valid_dl = _image_loader(_items(data, "valid"), eval_transform(pre), pre, 64, False, config, errors)
    groups = discriminative_param_groups(model, config.finetune_lr, lr_ratio=config.lr_ratio)
    learner = Learner(
        model, train_dl, valid_dl, optimizer=config.finetune_optimizer or config.optimizer, lr=config.finetune_lr,
        weight_decay=config.weight_decay, callbacks=_learner_callbacks(config, run, "finetune"),
        device=device, param_groups=groups, multilabel=data.multilabel, quiet=config.quiet, channels_last=True,
    )
    phase = "finetune" if config.unfreeze else "head"
    epochs = config.finetune_epochs if config.unfreeze else config.epochs
    return learner.fit(epochs, lr=config.finetune_lr, phase=phase, resume=_resume_path(run, "finetune") if resume else None)


def _write_test_predictions(run: RunFolder, model: ClassifierModel, pre: Preprocessing, data, config) -> Path:
    """`test_predictions.csv`: file, predicted label, then one probability column per class.

    The submission format of the seeds' competitions; clipped with `--clip`
    when given, as log-loss scoring rewards.
    """
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "label", *data.classes])
    results = predict_files(model.eval(), list(data.test), pre, workers=config.workers, multilabel=data.multilabel)
    for path, probs, error in results:
        if error:
            writer.writerow([str(path), "", *[""] * len(data.classes)])
            continue
        if config.clip:
            probs = probs.clamp(config.clip, 1 - config.clip)
        writer.writerow([str(path), data.classes[int(probs.argmax())], *[f"{float(p):.6f}" for p in probs]])
    return run.write_text("test_predictions.csv", buffer.getvalue())


def _fast_bn_momentum(module: nn.Module, momentum: float = 0.1) -> None:
    """Let batch-norm statistics follow the new data within an epoch or two.

    Weights trained in TensorFlow carry its slow momentum (0.01): a short
    fine-tune would end with running statistics that lag far behind the
    weights, and evaluation would use them.
    """
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.momentum is not None:
            layer.momentum = max(layer.momentum, momentum)


def _valid_predictions(config, model, pre, data, valid_feats, device, errors):
    """Validation probabilities `(N, C)` (TTA views averaged), targets, and the files they belong to."""
    model.eval().to(device)
    if valid_feats is not None:
        features, rows, targets, paths = valid_feats
        probs = []
        with torch.inference_mode():
            for start in range(0, len(rows), 1024):  # batches: RAM stays flat however many images
                chunk = rows[start : start + 1024]
                per_view = [
                    _activate(model.head(torch.from_numpy(np.asarray(features[chunk[:, v]], dtype=np.float32)).to(device)), data.multilabel)
                    for v in range(chunk.shape[1])
                ]
                probs.append(torch.stack(per_view).mean(0).cpu())
        return torch.cat(probs), targets, paths
    views = list(_views(config, pre, "valid").values())
    items = _items(data, "valid")
    loader = image_loader(ImageFiles(items, views, min_size=pre.decode_min_size()), batch_size=32, workers=config.workers)
    probs, targets, paths = [], [], []
    with torch.inference_mode():
        for x, y, idx, batch_errors in loader:
            errors.extend(e for _, e in batch_errors if e not in errors)
            if x is None:
                continue
            n, v = x.shape[:2]
            logits = model(x.flatten(0, 1).to(device).float().div_(255.0))  # (n*V, C)
            probs.append(_activate(logits, data.multilabel).view(n, v, -1).mean(1).cpu())
            targets.append(y)
            paths.extend(items[i][0] for i in idx.tolist())
    return torch.cat(probs), torch.cat(targets), paths


def _activate(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits.float(), dim=1)


# ---- using a finished run -----------------------------------------------------------------
@dataclass
class LoadedRun:
    model: ClassifierModel
    classes: list[str]
    pre: Preprocessing
    config: TrainConfig
    multilabel: bool = False


def load_run(path: str | Path) -> LoadedRun:
    """Rebuild the trained network of a run folder from its config.json and model.safetensors."""
    run = RunFolder(path)
    if not run.exists("config.json") or not run.exists("model.safetensors"):
        raise DataError(f"{path}: not a finished heron run (needs config.json and model.safetensors)")
    saved = run.read_json("config.json")
    config = TrainConfig.from_dict(saved)
    meta = saved.get("result", {})
    classes = meta.get("classes") or []
    model, _ = build_classifier(config, len(classes), weights=None)
    load_weights(model, run / "model.safetensors")
    pre = Preprocessing.from_dict(meta["preprocessing"])
    return LoadedRun(model.eval(), classes, pre, config, bool(meta.get("multilabel")))


@dataclass
class Prediction:
    """Top-k labels of one image, or why it could not be read."""

    path: Path
    top: list[dict] = field(default_factory=list)  # [{"label", "index", "prob"}]
    error: str | None = None


def _imagenet_classifier(arch: str, weights: str | None):
    """A pretrained ImageNet network wrapped to take [0, 1] images, its preprocessing and labels."""
    from heron.nn.fuse import fold_batchnorm

    net = build(arch, weights=weights)
    spec = net.pretrained_cfg
    pre = Preprocessing.from_spec(spec)
    categories = list(spec.categories) if spec and spec.categories else [str(i) for i in range(1000)]
    model = _Normalized(fold_batchnorm(net), pre.mean, pre.std)
    return model.eval(), pre, categories


class _Normalized(nn.Module):
    """[0, 1] images in, the wrapped network's output out (mean/std applied first)."""

    def __init__(self, net: nn.Module, mean, std) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def predict_images(
    paths: list[Path], run: str | Path | None = None, arch: str = "efficientnet_lite0",
    weights: str | None = "imagenet", topk: int = 5, batch_size: int = 32, progress: bool = False,
    workers: int | None = None,
):
    """Yield a `Prediction` per file: a trained run's classes, or ImageNet's without `run`."""
    if run is not None:
        loaded = load_run(run)
        model, pre, labels, multilabel = loaded.model, loaded.pre, loaded.classes, loaded.multilabel
    else:
        (model, pre, labels), multilabel = _imagenet_classifier(arch, weights), False
    model = model.to(memory_format=torch.channels_last)
    for path, probs, error in predict_files(model, paths, pre, batch_size, workers, progress, multilabel):
        if error:
            yield Prediction(path, error=error)
            continue
        values, indices = probs.topk(min(topk, len(labels)))
        top = [{"label": labels[i], "index": int(i), "prob": round(float(v), 4)} for v, i in zip(values, indices.tolist())]
        yield Prediction(path, top)


def predict_files(model: nn.Module, paths: list[Path], pre: Preprocessing, batch_size: int = 32,
                  workers: int | None = None, progress: bool = False, multilabel: bool = False):
    """Probabilities for each file: yields `(path, probs (C,) | None, error | None)`.

    `model` takes images as floats in [0, 1]; decoding runs in workers when
    there are more files than one batch.
    """
    from tqdm.auto import tqdm

    dataset = ImageFiles([(p, None) for p in paths], eval_transform(pre), min_size=pre.decode_min_size())
    loader = image_loader(dataset, batch_size=batch_size, workers=workers if len(paths) > batch_size else 0)
    model.eval()
    bar = tqdm(total=len(paths), unit="img", disable=not progress, leave=False)
    with torch.inference_mode():
        for x, _, idx, errors in loader:
            for i, message in errors:
                yield paths[i], None, message
            if x is not None:
                x = x.float().div_(255.0).contiguous(memory_format=torch.channels_last)
                probs = _activate(model(x), multilabel)
                for i, p in zip(idx.tolist(), probs):
                    yield paths[i], p, None
            bar.update(len(idx) + len(errors))
    bar.close()


def evaluate(run_path: str | Path, data_path: str | Path, tta: str | None = None, quiet: bool = False) -> dict:
    """Score a finished run on a labelled folder (class sub-folders, or train/valid layout: valid is used)."""
    from heron.train.metrics import accuracy, log_loss

    loaded = load_run(run_path)
    data = discover(data_path, valid_pct=0.0, min_classes=1)
    items = data.valid or data.train
    unknown = sorted(set(data.classes) - set(loaded.classes))
    if unknown:
        raise DataError(f"{data_path}: classes {unknown} were not in the trained run {run_path}")
    remap = [loaded.classes.index(c) for c in data.classes]
    items = [(p, remap[t]) for p, t in items]
    config = TrainConfig.from_dict({**loaded.config.to_dict(), "tta": tta, "quiet": quiet})
    fake = type("D", (), {"valid": items, "multilabel": loaded.multilabel})
    errors: list[str] = []
    probs, targets, _ = _valid_predictions(config, loaded.model, loaded.pre, fake, None, torch.device("cpu"), errors)
    return {"accuracy": accuracy(probs, targets), "log_loss": log_loss(probs, targets), "images": len(targets), "errors": errors}
