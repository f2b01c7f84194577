"""Checkpoints, exact resume, and the NaN / Ctrl-C paths that must never lose a finished epoch."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from _train_helpers import TinyNet, assert_same_weights, make_loaders, weights
from heron.errors import TrainingError
from heron.train import Callback, Checkpoint, EarlyStopping, Learner, MetricsLogger, checkpoint_info
from heron.train.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state


class InterruptAt(Callback):
    """Raises KeyboardInterrupt (what Ctrl-C raises) after a given batch of a given epoch."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def after_batch(self, learner):
        if learner.epoch == self.epoch and learner.batch_idx + 1 == self.batch:
            raise KeyboardInterrupt


class EpochWeights(Callback):
    """Keeps a copy of the weights at the end of every epoch."""

    def __init__(self) -> None:
        self.by_epoch = {}

    def before_fit(self, learner):
        self.by_epoch[0] = weights(learner.model)

    def after_epoch(self, learner):
        self.by_epoch[learner.epoch] = weights(learner.model)


def _learner(callbacks=(), seed=0, optimizer="adamw", **kw):
    random.seed(seed)  # the data adds numpy and Python noise: every generator starts from the seed
    np.random.seed(seed)
    torch.manual_seed(seed)
    model = TinyNet(dropout=0.2)
    train, valid = make_loaders(noisy=True)
    return Learner(model, train, valid, lr=1e-2, optimizer=optimizer, callbacks=callbacks, quiet=True, **kw)


def _strip_seconds(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_resume_reaches_exactly_the_uninterrupted_weights(tmp_path, optimizer):
    reference = _learner(optimizer=optimizer)
    ref_history = reference.fit(3)

    ckpt = tmp_path / "ckpt"
    first = _learner([Checkpoint(ckpt), MetricsLogger(tmp_path), InterruptAt(epoch=2, batch=3)], optimizer=optimizer)
    with pytest.raises(TrainingError, match=r"interrupted at epoch 2; progress saved in .*ckpt; continue with --resume"):
        first.fit(3)
    assert checkpoint_info(ckpt) == {"phase": "head", "epoch": 1, "epochs": 3, "schedule": "one_cycle",
                                     "finished": False}

    with open(tmp_path / "metrics.jsonl", "a") as fh:  # as if a crash hit between the log line and the save
        fh.write(json.dumps({"phase": "head", "epoch": 2, "train_loss": -1.0}) + "\n")
    # a different init and RNG states: the checkpoint must restore them all
    resumed = _learner([Checkpoint(ckpt), MetricsLogger(tmp_path)], seed=123, optimizer=optimizer)
    history = resumed.fit(3, resume=ckpt)
    assert_same_weights(weights(reference.model), weights(resumed.model))
    assert _strip_seconds(history) == _strip_seconds(ref_history)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert [r["train_loss"] for r in lines] == pytest.approx([r["train_loss"] for r in ref_history])
    assert checkpoint_info(ckpt)["finished"]


def test_resume_of_a_finished_run_only_loads_it(tmp_path):
    done = _learner([Checkpoint(tmp_path)])
    done.fit(2)
    again = _learner([Checkpoint(tmp_path)], seed=5)
    history = again.fit(2, resume=tmp_path / "last.state.pt")
    assert len(history) == 2
    assert_same_weights(weights(done.model), weights(again.model))


def test_resume_with_other_settings_is_refused(tmp_path):
    _learner([Checkpoint(tmp_path)]).fit(1)
    with pytest.raises(TrainingError, match="resume with the same settings"):
        _learner().fit(2, resume=tmp_path)
    with pytest.raises(TrainingError, match="phase 'head'"):
        _learner().fit(1, phase="full", resume=tmp_path)
    with pytest.raises(TrainingError, match="missing"):
        _learner().fit(1, resume=tmp_path / "nowhere.state.pt")
    with pytest.raises(TrainingError, match="not a checkpoint"):
        _learner().fit(1, resume=tmp_path / "nowhere")


def test_checkpoint_files_are_plain_tensors(tmp_path):
    learner = _learner([Checkpoint(tmp_path)])
    learner.fit(2)
    state = torch.load(tmp_path / "last.state.pt", weights_only=True)
    assert state["epoch"] == 2 and state["phase"] == "head"
    assert isinstance(state["history"], str) and len(json.loads(state["history"])) == 2
    assert {"torch", "numpy", "python"} <= set(state["rng"])
    assert state["optimizer"]["state"]  # Adam moments are there
    saved = load_file(str(tmp_path / "last.safetensors"))
    assert_same_weights(saved, {k: v.cpu() for k, v in learner.model.state_dict().items()})
    assert not list(tmp_path.glob("*.tmp"))


def test_mismatched_weights_and_state_are_reported(tmp_path):
    learner = _learner([Checkpoint(tmp_path)])
    learner.fit(1)
    snapshot = load_checkpoint(tmp_path)
    save_checkpoint(tmp_path / "other", snapshot)
    (tmp_path / "other" / "last.safetensors").replace(tmp_path / "last.safetensors")
    with pytest.raises(TrainingError, match="different saves"):
        load_checkpoint(tmp_path)


def test_rng_state_round_trip():
    state = get_rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2:] == b[2:]


