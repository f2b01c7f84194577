"""Character and word language models trained with truncated backpropagation through time.

A text file becomes one long stream of token codes (`heron.data.text`). The
stream is cut into B parallel rows (row b holds a contiguous B-th of the
text) and read in windows of `bptt` steps: batch i is `x = rows[:, i*T:(i+1)*T]`
and the targets are the same window shifted by one token. Because row b of
batch i+1 continues exactly where row b of batch i stopped, the recurrent
state at the end of one batch is the right starting state for the next:
`StatefulLM` keeps it between batches and detaches it, so gradients flow
back `bptt` steps while the memory reaches further (truncated BPTT).
`CarryState` resets it at the start of every epoch and where the stream
wraps round.

Training uses heron's `Learner` (AdamW, one-cycle, gradient clipping by norm
at 0.25 by default, checkpoints, resume, progress, the NaN stop). An
"epoch" is a fixed number of batches, so a time budget (`max_minutes`) can
be honoured: before training, a few timed steps size the epochs so that the
whole one-cycle schedule fits the budget; `DeadlineSchedule` moves the schedule
on by the clock when the machine turns out slower (so the learning rate
still anneals by the deadline) and stops at an epoch boundary. After every
epoch `LMValidation` scores the start of the validation slice (the last
10% of the text, or a separate file), records loss, perplexity and bits per
character, and keeps the best weights; those are scored on the whole slice
and saved. The CPU default is fp32: bf16 autocast measured 9x slower for the
GRU on this AVX2 machine, and oneDNN has no bf16 LSTM for it at all
(benchmarks/lm.py).

Bits per character make char and word models comparable: the total
negative log-likelihood of a slice in nats, over ln 2, over the slice's
number of characters. Perplexity is per token.

A run folder holds config.json (model config, tokenizer settings, training
settings, final metrics), tokenizer.json, model.safetensors, metrics.jsonl
and checkpoints/; `load_language_model(run)` rebuilds the model from it.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from heron.data.text import CharTokenizer, Tokenizer, WordTokenizer, load_tokenizer, read_text
from heron.errors import DataError, TrainingError
from heron.models import load_weights, save_weights
from heron.models.rnn import SequenceModel, detach_state
from heron.nn.precision import autocast, cpu_supports_bf16, resolve_precision
from heron.train import Checkpoint, Learner, MetricsLogger
from heron.train.callbacks import Callback

__all__ = [
    "LMConfig", "LMResult", "LanguageModel", "StreamBatches", "StatefulLM", "CarryState",
    "LMValidation", "DeadlineSchedule", "train_language_model", "load_language_model", "lm_learner",
    "build_lm", "token_stream", "split_text", "stream_nll", "bits_per_char",
]

LN2 = math.log(2.0)


@dataclass
class LMConfig:
    """Everything `train_language_model` needs; the CLI flags map onto these fields.

    `epochs` is the number of validation rounds (at most); with
    `max_minutes` the batches per epoch come from steps timed before
    training and the budget may stop the run sooner; without it an epoch is
    one pass over the text unless `batches_per_epoch` is given. The CPU
    defaults (a one-layer LSTM of 256, batches of 32 x 64 characters) were
    the best of those measured for a 3-minute budget on tinyshakespeare.
    """

    text: str
    valid: str | None = None
    out: str | None = None
    level: str = "char"
    max_vocab: int = 10000
    lower: bool = False
    cell: str = "lstm"
    embed_dim: int | None = None  # None: 64 for characters, the hidden size for words
    hidden: int = 256
    layers: int = 1
    dropout: float = 0.1
    tie_weights: bool = False
    bptt: int = 64
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    grad_clip: float | None = 0.25
    reset_prob: float = 0.02  # per row and batch: the model also learns to start from a zero state
    epochs: int = 20
    batches_per_epoch: int | None = None
    max_minutes: float | None = 3.0
    valid_fraction: float = 0.1
    valid_tokens: int | None = 32768  # scored after every epoch (None: all); the best weights get the whole slice
    precision: str = "fp32"
    seed: int = 0
    overwrite: bool = False
    quiet: bool = False

    def check(self) -> None:
        """Raise DataError for settings that cannot train."""
        if self.level not in ("char", "word"):
            raise DataError(f"level must be 'char' or 'word', got {self.level!r}")
        if self.cell not in ("gru", "lstm", "rnn"):
            raise DataError(f"cell must be gru, lstm or rnn, got {self.cell!r}")
        for name in ("hidden", "layers", "bptt", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise DataError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0.0 < self.valid_fraction < 1.0:
            raise DataError(f"valid_fraction must be between 0 and 1, got {self.valid_fraction}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise DataError(f"--max-minutes must be positive, got {self.max_minutes}")
        if self.cell == "lstm" and resolve_precision(self.precision) == "bf16" and not cpu_supports_bf16():
            raise DataError("bf16 LSTM needs a CPU with native bf16 (AVX512-BF16 or AMX); oneDNN has no kernel "
                            "for it here; use --precision fp32 (the default), which is faster on this CPU anyway")


# ---------------------------------------------------------------- text -> streams -> batches


def split_text(text: str, valid_fraction: float = 0.1) -> tuple[str, str]:
    """(train, valid): the last `valid_fraction` of the text, cut at the line start nearest that point."""
    cut = int(len(text) * (1.0 - valid_fraction))
    line_start = text.rfind("\n", 0, cut) + 1
    if line_start > len(text) * (1.0 - 2 * valid_fraction):  # a line start close enough to the cut
        cut = line_start
    return text[:cut], text[cut:]


def token_stream(tokenizer: Tokenizer, text: str) -> torch.Tensor:
    """The text's codes as one LongTensor[N]."""
    return torch.tensor(tokenizer.encode(text), dtype=torch.long)


