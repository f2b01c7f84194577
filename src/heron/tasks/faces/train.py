"""Training a face encoder: metric learning on P x K batches, then a threshold on unseen people.

`train_faces(config)`:
1. read DATA (one folder per person) and hold some people out for the
   threshold (`valid_people`); with `crop_faces`, crop every face first;
2. run the frozen pretrained trunk once over every image, keeping pooled
   features in the shared feature cache (`heron.transfer`), augmented copies
   included (flip + small crop);
3. train the projection on cached features with P x K batches and the
   chosen loss: triplet (batch-all / batch-hard / semi-hard mining),
   contrastive, or the binary verification head on pairs;
4. optionally unfreeze the trunk's last group and fine-tune on images;
5. embed the held-out people, score every pair of them (ROC) and choose
   tau for the target false-accept rate, or for the best accuracy;
6. write the run folder: encoder, config.json with tau and the metrics,
   metrics.jsonl, roc.json, roc.png.
The loop is `heron.train.Learner` (checkpoints, resume, NaN and Ctrl-C
safety, one-cycle schedule); its loss function takes the batch's embeddings
and identities.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from heron.data.loader import ImageFiles, file_loader, image_loader
from heron.data.transforms import Preprocessing, eval_transform
from heron.errors import DataError, TrainingError
from heron.tasks.faces.encoder import FaceEncoder, build_encoder
from heron.tasks.faces.people import People, find_people, split_people
from heron.tasks.faces.losses import VerificationHead, batch_triplet_loss, contrastive_loss
from heron.tasks.faces.run import save_face_run
from heron.tasks.faces.sampling import PKSampler
from heron.train import Checkpoint, Learner, MetricsLogger
from heron.train.callbacks import Callback, TimeBudget
from heron.train.run import RunFolder
from heron.transfer.cache import FeatureCache, weights_fingerprint
from heron.transfer.extract import SeededView, extract_features
from heron.transfer.freeze import discriminative_param_groups, freeze, unfreeze

__all__ = ["FaceConfig", "choose_threshold", "embed_paths", "thin_roc", "train_faces",
           "LOSSES", "MINING", "THRESHOLDS"]

LOSSES = ("triplet", "contrastive", "binary")
MINING = ("batch_hard", "batch_all", "semi_hard")
THRESHOLDS = ("far", "accuracy")
DEFAULT_MARGIN = {"triplet": 0.2, "contrastive": 1.0, "binary": 0.0}
MAX_VALID_PAIRS = 200_000


@dataclass
class FaceConfig:
    """Settings of `heron faces train`; each CLI flag maps onto a field.

    `margin` None: 0.2 for the triplet loss (squared distances), 1.0 for the
    contrastive loss. `size` None: the weights' input size. `valid_people`
    None: a quarter of the people, at least 3 (`default_valid_people`). `augment_copies`: augmented views
    of each training image cached beside the plain one (with `augment`).
    """

    data: str = ""
    out: str | None = None
    arch: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    dim: int = 128
    loss: str = "triplet"
    mining: str = "batch_hard"
    margin: float | None = None
    p: int = 8
    k: int = 4
    epochs: int = 30
    finetune_epochs: int = 0
    lr: float = 1e-3
    finetune_lr: float = 1e-4
    size: int | None = None
    valid_people: int | None = None
    target_far: float = 1e-3
    threshold: str = "far"
    augment: bool = True
    augment_copies: int = 4
    crop_faces: bool = False
    seed: int = 0
    max_minutes: float | None = None
    overwrite: bool = False
    quiet: bool = False
    cache_dir: str | None = None
    workers: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FaceConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def resolved_margin(self) -> float:
        return DEFAULT_MARGIN[self.loss] if self.margin is None else float(self.margin)


# ---------------------------------------------------------------- the objective


class PairObjective(nn.Module):
    """What the Learner trains: `embedder` (images or cached features -> unit embeddings) and, for the
    binary loss, the verification head on pairs. Its output is the batch's embeddings."""

    def __init__(self, embedder: nn.Module, pair_head: nn.Module | None = None) -> None:
        super().__init__()
        self.embedder = embedder
        self.pair_head = pair_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedder(x)


class CachedEmbedder(nn.Module):
    """`FaceEncoder.embed_features` as a module: pooled trunk features -> unit embeddings."""

    def __init__(self, encoder: FaceEncoder) -> None:
        super().__init__()
        self.head = encoder.head  # shared: training this trains the encoder's projection

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(feats), dim=1)


