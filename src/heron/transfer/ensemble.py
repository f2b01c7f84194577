"""Several heads as one: the mean of their probabilities (the seeds' ensembling).

`EnsembleHead` holds K heads trained with different seeds on the same cached
features. Its output is a logit whose softmax (sigmoid for multi-label) is
exactly the mean of the members' probabilities, so a run saved with it is
one ordinary model: `heron predict`, `evaluate` and the report need nothing
new, and its state dict is the members' state dicts side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["EnsembleHead", "mean_probabilities"]


def mean_probabilities(logits: Sequence[torch.Tensor], multilabel: bool = False) -> torch.Tensor:
    """`(N, C)` mean of the members' softmax (or sigmoid) probabilities."""
    activate = torch.sigmoid if multilabel else (lambda x: torch.softmax(x, dim=1))
    return torch.stack([activate(x.float()) for x in logits]).mean(0)


class EnsembleHead(nn.Module):
    """K heads -> logits whose activation is the mean of the members' probabilities.

    Single label: `log(mean_k softmax(z_k))`, computed as a log-sum-exp of
    log-softmaxes (stable for confident members). Multi-label: the logit of
    the mean sigmoid.
    """

    def __init__(self, members: Sequence[nn.Module], multilabel: bool = False) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.multilabel = multilabel

    def member_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [member(x) for member in self.members]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.member_logits(x)
        if self.multilabel:
            p = mean_probabilities(logits, multilabel=True).clamp(1e-7, 1 - 1e-7)
            return torch.log(p) - torch.log1p(-p)
        logp = torch.stack([torch.log_softmax(z.float(), dim=1) for z in logits])  # (K, N, C)
        return torch.logsumexp(logp, dim=0) - math.log(len(logits))
