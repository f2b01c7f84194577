"""The Learner's precision: fp32 changes nothing, bf16 trains on the CPU, fp16 is refused there."""

import pytest
import torch

from heron.nn.precision import PrecisionError
from heron.train import Learner

from _train_helpers import TinyNet, make_loaders


def _fit(**kwargs):
    torch.manual_seed(0)
    model = TinyNet()
    train, valid = make_loaders()
    learner = Learner(model, train, valid, lr=1e-2, quiet=True, **kwargs)
    history = learner.fit(3)
    return learner, history


def test_fp32_gives_exactly_the_weights_of_no_precision_argument(monkeypatch):
    plain, plain_history = _fit()

    def no_autocast(*args, **kwargs):
        raise AssertionError("fp32 must not enter autocast")

    monkeypatch.setattr(torch, "autocast", no_autocast)  # fp32 is the plain eager path, nothing wrapped
    fp32, fp32_history = _fit(precision="fp32")
    assert fp32.amp_dtype is None
    for (name, a), (_, b) in zip(plain.model.state_dict().items(), fp32.model.state_dict().items()):
        assert torch.equal(a, b), name
    assert [h["train_loss"] for h in plain_history] == [h["train_loss"] for h in fp32_history]


def test_bf16_on_the_cpu_trains_under_autocast():
    learner, history = _fit(precision="bf16")
    assert learner.amp_dtype == torch.bfloat16 and not learner.scaler.is_enabled()
    xb, yb = next(iter(learner.train_dl))
    pred, _ = learner.forward_loss(xb, yb)
    assert pred.dtype == torch.bfloat16  # the forward really ran in bf16
    assert next(learner.model.parameters()).dtype == torch.float32  # master weights stay fp32
    losses = [h["train_loss"] for h in history]
    assert losses[-1] < losses[0] * 0.8
    assert history[-1]["valid_accuracy"] > 0.8


def test_fp16_on_the_cpu_is_refused():
    train, valid = make_loaders()
    with pytest.raises(PrecisionError, match="fp16 needs a GPU"):
        Learner(TinyNet(), train, valid, quiet=True, precision="fp16")


def test_auto_resolves_on_the_learners_device(monkeypatch):
    from heron.nn import precision

    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    train, valid = make_loaders()
    assert Learner(TinyNet(), train, valid, quiet=True, precision="auto").precision == "fp32"
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    assert Learner(TinyNet(), train, valid, quiet=True, precision="auto").amp_dtype == torch.bfloat16