class NanAt(nn.Module):
    """Cross-entropy that returns NaN at one global training step."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step, self.calls = step, 0

    def forward(self, pred, target):
        loss = nn.functional.cross_entropy(pred, target)
        if pred.requires_grad:
            self.calls += 1
            if self.calls == self.step:
                return loss * float("nan")
        return loss


def test_nan_loss_keeps_the_last_good_epoch(tmp_path):
    snaps = EpochWeights()
    learner = _learner([Checkpoint(tmp_path), snaps], loss_fn=NanAt(step=8 + 5))  # 8 batches per epoch
    with pytest.raises(TrainingError, match=r"loss became NaN at epoch 2, batch 5; kept the weights of epoch 1 in "
                                            r".*; lower the learning rate \(try lr_find\)"):
        learner.fit(3)
    assert_same_weights(load_file(str(tmp_path / "last.safetensors")), snaps.by_epoch[1])
    assert_same_weights(weights(learner.model), snaps.by_epoch[1])
    assert len(learner.history) == 1 and checkpoint_info(tmp_path)["epoch"] == 1


def test_a_diverging_lr_raises_a_training_error(tmp_path):
    snaps = EpochWeights()
    learner = _learner([Checkpoint(tmp_path), snaps], optimizer="sgd")
    with pytest.raises(TrainingError, match=r"loss became (NaN|inf) at epoch \d+, batch \d+; kept the weights of epoch"):
        learner.fit(3, lr=1e6, schedule="constant")
    kept = checkpoint_info(tmp_path)["epoch"]
    assert_same_weights(load_file(str(tmp_path / "last.safetensors")), snaps.by_epoch[kept])
    assert all(torch.isfinite(v).all() for v in learner.model.state_dict().values())


def test_nan_without_a_checkpoint_folder_still_restores():
    snaps = EpochWeights()
    learner = _learner([snaps], loss_fn=NanAt(step=3))
    with pytest.raises(TrainingError, match=r"batch 3; kept the weights of epoch 0; lower"):
        learner.fit(2)
    assert_same_weights(weights(learner.model), snaps.by_epoch[0])


def test_ctrl_c_saves_the_finished_epoch_not_the_half_done_one(tmp_path):
    snaps = EpochWeights()
    learner = _learner([Checkpoint(tmp_path), snaps, InterruptAt(epoch=3, batch=4)])
    with pytest.raises(TrainingError, match="interrupted at epoch 3"):
        learner.fit(4)
    assert_same_weights(load_file(str(tmp_path / "last.safetensors")), snaps.by_epoch[2])
    assert_same_weights(weights(learner.model), snaps.by_epoch[2])
    state = torch.load(tmp_path / "last.state.pt", weights_only=True)
    assert state["epoch"] == 2 and len(json.loads(state["history"])) == 2


def test_ctrl_c_without_a_checkpoint_folder():
    snaps = EpochWeights()
    learner = _learner([snaps, InterruptAt(epoch=2, batch=1)])
    with pytest.raises(TrainingError) as info:
        learner.fit(3)
    assert str(info.value) == "interrupted at epoch 2; the model holds the weights of epoch 1 (no checkpoint folder)"
    assert_same_weights(weights(learner.model), snaps.by_epoch[1])


def test_ctrl_c_during_validation_keeps_the_previous_epoch(tmp_path):
    snaps = EpochWeights()

    class StopInValidation(Callback):
        def before_validate(self, learner):
            if learner.epoch == 2:
                raise KeyboardInterrupt

    learner = _learner([Checkpoint(tmp_path), snaps, StopInValidation()])
    with pytest.raises(TrainingError, match="interrupted at epoch 2"):
        learner.fit(3)
    assert checkpoint_info(tmp_path)["epoch"] == 1
    assert_same_weights(weights(learner.model), snaps.by_epoch[1])


def test_other_errors_propagate_unchanged():
    class Broken(Callback):
        def after_batch(self, learner):
            raise RuntimeError("bug in a callback")

    with pytest.raises(RuntimeError, match="bug in a callback"):
        _learner([Broken()]).fit(1)


def _constant_metric(probs, targets):
    return 0.5


def test_early_stopping_stops_after_patience_epochs():
    stopper = EarlyStopping(monitor="valid__constant_metric", patience=2)
    learner = _learner([stopper], metrics=("accuracy", _constant_metric))
    history = learner.fit(10, schedule="constant")
    assert len(history) == 3  # epoch 1 sets the best, 2 and 3 do not beat it
    assert stopper.stopped_epoch == 3 and stopper.monitor.mode == "max"


def test_early_stopping_lets_an_improving_run_finish():
    history = _learner([EarlyStopping(monitor="train_loss", patience=1)]).fit(4)
    assert len(history) == 4


def test_early_stopping_names_a_missing_metric():
    with pytest.raises(TrainingError, match="monitors 'valid_f9'"):
        _learner([EarlyStopping(monitor="valid_f9")]).fit(1)


def test_checkpoint_keeps_the_best_epoch(tmp_path):
    values = iter([0.3, 0.9, 0.5])

    def scripted(probs, targets):
        return next(values)

    snaps = EpochWeights()
    learner = _learner([Checkpoint(tmp_path, monitor="valid_scripted", save_best=True), snaps],
                       metrics=(scripted,))
    learner.fit(3)
    assert json.loads((tmp_path / "best.json").read_text())["epoch"] == 2
    assert_same_weights(load_file(str(tmp_path / "best.safetensors")), snaps.by_epoch[2])
    assert_same_weights(load_file(str(tmp_path / "last.safetensors")), snaps.by_epoch[3])


def test_metrics_logger_writes_one_json_line_per_epoch(tmp_path):
    _learner([MetricsLogger(tmp_path / "run")], metrics=("accuracy", "error_rate")).fit(2, phase="head")
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 2
    for epoch, row in enumerate(rows, start=1):
        assert {"phase", "epoch", "train_loss", "valid_loss", "valid_accuracy", "valid_error_rate", "lr",
                "seconds"} <= set(row)
        assert row["phase"] == "head" and row["epoch"] == epoch
        assert row["valid_accuracy"] + row["valid_error_rate"] == pytest.approx(1.0)


def test_checkpoints_of_fast_epochs_are_spaced_but_the_last_and_a_cancel_are_kept(tmp_path, monkeypatch):
    from heron.train import checkpoint as checkpoint_module

    saved = []
    real_save = checkpoint_module.save_checkpoint
    monkeypatch.setattr(checkpoint_module, "save_checkpoint", lambda d, s: (saved.append(s["epoch"]), real_save(d, s)))
    train_dl, valid_dl = make_loaders()
    torch.manual_seed(0)
    learner = Learner(TinyNet(), train_dl, valid_dl, lr=1e-2, quiet=True,
                      callbacks=[Checkpoint(tmp_path / "a", every_seconds=3600)])
    learner.fit(6)
    assert saved == [6]  # milliseconds an epoch: only the finished fit is written
    assert load_checkpoint(tmp_path / "a")["epoch"] == 6

    saved.clear()
    learner = Learner(TinyNet(), train_dl, valid_dl, lr=1e-2, quiet=True,
                      callbacks=[Checkpoint(tmp_path / "b", every_seconds=3600), InterruptAt(epoch=4, batch=2)])
    with pytest.raises(TrainingError, match="--resume"):
        learner.fit(6)
    assert saved and saved[-1] == 3 and load_checkpoint(tmp_path / "b")["epoch"] == 3

    saved.clear()
    learner = Learner(TinyNet(), train_dl, valid_dl, lr=1e-2, quiet=True,
                      callbacks=[Checkpoint(tmp_path / "c", every_seconds=0)])
    learner.fit(3)
    assert saved == [1, 2, 3]  # every_seconds=0: after every epoch
