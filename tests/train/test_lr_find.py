"""lr_find sweeps exponentially, stops on divergence, suggests a sane lr, and leaves no trace."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _train_helpers import TinyNet, assert_same_weights, make_loaders, weights
from heron.train import Learner
from heron.train.checkpoint import clone_to_cpu
from heron.train.lr_find import suggest


def test_lr_find_restores_model_optimizer_and_rng():
    train, valid = make_loaders()
    learner = Learner(TinyNet(dropout=0.1), train, valid, quiet=True)
    learner.fit(1)  # the optimizer now has moments worth protecting
    model_before = weights(learner.model)
    opt_before = clone_to_cpu(learner.opt.state_dict())
    opt_obj = learner.opt
    rng_before = torch.get_rng_state()
    result = learner.lr_find(num_iter=60)
    assert_same_weights(model_before, weights(learner.model))
    assert learner.opt is opt_obj
    opt_after = learner.opt.state_dict()
    for key, state in opt_before["state"].items():
        for name, value in state.items():
            assert torch.equal(value, opt_after["state"][key][name]), name
    assert [g["lr"] for g in opt_after["param_groups"]] == [g["lr"] for g in opt_before["param_groups"]]
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert len(result.lrs) == len(result.losses) >= 10


def test_lr_find_without_a_previous_fit_leaves_no_optimizer():
    train, _ = make_loaders()
    learner = Learner(TinyNet(), train, quiet=True)
    before = weights(learner.model)
    learner.lr_find(num_iter=30)
    assert learner.opt is None
    assert_same_weights(before, weights(learner.model))


def test_sweep_is_exponential_stops_on_divergence_and_suggests_a_sane_lr(tmp_path):
    train, _ = make_loaders()
    learner = Learner(TinyNet(), train, optimizer="sgd", quiet=True)
    result = learner.lr_find(start_lr=1e-5, end_lr=1e3, num_iter=100)
    ratios = np.diff(np.log(result.lrs))
    assert ratios == pytest.approx(np.full_like(ratios, math.log(1e8) / 99))
    assert len(result.lrs) < 100  # SGD at lr ~1e2 blows up long before the end
    finite = [x for x in result.losses if math.isfinite(x)]
    assert not math.isfinite(result.losses[-1]) or result.losses[-1] > 4 * min(finite)
    assert 1e-4 < result.suggestion < 3.0
    assert result.suggestion < result.lrs[int(np.nanargmin(result.losses))]
    png = result.plot(tmp_path / "lr_find.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_suggestion_rules():
    lrs = [10.0**e for e in np.linspace(-6, 0, 13)]
    losses = [2.0, 1.99, 1.95, 1.8, 1.2, 0.9, 0.8, 0.75, 0.74, 0.8, 1.5, 3.0, 9.0]
    steepest, min_div10 = suggest(lrs, losses)
    assert steepest == lrs[4]  # the largest drop per decade is around index 4
    assert min_div10 == pytest.approx(lrs[8] / 10)
    assert suggest(lrs[:3], [1.0, 2.0, 3.0]) == (None, pytest.approx(lrs[0] / 10))
