"""What the sequence tasks share: length-bucketed batches, a packed-input model, fitting and the run folder.

- `SequenceBatches`: variable-length code sequences in batches of
  `((codes (N, T), lengths (N,)), targets)`. Training batches are drawn from
  pools of similar length (shuffled by seed and epoch, then sorted inside a
  pool of `batch_size * POOL_BATCHES` items), so little time goes on
  padding; validation batches are sorted by length. Targets are one class
  per sequence, or one per step padded with `IGNORE` (the value
  `torch.nn.CrossEntropyLoss` skips by default) and flattened to (N * T,),
  so padding never counts in a loss or a metric. With `unk_prob` > 0, each
  training pass replaces words seen only once by `<unk>` with that
  probability, so the `<unk>` code is trained on the contexts rare words
  appear in, and words first met at prediction time get a useful input.
- `PackedModel`: a `SequenceModel` taking that `(codes, lengths)` pair, as
  the Learner passes one input; per-step outputs come back flattened to
  (N * T, C) to line up with the flattened targets.
- `predict_logits`: a trained net's outputs for sequences, in their order.
- `fit_model`: the Learner's one-cycle fit with gradient clipping, metrics
  logged to the run folder and an optional time budget.
- `write_run` / `load_run`: config.json (the task, its options, the model's
  constructor arguments, the results), tokenizer.json, a label list and
  model.safetensors; `load_run` rebuilds the model from them.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from heron.data.text import PAD, SPECIALS, UNK, Tokenizer, load_tokenizer, pad_sequences
from heron.errors import DataError
from heron.models import load_weights, save_weights
from heron.models.rnn import SequenceModel
from heron.train import Learner, MetricsLogger, TimeBudget
from heron.train.callbacks import Callback
from heron.train.run import RunFolder

__all__ = ["IGNORE", "POOL_BATCHES", "SequenceTaskConfig", "task_model", "task_batches", "SequenceBatches", "PackedModel", "TimeBudget", "masked_accuracy",
           "predict_logits", "fit_model", "write_run", "load_run", "LoadedSequenceRun"]

IGNORE = -100  # target of a padded step; CrossEntropyLoss(ignore_index=-100) is torch's default
POOL_BATCHES = 50  # training batches drawn from one pool of similar lengths


@dataclass
class SequenceTaskConfig:
    """Settings the text and tagging tasks share (the flags of `heron text train` and `heron tag train`)."""

    data: str = ""
    valid: str | None = None
    out: str | None = None
    overwrite: bool = False
    max_vocab: int = 20000
    lower: bool = False
    max_len: int = 200
    unk_prob: float = 0.5  # training: a word seen once becomes <unk> with this probability
    cell: str = "gru"
    embed_dim: int = 64
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.2
    bidirectional: bool = True
    epochs: int = 5
    lr: float = 3e-3
    batch_size: int = 64
    valid_pct: float = 0.2
    seed: int = 0
    max_minutes: float | None = None
    quiet: bool = False
    device: str = "cpu"

    def check_sizes(self) -> None:
        """DataError unless epochs, batch size and max length are each at least 1."""
        if self.epochs < 1 or self.batch_size < 1 or self.max_len < 1:
            raise DataError("epochs, batch size and max length must be at least 1")


def task_model(config: SequenceTaskConfig, num_outputs: int, vocab_size: int, output: str) -> SequenceModel:
    """The recurrent network a text or tagging config describes; `output` "last" or "sequence"."""
    return SequenceModel(num_outputs, vocab_size=vocab_size, embed_dim=config.embed_dim,
                         hidden_size=config.hidden_size, num_layers=config.num_layers, cell=config.cell,
                         dropout=config.dropout, bidirectional=config.bidirectional, output=output)


def task_batches(codes: Sequence[Sequence[int]], targets: Sequence, config: SequenceTaskConfig,
                 shuffle: bool) -> "SequenceBatches":
    """Training (`shuffle`, with `<unk>` replacement) or validation batches for a task config."""
    return SequenceBatches(codes, targets, config.batch_size, shuffle=shuffle, seed=config.seed,
                           max_len=config.max_len, unk_prob=config.unk_prob if shuffle else 0.0)


class SequenceBatches:
    """Batches `((codes, lengths), targets)` over code sequences; see the module docstring.

    `targets[i]` is an int (one class per sequence) or a list of ints, one
    per step of `sequences[i]`. `max_len` cuts longer sequences (and their
    per-step targets). With `shuffle`, the order depends on `seed` and the
    epoch the Learner sets with `set_epoch`, so runs repeat exactly; so do
    the `<unk>` replacements of `unk_prob` (made while iterating only, never
    by a bare `collate`).
    """

    def __init__(self, sequences: Sequence[Sequence[int]], targets: Sequence, batch_size: int = 64,
                 shuffle: bool = False, seed: int = 0, max_len: int | None = None, unk_prob: float = 0.0) -> None:
        if len(sequences) != len(targets):
            raise ValueError(f"{len(sequences)} sequences but {len(targets)} targets")
        self.sequences = [list(s[:max_len]) if max_len else list(s) for s in sequences]
        self.per_step = bool(targets) and not isinstance(targets[0], int)
        self.targets = [list(t[:max_len]) if max_len else list(t) for t in targets] if self.per_step else list(targets)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch = 0
        self.unk_prob = unk_prob
        self.rare = _singletons(self.sequences) if unk_prob > 0 else torch.zeros(0, dtype=torch.long)
        self._unk_gen: torch.Generator | None = None

    def __len__(self) -> int:
        return math.ceil(len(self.sequences) / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batch_indices(self) -> list[list[int]]:
        """Which items form each batch, in the order they are served."""
        n, size = len(self.sequences), self.batch_size
        if not self.shuffle:
            order = sorted(range(n), key=lambda i: len(self.sequences[i]))
            return [order[i:i + size] for i in range(0, n, size)]
        rng = random.Random(f"heron-batches:{self.seed}:{self.epoch}")
        order = list(range(n))
        rng.shuffle(order)
        pool = size * POOL_BATCHES
        batches = []
        for start in range(0, n, pool):
            chunk = sorted(order[start:start + pool], key=lambda i: len(self.sequences[i]))
            batches += [chunk[i:i + size] for i in range(0, len(chunk), size)]
        rng.shuffle(batches)
        return batches

    def collate(self, items: Sequence[int]):
        codes, lengths = pad_sequences([self.sequences[i] for i in items])  # (N, T), (N,)
        if self._unk_gen is not None and len(self.rare):
            drop = torch.isin(codes, self.rare) & (torch.rand(codes.shape, generator=self._unk_gen) < self.unk_prob)
            codes = codes.masked_fill(drop, UNK)
        if self.per_step:
            targets, _ = pad_sequences([self.targets[i] for i in items], pad=IGNORE, length=codes.shape[1])
            targets = targets.flatten()  # (N * T,), in line with PackedModel's (N * T, C) logits
        else:
            targets = torch.as_tensor([self.targets[i] for i in items], dtype=torch.long)
        return (codes, lengths), targets

    def __iter__(self):
        self._unk_gen = None
        if self.unk_prob > 0:
            self._unk_gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        try:
            for items in self.batch_indices():
                yield self.collate(items)
        finally:
            self._unk_gen = None


def _singletons(sequences: Sequence[Sequence[int]]) -> torch.Tensor:
    """The codes (special tokens aside) that occur exactly once in `sequences`."""
    counts = Counter(code for seq in sequences for code in seq)
    return torch.as_tensor(sorted(c for c, n in counts.items() if n == 1 and c >= len(SPECIALS)), dtype=torch.long)


class PackedModel(nn.Module):
    """`SequenceModel` on a `(codes, lengths)` input; per-step logits flattened to (N * T, C)."""

    def __init__(self, net: SequenceModel) -> None:
        super().__init__()
        self.net = net

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        codes, lengths = inputs
        logits = self.net(codes, lengths)  # (N, C) or (N, T, C)
        return logits.flatten(0, 1) if logits.dim() == 3 else logits


@torch.inference_mode()
def predict_logits(net: SequenceModel, sequences: Sequence[Sequence[int]], batch_size: int = 64,
                   max_len: int | None = None) -> list[torch.Tensor]:
    """`net`'s logits for each code sequence, in the given order: (C,) each, or (T_i, C) per step.

    Batched and packed like training; an empty sequence is fed as one `<pad>`.
    """
    net.eval()
    seqs = [list(s[:max_len]) if max_len else list(s) for s in sequences]
    out: list[torch.Tensor] = []
    for start in range(0, len(seqs), batch_size):
        chunk = [s or [PAD] for s in seqs[start:start + batch_size]]
        codes, lengths = pad_sequences(chunk)  # (B, T), (B,)
        logits = net(codes, lengths)  # (B, C) or (B, T, C)
        if logits.dim() == 3:
            out += [row[:n] for row, n in zip(logits, lengths.tolist())]
        else:
            out += list(logits)
    return out


def masked_accuracy(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """Accuracy over the targets that are not `IGNORE` (the real steps of padded sequences)."""
    keep = targets != IGNORE
    if not bool(keep.any()):
        return float("nan")
    return float((probs.argmax(dim=1)[keep] == targets[keep]).float().mean())


masked_accuracy.__name__ = "accuracy"


def fit_model(model: nn.Module, train_batches, valid_batches, epochs: int, lr: float,
              run: RunFolder | None = None, metrics: Sequence[str | Callable] = ("accuracy",),
              loss_fn: nn.Module | None = None, grad_clip: float = 1.0, weight_decay: float = 1e-2,
              max_minutes: float | None = None, quiet: bool = False, device: str = "cpu") -> Learner:
    """A Learner fitted with one-cycle and gradient clipping; metrics go to `run`/metrics.jsonl."""
    callbacks: list[Callback] = [MetricsLogger(run.path)] if run is not None else []
    if max_minutes is not None:
        callbacks.append(TimeBudget(max_minutes))
    learner = Learner(model, train_batches, valid_batches, loss_fn=loss_fn, lr=lr, weight_decay=weight_decay,
                      metrics=metrics, callbacks=callbacks, device=device, quiet=quiet, grad_clip=grad_clip)
    learner.fit(epochs, phase="train")
    return learner


def write_run(run: RunFolder, task: str, options: dict, net: SequenceModel, tokenizer: Tokenizer,
              labels_name: str, labels: Sequence[str], result: dict, history: list[dict]) -> None:
    """config.json, tokenizer.json, the label list (one per line), model.safetensors and history.png."""
    from heron.interpret.plots import plot_history

    tokenizer.save(run / "tokenizer.json")
    run.write_text(labels_name, "".join(f"{label}\n" for label in labels))
    save_weights(net, run / "model.safetensors", metadata={"format": f"heron.{task}"})
    run.write_json("config.json", {"task": task, "options": options, "model": net.config,
                                   "labels_file": labels_name, "labels": list(labels), "result": result})
    plot_history(history, run / "history.png")


@dataclass
class LoadedSequenceRun:
    """A finished sequence run, ready to predict."""

    path: Path
    config: dict
    tokenizer: Tokenizer
    net: SequenceModel
    labels: list[str]


def load_run(path: str | Path, task: str) -> LoadedSequenceRun:
    """The run folder at `path` (written by `write_run` for `task`), its model in eval mode."""
    run = RunFolder(path)
    needed = ("config.json", "tokenizer.json", "model.safetensors")
    if not all(run.exists(name) for name in needed):
        raise DataError(f"{path}: not a finished heron run (needs {', '.join(needed)}); give the --out folder "
                        f"of a `heron {task}` training run")
    config = run.read_json("config.json")
    if config.get("task") != task:
        raise DataError(f"{path}: a {config.get('task') or 'non-sequence'} run, not a {task} run; "
                        "use the predict command of the task that trained it")
    net = SequenceModel(**config["model"])
    load_weights(net, run / "model.safetensors")
    return LoadedSequenceRun(run.path, config, load_tokenizer(run / "tokenizer.json"), net.eval(),
                             list(config["labels"]))
