"""The model zoo: one registry, one interface, one file per family."""

from heron.models._base import Backbone
from heron.models._registry import build, names, register, weight_spec
from heron.models._weights import (
    WeightSpec,
    download,
    load_state_dict_file,
    load_torchvision,
    load_weights,
    save_weights,
)
from heron.models.summary import ModelSummary, summary

import importlib as _importlib

# Family modules register their builders on import; add a family here.
_FAMILIES: tuple[str, ...] = ("efficientnet", "lenet", "alexnet", "vgg", "resnet", "mobilenet", "conv_nets", "googlenet", "inception")
for _family in _FAMILIES:
    _importlib.import_module(f"heron.models.{_family}")

__all__ = [
    "Backbone",
    "ModelSummary",
    "WeightSpec",
    "build",
    "download",
    "load_state_dict_file",
    "load_torchvision",
    "load_weights",
    "names",
    "register",
    "save_weights",
    "summary",
    "weight_spec",
]
