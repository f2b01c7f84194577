"""Folding batch norm into convolutions changes no output."""

import torch

from heron.models import build
from heron.nn.fuse import fold_batchnorm
from heron.nn.layers import ConvBnAct


def test_folded_model_gives_the_same_logits():
    model = build("efficientnet_lite0").eval()
    for module in model.modules():  # make the BN statistics matter
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        folded = fold_batchnorm(model)
        got = folded(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules() if not isinstance(m, torch.nn.BatchNorm1d))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_fold_keeps_conv_without_bn_alone():
    block = ConvBnAct(3, 4, bn=False).eval()
    before = [p.clone() for p in block.parameters()]
    fold_batchnorm(block)
    assert all(torch.equal(a, b) for a, b in zip(before, block.parameters()))
