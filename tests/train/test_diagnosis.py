"""diagnose(): underfitting, overfitting, good fit or unknown, from synthetic histories."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path


from heron.train import diagnosis
from heron.train.diagnosis import Diagnosis, diagnose

OVERFIT_ORDER = ("more data", "data augmentation", "an architecture that generalises", "regularisation",
                 "reduce complexity")
UNDERFIT_ORDER = ("less regularisation", "a bigger head", "deeper fine-tuning", "train longer")


def _history(train, valid, acc=None, phase="head", train_acc=None, first_epoch=1):
    rows = []
    for i, (t, v) in enumerate(zip(train, valid)):
        row = {"phase": phase, "epoch": first_epoch + i, "train_loss": t, "valid_loss": v,
               "valid_accuracy": acc[i] if acc else None, "lr": 1e-3, "seconds": 0.1}
        if train_acc is not None:
            row["train_accuracy"] = train_acc[i]
        rows.append(row)
    return rows


def _starts(items, prefixes):
    assert len(items) == len(prefixes), items
    for item, prefix in zip(items, prefixes):
        assert item.startswith(prefix), (item, prefix)


# ---------------------------------------------------------------- overfitting


def test_classic_u_shaped_valid_loss_is_overfitting():
    train = [0.9, 0.6, 0.4, 0.28, 0.2, 0.14, 0.1, 0.07, 0.05, 0.035, 0.025, 0.02]
    valid = [0.8, 0.55, 0.42, 0.38, 0.39, 0.41, 0.44, 0.46, 0.48, 0.5, 0.51, 0.52]
    d = diagnose(_history(train, valid), num_classes=10, train_images=500)
    assert isinstance(d, Diagnosis) and d.verdict == "overfitting"
    rise = d.reasons[0]
    assert "from its best 0.38 at epoch 4" in rise and "kept falling" in rise
    assert "to 0.51 (median of the last 3 epochs; 0.52 at epoch 12)" in rise and "34%" in rise
    _starts(d.remedies, OVERFIT_ORDER)
    assert "--epochs 4" in d.remedies[-1]  # stop where valid loss was best
    assert d.line.startswith("diagnosis: overfitting (valid loss up 34% from its best at epoch 4")
    assert "; try: more data, augmentation" in d.line and "\n" not in d.line


def test_large_loss_gap_is_overfitting_even_with_a_flat_valid_loss():
    train = [0.5, 0.2, 0.08, 0.04, 0.03, 0.02]
    valid = [0.5, 0.42, 0.41, 0.41, 0.41, 0.41]
    d = diagnose(_history(train, valid), num_classes=2, train_images=200)
    assert d.verdict == "overfitting"
    assert any("gap train loss 0.020 / valid 0.41" in r for r in d.reasons)
    assert "train 0.020 vs valid 0.41" in d.line


def test_accuracy_gap_is_overfitting_and_allows_for_small_validation_sets():
    train, valid = [1.0, 0.6, 0.4, 0.38], [1.0, 0.7, 0.55, 0.54]
    hist = _history(train, valid, acc=[0.6, 0.7, 0.78, 0.78], train_acc=[0.6, 0.8, 0.9, 0.92])
    d = diagnose(hist, num_classes=10, train_images=500)
    assert d.verdict == "overfitting" and "accuracy 0.92 / valid 0.78" in d.reasons[0]
    # 14 points apart is noise on 20 validation images (two standard errors are 0.19)
    assert diagnose(hist, num_classes=10, train_images=500, valid_images=20).verdict == "good fit"
    # the eval-mode train accuracy passed in wins over the record's
    d = diagnose(hist, num_classes=10, train_images=500, train_eval={"accuracy": 0.8, "loss": 0.35})
    assert d.verdict == "good fit"


def test_fine_tuning_that_makes_validation_worse_is_overfitting_and_names_the_head_phase():
    head = _history([0.7, 0.4, 0.3, 0.25], [0.6, 0.35, 0.26, 0.24])
    ft = _history([0.2, 0.12, 0.08, 0.05], [0.3, 0.33, 0.36, 0.37], phase="finetune")
    d = diagnose(head + ft, num_classes=2, train_images=300, config={"unfreeze": "2", "finetune_epochs": 4})
    assert d.verdict == "overfitting"
    assert "best 0.24 at head epoch 4, before finetune began" in d.reasons[0]
    assert "finetune made validation worse" in d.reasons[0]
    assert "--unfreeze 1" in d.remedies[-1] and "--finetune-epochs" in d.remedies[-1]
    assert "--augment photo" in d.remedies[1]


# ---------------------------------------------------------------- good fit: no false alarms


def test_tiny_train_loss_and_perfect_train_accuracy_with_stable_valid_loss_is_a_good_fit():
    train = [0.6, 0.2, 0.08, 0.03, 0.015, 0.01]
    valid = [0.4, 0.15, 0.1, 0.085, 0.08, 0.08]
    hist = _history(train, valid, acc=[0.9, 0.95, 0.97, 0.975, 0.975, 0.975], train_acc=[0.85, 0.97, 0.99, 1, 1, 1])
    d = diagnose(hist, num_classes=2, train_images=400, final={"accuracy": 0.975, "log_loss": 0.08},
                 train_eval={"accuracy": 1.0, "loss": 0.01})
    assert d.verdict == "good fit", d.reasons
    assert d.remedies == []
    assert d.line == "diagnosis: good fit (train 0.010 vs valid 0.080; accuracy 1.00 / 0.97)"
    assert d.reasons[0].startswith("train (eval mode) loss 0.010 and valid loss 0.080")


def test_valid_loss_drifting_up_a_little_is_not_overfitting():
    # a real 60-epoch run: best 0.124, then a slow 11% (0.014) drift up
    train = [0.65, 0.29, 0.12, 0.05, 0.02, 0.01, 0.005, 0.004, 0.004, 0.003]
    valid = [0.6, 0.24, 0.15, 0.126, 0.124, 0.128, 0.132, 0.137, 0.138, 0.138]
    d = diagnose(_history(train, valid), num_classes=2, train_images=244)
    assert d.verdict == "good fit", d.reasons
    assert "valid loss 11% above its best" in d.line


def test_one_valid_spike_at_the_end_is_not_overfitting():
    train = [0.9, 0.5, 0.3, 0.2, 0.15, 0.12, 0.1, 0.09]
    valid = [0.8, 0.45, 0.3, 0.25, 0.24, 0.25, 0.24, 0.45]  # the last epoch alone jumps
    d = diagnose(_history(train, valid), num_classes=5, train_images=300)
    assert d.verdict == "good fit", d.reasons
    assert "valid loss 0.25" in d.reasons[0]  # the gap test sees the smoothed end, not the spike
    # short runs too: the lower of the last two counts
    d = diagnose(_history([0.9, 0.5, 0.3, 0.2], [0.8, 0.3, 0.25, 0.6]), num_classes=5, train_images=300)
    assert d.verdict == "good fit"


def test_noisy_valid_loss_around_a_plateau_is_not_overfitting():
    train = [0.9, 0.5, 0.3, 0.22, 0.18, 0.15, 0.13, 0.12, 0.11, 0.1]
    valid = [0.8, 0.4, 0.3, 0.27, 0.33, 0.26, 0.31, 0.27, 0.32, 0.28]
    assert diagnose(_history(train, valid), num_classes=5, train_images=300).verdict == "good fit"


def test_two_elevated_epochs_at_the_end_of_a_short_run_do_count():
    train = [0.9, 0.5, 0.3, 0.2, 0.15]
    valid = [0.8, 0.3, 0.25, 0.33, 0.34]
    assert diagnose(_history(train, valid), num_classes=5, train_images=300).verdict == "overfitting"


def test_both_losses_rising_is_unstable_training_not_a_fit():
    train = [0.9, 0.5, 0.4, 0.6, 0.8, 0.9]
    valid = [0.8, 0.45, 0.4, 0.55, 0.7, 0.8]
    d = diagnose(_history(train, valid), num_classes=10, train_images=300, config={"lr": 0.03})
    assert d.verdict == "unknown"
    assert d.reasons[0].endswith("and train loss rose too (0.40 -> 0.90): "
                                 "not overfitting but unstable training; the learning rate may be too high")
    assert d.remedies == ["a lower learning rate: --lr 0.01; --lr-find to pick --lr"]


# ---------------------------------------------------------------- underfitting


def test_many_classes_little_data_few_steps_is_underfitting_despite_good_accuracy():
    # 40 classes x 7 images, 5 epochs of 5 batches: accuracy is fine, the losses are near chance
    train = [3.6, 3.3, 2.95, 2.6, 2.37]
    valid = [3.5, 3.2, 2.9, 2.6, 2.45]
    hist = _history(train, valid, acc=[0.3, 0.6, 0.75, 0.83, 0.87])
    d = diagnose(hist, num_classes=40, train_images=280, steps=25, final={"accuracy": 0.87, "log_loss": 2.45},
                 config={"epochs": 5, "head": "gap", "dropout": None, "weight_decay": 0.01})
    assert d.verdict == "underfitting"
    assert d.reasons[0].startswith("train loss 2.37 vs chance 3.69 after 25 optimizer steps (7 images per class)")
    _starts(d.remedies, UNDERFIT_ORDER)
    assert "--dropout 0.1" in d.remedies[0] and "--weight-decay 0.001" in d.remedies[0]
    assert "--head dense --hidden 1024" in d.remedies[1]
    assert "--unfreeze 2" in d.remedies[2] and "--epochs 20" in d.remedies[3] and "--lr-find" in d.remedies[3]
    assert d.line.startswith("diagnosis: underfitting (train loss 2.37 vs chance 3.69 after 25 optimizer steps")


def test_train_loss_near_chance_and_still_falling_is_underfitting():
    train = [0.69, 0.67, 0.64]
    valid = [0.69, 0.66, 0.62]
    d = diagnose(_history(train, valid), num_classes=2, train_images=100)
    assert d.verdict == "underfitting" and d.reasons[0].startswith("train loss 0.64 vs chance 0.69 after 3 epochs")
    assert "still 92% of chance" in d.reasons[0] and len(d.reasons) == 1  # falling, but by under 10%


def test_not_converged_low_loss_still_falling_is_underfitting():
    train = [1.2, 0.9, 0.7, 0.55, 0.45]
    valid = [1.1, 0.85, 0.7, 0.6, 0.52]
    d = diagnose(_history(train, valid), num_classes=10, train_images=1000)
    assert d.verdict == "underfitting"
    assert d.reasons == ["not converged: the last epoch cut train loss 18% (0.55 -> 0.45) and valid loss 13% "
                         "to a new best 0.52 at epoch 5"]
    # once converged, the same level is a good fit
    flat = _history(train + [0.43, 0.42], valid + [0.51, 0.51])
    assert diagnose(flat, num_classes=10, train_images=1000).verdict == "good fit"


def test_underfit_fine_tuning_is_judged_on_its_own_phase_and_mentions_the_head():
    head = _history([3.0, 2.6, 2.4], [2.9, 2.6, 2.4])
    ft = _history([2.3, 2.2, 2.1], [2.3, 2.2, 2.1], phase="finetune")
    d = diagnose(head + ft, num_classes=20, train_images=400,
                 config={"unfreeze": "all", "finetune_epochs": 3, "augment": "photo", "weight_decay": 0.01})
    assert d.verdict == "underfitting"
    assert any(r == "head phase ended at train loss 2.40" for r in d.reasons)
    assert "--augment light" in d.remedies[0]
    assert "every stage already trains" in d.remedies[2] and "--finetune-epochs 6" in d.remedies[3]


def test_overfitting_wins_over_a_high_train_loss():
    # train loss still high, but valid is far worse than train: more training would not help
    train = [3.0, 2.0, 1.4, 1.0, 0.8, 0.7]
    valid = [3.0, 2.4, 2.3, 2.6, 2.9, 3.1]
    assert diagnose(_history(train, valid), num_classes=40, train_images=280).verdict == "overfitting"


# ---------------------------------------------------------------- real runs (heron train, losses rounded)

# hymenoptera (2 classes, 244 train / 153 valid images), gap head, 30 epochs at --lr 0.03
HYM_30_EPOCHS_HIGH_LR = (
    [0.578, 0.294, 0.112, 0.064, 0.03, 0.018, 0.007, 0.003, 0.003, 0.002, 0.001, 0.002, 0.001, 0.001, 0.001,
     0.002, 0.001, 0.001, 0.001, 0.001, 0.001, 0.0, 0.001, 0.001, 0.001, 0.001, 0.0, 0.001, 0.0, 0.001],
    [0.409, 0.181, 0.135, 0.138, 0.163, 0.178, 0.164, 0.172, 0.179, 0.198, 0.209, 0.206, 0.198, 0.194, 0.193,
     0.192, 0.192, 0.192, 0.192, 0.192, 0.192, 0.192, 0.192, 0.193, 0.193, 0.193, 0.193, 0.193, 0.193, 0.193],
)
# Yale faces (15 classes, 124 train / 30 valid), gap head, 40 epochs at --lr 0.03: valid accuracy 0.967
YALE_40_EPOCHS = (
    [2.722, 2.537, 2.224, 1.744, 1.132, 0.629, 0.294, 0.156, 0.07, 0.037, 0.019, 0.014, 0.011, 0.009, 0.006,
     0.005, 0.004, 0.004, 0.006, 0.003, 0.002, 0.003, 0.003, 0.003, 0.003, 0.003, 0.002, 0.003, 0.003, 0.002,
     0.003, 0.003, 0.003, 0.003, 0.003, 0.004, 0.002, 0.002, 0.002, 0.002],
    [2.61, 2.371, 1.973, 1.412, 0.858, 0.49, 0.302, 0.216, 0.177, 0.159, 0.148, 0.142, 0.131, 0.119, 0.106,
     0.095, 0.086, 0.08, 0.076, 0.073, 0.07, 0.069, 0.068, 0.067, 0.066, 0.066, 0.066, 0.066, 0.066, 0.066,
     0.066, 0.066, 0.066, 0.066, 0.066, 0.066, 0.066, 0.066, 0.066, 0.066],
)
# the same faces, the default 5 epochs (15 optimizer steps): valid accuracy 0.733
YALE_5_EPOCHS = ([2.737, 2.589, 2.314, 2.125, 2.039], [2.649, 2.423, 2.233, 2.139, 2.13])


def test_real_runs():
    d = diagnose(_history(*HYM_30_EPOCHS_HIGH_LR), num_classes=2, train_images=244, valid_images=153,
                 final={"accuracy": 0.935, "log_loss": 0.193})
    assert d.verdict == "overfitting" and "from its best 0.14 at epoch 3" in d.reasons[0]
    d = diagnose(_history(*YALE_40_EPOCHS), num_classes=15, train_images=124, valid_images=30,
                 final={"accuracy": 0.967, "log_loss": 0.066}, train_eval={"accuracy": 1.0, "loss": 0.002})
    assert d.verdict == "good fit", d.reasons
    d = diagnose(_history(*YALE_5_EPOCHS), num_classes=15, train_images=124, steps=15,
                 final={"accuracy": 0.733, "log_loss": 2.13})
    assert d.verdict == "underfitting" and d.reasons[0].startswith("train loss 2.04 vs chance 2.71 after 15")
    # head then fine-tuning on hymenoptera: fine-tuning helped, a good fit
    head = _history([0.647, 0.383, 0.2, 0.146, 0.13], [0.506, 0.26, 0.189, 0.171, 0.169])
    ft = _history([0.136, 0.065, 0.06], [0.123, 0.116, 0.118], phase="finetune")
    d = diagnose(head + ft, num_classes=2, train_images=244)
    assert d.verdict == "good fit" and d.reasons[-1] == "finetune took valid loss from 0.17 (head epoch 5) to 0.12"


# ---------------------------------------------------------------- unknown and odd input


def test_single_epoch_or_no_valid_loss_is_unknown():
    d = diagnose(_history([0.5], [0.4]), num_classes=2, train_images=10)
    assert d.verdict == "unknown" and "only 1 epoch" in d.reasons[0] and d.line.startswith("diagnosis: unknown")
    d = diagnose(_history([0.5, 0.4], [None, float("nan")]), num_classes=2, train_images=10)
    assert d.verdict == "unknown" and "no validation loss" in d.reasons[0]
    assert diagnose([], num_classes=2).verdict == "unknown"
    no_valid_key = [{"phase": "head", "epoch": i, "train_loss": 0.5} for i in (1, 2)]
    assert diagnose(no_valid_key, num_classes=2).verdict == "unknown"


def test_records_read_back_from_json_work_and_the_result_is_json_safe():
    train = [0.9, 0.6, 0.4, 0.28, 0.2, 0.14, 0.1, 0.07]
    valid = [0.8, 0.55, 0.42, 0.38, 0.45, 0.5, 0.55, 0.6]
    hist = json.loads(json.dumps(_history(train, valid)))
    hist.insert(2, {"note": "not an epoch"})
    d = diagnose(hist, num_classes=10, train_images=500)
    assert d.verdict == "overfitting"
    back = json.loads(json.dumps(d.to_dict()))
    assert back["verdict"] == "overfitting" and back["line"] == d.line == str(d)


def test_verdicts_and_remedy_orders_are_the_documented_ones():
    assert diagnosis.VERDICTS == ("underfitting", "overfitting", "good fit", "unknown")
    over = diagnosis._overfit_remedies(None, None, None, finetune=False)
    under = diagnosis._underfit_remedies(None, finetune=False)
    _starts([long for _, long in over], OVERFIT_ORDER)
    _starts([long for _, long in under], UNDERFIT_ORDER)
    assert "--precompute-aug 4" in over[1][1] and "--dropout 0.5" in over[3][1] and "--patience" in over[3][1]
    assert "lower --dropout" in under[0][1]
    for flag in ("--augment", "--precompute-aug", "--dropout", "--weight-decay", "--epochs"):
        assert flag in " ".join(long for _, long in over)
    for flag in ("--head dense", "--hidden", "--unfreeze", "--epochs", "--lr-find"):
        assert flag in " ".join(long for _, long in under)


def test_chance_is_per_label_for_multilabel():
    train, valid = [0.7, 0.5, 0.45], [0.7, 0.5, 0.45]
    # 0.45 is far from chance ln(20) = 3.0 but most of ln 2 = 0.69 per label
    assert diagnose(_history(train, valid), num_classes=20).verdict == "good fit"
    d = diagnose(_history(train, valid), num_classes=20, multilabel=True)
    assert d.verdict == "underfitting" and f"chance {math.log(2):.2f}" in d.reasons[0]


def test_the_module_imports_without_torch_or_numpy():
    path = Path(diagnosis.__file__)
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('diagnosis', {str(path)!r})\n"
        "mod = importlib.util.module_from_spec(spec); sys.modules['diagnosis'] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "print(mod.diagnose([{'train_loss': 1.0, 'valid_loss': 1.0}] * 2, num_classes=3).verdict)\n"
        "print('torch' in sys.modules, 'numpy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[1] == "False False", out
