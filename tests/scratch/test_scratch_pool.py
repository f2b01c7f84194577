"""numpy pooling against torch.nn.functional and autograd (float64)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from heron.scratch.pool import (
    avg_pool2d,
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool,
    global_avg_pool_backward,
    max_pool2d_backward,
    max_pool2d_forward,
)

# (input shape, kernel, stride, padding)
CASES = [
    ((2, 3, 8, 8), 2, None, 0),
    ((2, 3, 7, 7), 3, 2, 1),
    ((1, 2, 9, 6), (3, 2), (2, 1), (1, 0)),
    ((2, 2, 10, 10), 3, 1, 0),  # overlapping windows share inputs
    ((1, 1, 5, 5), 5, 1, 2),
]


def _run_torch(fn, x, dout, kernel, stride, padding):
    xt = torch.tensor(x, requires_grad=True)
    out = fn(xt, kernel, stride=stride if stride is not None else kernel, padding=padding)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("shape,kernel,stride,padding", CASES)
def test_max_pool_matches_autograd(shape, kernel, stride, padding, rel_error, check_numeric):
    x = np.random.default_rng(0).standard_normal(shape)
    out, cache = max_pool2d_forward(x, kernel, stride, padding)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    ref_out, ref_dx = _run_torch(F.max_pool2d, x, dout, kernel, stride, padding)
    assert rel_error(out, ref_out) == 0.0
    dx = max_pool2d_backward(dout, cache)
    assert rel_error(dx, ref_dx) <= 1e-7
    check_numeric(lambda: float(np.sum(max_pool2d_forward(x, kernel, stride, padding)[0] * dout)), x, dx)


@pytest.mark.parametrize("shape,kernel,stride,padding", CASES)
def test_avg_pool_matches_autograd(shape, kernel, stride, padding, rel_error, check_numeric):
    x = np.random.default_rng(0).standard_normal(shape)
    out, cache = avg_pool2d_forward(x, kernel, stride, padding)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    ref_out, ref_dx = _run_torch(F.avg_pool2d, x, dout, kernel, stride, padding)
    assert rel_error(out, ref_out) <= 1e-12
    dx = avg_pool2d_backward(dout, cache)
    assert rel_error(dx, ref_dx) <= 1e-7
    check_numeric(lambda: float(np.sum(avg_pool2d(x, kernel, stride, padding) * dout)), x, dx)


def test_max_pool_course_example():
    x = np.array([[1, 3, 2, 1], [2, 9, 1, 1], [1, 3, 2, 3], [5, 6, 1, 2]], dtype=np.float64)[None, None]
    out, cache = max_pool2d_forward(x, 2)
    assert out[0, 0].tolist() == [[9, 2], [6, 3]]
    dx = max_pool2d_backward(np.ones_like(out), cache)[0, 0]
    assert dx.sum() == 4 and dx[1, 1] == 1 and dx[0, 2] == 1 and dx[3, 1] == 1 and dx[2, 3] == 1


def test_global_average_pool_matches_autograd(rel_error):
    x = np.random.default_rng(0).standard_normal((2, 5, 4, 3))
    xt = torch.tensor(x, requires_grad=True)
    ref = F.adaptive_avg_pool2d(xt, 1).flatten(1)
    dout = np.random.default_rng(1).standard_normal((2, 5))
    ref.backward(torch.tensor(dout))
    assert rel_error(global_avg_pool(x), ref.detach().numpy()) <= 1e-12
    assert rel_error(global_avg_pool_backward(dout, x.shape), xt.grad.numpy()) <= 1e-7


def test_padding_larger_than_half_the_kernel_is_refused():
    with pytest.raises(ValueError, match="half the kernel"):
        max_pool2d_forward(np.zeros((1, 1, 4, 4)), 2, 1, 2)
