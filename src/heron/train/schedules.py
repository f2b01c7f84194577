"""Learning-rate schedules: a multiplier of each group's peak lr, as a pure function of the step.

A schedule never owns state beyond the step counter, so resuming a run means
restoring one integer. Every parameter group keeps its own peak lr (stored as
`"peak_lr"` in the optimizer's group); the schedule multiplies all of them by
the same factor, which keeps discriminative learning rates in their ratio.

- `one_cycle`: warm up from peak/25 to the peak over the first `pct_start` of
  the steps, then cosine-anneal down to peak/1e4; momentum (SGD) or beta1
  (Adam) moves the opposite way, 0.95 -> 0.85 -> 0.95. The same curve as
  `torch.optim.lr_scheduler.OneCycleLR(anneal_strategy="cos",
  div_factor=25, final_div_factor=400, three_phase=False)`.
- `cosine`: cosine-anneal from the peak to peak/1e4, no warm-up.
- `constant`: the peak throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["SCHEDULES", "Schedule", "cosine_factor", "one_cycle_factor", "one_cycle_momentum"]

SCHEDULES = ("one_cycle", "cosine", "constant")


def _cos_interp(start: float, end: float, pct: float) -> float:
    """Half a cosine from `start` (pct=0) to `end` (pct=1)."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def _phase(step: int, total_steps: int, pct_start: float) -> tuple[bool, float]:
    """(in warm-up?, fraction of that phase done) for one-cycle at `step` (0-based)."""
    warm_end = pct_start * total_steps - 1.0  # the step at which the peak is reached
    if step <= warm_end:
        return True, step / warm_end if warm_end > 0 else 1.0
    span = (total_steps - 1.0) - warm_end
    return False, (step - warm_end) / span if span > 0 else 1.0


def one_cycle_factor(step: int, total_steps: int, pct_start: float = 0.25,
                     div: float = 25.0, final_div: float = 1e4) -> float:
    """Multiplier of the peak lr at `step`: 1/div -> 1 (at pct_start) -> 1/final_div (last step)."""
    warming, pct = _phase(step, total_steps, pct_start)
    if warming:
        return _cos_interp(1.0 / div, 1.0, pct)
    return _cos_interp(1.0, 1.0 / final_div, pct)


def one_cycle_momentum(step: int, total_steps: int, pct_start: float = 0.25,
                       moms: tuple[float, float] = (0.95, 0.85)) -> float:
    """Momentum at `step`: high while the lr is low, low at the lr peak."""
    high, low = moms
    warming, pct = _phase(step, total_steps, pct_start)
    return _cos_interp(high, low, pct) if warming else _cos_interp(low, high, pct)


def cosine_factor(step: int, total_steps: int, final_div: float = 1e4) -> float:
    """Multiplier of the peak lr at `step`: 1 at the first step, 1/final_div at the last."""
    pct = step / (total_steps - 1) if total_steps > 1 else 1.0
    return _cos_interp(1.0, 1.0 / final_div, pct)


@dataclass
class Schedule:
    """Sets every group's lr (and momentum for one-cycle) for a given optimizer step."""

    name: str
    total_steps: int
    pct_start: float = 0.25

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.name!r}; choose one of {', '.join(SCHEDULES)}")
        if self.total_steps < 1:
            raise ValueError("a schedule needs at least one step")
        if not 0.0 < self.pct_start < 1.0:
            raise ValueError(f"pct_start must be between 0 and 1, got {self.pct_start}")

    def factor(self, step: int) -> float:
        if self.name == "one_cycle":
            return one_cycle_factor(step, self.total_steps, self.pct_start)
        if self.name == "cosine":
            return cosine_factor(step, self.total_steps)
        return 1.0

    def momentum(self, step: int) -> float | None:
        """One-cycle's momentum at `step`; None leaves the optimizer's momentum alone."""
        if self.name == "one_cycle":
            return one_cycle_momentum(step, self.total_steps, self.pct_start)
        return None

    def apply(self, opt: torch.optim.Optimizer, step: int) -> None:
        """Write the lr (and momentum) for `step` into every parameter group of `opt`."""
        factor, mom = self.factor(step), self.momentum(step)
        for group in opt.param_groups:
            group["lr"] = group["peak_lr"] * factor
            if mom is None:
                continue
            if "betas" in group:
                group["betas"] = (mom, group["betas"][1])
            elif "momentum" in group:
                group["momentum"] = mom

    def state_dict(self) -> dict:
        return {"name": self.name, "total_steps": self.total_steps, "pct_start": self.pct_start}
