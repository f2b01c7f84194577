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

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from heron.config import TrainConfig
from heron.data.folders import DataSplits, discover
from heron.data.loader import ImageFiles, image_loader
from heron.data.images import find_images
from heron.data.transforms import Preprocessing, augmentation, eval_transform, tta_views
from heron.errors import DataError, TrainingError
from heron.models import build, load_weights, save_weights
from heron.train import Checkpoint, EarlyStopping, Learner, MetricsLogger, distributed
from heron.train.distributed import GlobalBatchSampler, convert_sync_batchnorm
from heron.train.learner import resolve_device
from heron.train.losses import classification_loss
from heron.train.run import RunFolder
from heron.transfer.cache import FeatureCache, weights_fingerprint
from heron.transfer.extract import FeatureBatches, extract_features
from heron.transfer.freeze import discriminative_param_groups, freeze, unfreeze
from heron.transfer.ensemble import EnsembleHead
from heron.transfer.heads import MetadataHead, feature_kind, make_head, reset_head
from heron.transfer.pseudo import MixedBatches, check_ratio, check_threshold, pseudo_batch_split, select_confident
from heron.transfer.model import ClassifierModel

from heron.interpret.figures_job import wait_for_figures
from heron.tasks._classify_report import score_run, write_outputs

__all__ = ["Run", "Job", "Prediction", "train", "fit", "choose_unfreeze", "head_epochs", "load_run", "predict_images", "predict_files", "prediction_engine", "evaluate", "ensemble", "build_classifier"]


@dataclass
class Run:
    """A finished training run: where it is and what it measured."""

    path: Path
    classes: list[str]
    metrics: dict
    history: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def build_classifier(config: TrainConfig, num_classes: int, weights: str | None = None,
                     multilabel: bool = False, metadata_width: int = 0) -> tuple[ClassifierModel, Preprocessing]:
    """Pretrained trunk without its top + a new head (`config.ensemble` of them), and its preprocessing.

    `metadata_width` > 0: the head's last layer also takes that many metadata columns (`--metadata`).
    """
    backbone = build(config.arch, weights=weights, include_top=False)
    pre = Preprocessing.from_spec(getattr(backbone, "pretrained_cfg", None), config.size, config.crop_pct)
    with torch.no_grad():
        backbone.eval()
        fmap = backbone.forward_features(torch.zeros(1, 3, *pre.size))  # (1, C, h, w)
    channels, map_size = fmap.shape[1], tuple(fmap.shape[2:])
    kind = feature_kind(config.head)
    try:
        heads = [make_head(config.head, channels, num_classes, map_size, config.dropout, config.hidden, config.head_bn)
                 for _ in range(max(1, config.ensemble))]
    except ValueError as err:
        raise TrainingError(str(err)) from None
    head = heads[0] if len(heads) == 1 else EnsembleHead(heads, multilabel=multilabel)
    if metadata_width:
        try:
            head = MetadataHead(head, metadata_width)
        except ValueError as err:
            raise TrainingError(str(err)) from None
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


@dataclass
class Job:
    """What one training run carries from step to step of the recipe.

    Each step of `train` takes the job and adds to it (history, errors), so
    a new step needs no new parameters.
    """

    config: TrainConfig
    data: DataSplits
    run: RunFolder | None  # None when scoring a finished run
    model: ClassifierModel
    pre: Preprocessing
    device: torch.device
    precision: str = "fp32"  # resolved: fp32 | bf16 | fp16
    engine: str = "torch"  # resolved engine for the frozen trunk
    errors: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    choices: dict = field(default_factory=dict)  # what "auto" settings resolved to, and why
    cache: FeatureCache | None = None  # the feature cache, once opened
    pseudo_items: list = field(default_factory=list)  # (path, class) of the pseudo-labelled images used
    metadata: object | None = None  # the MetadataEncoder of --metadata (heron.data.metadata_columns)
    metadata_rows: dict = field(default_factory=dict)  # split -> float32 (N, M): each item's metadata columns

    def say(self, text: str) -> None:
        if not self.config.quiet and distributed.is_main():
            print(text)

    def note_errors(self, messages) -> None:
        self.errors.extend(m for m in messages if m not in self.errors)


# ---- the recipe -------------------------------------------------------------------------
def train(config: TrainConfig, resume: bool = False) -> Run:
    """Train a classifier on `config.data`; returns the run (its folder holds everything)."""
    started = time.time()
    device = _join_processes()
    _reseed(config.seed)
    job = _start(config, resume, device)
    lr_result = valid_feats = None
    if config.precompute:
        cached = _cached_features(job)
        _reseed(config.seed)  # a cold cache draws random numbers while extracting; a warm one does not
        train_dl = _feature_batches(cached, "train", config.batch_size)
        first = _head_learner(job, _members(job.model.head)[0], train_dl, cached, _member_phase(job, "head", 0))
        epochs, lr, lr_result = _head_schedule(job, first)
        start = _head_start(job)
        _fit_heads(job, first, train_dl, cached, epochs, lr, "head", resume)
        if start is not None:
            _image_only_baseline(job, cached, epochs, lr, start)
        if config.pseudo_label:
            _pseudo_round(job, cached, epochs, lr, resume)
        valid_feats = cached.valid_inputs()
    if job.choices["unfreeze"] or not config.precompute:
        _reseed(config.seed + 1)
        job.history += _finetune(job, resume)
        valid_feats = None

    job.note_errors(e for errors in distributed.gather_objects(list(job.errors)) for e in errors)
    metrics = _finish(job, valid_feats, lr_result, started) if distributed.is_main() else None
    metrics = distributed.broadcast_object(metrics)  # every process returns the same result
    distributed.barrier()
    return Run(job.run.path, job.data.classes, metrics, job.history, job.errors)


