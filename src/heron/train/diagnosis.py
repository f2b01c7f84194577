"""Is a training run underfitting, overfitting or a good fit? Read it off the history.

`diagnose(history, num_classes=..., train_images=...)` looks at the per-epoch
records a `Learner` writes (`train_loss`, `valid_loss`, `valid_accuracy`,
optionally `train_accuracy`) and returns a `Diagnosis`: a verdict, the numbers
that led there, and the remedies in the order the course gives them. Pure
Python: it imports neither torch nor numpy, so a report or a CLI can use it
on a metrics.jsonl read back from disk.

The numbers it judges (the last phase of the history: with a head phase then
a fine-tuning phase, the fine-tuning; the first is mentioned where it matters):

- chance = ln(num_classes), the loss of predicting every class equally
  (ln 2 per label when multilabel);
- train loss t: the training set's loss in eval mode when `train_eval` gives
  it, else the last epoch's running train loss (measured with dropout and
  augmentation on, so it overstates t, which keeps the gap tests cautious);
- valid loss v: the end of the phase smoothed, i.e. the median of the last 3
  epochs (phases of 6 or more epochs) or the lower of the last 2, so that one
  spike never counts; `final["log_loss"]` instead when it is lower;
- accuracies likewise: train from `train_eval` or the last epoch's
  `train_accuracy`, valid smoothed (the higher of the last 2) or `final`.

Overfitting: the validation set is clearly worse than the training set, by one
of
  O1  valid loss rose: the smoothed end is >= 15% AND >= 0.04 above the
      lowest valid loss of the epochs before those it smooths, while the train
      loss kept falling (the best may lie in the earlier phase: then
      fine-tuning made validation worse). Both losses rising is no
      overfitting but a learning rate too high, and says so;
  O2  loss gap: v >= 3 t AND v - t >= max(0.2, 0.1 chance): several times the
      train loss and by a margin that matters, so train 0.01 / valid 0.08 is
      not a gap (small absolute gaps never count, however large the ratio);
  O3  accuracy gap: train acc - valid acc >= 0.10 (and >= two standard errors
      of the valid accuracy when `valid_images` is given).
  A train accuracy of 1.0 or a tiny train loss is never evidence on its own.

Underfitting (checked only when there is no overfitting: valid is not much
worse than train, the model simply has not learned enough):
  U1  t >= 0.5 chance: training got less than half way from guessing;
  U2  not converged: t >= 0.1 chance and the last epoch still cut the train
      loss by >= 10% while the valid loss reached a new best >= 3% below the
      previous one: both are still falling, so more training would pay.
  Train accuracy, when known, is reported as support but does not gate: soft
  predictions can rank the right class first (high accuracy) with a loss near
  chance, and that is still underfitting.

Good fit otherwise. Unknown with a reason: no epochs, no valid loss, a
single epoch (a trend needs two), or train and valid loss both rising as O1
measures it (unstable training, not a fit problem: a lower learning rate).

Both lists of remedies follow the course: for overfitting its five steps
(more data, data augmentation, an architecture that generalises well,
regularisation, less complexity); for underfitting the reverse direction
(less regularisation, a bigger head, deeper fine-tuning, longer training or a
higher learning rate). Each names the `heron train` flags that do it, and
with `config` (the run's TrainConfig or its dict) the suggested values start
from the run's own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Diagnosis", "VERDICTS", "diagnose"]

VERDICTS = ("underfitting", "overfitting", "good fit", "unknown")

RISE_REL = 0.15  # O1: valid loss this much above its best (relative) ...
RISE_ABS = 0.04  # ... and by at least this many nats
GAP_RATIO = 3.0  # O2: valid loss at least this many times the train loss ...
GAP_ABS = 0.2  # ... and above it by max(GAP_ABS, GAP_CHANCE * chance)
GAP_CHANCE = 0.1
ACC_GAP = 0.10  # O3: train accuracy minus valid accuracy
UNDER_LEVEL = 0.5  # U1: train loss / chance
TREND_LEVEL = 0.1  # U2: train loss / chance, and ...
TREND_TRAIN_DROP = 0.10  # ... the last epoch cut the train loss by this fraction ...
TREND_VALID_DROP = 0.03  # ... and set a valid-loss best this much below the previous one


@dataclass
class Diagnosis:
    """The verdict on a run, the numbers behind it, and what to try, in order."""

    verdict: str
    reasons: list[str] = field(default_factory=list)
    remedies: list[str] = field(default_factory=list)
    line: str = ""

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "reasons": list(self.reasons),
                "remedies": list(self.remedies), "line": self.line}

    def __str__(self) -> str:
        return self.line


@dataclass
class _Epoch:
    label: str
    phase: Any
    train_loss: float | None
    valid_loss: float | None
    train_acc: float | None
    valid_acc: float | None


@dataclass
class _Finding:
    short: str  # for the one-line summary
    long: str  # for the list of reasons


# ---------------------------------------------------------------- small helpers


def _num(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, None, NaN, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _f(x: float) -> str:
    """A loss or accuracy for a sentence: 2 decimals, 3 below 0.1."""
    return f"{x:.3f}" if abs(x) < 0.1 else f"{x:.2f}"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _window(n: int) -> int:
    """How many of a series' last values make its end: 3 from 6 values on, else 2."""
    return 3 if n >= 6 else 2


