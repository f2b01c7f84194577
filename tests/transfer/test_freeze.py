"""freeze / unfreeze over named layer groups, geometric discriminative lrs, and frozen batch norm."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from heron.errors import ModelError
from heron.models._base import Backbone
from heron.nn.heads import ClassifierHead
from heron.nn.layers import ConvBnAct
from heron.transfer.freeze import discriminative_param_groups, freeze, frozen_groups, set_train_mode, unfreeze


class TinyBackbone(Backbone):
    """stem, three stages, a neck with batch norm, a GAP head: six layer groups."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = ConvBnAct(3, 4, 3)
        self.body = nn.Sequential(ConvBnAct(4, 4, 3), ConvBnAct(4, 8, 3, stride=2), ConvBnAct(8, 8, 3))
        self.neck = ConvBnAct(8, 8, 1)
        self.num_features = 8
        self.head = ClassifierHead(8, num_classes)


def _trainable(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def _params_of(model: nn.Module, *prefixes: str) -> set[str]:
    return {name for name, _ in model.named_parameters() if name.startswith(prefixes)}


def test_group_names_follow_the_backbone():
    assert list(TinyBackbone().layer_groups()) == ["stem", "stage1", "stage2", "stage3", "neck", "head"]


def test_freeze_leaves_only_the_head_trainable():
    model = freeze(TinyBackbone())
    assert _trainable(model) == _params_of(model, "head.")
    assert frozen_groups(model) == ["stem", "stage1", "stage2", "stage3", "neck"]


@pytest.mark.parametrize("n,prefixes", [
    (0, ("head.",)),
    (1, ("neck.", "head.")),
    (2, ("body.2.", "neck.", "head.")),
    (4, ("body.", "neck.", "head.")),
    (99, ("stem.", "body.", "neck.", "head.")),
    ("all", ("stem.", "body.", "neck.", "head.")),
])
def test_unfreeze_the_last_n_groups(n, prefixes):
    model = freeze(TinyBackbone())
    unfreeze(model, n)
    assert _trainable(model) == _params_of(model, *prefixes)


def test_unfreeze_also_refreezes_earlier_groups():
    model = unfreeze(TinyBackbone(), "all")
    unfreeze(model, 1)
    assert frozen_groups(model) == ["stem", "stage1", "stage2", "stage3"]


def test_models_without_groups_and_bad_counts_are_refused():
    with pytest.raises(ModelError, match="layer_groups"):
        freeze(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="group count"):
        unfreeze(TinyBackbone(), -1)


def test_discriminative_lrs_are_geometric_over_trainable_groups():
    model = unfreeze(freeze(TinyBackbone()), 3)  # stage2, stage3, neck, head
    groups = discriminative_param_groups(model, lr=1e-2, lr_ratio=1e-3)
    assert [g["name"] for g in groups] == ["stage2", "stage3", "neck", "head"]
    lrs = [g["lr"] for g in groups]
    assert lrs[0] == pytest.approx(1e-5) and lrs[-1] == pytest.approx(1e-2)
    steps = [b / a for a, b in zip(lrs, lrs[1:])]
    assert steps == pytest.approx([10.0, 10.0, 10.0])
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert in_groups == {id(p) for p in model.parameters() if p.requires_grad}
    assert sum(len(g["params"]) for g in groups) == len(in_groups)  # no parameter twice
    torch.optim.AdamW(groups)  # torch accepts them as they are


def test_explicit_lrs_by_list_or_name():
    model = unfreeze(TinyBackbone(), 1)  # neck, head
    assert [g["lr"] for g in discriminative_param_groups(model, 1e-3, lrs=[1e-4, 5e-4])] == [1e-4, 5e-4]
    by_name = discriminative_param_groups(model, 1e-3, lrs={"neck": 2e-4, "head": 1e-3})
    assert [g["lr"] for g in by_name] == [2e-4, 1e-3]
    with pytest.raises(ValueError, match="2 trainable groups"):
        discriminative_param_groups(model, 1e-3, lrs=[1e-4])
    assert [g["lr"] for g in discriminative_param_groups(freeze(model), 1e-3)] == [1e-3]


def test_ungrouped_trainable_params_join_the_last_group():
    model = unfreeze(TinyBackbone(), "all")
    model.temperature = nn.Parameter(torch.ones(1))
    groups = discriminative_param_groups(model, 1e-3)
    assert any(p is model.temperature for p in groups[-1]["params"])


def _bn_layers(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_set_train_mode_keeps_frozen_batch_norm_in_eval():
    model = unfreeze(freeze(TinyBackbone()), 1)
    set_train_mode(model)
    groups = model.layer_groups()
    for name in ("stem", "stage1", "stage2", "stage3"):
        assert not any(bn.training for bn in _bn_layers(groups[name]))
    assert all(bn.training for bn in _bn_layers(groups["neck"]))
    assert model.training and model.stem.conv.training  # only batch norm stays in eval


def test_set_train_mode_without_groups_looks_at_each_batch_norm():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))
    for p in model[1].parameters():
        p.requires_grad_(False)
    set_train_mode(model)
    assert not model[1].training and model[3].training


def test_learner_training_keeps_frozen_running_stats():
    from heron.train import Learner

    torch.manual_seed(0)
    model = unfreeze(freeze(TinyBackbone()), 1)
    x = torch.randn(64, 3, 8, 8) * 3 + 1  # far from the running stats' initial (0, 1)
    y = torch.randint(0, 3, (64,))
    dl = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    frozen_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(("neck", "head"))}
    neck_mean = model.neck.bn.running_mean.clone()
    Learner(model, dl, lr=1e-2, quiet=True).fit(1)
    for key, value in model.state_dict().items():
        if key in frozen_before:
            assert torch.equal(value, frozen_before[key]), key
    assert not torch.equal(model.neck.bn.running_mean, neck_mean)  # the trainable group's BN did learn
    assert math.isfinite(model.neck.bn.running_var.sum().item())
