"""Wang et al.'s (2017) series nets, `fcn` and `conv1d_resnet`: shapes, parameter counts, and a functional reference.

(torch.allclose rather than torch.testing.assert_close: importing torch.testing costs seconds here.)
"""

import pytest
import torch
import torch.nn.functional as F

from heron.models import build, names


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_both_are_registered():
    assert {"fcn", "conv1d_resnet", "conv1d_net"} <= set(names("*"))
    assert "conv1d_resnet" not in names("resnet*")  # that pattern means the ImageNet ResNets


def test_fcn_has_the_papers_layers_and_parameter_count():
    model = build("fcn", num_classes=2)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [(1, 128, 8), (128, 256, 5),
                                                                                (256, 128, 3)]
    conv = 1 * 128 * 8 + 128 * 256 * 5 + 256 * 128 * 3  # no conv bias: BN follows
    bn = 2 * (128 + 256 + 128)
    assert n_params(model) == conv + bn + 128 * 2 + 2


@pytest.mark.parametrize("length", [1, 37, 150])
def test_fcn_keeps_the_length_at_every_stage_and_pools_it_away(length):
    model = build("fcn", num_classes=3, include_top=False).eval()
    x = torch.randn(2, 1, length)
    assert [tuple(s.shape) for s in model.stages(x)] == [(2, 256, length), (2, 128, length)]
    assert model(x).shape == (2, 128, length)
    assert build("fcn", num_classes=3).eval()(x).shape == (2, 3)


def _reference_fcn(model, x):
    """The same network from torch.nn.functional, padding="same" (an even kernel: one more on the right)."""
    blocks = [model.stem, *model.body]
    for block in blocks:
        x = F.conv1d(x, block.conv.weight, padding="same")
        bn = block.bn
        x = F.relu(F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps))
    return F.linear(x.mean(dim=2), model.head.fc.weight, model.head.fc.bias)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # the reference's copy, not ours
def test_fcn_matches_a_functional_reference_with_torchs_same_padding():
    torch.manual_seed(0)
    model = build("fcn", num_classes=4)
    for m in model.modules():  # batch-norm statistics and a classifier that matter
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    torch.nn.init.normal_(model.head.fc.weight)
    model.eval()
    x = torch.randn(3, 1, 41)
    ours, reference = model(x), _reference_fcn(model, x)
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-5), (ours - reference).abs().max()


def test_resnet1d_blocks_shortcuts_and_groups():
    model = build("conv1d_resnet", num_classes=5)
    blocks = list(model.body)
    assert [b.conv1.conv.out_channels for b in blocks] == [64, 128, 128]
    assert [hasattr(b.shortcut, "conv") for b in blocks] == [True, True, False]  # 1x1 conv only where width changes
    groups = model.layer_groups()
    assert list(groups) == ["stage1", "stage2", "stage3", "head"]
    assert sum(n_params(g) for g in groups.values()) == n_params(model)
    assert model.get_submodule(model.first_conv).in_channels == 1
    assert model(torch.randn(2, 1, 30)).shape == (2, 5)


def test_a_residual_block_with_a_silenced_branch_passes_its_shortcut_through():
    torch.manual_seed(0)
    block = build("conv1d_resnet", num_classes=2).body[2].eval()  # 128 -> 128: the shortcut is batch norm alone
    torch.nn.init.zeros_(block.conv3.bn.weight)
    torch.nn.init.zeros_(block.conv3.bn.bias)
    x = torch.randn(2, 128, 20)
    assert torch.allclose(block(x), F.relu(block.shortcut(x)), atol=1e-6)


@pytest.mark.parametrize("name", ["fcn", "conv1d_resnet"])
def test_trains_one_step_and_resets_its_classifier(name):
    torch.manual_seed(0)
    model = build(name, num_classes=2).train()
    x, y = torch.randn(4, 1, 24), torch.tensor([0, 1, 0, 1])
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.reset_classifier(7)
    assert model(x).shape == (4, 7)