def _smooth_end(values: Sequence[float], pick) -> float:
    """The end of a series without its noise: the median of the last 3 values (6 or more
    values), else `pick` (min or max, whichever favours the model) of the last 2."""
    k = _window(len(values))
    return _median(values[-k:]) if k == 3 else pick(values[-k:])


def _setting(config: Any, key: str, default: Any = None) -> Any:
    if config is None:
        return default
    if isinstance(config, Mapping):
        return config.get(key, default)
    return getattr(config, key, default)


def _epochs(history: Sequence[Mapping[str, Any]]) -> list[_Epoch]:
    """The usable records, each labelled "epoch N" (or "<phase> epoch N" with several phases)."""
    rows = [r for r in history if isinstance(r, Mapping)]
    phases = {r.get("phase") for r in rows}
    out = []
    for i, r in enumerate(rows):
        train_loss, valid_loss = _num(r.get("train_loss")), _num(r.get("valid_loss"))
        if train_loss is None and valid_loss is None:
            continue
        epoch = r.get("epoch", i + 1)
        label = f"{r.get('phase')} epoch {epoch}" if len(phases) > 1 else f"epoch {epoch}"
        out.append(_Epoch(label, r.get("phase"), train_loss, valid_loss,
                          _num(r.get("train_accuracy")), _num(r.get("valid_accuracy"))))
    return out


# ---------------------------------------------------------------- the tests


def _rise(all_valid: list[_Epoch], phase: list[_Epoch]) -> tuple[_Finding | None, _Finding | None, int | None]:
    """O1: (overfitting finding, note when both losses rose, best epoch's index in the phase)."""
    valid = [e for e in phase if e.valid_loss is not None]
    k = _window(len(valid))
    if len(valid) < k:
        return None, None, None
    tail = valid[-k:]
    before = all_valid[:len(all_valid) - k]
    if not before:
        return None, None, None
    best = min(before, key=lambda e: e.valid_loss)
    end = _smooth_end([e.valid_loss for e in valid], min)
    rise = end - best.valid_loss
    if rise < RISE_ABS or rise < RISE_REL * best.valid_loss:
        return None, None, None
    last = tail[-1]
    best_index = next((i for i, e in enumerate(phase) if e is best), None)
    in_phase = best_index is not None
    start = best if in_phase else next((e for e in phase if e.train_loss is not None), None)
    train_end = [e.train_loss for e in tail if e.train_loss is not None]
    known = start is not None and start.train_loss is not None and bool(train_end)
    fell = not known or sum(train_end) / len(train_end) < start.train_loss  # no train loss: the rise alone counts
    smoothing = "median of the last 3 epochs" if k == 3 else "both of the last 2 epochs"
    rel = rise / best.valid_loss
    where = "" if in_phase else f", before {last.phase} began"
    long = (f"valid loss rose {_pct(rel)} from its best {_f(best.valid_loss)} at {best.label}{where} "
            f"to {_f(end)} ({smoothing}; {_f(last.valid_loss)} at {last.label})")
    if not fell:
        note = _Finding("train and valid loss both rose: unstable training",
                        f"{long}, and train loss rose too ({_f(start.train_loss)} -> {_f(train_end[-1])}): "
                        "not overfitting but unstable training; the learning rate may be too high")
        return None, note, None
    if known:
        long += f" while train loss kept falling ({_f(start.train_loss)} -> {_f(train_end[-1])})"
    if not in_phase:
        long += f"; {last.phase} made validation worse than {best.phase} alone"
    short = f"valid loss up {_pct(rel)} from its best at {best.label}"
    return _Finding(short, long), None, best_index


