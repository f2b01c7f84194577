"""heron: practical deep learning for vision on PyTorch.

The public API, one import away:

- models: `build`, `names`, `summary`, `load_torchvision`, `save_weights`, `load_weights`
- data: `load_image`, `discover`
- transfer learning: `fit` (`heron.fit("photos/", unfreeze="auto")`, the same as
  `heron train photos/`), `TrainConfig`, `load_run`, `predict_images`, `evaluate`,
  `ensemble` (score runs and the mean of their probabilities)
- augmentation: `augment_preset` (`heron.augment_preset("photo", rotate=10)`), `build_augment`
  (`heron.train` is the training package; `heron.tasks.classify.train` takes a TrainConfig)
- training: `Learner`
- errors: `HeronError` (what a user can fix; the CLI exits with code 2)

Heavy modules load on first use, so `import heron` stays quick.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "build": "heron.models",
    "names": "heron.models",
    "summary": "heron.models",
    "load_torchvision": "heron.models",
    "save_weights": "heron.models",
    "load_weights": "heron.models",
    "load_image": "heron.data.images",
    "discover": "heron.data.folders",
    "build_augment": "heron.data.augment",
    "TrainConfig": "heron.config",
    "fit": "heron.tasks.classify",
    "load_run": "heron.tasks.classify",
    "predict_images": "heron.tasks.classify",
    "evaluate": "heron.tasks.classify",
    "ensemble": "heron.tasks.classify",
    "Learner": "heron.train",
    "HeronError": "heron.errors",
}

__all__ = ["__version__", *_EXPORTS, "augment_preset"]


_RENAMED = {"augment_preset": ("heron.data.augment", "preset")}  # public name -> (module, its name there)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _RENAMED:
        module, attr = _RENAMED[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'heron' has no attribute {name!r}")
