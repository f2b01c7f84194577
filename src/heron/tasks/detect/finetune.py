"""Fine-tuning the detector end to end: the last trunk stages unfrozen, augmented images, the same loss.

The head first learns on the cached maps of the frozen trunk (seconds an
epoch). Small or unusual objects (blood platelets, a microscope's colours)
are often not what ImageNet features single out; unfreezing the last stages
(`--unfreeze N`) lets the trunk adapt, with the box-aware augmentation of
`heron.data.detection_transforms` (flip, crop, colour), discriminative
learning rates (earlier groups slower) and the trunk's batch-norm
statistics kept fixed, as classification's fine-tuning does.
"""

from __future__ import annotations

import torch

from heron.data.detection_transforms import (DetectionImages, detection_eval_transform, detection_loader,
                                             detection_train_transform)
from heron.tasks.detect.yolo import encode_targets, pack_targets
from heron.train import Learner
from heron.transfer.freeze import discriminative_param_groups, freeze, unfreeze

__all__ = ["TargetBatches", "finetune"]


class TargetBatches:
    """Detection batches as `(images float [0, 1] (B, 3, H, W), packed targets (B, D))` for the Learner.

    Each image's boxes (already in input pixels, after its augmentation) are
    encoded for the grid and anchors here; unreadable files go to `errors`.
    """

    def __init__(self, loader, anchors: torch.Tensor, grid: tuple[int, int], input_size: tuple[int, int],
                 max_boxes: int, errors: list[str]) -> None:
        self.loader, self.anchors, self.grid, self.input_size = loader, anchors, tuple(grid), tuple(input_size)
        self.max_boxes, self.errors = max_boxes, errors

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for images, targets, _, errors in self.loader:
            self.errors.extend(m for _, m in errors if m not in self.errors)
            if images is None:
                continue
            packed = []
            for target in targets:
                boxes = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
                labels = torch.as_tensor(target["labels"]).reshape(-1)
                dense = encode_targets(boxes, labels, self.anchors, self.grid, self.input_size)
                packed.append(pack_targets(dense, boxes, self.max_boxes))
            yield images.float().div_(255.0), torch.stack(packed)


def finetune(detector, loss, train_items, valid_items, config, device, callbacks, errors: list[str],
             resume=None) -> list[dict]:
    """Unfreeze the last `config.unfreeze` trunk stages of `detector.model` and train it on images.

    `resume`: a checkpoint folder of this phase to continue from.
    """
    model = detector.model
    size = tuple(detector.pre.size)
    model.freeze_bn_stats = True
    freeze(model)
    unfreeze(model, "all" if config.unfreeze == "all" else int(config.unfreeze))
    augment = detection_train_transform(size, hflip=0.5 if config.hflip else 0.0)
    generator = torch.Generator().manual_seed(config.seed)
    train_dl = detection_loader(DetectionImages(train_items, augment), batch_size=config.finetune_batch_size,
                                shuffle=True, workers=config.workers, generator=generator)
    valid_dl = detection_loader(DetectionImages(valid_items, detection_eval_transform(size)),
                                batch_size=config.finetune_batch_size, workers=config.workers)
    batches = {name: TargetBatches(dl, detector.anchors, loss.grid, size, loss.max_boxes, errors)
               for name, dl in (("train", train_dl), ("valid", valid_dl))}
    groups = discriminative_param_groups(model, config.finetune_lr, lr_ratio=0.1)
    learner = Learner(model, batches["train"], batches["valid"], loss_fn=loss, lr=config.finetune_lr,
                      weight_decay=config.weight_decay, metrics=(), device=device, quiet=config.quiet,
                      param_groups=groups, channels_last=True, callbacks=callbacks)
    return learner.fit(config.finetune_epochs, lr=config.finetune_lr, phase="finetune", resume=resume)