def _finish(job: Job, valid_feats, lr_result, started: float) -> dict:
    """Score the validation set, diagnose the fit and write the run folder (one process only)."""
    config = job.config
    probs, targets, scored = _valid_predictions(job, valid_feats)
    elapsed = time.time() - started
    metrics = score_run(probs, targets, job.data, config.clip)
    if job.metadata is not None:
        job.choices["metadata"]["with_metadata"] = {k: float(metrics[k]) for k in ("accuracy", "log_loss")}
    diagnosis = _diagnose(job, metrics, len(targets))
    write_outputs(job.run, config, job.data, job.model, job.pre, probs, targets, scored, job.history, job.errors,
                  lr_result, elapsed, metrics=metrics, choices=job.choices, diagnosis=diagnosis)
    save_weights(job.model, job.run / "model.safetensors", metadata={"format": "heron.ClassifierModel"})
    if job.data.test:
        path = _write_test_predictions(job)
        job.say(f"test: {len(job.data.test)} images predicted into {path.name}")
    job.say(f"valid accuracy {metrics['accuracy']:.4f}  log loss {metrics['log_loss']:.4f}  ({elapsed:.1f}s)")
    job.say(diagnosis.line)
    return metrics


def fit(data: str | Path, **options) -> Run:
    """`heron train DATA` from Python: `heron.fit("photos/", epochs=10, unfreeze="auto")`.

    Keyword options are the fields of `TrainConfig` (the same names as the
    command-line flags, with underscores).
    """
    return train(TrainConfig(data=str(data), **options))


def _join_processes() -> torch.device | None:
    """Under torchrun: join the process group and take this process's share of the cores.

    Returns the device torchrun assigns (None for a single process). Every
    process runs the same recipe on its part of each global batch; the
    Learner averages gradients (DistributedDataParallel) and metrics, and
    only rank 0 writes the run folder and prints.
    """
    device = distributed.init_from_env()
    if device is not None:
        distributed.bind_local_cores()
    return device


def _open_run(config: TrainConfig, resume: bool) -> RunFolder:
    """The run folder, made (and config.json written) by rank 0; the other processes use its path."""
    path = None
    if distributed.is_main():
        if config.out and (config.overwrite or resume):
            wait_for_figures(config.out, 60)  # the earlier run's figure job must not draw into this one
        run = RunFolder.create(config.out, Path(config.data).resolve().name or "data",
                               overwrite=config.overwrite, resume=resume)
        if not resume:
            run.write_json("config.json", config.to_dict())
        path = str(run.path)
    path = distributed.broadcast_object(path)
    distributed.barrier()
    return RunFolder(path)


def _start(config: TrainConfig, resume: bool, device: torch.device | None = None) -> Job:
    """Read the data, open the run folder, build the network and resolve every "auto" setting."""
    _check_options(config)
    data = discover(config.data, valid_pct=config.valid_pct, seed=config.seed, image_root=config.image_root)
    if not data.valid:
        raise DataError(f"{config.data}: no validation images; add a valid/ folder or raise --valid-pct")
    run = _open_run(config, resume)
    device = device or resolve_device(config.device)
    engine, precision = _inference_choice(config, device)
    encoder, metadata_rows = _fit_metadata(config, data) if config.metadata else (None, {})
    model, pre = build_classifier(config, len(data.classes), config.weights, data.multilabel,
                                  metadata_width=encoder.width if encoder else 0)
    job = Job(config, data, run, model, pre, device, precision=precision, engine=engine,
              metadata=encoder, metadata_rows=metadata_rows)
    job.say(data.balance_table())
    for warning in data.warnings:
        job.say(f"warning: {warning}")
    job.note_errors(data.skipped)
    stages, reason = choose_unfreeze(config.unfreeze, len(data.train))
    if encoder is not None:
        job.choices["metadata"] = {"fields": encoder.fields, "columns": encoder.width, "described": encoder.describe(),
                                   "encoder": encoder.to_dict()}
        if stages:
            stages, reason = None, "unfreeze auto: the head alone (--metadata trains the head on cached features)"
    job.choices.update(unfreeze=stages, precision=precision, engine=engine)
    if reason:
        job.say(reason)
        job.choices["unfreeze_reason"] = reason
    return job


def _check_options(config: TrainConfig) -> None:
    """Settings that cannot work together fail before any work is done, with the flag to change."""
    if config.ensemble < 1:
        raise TrainingError(f"--ensemble {config.ensemble}: give a number of heads, 1 or more")
    needs_cache = [flag for flag, used in (("--pseudo-label", config.pseudo_label), ("--ensemble", config.ensemble > 1))
                   if used]
    if needs_cache and not config.precompute:
        raise TrainingError(f"{needs_cache[0]} trains heads on cached features; drop --no-precompute")
    if config.pseudo_label:
        try:
            check_threshold(config.pseudo_threshold)
            check_ratio(config.pseudo_ratio)
        except ValueError as err:
            raise TrainingError(f"{err}; see heron train --help") from None
    if config.metadata:
        _check_metadata_options(config)
    if not 0.0 <= config.label_smoothing < 1.0:
        raise TrainingError(f"--label-smoothing {config.label_smoothing}: give a value in [0, 1), such as 0.1")


def _check_metadata_options(config: TrainConfig) -> None:
    """`--metadata` trains one head on cached features: what it cannot be combined with, and a bad field name."""
    from heron.data.metadata_columns import parse_fields

    try:
        config.metadata = parse_fields(config.metadata)
    except ValueError as err:
        raise TrainingError(f"--metadata: {err}") from None
    clashes = [("--head fcn", config.head == "fcn"), ("--no-precompute", not config.precompute),
               ("--ensemble", config.ensemble > 1), ("--pseudo-label", bool(config.pseudo_label)),
               (f"--unfreeze {config.unfreeze}", config.unfreeze not in (None, "auto", "0"))]
    for flag, used in clashes:
        if used:
            raise TrainingError(f"--metadata with {flag} is not supported: the metadata joins a head with a last "
                                f"linear layer, trained on cached features; drop {flag.split()[0]}")