def _loss_gap(t: float | None, v: float | None, chance: float, t_name: str) -> _Finding | None:
    """O2: valid loss several times the train loss, by a margin that matters."""
    if t is None or v is None:
        return None
    margin = max(GAP_ABS, GAP_CHANCE * chance)
    if v < GAP_RATIO * t or v - t < margin:
        return None
    ratio = f"{v / t:.0f}x" if t > 0 else "far above"
    return _Finding(f"train {_f(t)} vs valid {_f(v)}",
                    f"gap {t_name} loss {_f(t)} / valid {_f(v)}: valid is {ratio} the train loss "
                    f"and {_f(v - t)} above it (>= {_f(margin)} counts)")


def _acc_gap(ta: float | None, va: float | None, valid_images: int | None, ta_name: str) -> _Finding | None:
    """O3: train accuracy well above valid accuracy."""
    if ta is None or va is None:
        return None
    need = ACC_GAP
    if valid_images:
        need = max(need, 2 * math.sqrt(max(va * (1 - va), 0.0) / valid_images))
    if ta - va < need:
        return None
    return _Finding(f"accuracy train {_f(ta)} vs valid {_f(va)}",
                    f"gap {ta_name} accuracy {_f(ta)} / valid {_f(va)}: {_f(ta - va)} apart (>= {_f(need)} counts)")


def _underfit(t: float | None, chance: float, phase: list[_Epoch], when: str, per_class: str,
              t_name: str) -> list[_Finding]:
    """U1 and U2."""
    if t is None:
        return []
    found = []
    level = t / chance
    if level >= UNDER_LEVEL:
        found.append(_Finding(f"train loss {_f(t)} vs chance {_f(chance)} {when}",
                              f"{t_name} loss {_f(t)} vs chance {_f(chance)} {when}{per_class}: "
                              f"still {_pct(level)} of chance"))
    trained = [e for e in phase if e.train_loss is not None]
    valid = [e for e in phase if e.valid_loss is not None]
    if level >= TREND_LEVEL and len(trained) >= 2 and len(valid) >= 2:
        t0, t1 = trained[-2].train_loss, trained[-1].train_loss
        v1, v0 = valid[-1].valid_loss, min(e.valid_loss for e in valid[:-1])
        train_drop = (t0 - t1) / t0 if t0 > 0 else 0.0
        valid_drop = (v0 - v1) / v0 if v0 > 0 else 0.0
        if train_drop >= TREND_TRAIN_DROP and valid_drop >= TREND_VALID_DROP:
            found.append(_Finding("both losses still falling",
                                  f"not converged: the last epoch cut train loss {_pct(train_drop)} "
                                  f"({_f(t0)} -> {_f(t1)}) and valid loss {_pct(valid_drop)} to a new best "
                                  f"{_f(v1)} at {valid[-1].label}"))
    return found


# ---------------------------------------------------------------- remedies

# The dropout each head uses when --dropout is not given (heron.transfer.heads.make_head).
_HEAD_DROPOUT = {"gap": 0.2, "linear": 0.0, "dense": 0.5}


def _dropout(config: Any) -> float | None:
    """The dropout the run's head trained with, None when the config is unknown."""
    if config is None:
        return None
    given = _setting(config, "dropout")
    if isinstance(given, (list, tuple)):  # one value per layer: judge by the largest
        given = max(given) if given else None
    return float(given) if given is not None else _HEAD_DROPOUT.get(_setting(config, "head", "gap"))


