"""Activations, losses, dense, batch norm and dropout against PyTorch (float64)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from heron.scratch import functional as fn
from heron.scratch.layers import (
    batchnorm_backward,
    batchnorm_eval,
    batchnorm_forward,
    dense_backward,
    dense_forward,
    dropout_backward,
    dropout_forward,
    update_running_stats,
)


@pytest.mark.parametrize(
    "ours,deriv,theirs",
    [
        (fn.sigmoid, fn.sigmoid_deriv, torch.sigmoid),
        (fn.tanh, fn.tanh_deriv, torch.tanh),
        (fn.relu, fn.relu_deriv, torch.relu),
    ],
)
def test_activations_and_derivatives_match_autograd(ours, deriv, theirs, rel_error):
    x = np.concatenate([np.random.default_rng(0).standard_normal(50) * 3, [0.0, -800.0, 800.0]])
    xt = torch.tensor(x, requires_grad=True)
    y = theirs(xt)
    y.sum().backward()
    assert rel_error(ours(x), y.detach().numpy()) <= 1e-12
    assert rel_error(deriv(x), xt.grad.numpy()) <= 1e-7
    assert np.all(np.isfinite(ours(x)))


def test_softmax_cross_entropy_and_gradient_match_autograd(rel_error, check_numeric):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 5)) * 4
    labels = rng.integers(0, 5, size=6)
    lt = torch.tensor(logits, requires_grad=True)
    ref = F.cross_entropy(lt, torch.tensor(labels))
    ref.backward()
    assert rel_error(fn.softmax(logits), torch.softmax(torch.tensor(logits), 1).numpy()) <= 1e-12
    assert rel_error(fn.log_softmax(logits), torch.log_softmax(torch.tensor(logits), 1).numpy()) <= 1e-12
    assert abs(fn.cross_entropy(logits, labels) - ref.item()) <= 1e-12
    grad = fn.cross_entropy_grad(logits, labels)
    assert rel_error(grad, lt.grad.numpy()) <= 1e-7
    check_numeric(lambda: fn.cross_entropy(logits, labels), logits, grad)


def test_softmax_backward_matches_autograd(rel_error):
    rng = np.random.default_rng(0)
    z, dout = rng.standard_normal((4, 7)), rng.standard_normal((4, 7))
    zt = torch.tensor(z, requires_grad=True)
    torch.softmax(zt, 1).backward(torch.tensor(dout))
    assert rel_error(fn.softmax_backward(dout, fn.softmax(z)), zt.grad.numpy()) <= 1e-7


def test_softmax_and_cross_entropy_survive_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [-5000.0, 5000.0, 0.0]])
    labels = np.array([0, 2])
    assert np.allclose(fn.softmax(logits).sum(axis=1), 1.0)
    loss = fn.cross_entropy(logits, labels)
    ref = F.cross_entropy(torch.tensor(logits), torch.tensor(labels)).item()
    assert np.isfinite(loss) and abs(loss - ref) <= 1e-9 * ref
    assert np.all(np.isfinite(fn.cross_entropy_grad(logits, labels)))


def test_euclidean_and_mse_match_autograd(rel_error):
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    for ours, grad, theirs in [
        (fn.mse, fn.mse_grad, lambda p, t: F.mse_loss(p, t)),
        (fn.euclidean, fn.euclidean_grad, lambda p, t: 0.5 * ((p - t) ** 2).sum()),
    ]:
        pt = torch.tensor(pred, requires_grad=True)
        ref = theirs(pt, torch.tensor(target))
        ref.backward()
        assert abs(ours(pred, target) - ref.item()) <= 1e-12
        assert rel_error(grad(pred, target), pt.grad.numpy()) <= 1e-7


def test_one_hot():
    assert fn.one_hot(np.array([[2, 0]]), 3).tolist() == [[[0, 0, 1], [1, 0, 0]]]


def test_dense_matches_torch_linear(rel_error, check_numeric):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((5, 7)), rng.standard_normal((3, 7)), rng.standard_normal(3)
    dout = rng.standard_normal((5, 3))
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ref = F.linear(xt, wt, bt)
    ref.backward(torch.tensor(dout))
    assert rel_error(dense_forward(x, w, b), ref.detach().numpy()) <= 1e-12
    dx, dw, db = dense_backward(dout, x, w)
    for ours, theirs in [(dx, xt), (dw, wt), (db, bt)]:
        assert rel_error(ours, theirs.grad.numpy()) <= 1e-7
    check_numeric(lambda: float(np.sum(dense_forward(x, w, b) * dout)), w, dw)


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 5, 6)])
def test_batchnorm_training_matches_autograd(shape, rel_error, check_numeric):
    rng = np.random.default_rng(0)
    c = shape[1]
    x = rng.standard_normal(shape) * 3 + 2
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    dout = rng.standard_normal(shape)
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    ref = F.batch_norm(xt, None, None, gt, bt, training=True, eps=1e-5)
    ref.backward(torch.tensor(dout))

    out, cache = batchnorm_forward(x, gamma, beta, eps=1e-5)
    assert rel_error(out, ref.detach().numpy()) <= 1e-12
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    assert rel_error(dx, xt.grad.numpy()) <= 1e-7
    assert rel_error(dgamma, gt.grad.numpy()) <= 1e-7
    assert rel_error(dbeta, bt.grad.numpy()) <= 1e-7

    def loss():
        return float(np.sum(batchnorm_forward(x, gamma, beta)[0] * dout))

    check_numeric(loss, x, dx)
    check_numeric(loss, gamma, dgamma)


def test_batchnorm_running_statistics_and_eval_mode_match_torch(rel_error):
    rng = np.random.default_rng(0)
    bn = torch.nn.BatchNorm2d(3, momentum=0.1).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(rng.standard_normal(3)))
        bn.bias.copy_(torch.tensor(rng.standard_normal(3)))
    gamma, beta = bn.weight.detach().numpy().copy(), bn.bias.detach().numpy().copy()
    mean, var = np.zeros(3), np.ones(3)
    for _ in range(3):
        x = rng.standard_normal((4, 3, 5, 5)) * 2 + 1
        bn.train()(torch.tensor(x))
        _, cache = batchnorm_forward(x, gamma, beta)
        mean, var = update_running_stats(mean, var, cache, momentum=0.1)
    assert rel_error(mean, bn.running_mean.numpy()) <= 1e-12
    assert rel_error(var, bn.running_var.numpy()) <= 1e-12
    x = rng.standard_normal((2, 3, 5, 5))
    ref = bn.eval()(torch.tensor(x)).detach().numpy()
    assert rel_error(batchnorm_eval(x, gamma, beta, mean, var), ref) <= 1e-12


def test_inverted_and_classical_dropout_agree_in_expectation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20) + 3
    p, draws = 0.4, 40_000
    batch = np.broadcast_to(x, (draws, 20))
    inverted_train, _ = dropout_forward(batch, p, rng, train=True, inverted=True)
    classical_train, _ = dropout_forward(batch, p, rng, train=True, inverted=False)
    inverted_test, _ = dropout_forward(x, p, rng, train=False, inverted=True)
    classical_test, _ = dropout_forward(x, p, rng, train=False, inverted=False)
    assert np.array_equal(inverted_test, x)  # nothing to do at test time
    assert np.allclose(classical_test, (1 - p) * x)
    # each flavour's training output averages to its own test-time output
    assert np.allclose(inverted_train.mean(axis=0), inverted_test, rtol=0.03)
    assert np.allclose(classical_train.mean(axis=0), classical_test, rtol=0.03)
    # and the two differ only by the constant 1 / (1 - p)
    assert np.allclose(classical_test / (1 - p), inverted_test)
    assert abs((inverted_train == 0).mean() - p) < 0.01


def test_dropout_backward_uses_the_forward_mask():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 10))
    out, mult = dropout_forward(x, 0.5, rng)
    dx = dropout_backward(np.ones_like(x), mult)
    assert np.array_equal(dx == 0, out == 0)
    assert np.allclose(dx[dx != 0], 2.0)
    with pytest.raises(ValueError):
        dropout_forward(x, 1.0, rng)
