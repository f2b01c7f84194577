"""The Learner trains, validates and predicts, fires its events in order, and honours param groups."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _train_helpers import TinyNet, make_data, make_loaders
from heron.errors import TrainingError
from heron.train import Callback, Learner, ProgressBar
from heron.train.callbacks import EVENTS
from heron.transfer.freeze import discriminative_param_groups, freeze, unfreeze


def test_fit_learns_a_separable_problem():
    train, valid = make_loaders()
    learner = Learner(TinyNet(), train, valid, lr=3e-2, quiet=True)
    history = learner.fit(4)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[-1]["valid_accuracy"] >= 0.9
    assert set(history[0]) >= {"phase", "epoch", "train_loss", "valid_loss", "valid_accuracy", "lr", "seconds"}


def test_sgd_learns_too():
    train, valid = make_loaders()
    learner = Learner(TinyNet(), train, valid, optimizer="sgd", lr=0.1, quiet=True)
    history = learner.fit(4, schedule="cosine")
    assert learner.opt.param_groups[0]["momentum"] == 0.9
    assert history[-1]["valid_accuracy"] >= 0.9


def test_validate_and_get_preds_match_a_manual_pass():
    train, valid = make_loaders()
    model = TinyNet()
    learner = Learner(model, train, valid, metrics=("accuracy", "log_loss"), quiet=True)
    learner.fit(1)
    x, y = make_data(64, seed=2)
    model.eval()
    with torch.no_grad():
        logits = model(x)  # (N, 2)
    probs, targets = learner.get_preds(valid)
    assert probs.shape == (64, 2) and torch.equal(targets, y)
    torch.testing.assert_close(probs, torch.softmax(logits, 1))
    out = learner.validate()
    assert out["valid_loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    assert out["valid_accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert out["valid_log_loss"] == pytest.approx(out["valid_loss"], rel=1e-4)


def test_multilabel_uses_sigmoid_and_bce():
    x, y = make_data(64, seed=3)
    targets = torch.stack([y.float(), 1 - y.float(), torch.ones(64)], dim=1)  # (N, 3)
    dl = DataLoader(TensorDataset(x, targets), batch_size=16, shuffle=True)
    vdl = DataLoader(TensorDataset(x, targets), batch_size=16)
    learner = Learner(TinyNet(num_classes=3), dl, vdl, lr=3e-2, multilabel=True, metrics=("accuracy", "f1"), quiet=True)
    assert isinstance(learner.loss_fn, nn.BCEWithLogitsLoss)
    history = learner.fit(4)
    probs, got = learner.get_preds(vdl)
    assert torch.equal(got, targets)
    with torch.no_grad():
        learner.model.eval()
        torch.testing.assert_close(probs, torch.sigmoid(learner.model(x)))
    assert history[-1]["valid_accuracy"] >= 0.9 and history[-1]["valid_f1"] >= 0.9


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def __getattribute__(self, name):
        if name in EVENTS:
            return lambda learner: self.events.append(name)
        return super().__getattribute__(name)


def test_events_fire_in_order_with_the_learner():
    x, y = make_data(8)
    dl = DataLoader(TensorDataset(x, y), batch_size=4)
    rec = Recorder()
    Learner(TinyNet(), dl, dl, callbacks=[rec], quiet=True).fit(1)
    batch = ["before_batch", "after_loss", "after_batch"]
    assert rec.events == ["before_fit", "before_epoch", "before_train", *batch, *batch, "after_train",
                          "before_validate", "after_validate", "after_epoch", "on_checkpoint", "after_fit"]


def test_callbacks_see_learner_state_and_can_stop():
    train, valid = make_loaders()
    seen = []

    class Stopper(Callback):
        def after_batch(self, learner):
            seen.append((learner.epoch, learner.batch_idx, learner.iteration, learner.batch[0].shape[0]))

        def after_epoch(self, learner):
            learner.stop_training = learner.epoch == 2

    history = Learner(TinyNet(), train, valid, callbacks=[Stopper()], quiet=True).fit(5)
    assert len(history) == 2
    assert seen[0] == (1, 0, 1, 16) and seen[-1] == (2, 7, 16, 16)


def test_progress_bar_writes_a_line_per_epoch():
    train, valid = make_loaders(n_train=32)
    out = io.StringIO()
    Learner(TinyNet(), train, valid, callbacks=[ProgressBar(file=out)]).fit(2, phase="head")
    lines = [line for line in out.getvalue().splitlines() if "valid_accuracy" in line]
    assert len(lines) == 2 and "head 2/2" in lines[-1]


def test_quiet_adds_no_progress_bar_and_default_adds_one():
    train, _ = make_loaders(n_train=32)
    assert not any(isinstance(cb, ProgressBar) for cb in Learner(TinyNet(), train, quiet=True).callbacks)
    assert any(isinstance(cb, ProgressBar) for cb in Learner(TinyNet(), train).callbacks)


def test_discriminative_groups_keep_their_ratio_through_the_schedule():
    train, valid = make_loaders(n_train=64)
    model = TinyNet()
    unfreeze(model, "all")
    groups = discriminative_param_groups(model, lr=1e-2, lr_ratio=0.01)
    lrs = []

    class LrRecorder(Callback):
        def before_batch(self, learner):
            lrs.append([g["lr"] for g in learner.opt.param_groups])

    learner = Learner(model, train, valid, param_groups=groups, callbacks=[LrRecorder()], quiet=True)
    learner.fit(2, lr=2e-2)
    peaks = [g["peak_lr"] for g in learner.opt.param_groups]
    assert peaks[-1] == pytest.approx(2e-2) and peaks[0] == pytest.approx(2e-4)
    for step in lrs:
        ratios = [lr / peak for lr, peak in zip(step, peaks)]
        assert ratios == pytest.approx([ratios[0]] * len(ratios))
    assert max(step[-1] for step in lrs) == pytest.approx(2e-2)


def test_a_fully_frozen_model_cannot_train():
    train, _ = make_loaders(n_train=32)
    model = TinyNet()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(TrainingError, match="no trainable parameters"):
        Learner(model, train, quiet=True).fit(1)


def test_frozen_trunk_stays_exactly_as_it_was():
    train, valid = make_loaders()
    model = freeze(TinyNet())
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head")}
    Learner(model, train, valid, lr=1e-2, quiet=True).fit(2)
    after = {k: v for k, v in model.state_dict().items() if not k.startswith("head")}
    for key in before:  # weights and BN running statistics alike
        assert torch.equal(before[key], after[key]), key


def test_unknown_names_are_rejected():
    train, _ = make_loaders(n_train=32)
    with pytest.raises(ValueError, match="optimizer"):
        Learner(TinyNet(), train, optimizer="adagrad", quiet=True)
    with pytest.raises(ValueError, match="metric"):
        Learner(TinyNet(), train, metrics=("auc",), quiet=True)
    with pytest.raises(ValueError, match="schedule"):
        Learner(TinyNet(), train, quiet=True).fit(1, schedule="linear")


def test_channels_last_trains_the_same_problem():
    train, valid = make_loaders()
    learner = Learner(TinyNet(), train, valid, lr=3e-2, channels_last=True, quiet=True)
    assert learner.model.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert learner.fit(3)[-1]["valid_accuracy"] >= 0.9


def test_device_auto_and_amp_off_the_gpu():
    train, _ = make_loaders(n_train=32)
    learner = Learner(TinyNet(), train, device="auto", amp=True, quiet=True)
    assert learner.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if learner.device.type == "cpu":
        assert learner.amp_dtype is None and not learner.scaler.is_enabled()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_amp_on_cuda_trains():
    train, valid = make_loaders()
    learner = Learner(TinyNet(), train, valid, lr=3e-2, device="cuda", amp=True, quiet=True)
    assert learner.amp_dtype in (torch.bfloat16, torch.float16)
    history = learner.fit(4)
    assert history[-1]["valid_accuracy"] >= 0.9
    probs, _ = learner.get_preds(valid)
    assert probs.dtype == torch.float32 and probs.device.type == "cpu"
