"""SGD, Adam and gradient clipping against torch.optim and torch.nn.utils."""

import numpy as np
import pytest
import torch

from heron.scratch.optim import SGD, Adam, clip_by_norm, clip_by_value, global_norm


def _params_and_grads(seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(4)]
    return params, grads


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (lambda: SGD(lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
        (
            lambda: SGD(lr=0.1, momentum=0.9, weight_decay=0.01),
            lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
        ),
        (lambda: Adam(lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    ],
)
def test_optimisers_follow_torch_step_for_step(ours, theirs, rel_error):
    params, grads = _params_and_grads()
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    opt, topt = ours(), theirs(list(tparams.values()))
    for g in grads:
        opt.step(params, g)
        for k, t in tparams.items():
            t.grad = torch.tensor(g[k])
        topt.step()
    for k in params:
        assert rel_error(params[k], tparams[k].detach().numpy()) <= 1e-12


def test_clip_by_norm_matches_torch(rel_error):
    _, grads = _params_and_grads()
    g = grads[0]
    tensors = [torch.zeros(v.shape, dtype=torch.float64, requires_grad=True) for v in g.values()]
    for t, v in zip(tensors, g.values(), strict=True):
        t.grad = torch.tensor(v)
    ref_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm=1.5)
    clipped, norm = clip_by_norm(g, 1.5)
    assert abs(norm - ref_norm.item()) <= 1e-12
    for t, v in zip(tensors, clipped.values(), strict=True):
        assert rel_error(v, t.grad.numpy()) <= 1e-12
    assert abs(global_norm(clipped) - 1.5) < 1e-5
    unchanged, _ = clip_by_norm(g, 1e6)  # already small enough: left alone
    assert all(np.array_equal(unchanged[k], g[k]) for k in g)


def test_clip_by_value_matches_torch():
    _, grads = _params_and_grads()
    g = grads[0]
    tensors = [torch.zeros(v.shape, dtype=torch.float64, requires_grad=True) for v in g.values()]
    for t, v in zip(tensors, g.values(), strict=True):
        t.grad = torch.tensor(v)
    torch.nn.utils.clip_grad_value_(tensors, 0.5)
    for t, v in zip(tensors, clip_by_value(g, 0.5).values(), strict=True):
        assert np.array_equal(v, t.grad.numpy())
    assert max(np.abs(v).max() for v in clip_by_value(g, 0.5).values()) == 0.5
