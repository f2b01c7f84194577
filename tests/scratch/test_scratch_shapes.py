"""floor((n + 2p - f) / s + 1), checked against the shapes torch's convolution produces."""

import math

import pytest
import torch
import torch.nn.functional as F

from heron.scratch.conv import conv2d
from heron.scratch.pool import max_pool2d
from heron.scratch.shapes import as_tuple, conv_output_size

GRID = [
    (n, f, p, s)
    for n in (1, 5, 6, 7, 12, 13, 28)
    for f in (1, 2, 3, 5)
    for p in (0, 1, 2)
    for s in (1, 2, 3)
    if n + 2 * p >= f
]


def test_formula_matches_torch_conv_output_shapes():
    for n, f, p, s in GRID:
        x = torch.zeros(1, 1, n, n + 1)
        w = torch.zeros(1, 1, f, f)
        h, wd = F.conv2d(x, w, stride=s, padding=p).shape[2:]
        assert (conv_output_size(n, f, p, s), conv_output_size(n + 1, f, p, s)) == (h, wd), (n, f, p, s)
        assert conv_output_size(n, f, p, s) == math.floor((n + 2 * p - f) / s + 1)


@pytest.mark.parametrize("n,f,p,s", [(32, 5, 0, 1), (28, 2, 0, 2), (224, 3, 1, 1), (227, 11, 0, 4), (6, 3, 0, 1)])
def test_our_layers_use_the_formula(n, f, p, s):
    import numpy as np

    x = np.zeros((1, 1, n, n))
    assert conv2d(x, np.zeros((1, 1, f, f)), stride=s, padding=p).shape[2:] == (conv_output_size(n, f, p, s),) * 2
    if 2 * p <= f:
        assert max_pool2d(x, f, s, p).shape[2:] == (conv_output_size(n, f, p, s),) * 2


def test_course_examples():
    assert conv_output_size(6, 3) == 4  # 6x6 image, 3x3 filter -> 4x4
    assert conv_output_size(7, 3, 0, 2) == 3
    assert conv_output_size(6, 3, (3 - 1) // 2) == 6  # "same" padding p = (f - 1) / 2
    assert conv_output_size(227, 11, 0, 4) == 55  # AlexNet's first layer


@pytest.mark.parametrize("args", [(3, 5, 0, 1), (0, 1, 0, 1), (5, 3, 0, 0), (5, 3, -1, 1)])
def test_impossible_sizes_raise(args):
    with pytest.raises(ValueError):
        conv_output_size(*args)


def test_as_tuple():
    assert as_tuple(2, 3) == (2, 2, 2)
    assert as_tuple((1, 2), 2) == (1, 2)
    with pytest.raises(ValueError):
        as_tuple((1, 2), 3)