def _fit_metadata(config: TrainConfig, data: DataSplits):
    """The metadata encoder fitted on the training files' headers, and every train/valid item's columns."""
    from heron.data.metadata import scan_headers
    from heron.data.metadata_columns import MetadataEncoder

    metas = {split: list(scan_headers([p for p, _ in getattr(data, split)], progress=not config.quiet))
             for split in ("train", "valid")}
    encoder = MetadataEncoder.fit(config.metadata, [m for m in metas["train"] if m.error is None])
    return encoder, {split: encoder.transform(m) for split, m in metas.items()}


def _head_start(job: Job):
    """With --metadata: the head's weights and the random state it starts training from, for the baseline."""
    if job.metadata is None:
        return None
    return copy.deepcopy(job.model.head.state_dict()), torch.get_rng_state()


def _image_only_baseline(job: Job, cached: "CachedSplits", epochs: int, lr: float, start) -> None:
    """The same head trained the same way with its metadata columns blanked: what the report compares with.

    Same starting weights, same random draws (batch order, dropout masks):
    zero columns are constant, so the batch norm passes no information and
    the difference in the scores is what the metadata adds.
    """
    from heron.train.metrics import accuracy, log_loss

    weights, rng = start
    head = copy.deepcopy(job.model.head)
    head.load_state_dict(weights)
    torch.set_rng_state(rng)
    learner = Learner(head, _feature_batches(cached, "train", job.config.batch_size, blank_metadata=True),
                      _feature_batches(cached, "valid", 256, blank_metadata=True), loss_fn=_loss(job),
                      optimizer=job.config.optimizer, lr=lr, weight_decay=job.config.weight_decay, device=job.device,
                      multilabel=job.data.multilabel, quiet=True)
    learner.fit(epochs, lr=lr, phase="image-only")
    features, rows, targets, _, metadata = cached.valid_inputs()
    probs = _head_probs(job, features, rows, torch.zeros_like(metadata), head=head)
    alone = {"accuracy": float(accuracy(probs, targets)), "log_loss": float(log_loss(probs, targets))}
    job.choices["metadata"]["image_only"] = alone
    job.say(f"image alone (metadata blanked): valid accuracy {alone['accuracy']:.4f}  log loss {alone['log_loss']:.4f}")


def _inference_choice(config: TrainConfig, device: torch.device) -> tuple[str, str]:
    """(engine, precision) that "auto" means on this machine; cheap, nothing is built."""
    from heron.transfer.engine import resolve_engine

    return resolve_engine(config.engine, config.precision, device)


# Head training budget when --epochs is not given: enough optimizer steps for a
# linear head on cached features to converge, whatever the dataset's size.
HEAD_STEPS = 400
HEAD_EPOCHS = (5, 200)  # at least today's 5 epochs; at most this many
DEFAULT_LR = 3e-3
LR_RANGE = (1e-4, 3e-2)  # the lr finder's suggestion is kept inside this range


