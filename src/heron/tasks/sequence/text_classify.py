"""Many-to-one text classification (T_x > 1, T_y = 1): a CSV of `text,label` rows -> one label per text.

`train(TextConfig(data="reviews.csv"))`:
1. read and check the CSV (`heron.data.text_files.read_labelled_csv`); hold
   out a stratified `valid_pct` of every class with the seed, or read `valid`;
2. fit a word (or character) tokeniser on the training texts only, so the
   validation score sees words the model never saw as `<unk>`, as new text
   will be at prediction time;
3. train a bidirectional `SequenceModel(output="last")` on packed,
   length-bucketed batches with cross-entropy, one-cycle and gradient
   clipping; the answer is read from each text's last real step (both
   directions), so padding never changes it;
4. write the run folder: config.json, tokenizer.json, classes.txt,
   model.safetensors, metrics.jsonl, confusion.png and history.png.
`load_classifier` and `predict` use a finished run: new text goes through
the run's saved tokeniser.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from heron.data.folders import split_stratified
from heron.data.text import CharTokenizer, Tokenizer, WordTokenizer
from heron.data.text_files import LabelledTexts, read_labelled_csv
from heron.errors import DataError
from heron.tasks.sequence._fit import (LoadedSequenceRun, PackedModel, SequenceTaskConfig, fit_model,
                                       task_batches, task_model, load_run,
                                       predict_logits, write_run)
from heron.train.metrics import confusion_matrix
from heron.train.run import RunFolder

__all__ = ["TASK", "TextConfig", "TextRun", "TextPrediction", "train", "load_classifier", "predict"]

TASK = "text"
LEVELS = ("word", "char")


@dataclass
class TextConfig(SequenceTaskConfig):
    """Settings of `heron text train` (the flags, with underscores)."""

    level: str = "word"
    lower: bool = True


@dataclass
class TextRun:
    """A finished run: its folder, classes and validation scores."""

    path: Path
    classes: list[str]
    metrics: dict
    history: list[dict] = field(default_factory=list)


@dataclass
class TextPrediction:
    """The most likely label of one text, its probability, and every class's."""

    text: str
    label: str
    prob: float
    probs: dict[str, float]


def train(config: TextConfig) -> TextRun:
    """Train a text classifier on `config.data`; the run folder holds the model and its scores."""
    started = time.time()
    _check(config)
    torch.manual_seed(config.seed)
    train_rows, valid_rows = _splits(config)
    classes = train_rows.classes
    _check_valid_labels(valid_rows, classes, config.valid)
    tokenizer = fit_tokenizer(train_rows.texts, config)
    index = {c: i for i, c in enumerate(classes)}
    train_dl = _batches(tokenizer, train_rows, index, config, shuffle=True)
    valid_dl = _batches(tokenizer, valid_rows, index, config, shuffle=False) if len(valid_rows) else None
    net = task_model(config, len(classes), len(tokenizer), output="last")
    run = RunFolder.create(config.out, f"text-{Path(config.data).stem}", overwrite=config.overwrite)
    learner = fit_model(PackedModel(net), train_dl, valid_dl, config.epochs, config.lr, run=run,
                        max_minutes=config.max_minutes, quiet=config.quiet, device=config.device)
    metrics = _score(learner, valid_dl, classes, run)
    metrics.update(train_texts=len(train_rows), valid_texts=len(valid_rows), vocab=len(tokenizer),
                   epochs_run=len(learner.history), seconds=round(time.time() - started, 1))
    write_run(run, TASK, asdict(config), net.cpu(), tokenizer, "classes.txt", classes, metrics, learner.history)
    return TextRun(run.path, classes, metrics, learner.history)


def _check(config: TextConfig) -> None:
    if config.level not in LEVELS:
        raise DataError(f"level must be one of {', '.join(LEVELS)}; got {config.level!r}")
    config.check_sizes()


