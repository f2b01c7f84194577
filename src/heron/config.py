"""Configuration dataclasses: one per component, defaults a newcomer can trust.

Command-line flags map one-to-one onto fields; a run folder's config.json is
`asdict(config)`, and `--resume` reads it back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

__all__ = ["TrainConfig", "LocalizeConfig", "DetectConfig", "LandmarksConfig", "FIGURE_MODES", "BOX_WEIGHT", "DETECT_METHODS"]

FIGURE_MODES = ("inline", "background", "none")  # how a run folder's PNG figures are drawn


@dataclass
class TrainConfig:
    """Transfer learning on a folder of images (`heron train`)."""

    data: str = ""  # a folder (train/valid or class folders) or a CSV of path,label
    image_root: str | None = None  # where a CSV's relative paths start (default: the CSV's folder)
    out: str | None = None
    overwrite: bool = False  # replace a finished run in `out` (otherwise refused)
    arch: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    size: list[int] | None = None  # [224] or [360, 640]; None: the weights' own size
    crop_pct: float | None = None  # None: the weights' own (0.875); 1.0 keeps the whole image
    head: str = "gap"  # gap | linear | dense
    hidden: list[int] | None = None  # dense head widths (None: [512]) or fcn conv widths (None: [128])
    dropout: float | list[float] | None = None  # one value, or one per head dropout layer; None: the head's default
    head_bn: bool | None = None  # batch norm in the head; None: in the dense head only
    label_smoothing: float = 0.0
    epochs: int | None = None  # head epochs; None: about 400 optimizer steps (see classify.head_epochs)
    lr: float | None = None  # head peak lr; None: the lr finder's suggestion
    batch_size: int = 64
    optimizer: str = "adamw"
    weight_decay: float = 1e-2
    valid_pct: float = 0.2
    seed: int = 0
    precompute: bool = True
    precompute_aug: int = 0
    unfreeze: str | None = None  # None, "all", a number of stages, or "auto" (by dataset size)
    finetune_epochs: int = 3
    finetune_lr: float = 1e-3
    lr_ratio: float = 0.1  # earliest unfrozen group trains at finetune_lr * lr_ratio
    finetune_batch_size: int = 32
    freeze_bn: bool = True  # keep the trunk's batch-norm statistics fixed while fine-tuning
    finetune_optimizer: str | None = None  # None: the same as optimizer
    augment: str = "photo"  # a preset of heron.data.augment: photo (crops, flips, colour) | light | strong | none
    augment_options: dict = field(default_factory=dict)  # the preset's settings changed by flags (--rotate 10 ...)
    tta: str | None = None  # None | flip | multicrop | random:N
    pseudo_label: str | None = None  # a folder of unlabelled images to pseudo-label with the first model
    pseudo_threshold: float = 0.9  # the top probability an unlabelled image needs to be used
    pseudo_ratio: float = 0.25  # the share of each training batch that is pseudo-labelled
    metadata: list[str] | None = None  # header fields given to the head beside the image (size, aspect, ...)
    ensemble: int = 1  # heads trained with different seeds on the cached features, saved as one model
    sync_bn: bool = False  # batch-norm statistics over the global batch under torchrun (several processes)
    clip: float | None = None  # clip probabilities to [clip, 1 - clip] for log loss
    patience: int | None = None  # early stopping
    lr_find: bool = False
    cache_dir: str | None = None
    workers: int | None = None
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (CUDA): bf16 only where the hardware runs it natively
    engine: str = "auto"  # frozen-trunk inference engine: auto | torch | openvino | onnxruntime
    figures: str = "inline"  # one of FIGURE_MODES: inline | background (a separate process draws them) | none
    quiet: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# The seeds weigh a box's mean squared error in pixels by 0.001 against the
# cross-entropy; heron's boxes are fractions of the image, whose squared
# errors are 224^2 times smaller at 224 px, so the same balance is ~50.
BOX_WEIGHT = 50.0


@dataclass
class LocalizeConfig:
    """One object per image: its class and its box (`heron localize`), a multi-output model."""

    data: str = ""  # class folders (or train/valid), as `heron train` takes them
    boxes: str = ""  # CSV (file,x1,y1,x2,y2) or JSON of boxes in pixels; the largest box per image is used
    image_root: str | None = None  # where the box file's names start (default: its folder)
    out: str | None = None
    overwrite: bool = False
    arch: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    size: list[int] | None = None  # None: the weights' own size; images are resized whole (no crop)
    epochs: int = 60
    lr: float = 1e-2  # measured on the synthetic shapes: mean IoU 0.66 against 0.62 at 3e-3 (two seeds)
    box_weight: float = BOX_WEIGHT  # loss = box_weight * MSE(box as fractions of the image) + cross-entropy
    dropout: float = 0.2
    batch_size: int = 64
    weight_decay: float = 1e-2
    valid_pct: float = 0.2
    seed: int = 0
    cache_dir: str | None = None
    workers: int | None = None
    engine: str = "auto"
    precision: str = "auto"
    quiet: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


DETECT_METHODS = ("yolo", "rcnn", "fast-rcnn", "faster-rcnn")
# Head epochs by method; synthetic demo (500 images, 416 px) mAP@0.5 / COCO mAP: yolo 30 epochs 0.916 / 0.555,
# fast-rcnn 10 epochs 0.810 / 0.616 (its validation loss is lowest near epoch 5), faster-rcnn 10 epochs 0.782 / 0.455.
DETECT_EPOCHS = {"yolo": 30, "rcnn": 10, "fast-rcnn": 10, "faster-rcnn": 15}
DETECT_LR = {"yolo": 3e-3, "rcnn": 1e-3, "fast-rcnn": 1e-3, "faster-rcnn": 1e-3}


@dataclass
class DetectConfig:
    """A YOLO-style one-stage detector on annotated photos (`heron detect train`)."""

    data: str = ""  # images/ + annotations/ (VOC), labels/ (YOLO) or a COCO JSON; or a VOC devkit folder
    valid: str | None = None  # a second folder to validate on (default: the data's own split, else valid_pct)
    valid_pct: float = 0.2
    out: str | None = None
    overwrite: bool = False
    arch: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    size: list[int] = field(default_factory=lambda: [416])  # input side(s); images are resized whole
    anchors: int = 5  # anchor shapes chosen by k-means (1 - IoU) on the training boxes
    hflip: bool = True  # also train on each image's mirror image (its map cached beside the original's)
    stride: int = 32  # pixels per grid cell: 32 (the trunk's) or 16 (its last stage dilated: 4x the cells)
    method: str = "yolo"  # yolo (one stage) | rcnn | fast-rcnn | faster-rcnn (two stages: regions, then classes)
    epochs: int | None = None  # head epochs; None: the method's (yolo 30: synthetic demo 416 px mAP@0.5 0.916)
    lr: float | None = None  # head peak lr; None: the method's (yolo 3e-3, the region heads 1e-3)
    batch_size: int = 16  # images per batch (rcnn: 16 times as many regions)
    proposals: int = 300  # selective-search proposals scored per test image (rcnn, fast-rcnn)
    regions: int = 64  # training regions drawn per image, a quarter objects (rcnn, fast-rcnn)
    search: str = "single"  # selective search: single | fast | quality (heron.ops.selective_search)
    crop: int = 128  # rcnn: each region warped to crop x crop pixels for the trunk
    weight_decay: float = 5e-4
    noobj_weight: float = 0.5  # weight of the empty cells' objectness loss (YOLO v1's lambda_noobj)
    width: int = 128  # channels of the head (a 1x1 cut of the trunk's, then two 3x3 convs); 256 scored no better
    unfreeze: str | None = None  # after the head: fine-tune the last N trunk stages ("all": every one) on images
    finetune_epochs: int = 5
    finetune_lr: float = 1e-3  # the head's and last stage's; earlier stages 10x lower per group
    finetune_batch_size: int = 8
    score_threshold: float = 0.3  # predictions drawn and saved by `heron detect predict`
    iou_threshold: float = 0.45  # class-wise non-max suppression
    seed: int = 0
    cache_dir: str | None = None
    workers: int | None = None
    engine: str = "auto"
    precision: str = "auto"
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.method not in DETECT_METHODS:
            from heron.errors import TrainingError

            raise TrainingError(f"--method {self.method}: use one of {', '.join(DETECT_METHODS)}")
        self.epochs = DETECT_EPOCHS[self.method] if self.epochs is None else self.epochs
        self.lr = DETECT_LR[self.method] if self.lr is None else self.lr

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DetectConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class LandmarksConfig:
    """Landmark detection (`heron landmarks`): is the object there, and where are its K points."""

    data: str = ""  # a folder of images, or train/ and valid/ sub-folders of images
    points: str = ""  # CSV file,x1,y1,...,xK,yK in pixels; an empty row or an absent file: no object
    image_root: str | None = None  # where the CSV's names start (default: its folder)
    out: str | None = None
    overwrite: bool = False
    arch: str = "efficientnet_lite0"
    weights: str | None = "imagenet"
    size: list[int] | None = None  # None: the weights' own size; images are resized whole (no crop)
    epochs: int = 60
    lr: float = 1e-2
    # loss = BCE(p_c) + point_weight * p_c * MSE(points as fractions); the same balance as BOX_WEIGHT
    point_weight: float = BOX_WEIGHT
    dropout: float = 0.2
    batch_size: int = 64
    weight_decay: float = 1e-2
    valid_pct: float = 0.2
    seed: int = 0
    cache_dir: str | None = None
    workers: int | None = None
    engine: str = "auto"
    precision: str = "auto"
    quiet: bool = False

    def to_dict(self) -> dict:
        return asdict(self)