def _batch_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every unordered pair (i < j) of a batch: (i, j, same)."""
    i, j = torch.triu_indices(len(labels), len(labels), offset=1, device=labels.device)
    return i, j, labels[i] == labels[j]


def make_loss(config: FaceConfig, objective: PairObjective):
    """`loss(embeddings, labels)` for the configured loss; pair losses weigh same and other pairs equally."""
    margin = config.resolved_margin()
    if config.loss == "triplet":
        return lambda emb, labels: batch_triplet_loss(emb, labels, margin=margin, mining=config.mining)

    def pair_loss(emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        i, j, same = _batch_pairs(labels)
        if config.loss == "contrastive":
            parts = [contrastive_loss(emb[i[m]], emb[j[m]], same[m], margin) for m in (same, ~same) if m.any()]
            return torch.stack(parts).mean()
        logits = objective.pair_head(emb[i], emb[j])  # (pairs,)
        positives = same.sum().clamp(min=1)
        weight = ((~same).sum().float() / positives).clamp(min=1.0)  # balance the few same-person pairs
        return F.binary_cross_entropy_with_logits(logits, same.float(), pos_weight=weight)

    return pair_loss


# ---------------------------------------------------------------- batches


class CachedPKBatches:
    """P x K batches of cached features `(x (B, C), identities (B,))`; each item one of its cached views.

    `table` is `(N, V, C)`: view 0 the plain image, the others augmented
    copies; the view is drawn from torch's generator, so a resumed run draws
    the same. `set_epoch` comes from the Learner.
    """

    def __init__(self, table: torch.Tensor, labels: list[int], p: int, k: int, seed: int,
                 batches: int | None = None) -> None:
        self.table, self.labels = table, torch.as_tensor(labels)
        self.sampler = PKSampler(labels, p, k, batches=batches, seed=seed)

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        views = self.table.shape[1]
        for batch in self.sampler:
            idx = torch.as_tensor(batch)
            pick = torch.randint(views, (len(idx),)) if views > 1 else torch.zeros(len(idx), dtype=torch.long)
            yield self.table[idx, pick], self.labels[idx]


class ImagePKBatches:
    """A DataLoader of decoded P x K batches as `(x float [0, 1], identities)`; unreadable files skipped."""

    def __init__(self, loader) -> None:
        self.loader = loader  # the Learner finds its batch sampler's set_epoch through `.loader`

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y, _, _ in self.loader:
            if x is not None:
                yield x.float().div_(255.0), y


# ---------------------------------------------------------------- validation on unseen people


def pair_metrics(embeddings: np.ndarray, labels: list[int], target_far: float, seed: int = 0,
                 max_pairs: int | None = MAX_VALID_PAIRS) -> tuple[dict, dict]:
    """(metrics, roc) of every pair of `embeddings`: AUC, TAR at FAR 1e-2 / 1e-3 / target, pair counts."""
    from heron.tasks.faces import verification as V

    i, j, same = V.pair_indices(np.asarray(labels), max_pairs=max_pairs, seed=seed)
    distances = V.pair_distances(embeddings, i, j)
    roc = V.roc(distances, same)
    metrics = {
        "auc": float(roc["auc"]),
        "tar_at_far_1e-2": float(V.tar_at_far(distances, same, 1e-2, curve=roc)),
        "tar_at_far_1e-3": float(V.tar_at_far(distances, same, 1e-3, curve=roc)),
        "tar_at_target_far": float(V.tar_at_far(distances, same, target_far, curve=roc)),
        "same_pairs": int(np.sum(same)),
        "different_pairs": int(np.sum(~np.asarray(same, dtype=bool))),
    }
    return metrics, {**roc, "distances": distances, "same": same}


def choose_threshold(distances: np.ndarray, same: np.ndarray, how: str, target_far: float) -> tuple[float, str]:
    """(tau, the rule that chose it): the largest distance whose FAR stays within `target_far` ("far"),
    or the best accuracy ("accuracy").

    With fewer different-person pairs than 1 / target_far the target cannot
    be measured, and the empirical tau sits just below the nearest stranger
    pair that happened to be drawn: strangers then pass. tau is then the
    smaller of that and the fitted normal tail's (`normal_tail_threshold`).
    """
    from heron.tasks.faces import verification as V

    curve = V.roc(distances, same)
    if how == "accuracy":
        return float(V.best_accuracy_threshold(distances, same, curve=curve)), "best accuracy"
    tau = float(V.threshold_for_far(distances, same, target_far, curve=curve))
    different = int(np.sum(~np.asarray(same, dtype=bool)))
    if different * target_far >= 1:
        return tau, f"FAR {target_far:g} measured on {different} different-person pairs"
    fitted = float(V.normal_tail_threshold(distances, same, target_far))
    if fitted < tau:
        return fitted, (f"FAR {target_far:g} from a normal fitted to {different} different-person pairs "
                        "(too few to measure it)")
    return tau, f"FAR {target_far:g}: below the nearest of {different} different-person pairs"


def thin_roc(roc: dict, points: int = 2000) -> dict:
    """The ROC's far/tar/thresholds at most about `points` of them (evenly spaced, and log-spaced in FAR), + auc."""
    far = np.asarray(roc["far"])
    keys = ("far", "tar", "thresholds")
    if len(far) > points:
        even = np.linspace(0, len(far) - 1, points // 2).round().astype(np.int64)
        low = np.searchsorted(far, np.logspace(-6, 0, points // 2)).clip(0, len(far) - 1)
        keep = np.unique(np.r_[even, low, len(far) - 1])
        return {**{k: np.asarray(roc[k])[keep] for k in keys}, "auc": float(roc["auc"])}
    return {**{k: np.asarray(roc[k]) for k in keys}, "auc": float(roc["auc"])}


class PeopleValidation(Callback):
    """After each epoch: AUC and TAR at the target FAR on the held-out people, into the epoch's record."""

    order = 5  # before the progress bar and metrics log read the record

    def __init__(self, embed, labels: list[int], target_far: float) -> None:
        self.embed, self.labels, self.target_far = embed, labels, target_far

    def after_epoch(self, learner) -> None:
        learner.model.eval()
        with torch.inference_mode():
            embeddings = self.embed(learner.model)
        metrics, _ = pair_metrics(embeddings, self.labels, self.target_far, max_pairs=20_000)
        learner.record["valid_auc"] = metrics["auc"]
        learner.record["valid_tar"] = metrics["tar_at_target_far"]


# ---------------------------------------------------------------- the recipe


class _Job:
    """Everything one training run carries between its steps."""

    def __init__(self, config: FaceConfig, run: RunFolder, encoder: FaceEncoder, pre: Preprocessing,
                 train: People, valid: People) -> None:
        self.config, self.run, self.encoder, self.pre = config, run, encoder, pre
        self.train, self.valid = train, valid
        self.errors: list[str] = []
        self.started = time.perf_counter()

    def say(self, text: str) -> None:
        if not self.config.quiet:
            print(text, flush=True)

    def minutes_left(self) -> float | None:
        if self.config.max_minutes is None:
            return None
        return self.config.max_minutes - (time.perf_counter() - self.started) / 60.0


def _check(config: FaceConfig) -> None:
    problems = []
    if config.loss not in LOSSES:
        problems.append(f"--loss {config.loss}: use one of {', '.join(LOSSES)}")
    if config.mining not in MINING:
        problems.append(f"--mining {config.mining}: use one of {', '.join(MINING)}")
    if config.threshold not in THRESHOLDS:
        problems.append(f"--threshold {config.threshold}: use one of {', '.join(THRESHOLDS)}")
    if config.p < 2 or config.k < 2:
        problems.append(f"--p {config.p} --k {config.k}: batches need at least 2 people and 2 images of each")
    if not 0 < config.target_far < 1:
        problems.append(f"--target-far {config.target_far}: give a rate between 0 and 1, e.g. 1e-3")
    if config.dim < 1 or config.epochs < 0 or config.finetune_epochs < 0:
        problems.append("--dim must be at least 1 and --epochs / --finetune-epochs at least 0")
    if config.epochs == 0 and config.finetune_epochs == 0:
        problems.append("--epochs 0 and --finetune-epochs 0: nothing would be trained; give one of them")
    if problems:
        raise TrainingError("; ".join(problems))


def _crop_people(job: _Job, people: People, folder: Path) -> People:
    """Each image's biggest face as a PNG under `folder` (in the run); images without a face are skipped."""
    from PIL import Image

    from heron.data.images import load_image
    from heron.errors import ImageError
    from heron.tasks.faces.crop import crop_face

    paths, labels = [], []
    for path, label in zip(people.paths, people.labels):
        target = folder / people.names[label] / f"{path.stem}-{zlib.crc32(str(path).encode()):08x}.png"
        if not target.exists():
            try:
                face = crop_face(load_image(path).permute(1, 2, 0).numpy(), path_for_errors=str(path))
            except ImageError as err:
                job.errors.append(str(err))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(face).save(target)
        paths.append(target)
        labels.append(label)
    return People(people.names, paths, labels)


def _cropped(job: _Job) -> None:
    """`--crop-faces`: train and validate on face crops; say how many images had no face."""
    job.train = _crop_people(job, job.train, job.run / "faces" / "train")
    job.valid = _crop_people(job, job.valid, job.run / "faces" / "valid")
    if job.errors:
        job.say(f"--crop-faces: no face found in {len(job.errors)} images (listed in errors.txt), skipped; "
                f"first: {job.errors[0]}")
    for people in (job.train, job.valid):
        counts = people.counts()
        short = [people.names[i] for i in np.flatnonzero(counts < 2)]
        if short:
            raise DataError(f"--crop-faces: fewer than 2 images with a face found for {', '.join(short[:5])}; "
                            "add clearer photos of them or drop --crop-faces")


def _cache(job: _Job) -> FeatureCache:
    from heron.models._weights import cache_dir

    key = {
        "arch": job.config.arch,
        "weights": weights_fingerprint(job.encoder.backbone),
        "preprocessing": job.pre.to_dict(),
        "kind": "pooled",
        "precision": "fp32",
        "engine": "torch",
    }
    root = Path(job.config.cache_dir) if job.config.cache_dir else cache_dir() / "features"
    return FeatureCache(root, key)


class FlipCrop:
    """The faces' training augmentation: the evaluation crop, then a random crop of 90-100% of its side
    resized back, mirrored with probability 1/2. uint8 `(3, H, W)` in, uint8 `(3, *pre.size)` out.

    Plain torch (`heron.data.transforms`' kernels): importing torchvision's
    transforms costs more than a small face run's whole training. Random
    draws come from torch's generator, so `SeededView` makes copies repeatable.
    """

    def __init__(self, pre: Preprocessing, min_side: float = 0.9) -> None:
        self.pre, self.min_side, self.base = pre, min_side, eval_transform(pre)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        from heron.data.transforms import horizontal_flip, resize

        img = self.base(img)  # (3, h, w)
        h, w = img.shape[-2:]
        side = float(torch.empty(1).uniform_(self.min_side, 1.0))
        ch, cw = max(1, round(h * side)), max(1, round(w * side))
        top = int(torch.randint(h - ch + 1, (1,)))
        left = int(torch.randint(w - cw + 1, (1,)))
        img = resize(img[:, top : top + ch, left : left + cw], (h, w), self.pre.interpolation)
        return horizontal_flip(img) if bool(torch.rand(1) < 0.5) else img

    def __repr__(self) -> str:
        return f"FlipCrop(min_side={self.min_side})"


def _augment(pre: Preprocessing) -> FlipCrop:
    return FlipCrop(pre)


def _views(job: _Job, train: bool) -> dict:
    views = {"eval": eval_transform(job.pre)}
    if train and job.config.augment:
        augment = _augment(job.pre)
        views.update({f"face-aug{i}": SeededView(augment, i) for i in range(job.config.augment_copies)})
    return views


def _cached_table(job: _Job, cache: FeatureCache, people: People, train: bool,
                  desc: str) -> tuple[torch.Tensor, People]:
    """`(N, V, C)` float32 features of `people`'s readable images under the views, and those people's images."""
    ext = extract_features(job.encoder, people.paths, cache, _views(job, train), min_size=job.pre.decode_min_size(),
                           batch_size=64, workers=job.config.workers, progress=not job.config.quiet, desc=desc,
                           engine="torch", precision="fp32")
    job.errors.extend(ext.errors)
    ok = ext.ok()
    kept = People(people.names, [p for p, good in zip(people.paths, ok) if good],
                  [label for label, good in zip(people.labels, ok) if good])
    rows = ext.rows[ok]
    table = torch.from_numpy(np.asarray(cache.array()[rows.reshape(-1)], dtype=np.float32))
    job.say(f"{desc}: {len(kept.paths)} images of {len(set(kept.labels))} people, "
            f"{ext.forwards} trunk passes computed, the rest from the cache")
    return table.view(*rows.shape, -1), kept


def _callbacks(job: _Job, phase: str, validation: Callback) -> list:
    callbacks = [validation, MetricsLogger(job.run / "metrics.jsonl"), Checkpoint(job.run / "checkpoints" / phase)]
    left = job.minutes_left()
    if left is not None:
        callbacks.append(TimeBudget(max(left, 1e-9)))  # spent: one epoch, then stop
    return callbacks


def _resume_dir(job: _Job, phase: str, resume: bool) -> Path | None:
    path = job.run / "checkpoints" / phase
    return path if resume and path.exists() else None


def _pair_head(config: FaceConfig) -> nn.Module | None:
    return VerificationHead(config.dim) if config.loss == "binary" else None


def _fit_cached(job: _Job, cache: FeatureCache, resume: bool) -> nn.Module | None:
    """The projection (and pair head) trained on cached trunk features; returns the pair head."""
    config = job.config
    train_table, job.train = _cached_table(job, cache, job.train, True, "train features")
    valid_table, job.valid = _cached_table(job, cache, job.valid, False, "held-out features")
    p = min(config.p, len(set(job.train.labels)))
    batches = max(4, len(job.train.paths) // (p * config.k))
    train_dl = CachedPKBatches(train_table, job.train.labels, p, config.k, config.seed, batches)
    objective = PairObjective(CachedEmbedder(job.encoder), _pair_head(config))
    valid_feats = valid_table[:, 0]
    _seed(config.seed)  # extraction draws from torch's generator only when the cache is cold: start afresh
    validation = PeopleValidation(lambda model: model(valid_feats).numpy(), job.valid.labels, config.target_far)
    learner = Learner(objective, train_dl, None, loss_fn=make_loss(config, objective), lr=config.lr,
                      weight_decay=1e-4, callbacks=_callbacks(job, "head", validation), quiet=config.quiet)
    learner.fit(config.epochs, lr=config.lr, phase="head", resume=_resume_dir(job, "head", resume))
    return objective.pair_head


def _image_batches(job: _Job, people: People, transform, sampler) -> ImagePKBatches:
    dataset = ImageFiles(list(zip(people.paths, people.labels)), transform, min_size=job.pre.decode_min_size())
    return ImagePKBatches(image_loader(dataset, workers=job.config.workers, batch_sampler=sampler))


def embed_paths(encoder: nn.Module, paths: list[Path], pre: Preprocessing, workers: int | None = None,
                batch_size: int = 64) -> np.ndarray:
    """Embeddings `(n, dim)` float32 of image files through the whole encoder (eval mode, channels_last)."""
    _, loader, _ = file_loader(paths, eval_transform(pre), batch_size, workers, pre.decode_min_size())
    out: np.ndarray | None = None
    encoder.eval()
    with torch.inference_mode():
        for x, _, idx, errors in loader:
            if errors:
                raise DataError(errors[0][1])
            emb = encoder(x.float().div_(255.0).contiguous(memory_format=torch.channels_last)).float().numpy()
            if out is None:
                out = np.zeros((len(paths), emb.shape[1]), dtype=np.float32)
            out[idx.numpy()] = emb
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def _finetune(job: _Job, pair_head: nn.Module | None, resume: bool) -> None:
    """Unfreeze the trunk's last group and train it with the projection on decoded P x K image batches."""
    config, encoder = job.config, job.encoder
    freeze(encoder)
    unfreeze(encoder, 1)
    p = min(config.p, len(set(job.train.labels)))
    sampler = PKSampler(job.train.labels, p, config.k, batches=max(4, len(job.train.paths) // (p * config.k)),
                        seed=config.seed + 1)
    transform = _augment(job.pre) if config.augment else eval_transform(job.pre)
    _seed(config.seed + 1)
    train_dl = _image_batches(job, job.train, transform, sampler)
    objective = PairObjective(encoder, pair_head if pair_head is not None else _pair_head(config))
    groups = discriminative_param_groups(encoder, config.finetune_lr)
    if objective.pair_head is not None:
        groups[-1]["params"] = list(groups[-1]["params"]) + list(objective.pair_head.parameters())
    pre, paths = job.pre, job.valid.paths
    validation = PeopleValidation(lambda model: embed_paths(model, paths, pre, config.workers),
                                  job.valid.labels, config.target_far)
    learner = Learner(objective, train_dl, None, loss_fn=make_loss(config, objective), lr=config.finetune_lr,
                      weight_decay=1e-4, callbacks=_callbacks(job, "finetune", validation), param_groups=groups,
                      quiet=config.quiet, channels_last=True)
    learner.fit(config.finetune_epochs, lr=config.finetune_lr, phase="finetune",
                resume=_resume_dir(job, "finetune", resume))
    freeze(encoder)


def _threshold(job: _Job) -> tuple[float, dict, dict]:
    """(tau, metrics, roc) from every pair of the held-out people, embedded as a loaded run embeds."""
    config = job.config
    embeddings = embed_paths(job.encoder, job.valid.paths, job.pre, config.workers)
    metrics, roc = pair_metrics(embeddings, job.valid.labels, config.target_far, seed=config.seed)
    tau, rule = choose_threshold(roc["distances"], roc["same"], config.threshold, config.target_far)
    from heron.tasks.faces import verification as V

    metrics["tau"] = tau
    metrics["tau_rule"] = rule
    metrics["accuracy_at_tau"] = float(V.verification_accuracy(roc["distances"], roc["same"], tau))
    metrics["min_measurable_far"] = 1.0 / max(metrics["different_pairs"], 1)
    metrics["valid_people"] = len(job.valid.names)
    metrics["train_people"] = len(job.train.names)
    return tau, metrics, roc


def _draw_roc(job: _Job, roc: dict, tau: float) -> None:
    """roc.png: the held-out people's ROC with tau's operating point marked."""
    from heron.interpret.roc_figure import save_roc_figure

    accepted = roc["distances"] <= tau
    tau_far, tau_tar = float(np.mean(accepted[~roc["same"]])), float(np.mean(accepted[roc["same"]]))
    save_roc_figure(job.run / "roc.png", roc["far"], roc["tar"], tau_far=tau_far, tau=tau, tau_tar=tau_tar,
                    title=f"{len(job.valid.names)} held-out people")


def _open(config: FaceConfig, resume: bool) -> RunFolder:
    run = RunFolder.create(config.out, Path(config.data).resolve().name or "faces", root="runs",
                           overwrite=config.overwrite, resume=resume)
    if not run.exists("config.json"):
        run.write_json("config.json", config.to_dict())
    return run


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def train_faces(config: FaceConfig, resume: bool = False) -> Path:
    """Train a face encoder and its threshold on DATA; returns the run folder (see the module docstring)."""
    _check(config)
    people = find_people(config.data)
    train, valid = split_people(people, config.valid_people, config.seed)
    _seed(config.seed)
    encoder, pre = build_encoder(config.arch, config.weights, config.dim, config.size, seed=config.seed)
    job = _Job(config, _open(config, resume), encoder, pre, train, valid)
    job.say(f"{len(people.names)} people, {len(people.paths)} images: {len(train.names)} people train, "
            f"{len(valid.names)} held out for the threshold")
    if config.crop_faces:
        _cropped(job)
    freeze(encoder)
    pair_head = None
    if config.epochs:
        pair_head = _fit_cached(job, _cache(job), resume)
    if config.finetune_epochs:
        _finetune(job, pair_head, resume)
    tau, metrics, roc = _threshold(job)
    if job.errors:
        job.run.write_text("errors.txt", "\n".join(job.errors) + "\n")
    roc_points = thin_roc(roc)
    saved = {**config.to_dict(), "margin": config.resolved_margin(),
             "people": {"train": job.train.names, "valid": job.valid.names}}
    save_face_run(job.run.path, encoder, saved, tau, roc_points, pre=pre, metrics=metrics)
    _draw_roc(job, roc, tau)
    job.say(_summary(metrics, config))
    return job.run.path


def _summary(metrics: dict, config: FaceConfig) -> str:
    far = f"{config.target_far:g}"
    return (f"held-out people {metrics['valid_people']}: AUC {metrics['auc']:.4f}, TAR at FAR {far} "
            f"{metrics['tar_at_target_far']:.4f}, tau {metrics['tau']:.4f} (accuracy {metrics['accuracy_at_tau']:.4f}; "
            f"{metrics['tau_rule']})")
