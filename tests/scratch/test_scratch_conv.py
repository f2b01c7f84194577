"""numpy im2col convolution against torch.nn.functional and autograd (float64)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from heron.scratch.conv import (
    col2im,
    conv1d,
    conv2d,
    conv2d_backward,
    conv2d_forward,
    conv2d_naive,
    conv3d,
    im2col,
)
from heron.scratch.shapes import conv_output_size

# (input (N, C, H, W), filters (F, kh, kw), stride, padding)
CASES = [
    ((2, 3, 7, 7), (4, 3, 3), 1, 0),
    ((2, 3, 7, 7), (4, 3, 3), 1, 1),
    ((2, 3, 8, 8), (4, 3, 3), 2, 1),
    ((1, 2, 9, 7), (3, 5, 5), 2, 2),
    ((2, 3, 10, 9), (5, 3, 2), (2, 3), (1, 0)),
    ((3, 4, 6, 6), (2, 1, 1), 1, 0),
    ((1, 1, 11, 11), (2, 4, 4), 3, 2),
]


def _data(x_shape, w_spec, seed=0):
    rng = np.random.default_rng(seed)
    f, kh, kw = w_spec
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((f, x_shape[1], kh, kw))
    b = rng.standard_normal(f)
    return x, w, b


@pytest.mark.parametrize("x_shape,w_spec,stride,padding", CASES)
def test_conv2d_forward_and_backward_match_autograd(x_shape, w_spec, stride, padding, rel_error):
    x, w, b = _data(x_shape, w_spec)
    out, cache = conv2d_forward(x, w, b, stride, padding)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ref = F.conv2d(xt, wt, bt, stride=stride, padding=padding)
    assert out.shape == tuple(ref.shape)
    assert rel_error(out, ref.detach().numpy()) <= 1e-12

    dout = np.random.default_rng(1).standard_normal(out.shape)
    ref.backward(torch.tensor(dout))
    dx, dw, db = conv2d_backward(dout, cache)
    assert rel_error(dx, xt.grad.numpy()) <= 1e-7
    assert rel_error(dw, wt.grad.numpy()) <= 1e-7
    assert rel_error(db, bt.grad.numpy()) <= 1e-7


@pytest.mark.parametrize("x_shape,w_spec,stride,padding", CASES[1:4])
def test_conv2d_backward_matches_finite_differences(x_shape, w_spec, stride, padding, check_numeric):
    x, w, b = _data(x_shape, w_spec, seed=2)
    out, cache = conv2d_forward(x, w, b, stride, padding)
    g = np.random.default_rng(3).standard_normal(out.shape)
    dx, dw, db = conv2d_backward(g, cache)

    def loss():
        return float(np.sum(conv2d(x, w, b, stride, padding) * g))

    check_numeric(loss, x, dx)
    check_numeric(loss, w, dw)
    check_numeric(loss, b, db)


def test_conv2d_without_bias_returns_no_bias_gradient(rel_error):
    x, w, _ = _data((1, 2, 5, 5), (3, 3, 3))
    out, cache = conv2d_forward(x, w, None, 1, 1)
    assert rel_error(out, F.conv2d(torch.tensor(x), torch.tensor(w), padding=1).numpy()) <= 1e-12
    assert conv2d_backward(np.ones_like(out), cache)[2] is None


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), (3, 2)])
def test_naive_loops_agree_with_im2col(stride, padding, rel_error):
    x, w, b = _data((2, 3, 9, 8), (4, 3, 3))
    assert rel_error(conv2d_naive(x, w, b, stride, padding), conv2d(x, w, b, stride, padding)) <= 1e-12


def test_one_by_one_conv_is_a_dense_layer_on_every_pixel(rel_error):
    x, w, b = _data((2, 32, 5, 5), (8, 1, 1))
    per_pixel = np.einsum("nchw,fc->nfhw", x, w[:, :, 0, 0]) + b[None, :, None, None]
    assert rel_error(conv2d(x, w, b), per_pixel) <= 1e-12


def test_col2im_is_the_adjoint_of_im2col():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6))
    cols = im2col(x, (3, 2), (2, 1), (1, 1))
    y = rng.standard_normal(cols.shape)
    lhs = np.sum(cols * y)
    rhs = np.sum(x * col2im(y, x.shape, (3, 2), (2, 1), (1, 1)))
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 2), (3, 1)])
def test_conv1d_matches_torch(stride, padding, rel_error):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 3, 20)), rng.standard_normal((4, 3, 5)), rng.standard_normal(4)
    ref = F.conv1d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=stride, padding=padding).numpy()
    out = conv1d(x, w, b, stride, padding)
    assert out.shape == ref.shape == (2, 4, conv_output_size(20, 5, padding, stride))
    assert rel_error(out, ref) <= 1e-12


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), ((1, 2, 2), (0, 1, 1))])
def test_conv3d_matches_torch(stride, padding, rel_error):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 2, 6, 7, 7)), rng.standard_normal((3, 2, 3, 3, 3)), rng.standard_normal(3)
    ref = F.conv3d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=stride, padding=padding).numpy()
    assert rel_error(conv3d(x, w, b, stride, padding), ref) <= 1e-12


def test_mismatched_channels_raise():
    with pytest.raises(ValueError, match="does not fit"):
        conv2d(np.zeros((1, 3, 5, 5)), np.zeros((2, 4, 3, 3)))