def _rows(stream: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets as (B, n) rows of contiguous text; the last few tokens are dropped."""
    n = (stream.numel() - 1) // batch_size
    if n < 1:
        raise DataError(f"the text has {stream.numel()} tokens, too few for {batch_size} parallel streams; "
                        "use a longer text or a smaller --batch-size")
    inputs = stream[: n * batch_size].view(batch_size, n)  # (B, n)
    targets = stream[1: n * batch_size + 1].view(batch_size, n)  # (B, n)
    return inputs, targets


class StreamBatches:
    """Contiguous (x, y) windows of a token stream for truncated BPTT: x, y LongTensor[B, <=bptt].

    The stream is laid out as `batch_size` rows; window w covers columns
    w*bptt ... (w+1)*bptt of every row, so batch w+1 continues batch w row by
    row. An epoch is `batches_per_epoch` windows (default: one pass);
    `set_epoch(e)` (called by the Learner) starts epoch e where epoch e-1
    stopped, wrapping round at the end of the text, so an epoch's batches
    depend on its number only (resume-safe).
    """

    def __init__(self, stream: torch.Tensor, batch_size: int, bptt: int,
                 batches_per_epoch: int | None = None) -> None:
        self.inputs, self.targets = _rows(stream, batch_size)
        self.bptt = bptt
        self.windows = math.ceil(self.inputs.shape[1] / bptt)
        self.batches_per_epoch = batches_per_epoch or self.windows
        self.first = 0

    @property
    def tokens_per_batch(self) -> int:
        return self.inputs.shape[0] * self.bptt

    def __len__(self) -> int:
        return self.batches_per_epoch

    def set_epoch(self, epoch: int) -> None:
        self.first = ((epoch - 1) * self.batches_per_epoch) % self.windows

    def window(self, batch_idx: int) -> int:
        """Which window of the text the epoch's `batch_idx`-th batch reads (0 = the start of a pass)."""
        return (self.first + batch_idx) % self.windows

    def __iter__(self):
        for i in range(self.batches_per_epoch):
            start = self.window(i) * self.bptt
            yield self.inputs[:, start:start + self.bptt], self.targets[:, start:start + self.bptt]


# ---------------------------------------------------------------- the model in the Learner


def build_lm(vocab_size: int, config: LMConfig) -> SequenceModel:
    """The SequenceModel a config describes, for a vocabulary of `vocab_size`."""
    embed = config.embed_dim or (64 if config.level == "char" else config.hidden)
    return SequenceModel(vocab_size, vocab_size=vocab_size, embed_dim=embed, hidden_size=config.hidden,
                         num_layers=config.layers, cell=config.cell, dropout=config.dropout,
                         tie_weights=config.tie_weights, output="sequence")


class StatefulLM(nn.Module):
    """A SequenceModel that carries its hidden state from one batch to the next (detached).

    `forward(x)` takes (B, T) codes and returns logits flattened to
    (B * T, V), the shape cross-entropy takes with targets `y.reshape(-1)`.
    `carry=False` starts every batch from zeros (the baseline truncated
    BPTT is measured against). `reset()` forgets the state.

    `reset_prob`: in training, each row's carried state is zeroed with this
    probability per batch. A model that only ever starts from zeros once an
    epoch never learns to start: sampled from a fresh state after a prime,
    its first characters were noise ("ROMEO:q$Ql...").
    """

    def __init__(self, lm: SequenceModel, carry: bool = True, reset_prob: float = 0.0) -> None:
        super().__init__()
        self.lm, self.carry, self.reset_prob = lm, carry, reset_prob
        self.state = None

    def reset(self) -> None:
        self.state = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self.state if self.carry else None
        if state is not None and _state_batch(state) != x.shape[0]:
            state = None
        if state is not None and self.training and self.reset_prob > 0:
            state = _zero_rows(state, torch.rand(x.shape[0]) < self.reset_prob)
        logits, state = self.lm.forward_state(x, state=state)  # (B, T, V)
        self.state = detach_state(state) if self.carry else None
        return logits.reshape(-1, logits.shape[-1])  # (B*T, V)


def _zero_rows(state, rows: torch.Tensor):
    """The state with the batch rows marked in `rows` (B,) set to zeros."""
    keep = (~rows).to(torch.float32)[None, :, None]  # (1, B, 1)
    if isinstance(state, tuple):
        return tuple(s * keep.to(s.device, s.dtype) for s in state)
    return state * keep.to(state.device, state.dtype)


def _state_batch(state) -> int:
    h = state[0] if isinstance(state, tuple) else state  # (layers, B, H)
    return h.shape[1]


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: logits (B*T, V), targets (B, T)."""
    return F.cross_entropy(logits.float(), targets.reshape(-1))


class CarryState(Callback):
    """Resets the StatefulLM's state at the start of every epoch and where the stream starts over."""

    order = 5

    def before_train(self, learner) -> None:
        learner.model.reset()

    def before_batch(self, learner) -> None:
        dl = learner.train_dl
        if learner.batch_idx > 0 and isinstance(dl, StreamBatches) and dl.window(learner.batch_idx) == 0:
            learner.model.reset()


def stream_nll(model: SequenceModel, stream: torch.Tensor, batch_size: int, bptt: int,
               precision: str = "fp32", device: str | torch.device = "cpu", carry: bool = True) -> tuple[float, int]:
    """(total nats, tokens predicted) of `model` on a stream, in eval mode, state carried across windows."""
    batches = StreamBatches(stream, min(batch_size, max(1, (stream.numel() - 1) // bptt)), bptt)
    was_training = model.training
    model.eval()
    total, count, state = 0.0, 0, None
    device = torch.device(device)
    with torch.inference_mode(), autocast(precision, device):
        for x, y in batches:
            logits, state = model.forward_state(x.to(device), state=state if carry else None)  # (B, T, V)
            total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.to(device).reshape(-1),
                                     reduction="sum").item()
            count += y.numel()
    model.train(was_training)
    return total, count


def bits_per_char(mean_nats: float, tokens: int, chars: int) -> float:
    """Bits per character of a slice of `chars` characters and `tokens` tokens at `mean_nats` per token."""
    return mean_nats * tokens / LN2 / max(chars, 1)


class LMValidation(Callback):
    """After every epoch: valid_loss, valid_perplexity and valid_bpc of the validation stream; keeps the best weights.

    Runs before the progress bar and the metrics log (order 5), so they see
    the numbers. The best weights (by valid_loss) are saved in the
    checkpoint with the callback's state, so a resumed run still ends with them.
    """

    order = 5

    def __init__(self, stream: torch.Tensor, chars: int, batch_size: int, bptt: int, precision: str = "fp32",
                 max_tokens: int | None = None) -> None:
        if max_tokens is not None and stream.numel() > max_tokens:  # the first tokens; chars in proportion
            chars = round(chars * max_tokens / stream.numel())
            stream = stream[:max_tokens]
        self.stream, self.chars = stream, chars
        self.batch_size, self.bptt, self.precision = batch_size, bptt, precision
        self.best_loss: float | None = None
        self.best_weights: dict | None = None
        self.best_epoch = 0

    def after_epoch(self, learner) -> None:
        learner.model.reset()
        lm = learner.model.lm
        total, count = stream_nll(lm, self.stream, self.batch_size, self.bptt, self.precision, learner.device)
        loss = total / count
        learner.record.update(valid_loss=loss, valid_perplexity=math.exp(min(loss, 50.0)),
                              valid_bpc=bits_per_char(loss, self.stream.numel(), self.chars))
        if math.isfinite(loss) and (self.best_loss is None or loss < self.best_loss):
            self.best_loss, self.best_epoch = loss, learner.epoch
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in lm.state_dict().items()}

    def state_dict(self) -> dict:
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        self.best_loss, self.best_epoch = state.get("best_loss"), int(state.get("best_epoch", 0))
        self.best_weights = state.get("best_weights")


class DeadlineSchedule(Callback):
    """Keeps training inside a deadline (a `time.monotonic()` value).

    The one-cycle schedule advances by steps or by time, whichever is
    further along: when the machine runs slower than the steps timed before
    training, the learning rate still reaches the end of its cycle by the
    deadline. Training stops at an epoch boundary when the next epoch would
    end after the deadline.
    """

    order = 70

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.stopped_epoch: int | None = None
        self._start = self._epoch_start = 0.0

    def before_fit(self, learner) -> None:
        self._start = time.monotonic()

    def before_epoch(self, learner) -> None:
        self._epoch_start = time.monotonic()

    def before_batch(self, learner) -> None:
        total = learner.schedule.total_steps
        by_time = (time.monotonic() - self._start) / max(self.deadline - self._start, 1e-9)
        if by_time * total > learner.iteration:
            learner.schedule.apply(learner.opt, min(int(by_time * total), total - 1))

    def after_epoch(self, learner) -> None:
        now = time.monotonic()
        last = now - self._epoch_start  # training and validation of the epoch just finished
        if learner.epoch < learner.epochs and now + last > self.deadline:
            learner.stop_training = True
            self.stopped_epoch = learner.epoch


def lm_learner(model: StatefulLM, batches: StreamBatches, callbacks=(), lr: float = 3e-3,
               weight_decay: float = 0.01, grad_clip: float | None = 0.25, precision: str = "fp32",
               quiet: bool = True) -> Learner:
    """A Learner that trains a StatefulLM on contiguous batches (AdamW, clipping, state carried)."""
    return Learner(model, batches, valid_dl=None, loss_fn=lm_loss, optimizer="adamw", lr=lr,
                   weight_decay=weight_decay, metrics=(), callbacks=[CarryState(), *callbacks],
                   grad_clip=grad_clip, precision=precision, quiet=quiet)


# ---------------------------------------------------------------- the training job


@dataclass
class LMResult:
    """A finished run: its folder, the epochs' records and the best validation metrics."""

    run: Path
    history: list[dict]
    metrics: dict = field(default_factory=dict)


def _fit_tokenizer(train_text: str, config: LMConfig) -> Tokenizer:
    if config.level == "char":
        return CharTokenizer.fit(train_text)
    return WordTokenizer.fit(train_text, max_vocab=config.max_vocab, lower=config.lower)


def _texts(config: LMConfig) -> tuple[str, str]:
    text = read_text(config.text)
    if config.valid:
        return text, read_text(config.valid)
    train_text, valid_text = split_text(text, config.valid_fraction)
    if not valid_text.strip() or not train_text.strip():
        raise DataError(f"{config.text}: too short to keep {config.valid_fraction:.0%} for validation; "
                        "give a longer text or a --valid file")
    return train_text, valid_text


def _check_stream(stream: torch.Tensor, path: str, what: str, need: int) -> None:
    if stream.numel() < need:
        raise DataError(f"{path}: the {what} text has {stream.numel()} tokens; need at least {need} "
                        "(--batch-size x 2); give a longer text or a smaller --batch-size")


def _seconds_per_step(model: StatefulLM, batches: StreamBatches, config: LMConfig, steps: int = 3) -> float:
    """Wall seconds of one training step (the fastest of `steps` after two warm-ups), on a throwaway copy."""
    probe = copy.deepcopy(model)
    learner = lm_learner(probe, batches, lr=config.lr, grad_clip=config.grad_clip, precision=config.precision)
    learner.opt = learner.create_opt()
    batch = next(iter(batches))
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        xb, yb = learner.to_device(batch)
        _, loss = learner.forward_loss(xb, yb)
        learner.backward_step(loss)
        times.append(time.perf_counter() - start)
    return min(times[2:])  # the optimistic end: DeadlineSchedule's schedule catches up if the machine slows


def _batches_per_epoch(seconds_per_step: float, valid_tokens: int, final_tokens: int, tokens_per_batch: int,
                       config: LMConfig, elapsed: float) -> int:
    """Batches per epoch so that `epochs` epochs, their validations and the final one fit what is left of the budget."""
    forward = seconds_per_step / 3.0 / tokens_per_batch  # seconds per token scored: a forward is about a third of a step
    budget = config.max_minutes * 60.0 * 0.95 - elapsed - final_tokens * forward
    per_epoch = budget / config.epochs - valid_tokens * forward
    return max(1, int(per_epoch / seconds_per_step))


def _budget_batches(model: StatefulLM, train_stream: torch.Tensor, valid_tokens: int, config: LMConfig,
                    started: float) -> int:
    """Batches per epoch for the time budget, from a few timed steps.

    The plan assumes steps twice as fast as timed: a probe on a busy machine
    reads slow, and a plan that is too long costs nothing (DeadlineSchedule moves
    the schedule on by the clock and stops at an epoch boundary) while one
    too short ends the run with the budget unused.
    """
    batches = StreamBatches(train_stream, config.batch_size, config.bptt)
    step = _seconds_per_step(model, batches, config) / 2.0
    scored = min(valid_tokens, config.valid_tokens or valid_tokens)
    return _batches_per_epoch(step, scored, valid_tokens, batches.tokens_per_batch, config,
                              time.monotonic() - started)


def _saved_settings(run, config: LMConfig) -> tuple[LMConfig, Tokenizer]:
    """The interrupted run's training settings (over `config`'s) and its tokenizer."""
    saved = run.read_json("config.json").get("train", {})
    fields = {k: v for k, v in saved.items() if k in LMConfig.__dataclass_fields__ and k != "text"}
    return LMConfig(**{**asdict(config), **fields}), load_tokenizer(run / "tokenizer.json")


def _settings(config: LMConfig, **extra) -> dict:
    keep = ("level", "max_vocab", "lower", "cell", "hidden", "layers", "embed_dim", "dropout", "tie_weights",
            "bptt", "batch_size", "lr", "weight_decay", "grad_clip", "reset_prob", "epochs", "max_minutes",
            "valid_fraction", "valid_tokens", "precision", "seed")
    out = {k: v for k, v in asdict(config).items() if k in keep}
    return {**out, "text": str(config.text), "valid": config.valid, **extra}


def _open_run(config: LMConfig, resume: bool):
    from heron.train.run import RunFolder

    if resume:
        if not config.out or not (Path(config.out) / "config.json").is_file():
            raise TrainingError(f"{config.out}: no language-model run to resume; give the --out of an interrupted run")
        return RunFolder(config.out)
    return RunFolder.create(config.out, Path(config.text).stem or "lm", overwrite=config.overwrite)


def train_language_model(config: LMConfig, resume: bool = False) -> LMResult:
    """Train a language model on `config.text`; write and return the run (see the module docstring).

    `resume=True` continues the interrupted run in `config.out` with the
    settings saved there (tokenizer, model, epochs and their sizes).
    """
    started = time.monotonic()
    config.check()
    train_text, valid_text = _texts(config)
    run = _open_run(config, resume)
    if resume:
        config, tokenizer = _saved_settings(run, config)
    else:
        tokenizer = _fit_tokenizer(train_text, config)
    train_stream, valid_stream = token_stream(tokenizer, train_text), token_stream(tokenizer, valid_text)
    _check_stream(train_stream, config.text, "training", 2 * config.batch_size)
    _check_stream(valid_stream, config.valid or config.text, "validation", 2)

    torch.manual_seed(config.seed)
    model = StatefulLM(build_lm(len(tokenizer), config), reset_prob=config.reset_prob)
    if config.max_minutes and not resume and not config.batches_per_epoch:
        config.batches_per_epoch = _budget_batches(model, train_stream, valid_stream.numel(), config, started)
        torch.manual_seed(config.seed)  # the timing steps drew random numbers
    batches = StreamBatches(train_stream, config.batch_size, config.bptt, config.batches_per_epoch)
    if not resume:
        tokenizer.save(run / "tokenizer.json")
        run.write_json("config.json", {"task": "language_model", "model": model.lm.config,
                                       "tokenizer": {"level": tokenizer.level, "size": len(tokenizer)},
                                       "train": _settings(config, batches_per_epoch=len(batches))})
    precision = resolve_precision(config.precision)
    validation = LMValidation(valid_stream, len(valid_text), config.batch_size, config.bptt, precision,
                              config.valid_tokens)
    callbacks = [validation, MetricsLogger(run / "metrics.jsonl"), Checkpoint(run / "checkpoints")]
    if config.max_minutes:
        callbacks.append(DeadlineSchedule(started + config.max_minutes * 60.0 * 0.97))  # the rest: the final scoring
    learner = lm_learner(model, batches, callbacks, lr=config.lr, weight_decay=config.weight_decay,
                         grad_clip=config.grad_clip, precision=config.precision, quiet=config.quiet)
    history = learner.fit(config.epochs, phase="lm", resume=run / "checkpoints" if resume else None)
    return _finish(run, model.lm, validation, history, config, len(batches), started,
                   (valid_stream, len(valid_text)))


def _finish(run, lm: SequenceModel, validation: LMValidation, history: list[dict], config: LMConfig,
            batches_per_epoch: int, started: float, valid: tuple[torch.Tensor, int]) -> LMResult:
    """Best weights back in, scored on the whole validation slice, saved with the metrics."""
    if validation.best_weights is not None:
        lm.load_state_dict(validation.best_weights)
    training_seconds = time.monotonic() - started
    stream, chars = valid
    total, count = stream_nll(lm, stream, config.batch_size, config.bptt, validation.precision)
    loss = total / count
    metrics = {"valid_loss": loss, "valid_perplexity": math.exp(min(loss, 50.0)),
               "valid_bpc": bits_per_char(loss, stream.numel(), chars)}
    metrics.update(best_epoch=validation.best_epoch, epochs_run=len(history), seconds=round(training_seconds, 1),
                   tokens_trained=len(history) * batches_per_epoch * config.batch_size * config.bptt)
    save_weights(lm, run / "model.safetensors", metadata={"format": "heron.SequenceModel"})
    saved = run.read_json("config.json")
    run.write_json("config.json", {**saved, "metrics": metrics})
    return LMResult(run.path, history, metrics)


# ---------------------------------------------------------------- a finished run


@dataclass
class LanguageModel:
    """A trained language model with its tokenizer and the run's config."""

    model: SequenceModel
    tokenizer: Tokenizer
    config: dict

    def evaluate(self, text: str) -> dict:
        """Loss (nats per token), perplexity (per token) and bits per character of `text`."""
        stream = token_stream(self.tokenizer, text)
        if stream.numel() < 2:
            raise DataError("the text has fewer than 2 tokens; nothing to score")
        train = self.config.get("train", {})
        total, count = stream_nll(self.model, stream, int(train.get("batch_size", 32)), int(train.get("bptt", 64)))
        loss = total / count
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)),
                "bits_per_char": bits_per_char(loss, stream.numel(), len(text)),
                "tokens": stream.numel(), "chars": len(text)}

    def evaluate_file(self, path: str | Path) -> dict:
        return self.evaluate(read_text(path))

    def generate(self, prime: str = "", n: int = 200, temperature: float = 0.8, top_k: int | None = None,
                 seed: int = 0, on_text=None) -> str:
        """`n` tokens continuing `prime`; see `heron.tasks.sequence.generate.generate`."""
        from heron.tasks.sequence.generate import generate

        return generate(self.model, self.tokenizer, prime, n=n, temperature=temperature, top_k=top_k,
                        seed=seed, on_text=on_text)


def load_language_model(run: str | Path) -> LanguageModel:
    """The model, tokenizer and config of a run folder written by `train_language_model`."""
    run = Path(run)
    config_path = run / "config.json"
    if not config_path.is_file():
        raise DataError(f"{run}: no config.json; give the run folder `heron lm train` wrote")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        model_config = config["model"]
    except (ValueError, KeyError):
        raise DataError(f"{config_path}: not a heron language-model config (expected JSON with 'model')") from None
    if config.get("task") != "language_model":
        raise DataError(f"{run}: is not a language-model run (task {config.get('task')!r}); train one with heron lm train")
    tokenizer = load_tokenizer(run / "tokenizer.json")
    model = SequenceModel(**model_config)
    if not (run / "model.safetensors").is_file():
        raise DataError(f"{run}: no model.safetensors; the run did not finish (resume it with heron lm train --resume)")
    load_weights(model, run / "model.safetensors")
    return LanguageModel(model.eval(), tokenizer, config)
