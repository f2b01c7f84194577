"""The numpy LeNet-5: same gradients as the torch network, and it learns the digits."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from heron.scratch.functional import cross_entropy, cross_entropy_grad
from heron.scratch.lenet import lenet5, load_digits_32, train_lenet
from heron.scratch.modules import BatchNorm, Conv2d, Dense, Dropout, Flatten, Sequential


def _torch_lenet(activation, pool):
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    Pool = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), act(), Pool(2), nn.Conv2d(6, 16, 5), act(), Pool(2), nn.Flatten(),
        nn.Linear(400, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, 10),
    ).double()


@pytest.mark.parametrize("activation,pool", [("relu", "max"), ("tanh", "avg")])
def test_lenet_gradients_match_the_torch_network(activation, pool, rel_error):
    ours = lenet5(activation=activation, pool=pool, seed=1)
    theirs = _torch_lenet(activation, pool)
    params = ours.parameters()
    with torch.no_grad():
        for p, value in zip(theirs.parameters(), params.values(), strict=True):
            p.copy_(torch.tensor(value))
    assert sum(p.numel() for p in theirs.parameters()) == sum(v.size for v in params.values()) == 61_706

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 1, 32, 32)), rng.integers(0, 10, size=4)
    logits = ours.forward(x)
    ours.backward(cross_entropy_grad(logits, y))
    ref = theirs(torch.tensor(x))
    loss = nn.functional.cross_entropy(ref, torch.tensor(y))
    loss.backward()
    assert rel_error(logits, ref.detach().numpy()) <= 1e-12
    assert abs(cross_entropy(logits, y) - loss.item()) <= 1e-12
    for (name, value), (_, p) in zip(ours.gradients().items(), theirs.named_parameters(), strict=True):
        assert rel_error(value, p.grad.numpy()) <= 1e-7, name


def test_sequential_with_batchnorm_and_dropout_matches_torch(rel_error):
    rng = np.random.default_rng(0)
    ours = Sequential(Conv2d(2, 3, 3, padding=1, rng=rng), BatchNorm(3), Flatten(), Dense(48, 5, rng=rng), Dropout(0.0))
    theirs = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(48, 5)).double()
    with torch.no_grad():
        for p, value in zip(theirs.parameters(), ours.parameters().values(), strict=True):
            p.copy_(torch.tensor(value))
    x, dout = rng.standard_normal((3, 2, 4, 4)), rng.standard_normal((3, 5))
    out = ours.forward(x)
    ours.backward(dout)
    ref = theirs(torch.tensor(x))
    ref.backward(torch.tensor(dout))
    assert rel_error(out, ref.detach().numpy()) <= 1e-12
    for (name, value), p in zip(ours.gradients().items(), theirs.parameters(), strict=True):
        if name == "0.bias":  # batch norm subtracts the mean, so a bias before it gets no gradient
            assert np.abs(value).max() < 1e-12 and p.grad.abs().max() < 1e-12
        else:
            assert rel_error(value, p.grad.numpy()) <= 1e-7, name
    x2 = rng.standard_normal((2, 2, 4, 4))
    assert rel_error(ours.forward(x2, train=False), theirs.eval()(torch.tensor(x2)).detach().numpy()) <= 1e-12


def test_digits_are_padded_to_32x32_and_split_stratified():
    x_tr, y_tr, x_va, y_va = load_digits_32()
    assert x_tr.shape[1:] == x_va.shape[1:] == (1, 32, 32)
    assert len(x_tr) + len(x_va) == 1797
    assert abs(x_tr.mean()) < 1e-9 and abs(x_tr.std() - 1) < 1e-9
    assert np.all(x_tr[:, :, :4] == x_tr[0, 0, 0, 0])  # the padding border is background
    assert np.bincount(y_va).min() >= 35


def test_numpy_lenet_learns_the_digits():
    history = train_lenet(seed=0)  # defaults: 4 epochs, batch 16, lr 0.01, momentum 0.9
    assert len(history.val_acc) == 4
    assert history.val_acc[-1] >= 0.95, history.val_acc
    assert history.train_loss[-1] < 0.25 * history.train_loss[0]