def head_epochs(train_images: int, batch_size: int, steps: int = HEAD_STEPS) -> int:
    """Epochs that give the head about `steps` optimizer steps (within `HEAD_EPOCHS`)."""
    batches = max(1, -(-train_images // batch_size))
    return min(max(-(-steps // batches), HEAD_EPOCHS[0]), HEAD_EPOCHS[1])


def _head_schedule(job: Job, learner: Learner):
    """Epochs and peak lr of the head: as given, else a step budget and the lr finder's suggestion."""
    config = job.config
    epochs = config.epochs or head_epochs(len(job.data.train), config.batch_size)
    lr_result = learner.lr_find() if (config.lr_find or config.lr is None) else None
    lr = config.lr
    if lr is None:
        suggested = lr_result.suggestion if lr_result is not None else None
        lr = DEFAULT_LR if suggested is None else float(min(max(suggested, LR_RANGE[0]), LR_RANGE[1]))
        how = f"lr finder suggests {suggested:.1e}" if suggested is not None else "lr finder found no slope"
        job.say(f"head: {epochs} epochs, lr {lr:.1e} ({how}); --epochs and --lr override")
    elif not config.epochs:
        job.say(f"head: {epochs} epochs (about {HEAD_STEPS} steps); --epochs overrides")
    job.choices.update(head_epochs=epochs, head_lr=lr)
    return epochs, lr, lr_result


# The seeds' rule: the less data, the more of the pretrained network stays frozen.
UNFREEZE_SMALL = 500  # fewer training images: the head alone
UNFREEZE_LARGE = 5000  # fewer: the last stages; more: the whole network
UNFREEZE_MEDIUM_STAGES = 2


def choose_unfreeze(value: str | None, train_images: int) -> tuple[str | None, str]:
    """`--unfreeze auto` by dataset size: (None | stages | "all", the reason printed); others pass through."""
    if value != "auto":
        return value, ""
    if train_images < UNFREEZE_SMALL:
        return None, (f"unfreeze auto: {train_images} training images (< {UNFREEZE_SMALL}): the head alone "
                      "on frozen features (a small set would overfit a fine-tuned network)")
    if train_images < UNFREEZE_LARGE:
        return str(UNFREEZE_MEDIUM_STAGES), (
            f"unfreeze auto: {train_images} training images ({UNFREEZE_SMALL}-{UNFREEZE_LARGE}): the head, then "
            f"the last {UNFREEZE_MEDIUM_STAGES} stages fine-tuned")
    return "all", (f"unfreeze auto: {train_images} training images (>= {UNFREEZE_LARGE}): the head, then the "
                   "whole network fine-tuned")


def _diagnose(job: Job, metrics: dict, scored: int):
    """Under-, over- or good fit, judged from the history and the final scores."""
    from heron.train.diagnosis import diagnose

    # Ensemble members train side by side, not one after another: the first stands for them all.
    history = [r for r in job.history if not _later_member(str(r.get("phase", "")))]
    return diagnose(history, num_classes=len(job.data.classes), train_images=len(job.data.train),
                    final={k: metrics[k] for k in ("accuracy", "log_loss")}, valid_images=scored,
                    multilabel=job.data.multilabel, config=job.config)


def _later_member(phase: str) -> bool:
    """True for the phases of an ensemble's second and later members ("head-2", "pseudo-3")."""
    name, _, number = phase.rpartition("-")
    return bool(name) and number.isdigit() and int(number) > 1


def _items(data, split: str) -> list[tuple[Path, object]]:
    """`(path, target)` of a split; multi-label targets become multi-hot float vectors."""
    items = getattr(data, split)
    if not data.multilabel:
        return items
    width = len(data.classes)
    return [(path, tuple(1.0 if c in set(labels) else 0.0 for c in range(width))) for path, labels in items]


def _reseed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _resume_path(run: RunFolder, phase: str) -> Path | None:
    path = run / "checkpoints" / phase
    return path if path.exists() else None


def _learner_callbacks(job: Job, phase: str) -> list:
    config, run = job.config, job.run
    callbacks = [MetricsLogger(run / "metrics.jsonl"), Checkpoint(run / "checkpoints" / phase)]
    if config.patience:
        callbacks.append(EarlyStopping(monitor="valid_loss", patience=config.patience))
    return callbacks


def _feature_cache(job: Job) -> FeatureCache:
    key = {
        "arch": job.config.arch,
        "weights": weights_fingerprint(job.model.backbone),
        "preprocessing": job.pre.to_dict(),
        "kind": job.model.feature_kind,
        "precision": job.precision,
        "engine": job.engine,
    }
    return FeatureCache(_cache_root(job.config), key)


def _cache_root(config: TrainConfig) -> Path:
    """Where feature caches (and the colour PCA of each dataset) live."""
    from heron.models._weights import cache_dir

    return Path(config.cache_dir) if config.cache_dir else cache_dir() / "features"


def _augment_spec(config: TrainConfig):
    """The training augmentation: `--augment PRESET` with the flags that change it."""
    from heron.data.augment import preset

    try:
        return preset(config.augment, **(config.augment_options or {}))
    except (TypeError, ValueError) as err:
        raise TrainingError(f"--augment {config.augment}: {err}") from None


def _train_augment(job: Job):
    """The training transform; AlexNet's colour PCA of the training images is computed once and cached."""
    from heron.data.augment import load_or_compute_colour_pca

    spec = _augment_spec(job.config)
    job.choices["augment"] = spec.describe()
    colour = None
    if getattr(spec, "pca_colour", 0):
        colour = load_or_compute_colour_pca([p for p, _ in job.data.train], _cache_root(job.config))
    return augmentation(job.pre, spec, colour_pca=colour), spec


def _views(job: Job, split: str) -> dict:
    """The transforms whose features a split caches, by name (the name is part of the cache key)."""
    config, pre = job.config, job.pre
    if split == "train" and config.precompute_aug > 0:
        from heron.data.augment import SeededView, preset

        augment, spec = _train_augment(job)
        tag = "" if spec == preset("photo") else f":{_short_hash(spec.to_dict())}"  # settings change the copies
        return {f"aug{i}{tag}": SeededView(augment, i) for i in range(config.precompute_aug)}
    if split == "valid" and config.tta:
        return {f"{config.tta}{i}": view for i, view in enumerate(tta_views(pre, config.tta))}
    return {"eval": eval_transform(pre)}


def _short_hash(data: dict) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class CachedSplits:
    """The trunk's features of the train and valid images: the cache's rows, targets and files."""

    features: np.ndarray  # the cache's memory map (rows, D)
    splits: dict  # split -> (rows (N, V) int64, targets, paths)
    metadata: dict = field(default_factory=dict)  # split -> float32 (N, M) metadata columns (--metadata)

    def valid_inputs(self):
        """(features, rows, targets, paths, metadata columns or None) of the valid split."""
        rows, targets, paths = self.splits["valid"]
        return self.features, rows, targets, paths, self.metadata.get("valid")


def _extract(job: Job, paths: list[Path], cache: FeatureCache, views: dict, desc: str):
    """Features of `paths` under `views` into `cache` (only what it lacks); errors noted on the job.

    Several processes each compute their share of the images first; once all
    are done, every process reads the whole set from the cache.
    """
    config, pre = job.config, job.pre

    def run(files, show: bool):
        return extract_features(
            job.model, files, cache, views, min_size=pre.decode_min_size(),
            batch_size=64, workers=config.workers, device=job.device, progress=show and not config.quiet,
            desc=desc, precision=job.precision, engine=job.engine, engine_dir=cache.dir / "engines",
        )

    forwards = 0
    if distributed.is_distributed():
        forwards = int(distributed.all_reduce_sum(torch.tensor(run(distributed.shard(paths), distributed.is_main()).forwards)))
        distributed.barrier()
    ext = run(paths, not distributed.is_distributed())
    ext.forwards += forwards
    job.note_errors(ext.errors)
    return ext


def _cached_features(job: Job) -> CachedSplits:
    """Extract (or reuse) the trunk features of the train and valid images."""
    cache = _feature_cache(job)
    if cache.rebuilt:
        job.say(f"feature cache in {cache.dir} was damaged; rebuilding it")
    job.say(f"trunk: engine {job.engine}, precision {job.precision}")
    splits, metadata = {}, {}
    for split in ("train", "valid"):
        items = _items(job.data, split)
        paths = [p for p, _ in items]
        ext = _extract(job, paths, cache, _views(job, split), f"{split} features")
        ok = ext.ok()
        targets = torch.as_tensor([t for (_, t), good in zip(items, ok) if good])
        splits[split] = (ext.rows[ok], targets, [p for p, good in zip(paths, ok) if good])
        if split in job.metadata_rows:
            metadata[split] = torch.from_numpy(job.metadata_rows[split][ok])
        views = f" x {len(ext.views)} views" if len(ext.views) > 1 else ""
        cached = int(ok.sum()) * len(ext.views) - ext.forwards
        job.say(f"{split}: {int(ok.sum())} images{views}, {ext.forwards} computed, {cached} from cache")
    job.cache = cache
    return CachedSplits(cache.array(), splits, metadata)


def _feature_batches(cached: CachedSplits, split: str, batch_size: int, blank_metadata: bool = False) -> FeatureBatches:
    """Batches of a split's cached features, with its metadata columns if any (zeros if `blank_metadata`)."""
    rows, targets, _ = cached.splits[split]
    extra = cached.metadata.get(split)
    if extra is not None and blank_metadata:
        extra = torch.zeros_like(extra)
    if split == "valid":  # validation during the head phase uses the first (un-augmented) view
        return FeatureBatches(cached.features, rows[:, :1], targets, 256, extra=extra)
    return FeatureBatches(cached.features, rows, targets, batch_size, shuffle=True, extra=extra)


def _head_learner(job: Job, head: nn.Module, train_dl, cached: CachedSplits, phase: str) -> Learner:
    """A Learner for one head on cached features, validating on the valid split's features."""
    config = job.config
    if config.sync_bn and distributed.is_distributed():
        convert_sync_batchnorm(head)
    return Learner(
        head, train_dl, _feature_batches(cached, "valid", 256), loss_fn=_loss(job),
        optimizer=config.optimizer, lr=config.lr or DEFAULT_LR, weight_decay=config.weight_decay,
        callbacks=_learner_callbacks(job, phase), device=job.device,
        multilabel=job.data.multilabel, quiet=config.quiet,
    )


def _loss(job: Job) -> nn.Module:
    return classification_loss(job.data.multilabel, job.config.label_smoothing)


def _members(head: nn.Module) -> list[nn.Module]:
    """The heads an ensemble head averages, or the head itself."""
    return list(head.members) if isinstance(head, EnsembleHead) else [head]


def _member_phase(job: Job, phase: str, k: int) -> str:
    return phase if job.config.ensemble <= 1 else f"{phase}-{k + 1}"


def _fit_heads(job: Job, first: Learner, train_dl, cached: CachedSplits, epochs: int, lr: float, phase: str,
               resume: bool) -> None:
    """Fit the head (each member of an ensemble, seeded apart) on `train_dl`; history onto the job."""
    members = _members(job.model.head)
    for k, head in enumerate(members):
        name = _member_phase(job, phase, k)
        if k:
            _reseed(job.config.seed + k)
        learner = first if k == 0 else _head_learner(job, head, train_dl, cached, name)
        history = learner.fit(epochs, lr=lr, phase=name, resume=_resume_path(job.run, name) if resume else None)
        job.history += history
        if len(members) > 1 and history:
            last = history[-1]
            job.say(f"member {k + 1}: valid accuracy {last.get('valid_accuracy', float('nan')):.4f}  "
                    f"log loss {last.get('valid_loss', float('nan')):.4f}")


def _unlabelled_images(job: Job) -> list[Path]:
    """The images of `--pseudo-label FOLDER`, less any that are already labelled."""
    folder = Path(job.config.pseudo_label)
    if not folder.is_dir():
        raise DataError(f"{folder}: --pseudo-label needs a folder of unlabelled images; check the path")
    labelled = {Path(p).resolve() for split in ("train", "valid") for p, _ in getattr(job.data, split)}
    images = [p for p in find_images(folder) if Path(p).resolve() not in labelled]
    if not images:
        raise DataError(f"{folder}: no unlabelled images (none found, or all are in the labelled set); "
                        "give a folder of other images")
    return images


def _pseudo_round(job: Job, cached: CachedSplits, epochs: int, lr: float, resume: bool) -> None:
    """Label the unlabelled images with the head just trained, keep the confident, retrain the head."""
    config = job.config
    if job.data.multilabel:
        raise DataError(f"{config.data}: --pseudo-label needs one label per image, not multi-label data")
    paths = _unlabelled_images(job)
    ext = _extract(job, paths, job.cache, {"eval": eval_transform(job.pre)}, "unlabelled features")
    ok = ext.ok()
    rows, kept_paths = ext.rows[ok][:, :1], [p for p, good in zip(paths, ok) if good]
    features = job.cache.array()  # the memory map again: it grew by the unlabelled rows
    probs = _head_probs(job, features, rows)
    picked = select_confident(probs, config.pseudo_threshold)
    job.say(picked.summary(job.data.classes, config.pseudo_threshold))
    job.choices["pseudo"] = {"unlabelled": picked.total, "used": len(picked.index), "threshold": config.pseudo_threshold,
                             "ratio": config.pseudo_ratio, "per_class": picked.per_class(job.data.classes)}
    _write_pseudo_labels(job, kept_paths, picked)
    if not len(picked.index):
        job.say("pseudo-labels: none used; kept the first model (lower --pseudo-threshold to use some)")
        return
    job.pseudo_items = [(kept_paths[i], int(c)) for i, c in zip(picked.index.tolist(), picked.labels.tolist())]
    n_labelled, n_pseudo = pseudo_batch_split(config.batch_size, config.pseudo_ratio)
    labelled = _feature_batches(cached, "train", n_labelled)
    pseudo_rows = rows[picked.index.numpy()]
    train_dl = MixedBatches(labelled, features, pseudo_rows, picked.labels, n_pseudo) if n_pseudo else labelled
    _reseed(config.seed + 100)
    for head in _members(job.model.head):
        reset_head(head)
    first = _head_learner(job, _members(job.model.head)[0], train_dl, cached, _member_phase(job, "pseudo", 0))
    _fit_heads(job, first, train_dl, cached, epochs, lr, "pseudo", resume)


def _head_probs(job: Job, features: np.ndarray, rows: np.ndarray, metadata: torch.Tensor | None = None,
                head: nn.Module | None = None) -> torch.Tensor:
    """Probabilities `(N, C)` of the head (the model's by default) on cached feature rows `(N, V)`, views averaged.

    `metadata` `(N, M)`: the rows' metadata columns, for a `--metadata` head.
    """
    head = (job.model.head if head is None else head).eval().to(job.device)
    probs = []
    with torch.inference_mode():
        for start in range(0, len(rows), 1024):  # batches: RAM stays flat however many images
            chunk = rows[start : start + 1024]
            meta = None if metadata is None else metadata[start : start + 1024].to(job.device)

            def inputs(v: int):
                x = torch.from_numpy(np.asarray(features[chunk[:, v]], dtype=np.float32)).to(job.device)
                return x if meta is None else (x, meta)

            per_view = [_activate(head(inputs(v)), job.data.multilabel) for v in range(chunk.shape[1])]
            probs.append(torch.stack(per_view).mean(0).cpu())
    return torch.cat(probs) if probs else torch.empty(0, len(job.data.classes))


def _write_pseudo_labels(job: Job, paths: list[Path], picked) -> None:
    """`pseudo_labels.csv`: every unlabelled image kept, its class and the probability it got."""
    if not distributed.is_main():
        return
    lines = ["file,label,prob"]
    for i, c, p in zip(picked.index.tolist(), picked.labels.tolist(), picked.confidence.tolist()):
        lines.append(f"{paths[i]},{job.data.classes[c]},{p:.4f}")
    job.run.write_text("pseudo_labels.csv", "\n".join(lines) + "\n")


def _image_loader(job: Job, items, transform, batch_size: int, shuffle: bool):
    """Decoded image batches; under torchrun, the global batches of `GlobalBatchSampler`.

    Launched by torchrun (with any number of processes), the order comes
    from the seed and the epoch alone and each process takes its share of
    every global batch, so `--nproc-per-node 1` and `N` train on the same
    batches. A plain `heron train` keeps the DataLoader's own shuffling.
    """
    dataset = ImageFiles(items, transform, min_size=job.pre.decode_min_size())
    if distributed.launched_by_torchrun():
        sampler = GlobalBatchSampler(len(items), batch_size, shuffle=shuffle, seed=job.config.seed)
        loader = image_loader(dataset, workers=job.config.workers, batch_sampler=sampler)
    else:
        loader = image_loader(dataset, batch_size=batch_size, shuffle=shuffle, workers=job.config.workers)
    return ImageBatches(loader, job.errors)


def _finetune(job: Job, resume: bool) -> list[dict]:
    """Unfreeze the last stages (or train the head on images when nothing is cached) and fit."""
    config, model, unfreeze_to = job.config, job.model, job.choices["unfreeze"]
    model.freeze_bn_stats = config.freeze_bn
    if not config.freeze_bn:
        _fast_bn_momentum(model.backbone)
    freeze(model)
    unfreeze(model, "all" if unfreeze_to == "all" else int(unfreeze_to or 0))
    if config.sync_bn and distributed.is_distributed():
        convert_sync_batchnorm(model)  # batch statistics over the global batch, not each process's part
    augment, _ = _train_augment(job)
    items = _items(job.data, "train") + job.pseudo_items
    train_dl = _image_loader(job, items, augment, config.finetune_batch_size, True)
    valid_dl = _image_loader(job, _items(job.data, "valid"), eval_transform(job.pre), 64, False)
    groups = discriminative_param_groups(model, config.finetune_lr, lr_ratio=config.lr_ratio)
    learner = Learner(
        model, train_dl, valid_dl, optimizer=config.finetune_optimizer or config.optimizer, lr=config.finetune_lr,
        weight_decay=config.weight_decay, callbacks=_learner_callbacks(job, "finetune"),
        loss_fn=_loss(job), device=job.device, param_groups=groups, multilabel=job.data.multilabel,
        quiet=config.quiet, channels_last=True, precision=job.precision,
    )
    phase = "finetune" if unfreeze_to else "head"
    epochs = config.finetune_epochs if unfreeze_to else (config.epochs or HEAD_EPOCHS[0])
    return learner.fit(epochs, lr=config.finetune_lr, phase=phase,
                       resume=_resume_path(job.run, "finetune") if resume else None)


def _write_test_predictions(job: Job) -> Path:
    """`test_predictions.csv`: file, predicted label, then one probability column per class.

    The submission format of the seeds' competitions; clipped with `--clip`
    when given, as log-loss scoring rewards.
    """
    import csv
    import io

    config, classes = job.config, job.data.classes
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "label", *classes])
    results = predict_files(job.model.eval(), list(job.data.test), job.pre, workers=config.workers,
                            multilabel=job.data.multilabel, metadata=job.metadata)
    for path, probs, error in results:
        if error:
            writer.writerow([str(path), "", *[""] * len(classes)])
            continue
        if config.clip:
            probs = probs.clamp(config.clip, 1 - config.clip)
        writer.writerow([str(path), classes[int(probs.argmax())], *[f"{float(p):.6f}" for p in probs]])
    return job.run.write_text("test_predictions.csv", buffer.getvalue())


def _fast_bn_momentum(module: nn.Module, momentum: float = 0.1) -> None:
    """Let batch-norm statistics follow the new data within an epoch or two.

    Weights trained in TensorFlow carry its slow momentum (0.01): a short
    fine-tune would end with running statistics that lag far behind the
    weights, and evaluation would use them.
    """
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.momentum is not None:
            layer.momentum = max(layer.momentum, momentum)


def _valid_predictions(job: Job, valid_feats=None):
    """Validation probabilities `(N, C)` (TTA views averaged), targets, and the files they belong to."""
    model, device, multilabel = job.model, job.device, job.data.multilabel
    model.eval().to(device)
    if valid_feats is not None:
        features, rows, targets, paths, metadata = valid_feats
        return _head_probs(job, features, rows, metadata), targets, paths
    views = list(_views(job, "valid").values())
    items = _items(job.data, "valid")
    dataset = ImageFiles(items, views, min_size=job.pre.decode_min_size())
    loader = image_loader(dataset, batch_size=32, workers=job.config.workers)
    probs, targets, paths = [], [], []
    with torch.inference_mode():
        for x, y, idx, batch_errors in loader:
            job.note_errors(e for _, e in batch_errors)
            if x is None:
                continue
            n, v = x.shape[:2]
            meta = _metadata_batch(job.metadata, [items[i][0] for i in idx.tolist()], v, device)
            logits = model(x.flatten(0, 1).to(device).float().div_(255.0), meta)  # (n*V, C)
            probs.append(_activate(logits, multilabel).view(n, v, -1).mean(1).cpu())
            targets.append(y)
            paths.extend(items[i][0] for i in idx.tolist())
    return torch.cat(probs), torch.cat(targets), paths


def _metadata_batch(encoder, paths: list, views: int = 1, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The metadata columns of `paths` (each repeated for its `views`), or None without `--metadata`."""
    if encoder is None:
        return None
    columns = torch.from_numpy(encoder.encode_paths(paths))  # (n, M)
    return columns.repeat_interleave(views, dim=0).to(device)


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
    metadata: object | None = None  # the MetadataEncoder of a --metadata run


def load_run(path: str | Path) -> LoadedRun:
    """Rebuild the trained network of a run folder from its config.json and model.safetensors."""
    run = RunFolder(path)
    if not run.exists("config.json") or not run.exists("model.safetensors"):
        raise DataError(f"{path}: not a finished heron run (needs config.json and model.safetensors)")
    saved = run.read_json("config.json")
    config = TrainConfig.from_dict(saved)
    meta = saved.get("result", {})
    classes = meta.get("classes") or []
    encoder = None
    if config.metadata:
        from heron.data.metadata_columns import MetadataEncoder

        encoder = MetadataEncoder.from_dict(meta["choices"]["metadata"]["encoder"])
    model, _ = build_classifier(config, len(classes), weights=None, multilabel=bool(meta.get("multilabel")),
                                metadata_width=encoder.width if encoder else 0)
    load_weights(model, run / "model.safetensors")
    pre = Preprocessing.from_dict(meta["preprocessing"])
    return LoadedRun(model.eval(), classes, pre, config, bool(meta.get("multilabel")), encoder)


@dataclass
class Prediction:
    """Top-k labels of one image, or why it could not be read."""

    path: Path
    top: list[dict] = field(default_factory=list)  # [{"label", "index", "prob"}]
    error: str | None = None
    engine: str = ""  # "torch, precision fp32": what computed it


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


PREDICT_COMPILE_MIN = 64  # fewer images than this: converting a compiled engine costs more than it saves


def prediction_engine(count: int, engine: str = "auto", precision: str = "auto") -> tuple[str, str]:
    """(engine, precision) that predicting `count` images on the CPU uses; cheap, nothing is built.

    "auto" picks the torch engine below `PREDICT_COMPILE_MIN` images (a
    compiled engine's first conversion takes seconds, loading it ~0.3 s),
    else the fastest installed (`heron.transfer.engine.resolve_engine`).
    """
    from heron.transfer.engine import resolve_engine

    if engine == "auto" and count < PREDICT_COMPILE_MIN:
        engine = "torch"
    return resolve_engine(engine, precision, "cpu")


def predict_images(
    paths: list[Path], run: str | Path | None = None, arch: str = "efficientnet_lite0",
    weights: str | None = "imagenet", topk: int = 5, batch_size: int = 32, progress: bool = False,
    workers: int | None = None, precision: str = "auto", engine: str = "auto",
    engine_dir: str | Path | None = None,
):
    """Yield a `Prediction` per file: a trained run's classes, or ImageNet's without `run`.

    `engine` and `precision` as `prediction_engine` resolves them; compiled
    engines are kept in `engine_dir` (default: heron's cache folder, `engines/`).
    """
    from heron.models._weights import cache_dir

    engine, precision = prediction_engine(len(paths), engine, precision)
    engine_dir = cache_dir() / "engines" if engine_dir is None else engine_dir
    metadata = None
    if run is not None:
        loaded = load_run(run)
        model, pre, labels, multilabel = loaded.model, loaded.pre, loaded.classes, loaded.multilabel
        metadata = loaded.metadata
        if metadata is not None:  # two inputs: the model runs in torch
            engine, precision = "torch", "fp32"
    else:
        (model, pre, labels), multilabel = _imagenet_classifier(arch, weights), False
    model = model.to(memory_format=torch.channels_last)
    results = predict_files(model, paths, pre, batch_size, workers, progress, multilabel,
                            precision=precision, engine=engine, engine_dir=engine_dir, metadata=metadata)
    for path, probs, error in results:
        if error:
            yield Prediction(path, error=error)
            continue
        yield Prediction(path, top_labels(probs, labels, topk), engine=f"{engine}, precision {precision}")


def top_labels(probs: torch.Tensor, labels: list[str], topk: int) -> list[dict]:
    """The `topk` most probable labels of one image as `heron predict --json` prints them:
    `[{"label", "index", "prob"}]`, most probable first, probabilities rounded to 4 places."""
    values, indices = torch.as_tensor(probs).topk(min(topk, len(labels)))
    return [{"label": labels[i], "index": int(i), "prob": round(float(v), 4)} for v, i in zip(values, indices.tolist())]


def predict_files(model: nn.Module, paths: list[Path], pre: Preprocessing, batch_size: int = 32,
                  workers: int | None = None, progress: bool = False, multilabel: bool = False,
                  precision: str = "fp32", engine: str = "torch", engine_dir: str | Path | None = None,
                  metadata=None):
    """Probabilities for each file: yields `(path, probs (C,) | None, error | None)`.

    `metadata`: a `--metadata` run's encoder; each file's header columns go
    to the model beside its pixels (the torch engine runs such a model).

    `model` takes images as floats in [0, 1]; decoding runs in workers when
    there are more files than one batch (`plan_threads` when `workers` is
    None). The network runs through `heron.transfer.engine.create_engine`
    (torch fp32 included: a copy with batch norm folded), compiled engines
    into `engine_dir`; a `--metadata` model runs as it is.
    """
    from tqdm.auto import tqdm

    from heron.data.loader import file_loader
    from heron.transfer.engine import create_engine

    _, loader, plan = file_loader(paths, eval_transform(pre), batch_size, workers, pre.decode_min_size())
    model.eval()
    compiled = metadata is None  # torch fp32 too: its engine folds batch norm (1.4x, benchmarks/export.py)
    if compiled:  # an engine takes the uint8 batch as it comes and scales it itself
        model = create_engine(model, engine, precision, "cpu", engine_dir, threads=plan.threads, method="forward")
    bar = tqdm(total=len(paths), unit="img", disable=not progress, leave=False)
    with torch.inference_mode():
        for x, _, idx, errors in loader:
            for i, message in errors:
                yield paths[i], None, message
            if x is not None:
                if not compiled:
                    x = x.float().div_(255.0).contiguous(memory_format=torch.channels_last)
                batch = [paths[i] for i in idx.tolist()]
                probs = _activate(model(x) if metadata is None else model(x, _metadata_batch(metadata, batch)),
                                  multilabel)
                for i, p in zip(idx.tolist(), probs):
                    yield paths[i], p, None
            bar.update(len(idx) + len(errors))
    bar.close()


def _scored_items(loaded: LoadedRun, run_path, data_path) -> DataSplits:
    """The labelled images a run is scored on, with the run's class indices.

    The run's own dataset is scored on the run's validation split (the same
    --valid-pct and --seed); any other folder on its valid/ images, or on all
    of them when it has no split.
    """
    config = loaded.config
    same = bool(config.data) and Path(config.data).resolve() == Path(data_path).resolve()
    if same:
        data = discover(data_path, valid_pct=config.valid_pct, seed=config.seed, image_root=config.image_root)
        items = data.valid
    else:
        data = discover(data_path, valid_pct=0.0, min_classes=1)
        items = data.valid or data.train
    unknown = sorted(set(data.classes) - set(loaded.classes))
    if unknown:
        raise DataError(f"{data_path}: classes {unknown} were not in the trained run {run_path}")
    if data.multilabel:
        remap = [loaded.classes.index(c) for c in data.classes]
        items = [(p, [remap[t] for t in labels]) for p, labels in items]
    else:
        items = [(p, loaded.classes.index(data.classes[t])) for p, t in items]
    return DataSplits(loaded.classes, [], items, [], loaded.multilabel, Path(data_path))


def _run_predictions(run_path, data_path, tta: str | None, quiet: bool = True):
    """(probs, targets, paths, classes, errors) of a finished run on a labelled folder."""
    loaded = load_run(run_path)
    scored = _scored_items(loaded, run_path, data_path)
    config = TrainConfig.from_dict({**loaded.config.to_dict(), "tta": tta, "quiet": quiet})
    job = Job(config, scored, None, loaded.model, loaded.pre, torch.device("cpu"), metadata=loaded.metadata)
    probs, targets, paths = _valid_predictions(job)
    return probs, targets, paths, loaded.classes, job.errors


def evaluate(run_path: str | Path, data_path: str | Path, tta: str | None = None, quiet: bool = False) -> dict:
    """Score a finished run on a labelled folder (class sub-folders, or train/valid layout: valid is used)."""
    from heron.train.metrics import accuracy, log_loss

    probs, targets, _, _, errors = _run_predictions(run_path, data_path, tta, quiet)
    return {"accuracy": accuracy(probs, targets), "log_loss": log_loss(probs, targets), "images": len(targets),
            "errors": errors}


def ensemble(run_paths: list[str | Path], data_path: str | Path, tta: str | None = None) -> dict:
    """Score each run and the mean of their probabilities on the same labelled images.

    Returns {"members": [{"run", "accuracy", "log_loss"}], "ensemble": {...},
    "images", "errors"}. The runs must have the same classes (in any order);
    only images every member could read are scored.
    """
    from heron.train.metrics import accuracy, log_loss

    if len(run_paths) < 2:
        raise DataError("an ensemble needs two or more runs: heron ensemble RUN1 RUN2 ... --data DATA")
    outputs = [_run_predictions(path, data_path, tta) for path in run_paths]
    classes = outputs[0][3]
    for path, out in zip(run_paths, outputs):
        if sorted(out[3]) != sorted(classes):
            raise DataError(f"{path}: classes {out[3]} differ from {run_paths[0]}'s {classes}; "
                            "ensemble runs trained on the same classes")
    common = set.intersection(*(set(out[2]) for out in outputs))
    order = [p for p in outputs[0][2] if p in common]
    aligned, targets = [], None
    for probs, member_targets, paths, member_classes, _ in outputs:
        where = {p: i for i, p in enumerate(paths)}
        index = torch.as_tensor([where[p] for p in order], dtype=torch.long)
        columns = torch.as_tensor([member_classes.index(c) for c in classes], dtype=torch.long)
        aligned.append(probs[index][:, columns])
        if targets is None:
            targets = member_targets[index]
    mean = torch.stack(aligned).mean(0)
    members = [{"run": str(path), "accuracy": float(accuracy(p, targets)), "log_loss": float(log_loss(p, targets))}
               for path, p in zip(run_paths, aligned)]
    errors = sorted({e for out in outputs for e in out[4]})
    return {"members": members, "images": len(order), "errors": errors, "probs": mean,
            "ensemble": {"accuracy": float(accuracy(mean, targets)), "log_loss": float(log_loss(mean, targets))}}
