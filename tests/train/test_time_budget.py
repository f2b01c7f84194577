"""TimeBudget: a run stops before another epoch would pass its minutes, and keeps what it finished."""

import time
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from heron.errors import TrainingError
from heron.train import Learner, TimeBudget


def _learner(epoch: int, epochs: int = 10):
    return SimpleNamespace(epoch=epoch, epochs=epochs, start_epoch=0, stop_training=False)


def test_stops_only_when_another_epoch_of_the_mean_length_would_run_over():
    budget = TimeBudget(minutes=1.0)
    learner = _learner(epoch=2)
    budget.started = time.perf_counter() - 30.0  # two epochs of 15 s: a third ends near 45 s
    budget.after_epoch(learner)
    assert not learner.stop_training and not budget.hit
    budget.started = time.perf_counter() - 50.0  # two of 25 s: a third would end past 60 s
    budget.after_epoch(learner)
    assert learner.stop_training and budget.hit


def test_the_last_epoch_is_not_counted_as_a_stop():
    budget = TimeBudget(minutes=0.01)
    budget.started = time.perf_counter() - 60.0
    learner = _learner(epoch=10, epochs=10)
    budget.after_epoch(learner)
    assert not budget.hit


def test_a_fit_under_a_tiny_budget_ends_after_one_epoch():
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    data = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    budget = TimeBudget(minutes=1e-6)
    learner = Learner(nn.Linear(4, 2), data, data, callbacks=[budget], quiet=True)
    learner.fit(5, lr=1e-2)
    assert budget.hit and len(learner.history) == 1


def test_a_budget_must_be_positive():
    with pytest.raises(TrainingError, match="more than 0"):
        TimeBudget(0)
