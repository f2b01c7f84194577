"""The blocks under the classic families: residual, bottleneck, separable, inverted residual.

Multiplication counts are checked against the worked examples of the course
notes; shapes, shortcuts and the residual identity against direct arithmetic.
"""

import math

import pytest
import torch
from torch import nn

from heron.nn import (
    BasicBlock,
    Bottleneck,
    BottleneckConv,
    ConvBnAct,
    DepthwiseSeparable,
    InvertedResidual,
    init_weights,
    projection_shortcut,
)


def multiplications(module: nn.Module, x: torch.Tensor) -> int:
    """Multiplications of every convolution in `module` for one input (weights per output value)."""
    total = 0

    def count(conv, _inputs, output):
        nonlocal total
        per_output = conv.weight.shape[1] * math.prod(conv.kernel_size)  # (in / groups) * k * k
        total += output[0].numel() * per_output

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, nn.Conv2d)]
    module(x)
    for hook in hooks:
        hook.remove()
    return total


def zero_last_bn(block: nn.Module, last: ConvBnAct) -> None:
    """Make the residual branch output zero so the block is exactly its shortcut (+ ReLU)."""
    nn.init.zeros_(last.bn.weight)
    nn.init.zeros_(last.bn.bias)
    block.eval()


def test_depthwise_separable_costs_what_the_notes_say():
    x = torch.randn(1, 3, 4, 4)  # 4x4 outputs with "same" padding, as the notes' 6x6 valid example
    separable = DepthwiseSeparable(3, 5)
    assert multiplications(separable, x) == 432 + 240 == 672
    assert multiplications(ConvBnAct(3, 5, 3), x) == 2160
    assert separable.dw.conv.groups == 3 and separable(x).shape == (1, 5, 4, 4)


def test_one_by_one_bottleneck_cuts_the_5x5_cost_by_ninety_percent():
    x = torch.empty(1, 192, 28, 28, device="meta")
    with torch.device("meta"):
        direct = ConvBnAct(192, 32, 5)
        reduced = BottleneckConv(192, 16, 32, kernel_size=5)
    assert multiplications(direct, x) == 28 * 28 * 32 * 5 * 5 * 192  # 120.4M
    assert multiplications(reduced, x) == 28 * 28 * 16 * 192 + 28 * 28 * 32 * 5 * 5 * 16  # 2.4M + 10.0M
    assert multiplications(reduced, x) / multiplications(direct, x) < 0.11
    assert reduced(x).shape == (1, 32, 28, 28)


def test_basic_block_is_its_shortcut_when_the_residual_is_zero():
    block = BasicBlock(16, 16)
    assert isinstance(block.shortcut, nn.Identity)
    zero_last_bn(block, block.conv2)
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_basic_block_adds_the_residual_to_the_input():
    block = BasicBlock(8, 8).eval()
    x = torch.randn(2, 8, 6, 6)
    residual = block.conv2(block.conv1(x))
    torch.testing.assert_close(block(x), torch.relu(residual + x))


def test_strided_block_projects_its_shortcut():
    block = BasicBlock(16, 32, stride=2)
    assert isinstance(block.shortcut, ConvBnAct)
    assert block.shortcut.conv.kernel_size == (1, 1) and block.shortcut.conv.stride == (2, 2)
    assert block(torch.randn(2, 16, 9, 9)).shape == (2, 32, 5, 5)


def test_bottleneck_strides_on_the_3x3_and_expands_four_times():
    block = Bottleneck(64, 32, stride=2)
    assert [c.conv.kernel_size for c in (block.conv1, block.conv2, block.conv3)] == [(1, 1), (3, 3), (1, 1)]
    assert block.conv1.conv.stride == (1, 1) and block.conv2.conv.stride == (2, 2)
    assert block(torch.randn(2, 64, 8, 8)).shape == (2, 128, 4, 4)
    same = Bottleneck(128, 32)
    assert isinstance(same.shortcut, nn.Identity)
    zero_last_bn(same, same.conv3)
    x = torch.randn(2, 128, 4, 4)
    torch.testing.assert_close(same(x), torch.relu(x))


def test_projection_shortcut_only_when_shapes_change():
    assert isinstance(projection_shortcut(8, 8, 1), nn.Identity)
    assert isinstance(projection_shortcut(8, 16, 1), ConvBnAct)
    assert isinstance(projection_shortcut(8, 8, 2), ConvBnAct)


@pytest.mark.parametrize(
    "in_chs, out_chs, stride, ratio, residual",
    [(16, 16, 1, 6, True), (16, 24, 1, 6, False), (16, 16, 2, 6, False), (32, 16, 1, 1, False)],
)
def test_inverted_residual_shapes_and_residual_rule(in_chs, out_chs, stride, ratio, residual):
    block = InvertedResidual(in_chs, out_chs, stride, ratio).eval()
    assert block.use_residual is residual
    assert block.dw.conv.groups == in_chs * ratio == block.dw.conv.out_channels
    assert isinstance(block.expand, nn.Identity) is (ratio == 1)
    assert isinstance(block.project.act, nn.Identity)  # linear bottleneck
    x = torch.randn(2, in_chs, 8, 8)
    out = block(x)
    assert out.shape == (2, out_chs, 8 // stride, 8 // stride)
    branch = block.project(block.dw(block.expand(x)))
    torch.testing.assert_close(out, branch + x if residual else branch)
    assert (branch < 0).any()  # no ReLU after the projection


def test_blocks_backpropagate_like_autograd_on_doubles():
    block = InvertedResidual(4, 4, 1, 2).double().eval()
    x = torch.randn(1, 4, 5, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))


def test_init_weights_is_he_normal_fan_out():
    conv = nn.Conv2d(64, 256, 3)
    bn, fc = nn.BatchNorm2d(4), nn.Linear(64, 10)
    model = nn.Sequential(conv, bn, fc)
    nn.init.constant_(bn.weight, 3.0)
    init_weights(model)
    expected_std = math.sqrt(2.0 / (256 * 3 * 3))
    assert abs(conv.weight.std().item() - expected_std) / expected_std < 0.05
    assert torch.all(conv.bias == 0) and torch.all(bn.weight == 1) and torch.all(fc.bias == 0)
    assert abs(fc.weight.std().item() - 0.01) < 0.002