def _overfit_remedies(config: Any, per_class: float | None, best_epoch: int | None,
                      finetune: bool) -> list[tuple[str, str]]:
    """The course's five steps against overfitting, in its order, as (short, long)."""
    aug_k = int(_setting(config, "precompute_aug", 0) or 0)
    cached = f"--precompute-aug {max(4, 2 * aug_k)}"
    photo_on = _setting(config, "augment") == "photo" and finetune
    photo = "--augment photo (already on: add more images)" if photo_on else "--augment photo"
    aug_short = "--augment photo" if finetune else cached
    dropout = _dropout(config)
    drop = 0.5 if dropout is None or dropout < 0.5 else round(min(0.8, dropout + 0.2), 2)
    wd = _setting(config, "weight_decay")
    wd_new = 0.1 if wd is None or wd < 0.1 else round(3 * wd, 4)
    head = _setting(config, "head")
    if head in ("dense", "linear"):
        arch_short, arch = "--head gap", "--head gap: global pooling and one linear layer, few weights to overfit"
    else:
        arch_short = "--arch"
        arch = ("a backbone pretrained on more images (--arch; heron summary --list shows them), "
                "with the pooling head (--head gap)")
    less = []  # (short, long)
    hidden = _setting(config, "hidden") or [512]  # None: the dense head's own width
    if head == "dense" and hidden:
        width = f"--hidden {max(32, int(hidden[0]) // 2)}"
        less.append((width, width))
    unfreeze = _setting(config, "unfreeze")
    if finetune:
        fewer = int(unfreeze) - 1 if str(unfreeze).isdigit() and int(unfreeze) > 1 else 1
        less.append((f"--unfreeze {fewer}", f"--unfreeze {fewer} (fewer stages)"))
    flag = "--finetune-epochs" if finetune else "--epochs"
    if best_epoch is not None:
        less.append((f"{flag} {best_epoch}", f"{flag} {best_epoch} (valid loss was best there)"))
    else:
        less.append((f"fewer {flag}", f"fewer {flag}"))
    now = f" ({per_class:.0f} per class now)" if per_class is not None else ""
    return [
        ("more data", f"more data: more labelled images per class{now}"),
        (f"augmentation ({aug_short})",
         f"data augmentation: {photo} when fine-tuning; {cached} caches augmented copies for the head"),
        (f"an architecture that generalises ({arch_short})", f"an architecture that generalises well: {arch}"),
        (f"regularisation (--dropout {drop}, --weight-decay {wd_new})",
         f"regularisation: --dropout {drop}, --weight-decay {wd_new}; --patience 3 stops at the best epoch"),
        (f"less complexity ({less[0][0]})", f"reduce complexity: {', '.join(long for _, long in less)}"),
    ]


def _underfit_remedies(config: Any, finetune: bool) -> list[tuple[str, str]]:
    """The other direction, in the course's order, as (short, long)."""
    less = []
    dropout = _dropout(config)
    if dropout is None:
        less.append("lower --dropout")
    elif dropout > 0:
        less.append(f"--dropout {round(dropout / 2, 3)}")
    wd = _setting(config, "weight_decay")
    if config is None:
        less.append("lower --weight-decay")
    elif wd:
        less.append(f"--weight-decay {round(wd / 10, 6)}")
    if finetune and _setting(config, "augment") != "none":
        less.append("--augment light")
    if not less:
        less.append("no dropout or weight decay left to remove")
    head, hidden = _setting(config, "head"), _setting(config, "hidden")
    wider = max(1024, 2 * int(hidden[0])) if head == "dense" and hidden else 1024
    bigger = f"--head dense --hidden {wider}"
    unfreeze = _setting(config, "unfreeze")
    if unfreeze == "all":
        deeper_short = "--finetune-epochs"
        deeper = "every stage already trains: more --finetune-epochs or a higher --finetune-lr"
    elif str(unfreeze).isdigit():
        deeper_short = f"--unfreeze {int(unfreeze) + 1}"
        deeper = f"{deeper_short} or --unfreeze all"
    else:
        deeper_short = "--unfreeze 2"
        deeper = "--unfreeze 2 (the last two stages) or --unfreeze all"
    if finetune:
        epochs = int(_setting(config, "finetune_epochs", 0) or 0)
        longer = f"--finetune-epochs {max(6, 2 * epochs)}" if epochs else "more --finetune-epochs"
        lr = "--finetune-lr"
    else:
        epochs = int(_setting(config, "epochs", 0) or 0)
        longer = f"--epochs {max(10, 4 * epochs)}" if epochs else "more --epochs"
        lr = "--lr"
    return [
        (f"less regularisation ({less[0]})", f"less regularisation: {', '.join(less)}"),
        (f"a bigger head ({bigger})", f"a bigger head: {bigger}"),
        (f"deeper fine-tuning ({deeper_short})", f"deeper fine-tuning: {deeper}"),
        (f"train longer / higher lr ({longer}, --lr-find)",
         f"train longer or at a higher learning rate: {longer}; --lr-find to pick {lr}"),
    ]


