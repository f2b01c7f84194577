"""Character-level translation with an attention encoder-decoder: pairs file in, run folder out.

A pairs file holds one example a line, `source<TAB>target` (UTF-8). `train`
reads it (and a validation file, or holds back `valid_pct` of it), fits one
CharTokenizer on the sources and another on the targets, and trains
`heron.models.seq2seq.Seq2Seq` with heron's Learner:

- a batch is `((src, src_lengths, tgt_in), tgt_out)`: sources end in `<eos>`,
  `tgt_in` is `<eos>` + target (the start token), `tgt_out` is target +
  `<eos>`, all padded with PAD per batch;
- the loss is cross-entropy over the real target tokens (PAD ignored), the
  gradient norm is clipped, the learning rate follows one cycle;
- after every epoch the validation sources are decoded greedily and the
  exact-match accuracy (the whole output equals the target) is logged.

The run folder holds config.json (the model's constructor arguments, the
settings and the final scores), source_tokenizer.json,
target_tokenizer.json, model.safetensors, metrics.jsonl and attention.png
(where the decoder looked while writing a few validation outputs).
`load_translator(run)` and `translate(run_or_model, texts, beam=...)` use a
finished run. `demo` generates human-written dates and their ISO form
(`heron.data.dates`) and trains on them offline.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from heron.data.text import EOS, CharTokenizer, load_tokenizer, pad_sequences, read_text
from heron.errors import DataError, TrainingError
from heron.models import load_weights, save_weights
from heron.models.seq2seq import Seq2Seq, masked_cross_entropy
from heron.train import Callback, Learner, MetricsLogger, TimeBudget
from heron.train.run import RunFolder

__all__ = ["TranslateConfig", "TranslateRun", "Translator", "read_pairs", "train", "train_on_pairs", "demo",
           "exact_match", "load_translator", "translate", "make_batch"]

SOURCE_TOKENIZER, TARGET_TOKENIZER = "source_tokenizer.json", "target_tokenizer.json"


@dataclass
class TranslateConfig:
    """Settings of one translation run; the defaults train the date demo in minutes on 2 CPU cores."""

    epochs: int = 4
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    teacher_forcing: float = 1.0
    embed_dim: int = 32
    hidden_size: int = 64
    decoder_size: int = 128
    attention: str = "additive"
    attention_size: int = 64
    dropout: float = 0.0
    valid_pct: float = 0.1
    beam: int = 1
    max_minutes: float | None = None
    seed: int = 0
    quiet: bool = False
    overwrite: bool = False
    device: str = "cpu"

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainingError(f"--epochs and --batch-size must be at least 1; got {self.epochs}, {self.batch_size}")
        if self.beam < 1:
            raise TrainingError(f"--beam must be at least 1; got {self.beam}")
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise TrainingError(f"teacher_forcing must be in [0, 1]; got {self.teacher_forcing}")
        if self.attention not in ("additive", "dot"):
            raise TrainingError(f"attention must be 'additive' or 'dot'; got {self.attention!r}")
        if not 0.0 < self.valid_pct < 1.0:
            raise TrainingError(f"valid_pct must be between 0 and 1; got {self.valid_pct}")


@dataclass
class TranslateRun:
    """A finished run: its folder and what it measured."""

    path: Path
    metrics: dict
    history: list[dict] = field(default_factory=list)


@dataclass
class Translator:
    """A trained model with its two tokenisers and the longest output it may write."""

    model: Seq2Seq
    source: CharTokenizer
    target: CharTokenizer
    max_len: int = 50


# ---- reading ---------------------------------------------------------------------------------------
def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """The (source, target) pairs of a `source<TAB>target` file; blank lines are skipped.

    A line without a tab, or with an empty side, is a DataError naming the file and line.
    """
    pairs = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        source, tab, target = line.partition("\t")
        source, target = source.strip(), target.strip()
        if not tab:
            raise DataError(f"{path}:{number}: no tab; each line must be source<TAB>target")
        if not source or not target:
            side = "source" if not source else "target"
            raise DataError(f"{path}:{number}: the {side} is empty; each line must be source<TAB>target")
        pairs.append((source, target))
    return pairs


# ---- batches ---------------------------------------------------------------------------------------
def make_batch(sources: list[list[int]], targets: list[list[int]]):
    """((src, src_lengths, tgt_in), tgt_out) from token codes without `<eos>` (added here), padded with PAD."""
    src, src_lengths = pad_sequences([s + [EOS] for s in sources])  # (B, T_x)
    tgt_out, _ = pad_sequences([t + [EOS] for t in targets])  # (B, T_y)
    tgt_in, _ = pad_sequences([[EOS] + t for t in targets])  # (B, T_y): <eos> is the start token
    return (src, src_lengths, tgt_in), tgt_out


class PairBatches:
    """Shuffled (each epoch, from a seeded generator) batches of encoded pairs, padded per batch."""

    def __init__(self, sources: list[list[int]], targets: list[list[int]], batch_size: int,
                 shuffle: bool = True, seed: int = 0) -> None:
        self.sources, self.targets, self.batch_size, self.shuffle = sources, targets, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.sources) // self.batch_size)

    def __iter__(self):
        n = len(self.sources)
        order = torch.randperm(n, generator=self.generator).tolist() if self.shuffle else list(range(n))
        for start in range(0, n, self.batch_size):
            rows = order[start:start + self.batch_size]
            yield make_batch([self.sources[i] for i in rows], [self.targets[i] for i in rows])


class _TeacherForced(nn.Module):
    """What the Learner trains: the model called on the batch's (src, src_lengths, tgt_in)."""

    def __init__(self, model: Seq2Seq, ratio: float) -> None:
        super().__init__()
        self.model, self.ratio = model, ratio

    def forward(self, xb):
        src, src_lengths, tgt_in = xb
        return self.model(src, src_lengths, tgt_in, teacher_forcing=self.ratio if self.training else 1.0)