def _splits(config: TextConfig) -> tuple[LabelledTexts, LabelledTexts]:
    """(train, valid) rows: the --valid file, or a stratified --valid-pct split of the data."""
    rows = read_labelled_csv(config.data)
    if config.valid:
        return rows, read_labelled_csv(config.valid, min_rows=1, min_classes=1)
    classes = rows.classes
    index = {c: i for i, c in enumerate(classes)}
    samples = [(f"{i:09d}", index[label]) for i, label in enumerate(rows.labels)]  # zero-padded: sorts by row
    train_part, valid_part = split_stratified(samples, config.valid_pct, config.seed)
    return _subset(rows, train_part), _subset(rows, valid_part)


def _subset(rows: LabelledTexts, samples) -> LabelledTexts:
    keep = [int(key) for key, _ in samples]
    return LabelledTexts([rows.texts[i] for i in keep], [rows.labels[i] for i in keep], [rows.lines[i] for i in keep])


def _check_valid_labels(valid: LabelledTexts, classes: list[str], path: str | None) -> None:
    known = set(classes)
    for label, line in zip(valid.labels, valid.lines):
        if label not in known:
            raise DataError(f"{path}: line {line}: label {label!r} is not among the training classes "
                            f"({', '.join(classes[:10])}); fix the label or add training rows for it")


def fit_tokenizer(texts: list[str], config: TextConfig) -> Tokenizer:
    """A word or character tokeniser fitted on the training texts."""
    joined = "\n".join(texts)
    if config.level == "char":
        return CharTokenizer.fit(joined.lower() if config.lower else joined)
    return WordTokenizer.fit(joined, max_vocab=config.max_vocab, lower=config.lower)


def _encode(tokenizer: Tokenizer, text: str, lower: bool) -> list[int]:
    """Codes of one text through the tokeniser (the char tokeniser folds case here when the run did)."""
    if isinstance(tokenizer, CharTokenizer) and lower:
        text = text.lower()
    return tokenizer.encode(text)


def _batches(tokenizer: Tokenizer, rows: LabelledTexts, index: dict, config: TextConfig, shuffle: bool):
    codes = [_encode(tokenizer, text, config.lower) for text in rows.texts]
    targets = [index[label] for label in rows.labels]
    return task_batches(codes, targets, config, shuffle)


def _score(learner, valid_dl, classes: list[str], run: RunFolder) -> dict:
    """Validation accuracy and loss, and the confusion matrix (also drawn as confusion.png)."""
    if valid_dl is None:
        return {"accuracy": None, "valid_loss": None}
    scores = learner.history[-1]  # the last epoch validated the weights the run keeps
    probs, targets = learner.get_preds(valid_dl)
    matrix = confusion_matrix(probs, targets, num_classes=len(classes))
    from heron.interpret.plots import plot_confusion

    plot_confusion(matrix, classes, run / "confusion.png")
    return {"accuracy": scores["valid_accuracy"], "valid_loss": scores["valid_loss"],
            "confusion": matrix.tolist()}


def load_classifier(path: str | Path) -> LoadedSequenceRun:
    """The trained classifier of a `heron text train` run folder."""
    return load_run(path, TASK)


def predict(run: LoadedSequenceRun | str | Path, texts: list[str], batch_size: int = 64) -> list[TextPrediction]:
    """The label and probability of each text, through the run's saved tokeniser."""
    loaded = run if isinstance(run, LoadedSequenceRun) else load_classifier(run)
    options = loaded.config["options"]
    for i, text in enumerate(texts):
        if not text.strip():
            raise DataError(f"text {i + 1} is empty; give some text to classify")
    codes = [_encode(loaded.tokenizer, text, options.get("lower", False)) for text in texts]
    logits = predict_logits(loaded.net, codes, batch_size, max_len=options.get("max_len"))
    table = torch.softmax(torch.stack(logits), dim=1) if logits else torch.zeros(0, len(loaded.labels))  # (N, C)
    return [_prediction(text, row, loaded.labels) for text, row in zip(texts, table)]


def _prediction(text: str, row: torch.Tensor, labels: list[str]) -> TextPrediction:
    best = int(row.argmax())
    return TextPrediction(text, labels[best], float(row[best]), {c: float(p) for c, p in zip(labels, row)})