# ---------------------------------------------------------------- the entry point


def _line(verdict: str, findings: Sequence[_Finding], remedies: Sequence[tuple[str, str]]) -> str:
    line = f"diagnosis: {verdict}"
    if findings:
        line += f" ({'; '.join(f.short for f in findings[:2])})"
    if remedies:
        line += f"; try: {', '.join(short for short, _ in remedies)}"
    return line


def _result(verdict: str, findings: Sequence[_Finding], remedies: Sequence[tuple[str, str]] = (),
            extra: Sequence[str] = ()) -> Diagnosis:
    return Diagnosis(verdict, [f.long for f in findings] + list(extra), [long for _, long in remedies],
                     _line(verdict, findings, remedies))


def diagnose(
    history: Sequence[Mapping[str, Any]],
    *,
    num_classes: int,
    train_images: int | None = None,
    final: Mapping[str, Any] | None = None,
    train_eval: Mapping[str, Any] | None = None,
    steps: int | None = None,
    valid_images: int | None = None,
    multilabel: bool = False,
    config: Any = None,
) -> Diagnosis:
    """Judge a run from its history: underfitting, overfitting, good fit or unknown.

    `history`: the Learner's records, one dict per epoch (`phase`, `epoch`,
    `train_loss`, `valid_loss`, `valid_accuracy`, optionally
    `train_accuracy`); missing or non-finite values are skipped.
    `num_classes` sets chance, ln(num_classes). `train_images` (and
    `num_classes`) give the images per class the remedies quote. `final`:
    the validation scores the run reports ({"accuracy", "log_loss"}).
    `train_eval`: the training set scored in eval mode at the end
    ({"accuracy", "loss"} or "log_loss"); better than the running train loss.
    `steps`: optimizer steps of the judged (last) phase, quoted in the reasons. `valid_images`
    makes the accuracy-gap test allow for a small validation set. `config`:
    the run's TrainConfig (or its dict), to start the suggested flag values
    from the run's own. The rules are in this module's docstring.
    """
    epochs = _epochs(history)
    if not epochs:
        return _result("unknown", [_Finding("no epochs recorded", "no epochs recorded")])
    last_phase = epochs[-1].phase
    start = len(epochs)
    while start > 0 and epochs[start - 1].phase == last_phase:
        start -= 1
    phase, earlier = epochs[start:], epochs[:start]
    all_valid = [e for e in epochs if e.valid_loss is not None]
    if not any(e.valid_loss is not None for e in phase):
        return _result("unknown", [_Finding("no validation loss",
                                            "no validation loss recorded: train with validation data")])
    if len(epochs) < 2:
        return _result("unknown", [_Finding("only 1 epoch", f"only 1 epoch ({epochs[0].label}): "
                                            "a trend needs at least 2")],
                       [("more epochs (--epochs)", "train for more epochs: --epochs 5 or more")])

    chance = math.log(2.0) if multilabel else math.log(max(int(num_classes), 2))
    finetune = last_phase == "finetune"
    end = phase[-1]
    train_eval = train_eval or {}
    final = final or {}
    t_eval = _num(train_eval.get("loss", train_eval.get("log_loss")))
    t_last = next((e.train_loss for e in reversed(phase) if e.train_loss is not None), None)
    t = t_eval if t_eval is not None else t_last
    t_name = "train (eval mode)" if t_eval is not None else "train"
    # The valid side is the smoothed end of the phase (one spike never counts) or the final
    # scores, whichever is kinder to the model: the gap tests then only see a lasting gap.
    phase_valid = [e for e in phase if e.valid_loss is not None]
    v = _smooth_end([e.valid_loss for e in phase_valid], min)
    v_final = _num(final.get("log_loss"))
    v = min(v, v_final) if v_final is not None else v
    ta_eval = _num(train_eval.get("accuracy"))
    ta = ta_eval if ta_eval is not None else end.train_acc
    ta_name = "train (eval mode)" if ta_eval is not None else "train"
    accs = [e.valid_acc for e in phase if e.valid_acc is not None]
    va = _smooth_end(accs, max) if accs else None
    va_final = _num(final.get("accuracy"))
    va = va_final if va is None else (max(va, va_final) if va_final is not None else va)
    per_class = train_images / max(int(num_classes), 1) if train_images else None
    n_epochs = len(phase)
    when = f"after {steps} optimizer steps" if steps else f"after {n_epochs} epoch{'s' * (n_epochs != 1)}"
    per_class_text = f" ({per_class:.0f} images per class)" if per_class is not None else ""

    rise, both_rose, best_index = _rise(all_valid, phase)
    over = [f for f in (rise, _loss_gap(t, v, chance, t_name), _acc_gap(ta, va, valid_images, ta_name)) if f]
    if over:
        best_epoch = best_index + 1 if best_index is not None else None
        notes = [both_rose.long] if both_rose else []
        return _result("overfitting", over, _overfit_remedies(config, per_class, best_epoch, finetune), notes)

    if both_rose:
        flag = "--finetune-lr" if finetune else "--lr"
        lr = _num(_setting(config, "finetune_lr" if finetune else "lr"))
        lower = f"{flag} {lr / 3:.2g}" if lr else f"a lower {flag}"
        return _result("unknown", [both_rose], [(f"a lower learning rate ({lower}, --lr-find)",
                                                 f"a lower learning rate: {lower}; --lr-find to pick {flag}")])

    under = _underfit(t, chance, phase, when, per_class_text, t_name)
    if under:
        support = []
        if ta is not None and va is not None and ta <= va + 0.02:
            support.append(f"{ta_name} accuracy {_f(ta)} is no better than valid {_f(va)}: "
                           "the model has not fitted even its training images")
        elif ta is not None and ta < 0.9:
            support.append(f"{ta_name} accuracy only {_f(ta)}")
        if earlier and finetune:
            head_end = next((e for e in reversed(earlier) if e.train_loss is not None), None)
            if head_end is not None:
                support.append(f"{head_end.phase} phase ended at train loss {_f(head_end.train_loss)}")
        return _result("underfitting", under, _underfit_remedies(config, finetune), support)

    good = []
    if t is not None:
        good.append(_Finding(f"train {_f(t)} vs valid {_f(v)}",
                             f"{t_name} loss {_f(t)} and valid loss {_f(v)} (chance {_f(chance)}): "
                             "no gap that matters"))
    if ta is not None and va is not None:
        good.append(_Finding(f"accuracy {_f(ta)} / {_f(va)}",
                             f"accuracy {ta_name} {_f(ta)} / valid {_f(va)}: {_f(ta - va)} apart"))
    best = min(phase_valid, key=lambda e: e.valid_loss)
    up = phase_valid[-1].valid_loss / best.valid_loss - 1 if best.valid_loss > 0 else 0.0
    good.append(_Finding("valid loss at its best" if up < 0.005 else f"valid loss {_pct(up)} above its best",
                         f"valid loss ended at {_f(phase_valid[-1].valid_loss)} ({phase_valid[-1].label}); "
                         f"its best was {_f(best.valid_loss)} at {best.label}"))
    if earlier:
        before = [e for e in earlier if e.valid_loss is not None]
        if before:
            good.append(_Finding(f"{last_phase} from valid {_f(before[-1].valid_loss)}",
                                 f"{last_phase} took valid loss from {_f(before[-1].valid_loss)} "
                                 f"({before[-1].label}) to {_f(phase_valid[-1].valid_loss)}"))
    return _result("good fit", good)