# ---- scoring ---------------------------------------------------------------------------------------
def decode_texts(translator: Translator, texts: list[str], beam: int = 1, batch_size: int = 256):
    """The translations of `texts` with their Decoded (tokens, log-probability, attention)."""
    model = translator.model
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        src, src_lengths = pad_sequences([translator.source.encode(t) + [EOS] for t in chunk])
        src = src.to(device)
        if beam > 1:
            decoded = model.beam_search(src, src_lengths, beam=beam, max_len=translator.max_len)
        else:
            decoded = model.greedy(src, src_lengths, max_len=translator.max_len)
        out += [(translator.target.decode(d.tokens), d) for d in decoded]
    return out


def exact_match(translator: Translator, pairs: list[tuple[str, str]], beam: int = 1) -> float:
    """Share of the pairs whose whole decoded output equals the target."""
    if not pairs:
        return float("nan")
    outputs = decode_texts(translator, [s for s, _ in pairs], beam)
    return sum(text == target for (text, _), (_, target) in zip(outputs, pairs)) / len(pairs)


class ExactMatch(Callback):
    """After every epoch: greedy exact-match accuracy on the validation pairs, into the epoch's record."""

    order = 5  # before the progress bar (10) and the metrics logger (20) read the record

    def __init__(self, translator: Translator, pairs: list[tuple[str, str]]) -> None:
        self.translator, self.pairs = translator, pairs

    def after_epoch(self, learner) -> None:
        learner.record["valid_exact"] = exact_match(self.translator, self.pairs)
        self.translator.model.train()


# ---- training --------------------------------------------------------------------------------------
def train(pairs: str | Path, valid: str | Path | None = None, out: str | Path | None = None,
          config: TranslateConfig | None = None) -> TranslateRun:
    """`heron translate train PAIRS`: train on a pairs file; returns the finished run."""
    config = config or TranslateConfig()
    config.check()
    train_pairs = read_pairs(pairs)
    if valid is not None:
        valid_pairs = read_pairs(valid)
    else:
        train_pairs, valid_pairs = _hold_back(train_pairs, config.valid_pct, config.seed)
    if not train_pairs:
        raise DataError(f"{pairs}: no training pairs left; give more lines or a --valid file")
    run = RunFolder.create(out, f"translate-{Path(pairs).stem}", overwrite=config.overwrite)
    return train_on_pairs(train_pairs, valid_pairs, run, config, data={"pairs": str(pairs), "valid": valid})


