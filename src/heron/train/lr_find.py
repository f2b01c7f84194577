"""The learning-rate finder: train briefly with an exponentially growing lr and watch the loss.

The sweep runs `num_iter` mini-batches (cycling through the training data),
multiplying the lr by a constant factor each step from `start_lr` to `end_lr`,
and records an exponentially smoothed loss (bias-corrected, beta=0.98). It
stops early once the smoothed loss exceeds 4x the best seen or stops being
finite. Afterwards the model weights and buffers, the optimizer state and
every random-number state are put back exactly as they were, so a run that
calls `lr_find` first trains exactly like one that does not.

Suggestion: the lr where the smoothed loss falls fastest per decade of lr
(the steepest point of the curve before its minimum, slopes taken over a
tenth of the sweep so early noise does not win); when the curve is too short
to have one, a tenth of the lr at the minimum ("min/10"). Both are on
the result. With discriminative parameter groups the sweep moves all groups
together and the lrs reported are the last group's (the head's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from heron.train.checkpoint import clone_to_cpu, get_rng_state, set_rng_state
from heron.nn.modes import set_train_mode

__all__ = ["LRFinderResult", "lr_find"]


@dataclass
class LRFinderResult:
    """What the sweep saw: `lrs[i]` was used for step i, `losses[i]` is the smoothed loss after it."""

    lrs: list[float]
    losses: list[float]
    steepest: float | None = None
    min_div10: float | None = None
    suggestion: float | None = field(default=None)

    def plot(self, path: str | Path) -> Path:
        """Loss against lr (log scale) with the suggestion marked, saved as a PNG."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ax.plot(self.lrs, self.losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss (smoothed)")
        if self.suggestion is not None:
            ax.axvline(self.suggestion, color="tab:red", linestyle="--", label=f"suggestion {self.suggestion:.1e}")
            ax.legend()
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
        return path


def suggest(lrs: list[float], losses: list[float]) -> tuple[float | None, float | None]:
    """(steepest, min_div10) for a smoothed loss curve; None where the curve is too short.

    The slope at point i is a central difference over k = len/10 points on
    each side (in loss per decade of lr), which ignores the noise of the first
    few steps; only points before the curve's minimum count.
    """
    if not lrs:
        return None, None
    loss, log_lr = np.asarray(losses, dtype=np.float64), np.log10(np.asarray(lrs, dtype=np.float64))
    i_min = int(np.nanargmin(loss))
    min_div10 = float(lrs[i_min]) / 10.0
    k = max(1, len(lrs) // 10)
    if i_min < 2 * k:
        return None, min_div10
    centre = np.arange(k, i_min - k + 1)
    slopes = (loss[centre + k] - loss[centre - k]) / (log_lr[centre + k] - log_lr[centre - k])
    return float(lrs[int(centre[np.argmin(slopes)])]), min_div10


def _batches(loader):
    """Endless mini-batches: start the loader again whenever it runs out."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            return


def lr_find(learner, start_lr: float = 1e-7, end_lr: float = 10.0, num_iter: int = 100,
            beta: float = 0.98, diverge: float = 4.0) -> LRFinderResult:
    """Run the sweep on `learner` (see the module docstring) and leave it as it was."""
    if not (0 < start_lr < end_lr) or num_iter < 2:
        raise ValueError("lr_find needs 0 < start_lr < end_lr and num_iter >= 2")
    model = learner.model
    saved_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    saved_modes = {m: m.training for m in model.modules()}
    saved_opt = learner.opt
    saved_opt_state = clone_to_cpu(saved_opt.state_dict()) if saved_opt is not None else None
    saved_scaler = learner.scaler.state_dict()
    saved_rng = get_rng_state(getattr(learner.train_dl, "generator", None))
    try:
        opt = learner.opt = saved_opt if saved_opt is not None else learner.create_opt()
        return _sweep(learner, opt, start_lr, end_lr, num_iter, beta, diverge)
    finally:
        model.load_state_dict(saved_model)
        for module, mode in saved_modes.items():
            module.training = mode
        if saved_opt is not None:
            saved_opt.load_state_dict(saved_opt_state)
        learner.opt = saved_opt
        learner.scaler.load_state_dict(saved_scaler)
        set_rng_state(saved_rng, getattr(learner.train_dl, "generator", None))


def _sweep(learner, opt, start_lr, end_lr, num_iter, beta, diverge) -> LRFinderResult:
    head_lr = opt.param_groups[-1].get("peak_lr", opt.param_groups[-1]["lr"])
    ratios = [g.get("peak_lr", g["lr"]) / head_lr for g in opt.param_groups]
    gamma = (end_lr / start_lr) ** (1.0 / (num_iter - 1))
    set_train_mode(learner.model)
    opt.zero_grad(set_to_none=True)
    lrs, losses, avg, best = [], [], 0.0, math.inf
    for step, batch in enumerate(_batches(learner.train_dl)):
        if step >= num_iter:
            break
        lr = start_lr * gamma**step
        for group, ratio in zip(opt.param_groups, ratios):
            group["lr"] = lr * ratio
        xb, yb = learner.to_device(batch)
        _, loss = learner.forward_loss(xb, yb)
        value = loss.item()
        avg = beta * avg + (1 - beta) * value
        smooth = avg / (1 - beta ** (step + 1))
        lrs.append(lr)
        losses.append(smooth)
        if not math.isfinite(smooth) or smooth > diverge * best:
            break
        best = min(best, smooth)
        learner.backward_step(loss)
    finite = [(lr, loss) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
    steepest, min_div10 = suggest([x for x, _ in finite], [y for _, y in finite])
    return LRFinderResult(lrs, losses, steepest, min_div10, steepest if steepest is not None else min_div10)
