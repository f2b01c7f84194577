"""One-cycle and cosine schedules give torch's own scheduler numbers where the definitions coincide."""

from __future__ import annotations

import pytest
import torch

from _train_helpers import TinyNet, make_loaders
from heron.train import Callback, Learner, Schedule
from heron.train.schedules import one_cycle_factor


def _torch_one_cycle(max_lr: float, total: int, pct_start: float, sgd: bool = True):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=max_lr, momentum=0.9) if sgd else torch.optim.AdamW([param], lr=max_lr)
    # OneCycleLR ends at max/(div*final_div); ours ends at max/1e4, i.e. final_div = 1e4 / 25.
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total, pct_start=pct_start,
                                                anneal_strategy="cos", div_factor=25.0, final_div_factor=400.0,
                                                three_phase=False, base_momentum=0.85, max_momentum=0.95)
    lrs, moms = [], []
    for _ in range(total):
        group = opt.param_groups[0]
        lrs.append(group["lr"])
        moms.append(group["momentum"] if sgd else group["betas"][0])
        opt.step()
        sched.step()
    return lrs, moms


@pytest.mark.parametrize("total,pct_start", [(40, 0.25), (37, 0.3), (100, 0.1)])
def test_one_cycle_matches_torch_one_cycle_lr(total, pct_start):
    schedule = Schedule("one_cycle", total, pct_start)
    ours = [1e-2 * schedule.factor(i) for i in range(total)]
    moms = [schedule.momentum(i) for i in range(total)]
    ref_lrs, ref_moms = _torch_one_cycle(1e-2, total, pct_start)
    assert ours == pytest.approx(ref_lrs, rel=1e-9, abs=1e-15)
    assert moms == pytest.approx(ref_moms, rel=1e-9)


def test_one_cycle_shape():
    total, pct = 40, 0.25
    factors = [one_cycle_factor(i, total, pct) for i in range(total)]
    peak = int(pct * total) - 1
    assert factors[0] == pytest.approx(1 / 25)
    assert factors[peak] == pytest.approx(1.0) and max(factors) == factors[peak]
    assert factors[-1] == pytest.approx(1e-4)
    assert all(a <= b for a, b in zip(factors[:peak], factors[1 : peak + 1]))
    assert all(a >= b for a, b in zip(factors[peak:], factors[peak + 1 :]))


def test_cosine_matches_torch_cosine_annealing():
    total, max_lr = 30, 0.5
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=max_lr)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - 1, eta_min=max_lr * 1e-4)
    expected = []
    for _ in range(total):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    schedule = Schedule("cosine", total)
    assert [max_lr * schedule.factor(i) for i in range(total)] == pytest.approx(expected, rel=1e-9)
    assert Schedule("constant", total).factor(17) == 1.0


class LrLog(Callback):
    def __init__(self):
        self.lrs, self.betas = [], []

    def before_batch(self, learner):
        group = learner.opt.param_groups[-1]
        self.lrs.append(group["lr"])
        self.betas.append(group["betas"][0])


def test_learner_applies_one_cycle_per_batch():
    train, valid = make_loaders(n_train=80)  # 5 batches per epoch
    log = LrLog()
    Learner(TinyNet(), train, valid, callbacks=[log], quiet=True).fit(4, lr=3e-3, pct_start=0.3)
    ref_lrs, ref_betas = _torch_one_cycle(3e-3, 20, 0.3, sgd=False)
    assert log.lrs == pytest.approx(ref_lrs, rel=1e-9)
    assert log.betas == pytest.approx(ref_betas, rel=1e-9)
    assert log.lrs[-1] == pytest.approx(3e-3 / 1e4)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="pct_start"):
        Schedule("one_cycle", 10, 1.5)
    with pytest.raises(ValueError, match="unknown schedule"):
        Schedule("step", 10)