def demo(out: str | Path | None = None, pairs: int = 20000, config: TranslateConfig | None = None) -> TranslateRun:
    """`heron translate demo`: `pairs` generated dates to train on, a held-back set never seen in training."""
    from heron.data.dates import write_date_pairs

    config = config or TranslateConfig()
    config.check()
    run = RunFolder.create(out, "translate-dates", overwrite=config.overwrite)
    train_pairs = write_date_pairs(run / "dates-train.tsv", pairs, seed=config.seed)
    held_back = max(500, pairs // 10)
    valid_pairs = write_date_pairs(run / "dates-valid.tsv", held_back, seed=config.seed + 1,
                                   exclude={s for s, _ in train_pairs})
    return train_on_pairs(train_pairs, valid_pairs, run, config,
                          data={"pairs": "dates-train.tsv", "valid": "dates-valid.tsv", "generated": True})


def _hold_back(pairs: list[tuple[str, str]], pct: float, seed: int):
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_valid = max(1, round(len(pairs) * pct)) if len(pairs) > 1 else 0
    return [pairs[i] for i in order[n_valid:]], [pairs[i] for i in order[:n_valid]]


def train_on_pairs(train_pairs: list[tuple[str, str]], valid_pairs: list[tuple[str, str]], run: RunFolder,
                   config: TranslateConfig, data: dict | None = None) -> TranslateRun:
    """Fit tokenisers and model on `train_pairs`, score on `valid_pairs`, write the run folder."""
    started = time.time()
    torch.manual_seed(config.seed)
    source = CharTokenizer.fit("".join(s for s, _ in train_pairs))
    target = CharTokenizer.fit("".join(t for _, t in train_pairs))
    model = Seq2Seq(len(source), len(target), embed_dim=config.embed_dim, hidden_size=config.hidden_size,
                    decoder_size=config.decoder_size, attention=config.attention,
                    attention_size=config.attention_size, dropout=config.dropout)
    max_len = max(len(t) for _, t in train_pairs) + 5
    translator = Translator(model, source, target, max_len)
    settings = {"model": model.config, "max_target_len": max_len, "settings": asdict(config), "data": data or {},
                "tokenizers": {"source": SOURCE_TOKENIZER, "target": TARGET_TOKENIZER}}
    run.write_json("config.json", settings)
    source.save(run / SOURCE_TOKENIZER)
    target.save(run / TARGET_TOKENIZER)

    batches = PairBatches([source.encode(s) for s, _ in train_pairs], [target.encode(t) for _, t in train_pairs],
                          config.batch_size, seed=config.seed)
    callbacks = [MetricsLogger(run.path)]
    if valid_pairs:
        callbacks.append(ExactMatch(translator, valid_pairs))
    if config.max_minutes:
        callbacks.append(TimeBudget(config.max_minutes))
    learner = Learner(_TeacherForced(model, config.teacher_forcing), batches, None, loss_fn=masked_cross_entropy,
                      lr=config.lr, weight_decay=config.weight_decay, metrics=(), callbacks=callbacks,
                      device=config.device, quiet=config.quiet, grad_clip=config.grad_clip)
    history = learner.fit(config.epochs, phase="train")
    model.cpu()

    metrics = _final_scores(translator, valid_pairs, config.beam, history, time.time() - started)
    save_weights(model, run / "model.safetensors", metadata={"format": "heron.Seq2Seq"})
    run.write_json("config.json", {**settings, "results": metrics})
    if valid_pairs:
        write_attention_figure(translator, [s for s, _ in valid_pairs[:4]], run / "attention.png")
    return TranslateRun(run.path, metrics, history)


def _final_scores(translator: Translator, valid_pairs, beam: int, history: list[dict], seconds: float) -> dict:
    metrics = {"epochs": len(history), "train_loss": history[-1]["train_loss"] if history else None,
               "valid_pairs": len(valid_pairs), "train_seconds": round(seconds, 1), "beam": beam}
    if valid_pairs:
        metrics["valid_exact"] = exact_match(translator, valid_pairs, beam=1)
        if beam > 1:
            metrics["valid_exact_beam"] = exact_match(translator, valid_pairs, beam=beam)
    return metrics


# ---- using a run -----------------------------------------------------------------------------------
def load_translator(run: str | Path) -> Translator:
    """The model and tokenisers of a finished run folder."""
    folder = RunFolder(run)
    if not folder.exists("config.json"):
        raise DataError(f"{run}: no config.json; give a run folder made by `heron translate train` or `demo`")
    config = folder.read_json("config.json")
    if "model" not in config or "max_target_len" not in config:
        raise DataError(f"{run}/config.json: not a translation run (no model settings)")
    if not folder.exists("model.safetensors"):
        raise DataError(f"{run}: no model.safetensors; the run did not finish; train it again")
    source = load_tokenizer(folder / SOURCE_TOKENIZER)
    target = load_tokenizer(folder / TARGET_TOKENIZER)
    model = load_weights(Seq2Seq(**config["model"]), folder / "model.safetensors")
    model.eval()
    return Translator(model, source, target, int(config["max_target_len"]))


def translate(run_or_model: str | Path | Translator, texts: list[str] | str, beam: int = 1) -> list[str]:
    """The translations of `texts` (one string or a list) by a run folder or a loaded Translator."""
    translator = run_or_model if isinstance(run_or_model, Translator) else load_translator(run_or_model)
    if beam < 1:
        raise DataError(f"--beam must be at least 1; got {beam}")
    texts = [texts] if isinstance(texts, str) else list(texts)
    return [text for text, _ in decode_texts(translator, texts, beam)]


# ---- figure ----------------------------------------------------------------------------------------
def write_attention_figure(translator: Translator, texts: list[str], path: str | Path) -> Path:
    """One heatmap per text: output characters (rows) against source characters (columns)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from heron._atomic import atomic_save

    decoded = decode_texts(translator, texts)
    cols = min(2, len(texts))
    rows = -(-len(texts) // cols)
    fig = Figure(figsize=(6.5 * cols, 3.6 * rows), constrained_layout=True)
    FigureCanvasAgg(fig)
    for k, (text, (output, d)) in enumerate(zip(texts, decoded)):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(d.attention.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(text) + 1), list(text) + ["<eos>"], fontsize=8)
        written = [translator.target.itos[c] for c in d.tokens]
        ax.set_yticks(range(d.attention.shape[0]), written + ["<eos>"] * (d.attention.shape[0] - len(written)),
                      fontsize=8)
        ax.set_title(f"{text!r} -> {output!r}", fontsize=9)
        ax.set_xlabel("source")
        ax.set_ylabel("output")
    return atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
