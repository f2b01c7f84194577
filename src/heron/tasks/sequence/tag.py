"""Many-to-many tagging with T_x = T_y: one tag per token (named entities, parts of speech).

`train(TagConfig(data="train.conll"))`:
1. read the CoNLL-style file (`heron.data.text_files.read_conll`); hold out
   `valid_pct` of the sentences with the seed, or read `valid`;
2. build the vocabulary over the training tokens (the `max_vocab` most
   frequent, the rest `<unk>`) and a separate list of tags;
3. train a bidirectional `SequenceModel(output="sequence")` with per-token
   cross-entropy whose padded steps carry `IGNORE`, so padding is left out of
   the loss exactly (not down-weighted); token accuracy on validation, and
   entity-level F1 when the tags are BIO (`B-X`, `I-X`, `O`);
4. write the run folder: config.json, tokenizer.json, tags.txt,
   model.safetensors, metrics.jsonl, history.png.
`load_tagger` and `predict` use a finished run. Tokens are what the
training file had on each line, so a sentence given as text is split on
whitespace; each token is looked up in the run's saved vocabulary (a word
never seen in training is `<unk>`).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from heron.data.folders import valid_count
from heron.data.text import SPECIALS, UNK, WordTokenizer
from heron.data.text_files import TaggedSentences, read_conll
from heron.errors import DataError
from heron.models.rnn import SequenceModel
from heron.tasks.sequence._fit import (LoadedSequenceRun, PackedModel, SequenceTaskConfig, fit_model,
                                       task_batches, task_model, load_run,
                                       masked_accuracy, predict_logits, write_run)
from heron.train.run import RunFolder

__all__ = ["TASK", "TagConfig", "TagRun", "train", "load_tagger", "predict", "token_vocabulary", "encode_tokens",
           "bio_spans", "entity_f1", "looks_like_bio"]

TASK = "tag"


@dataclass
class TagConfig(SequenceTaskConfig):
    """Settings of `heron tag train` (the flags, with underscores)."""

    epochs: int = 10
    batch_size: int = 32


@dataclass
class TagRun:
    """A finished run: its folder, tags and validation scores."""

    path: Path
    tags: list[str]
    metrics: dict
    history: list[dict] = field(default_factory=list)


def token_vocabulary(sentences: list[list[str]], max_vocab: int = 20000, lower: bool = False) -> WordTokenizer:
    """A vocabulary over already split tokens: the most frequent first (ties alphabetical), specials in front."""
    if max_vocab <= len(SPECIALS):
        raise DataError(f"max_vocab must be more than {len(SPECIALS)} (the special tokens); got {max_vocab}")
    counts = Counter(t.lower() if lower else t for sentence in sentences for t in sentence)
    for special in SPECIALS:
        counts.pop(special, None)
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    return WordTokenizer(list(SPECIALS) + ranked[: max_vocab - len(SPECIALS)], lower=lower)


def encode_tokens(tokenizer: WordTokenizer, tokens: list[str]) -> list[int]:
    """Codes of already split tokens in `tokenizer`'s vocabulary (case folded if it was); unknown -> UNK."""
    fold = getattr(tokenizer, "lower", False)
    return [tokenizer.stoi.get(t.lower() if fold else t, UNK) for t in tokens]


def train(config: TagConfig) -> TagRun:
    """Train a tagger on `config.data`; the run folder holds the model and its scores."""
    started = time.time()
    config.check_sizes()
    torch.manual_seed(config.seed)
    train_set, valid_set = _splits(config)
    tags = train_set.tag_set
    _check_valid_tags(valid_set, tags, config.valid)
    tokenizer = token_vocabulary(train_set.tokens, config.max_vocab, config.lower)
    index = {t: i for i, t in enumerate(tags)}
    train_dl = _batches(tokenizer, train_set, index, config, shuffle=True)
    valid_dl = _batches(tokenizer, valid_set, index, config, shuffle=False) if len(valid_set) else None
    net = task_model(config, len(tags), len(tokenizer), output="sequence")
    run = RunFolder.create(config.out, f"tag-{Path(config.data).stem}", overwrite=config.overwrite)
    learner = fit_model(PackedModel(net), train_dl, valid_dl, config.epochs, config.lr, run=run,
                        metrics=(masked_accuracy,), max_minutes=config.max_minutes, quiet=config.quiet,
                        device=config.device)
    net = net.cpu().eval()
    metrics = _score(net, tokenizer, valid_set, tags) if len(valid_set) else {"accuracy": None}
    metrics.update(train_sentences=len(train_set), valid_sentences=len(valid_set), vocab=len(tokenizer),
                   epochs_run=len(learner.history), seconds=round(time.time() - started, 1))
    write_run(run, TASK, asdict(config), net, tokenizer, "tags.txt", tags, metrics, learner.history)
    return TagRun(run.path, tags, metrics, learner.history)


def _splits(config: TagConfig) -> tuple[TaggedSentences, TaggedSentences]:
    """(train, valid) sentences: the --valid file, or `valid_pct` of the sentences drawn with the seed."""
    data = read_conll(config.data)
    if config.valid:
        return data, read_conll(config.valid, min_sentences=1, min_tags=1)
    if not 0.0 <= config.valid_pct < 1.0:
        raise DataError(f"valid_pct must be at least 0 and below 1 (got {config.valid_pct}); e.g. 0.2 holds out 20%")
    order = list(range(len(data)))
    random.Random(f"heron-tag-split:{config.seed}").shuffle(order)
    k = valid_count(len(order), config.valid_pct)
    return _subset(data, sorted(order[k:])), _subset(data, sorted(order[:k]))


def _subset(data: TaggedSentences, keep: list[int]) -> TaggedSentences:
    return TaggedSentences([data.tokens[i] for i in keep], [data.tags[i] for i in keep], [data.lines[i] for i in keep])


def _check_valid_tags(valid: TaggedSentences, tags: list[str], path: str | None) -> None:
    known = set(tags)
    for sentence, line in zip(valid.tags, valid.lines):
        for offset, tag in enumerate(sentence):
            if tag not in known:
                raise DataError(f"{path}: line {line + offset}: tag {tag!r} is not among the training tags "
                                f"({', '.join(tags[:10])}); fix the tag or add training sentences with it")


def _batches(tokenizer: WordTokenizer, data: TaggedSentences, index: dict, config: TagConfig, shuffle: bool):
    codes = [encode_tokens(tokenizer, sentence) for sentence in data.tokens]
    targets = [[index[t] for t in sentence] for sentence in data.tags]
    return task_batches(codes, targets, config, shuffle)


def _score(net: SequenceModel, tokenizer: WordTokenizer, data: TaggedSentences, tags: list[str]) -> dict:
    """Token accuracy over every validation token (no cut), and entity F1 when the tags are BIO."""
    predicted = _tag_sentences(net, tokenizer, data.tokens, tags)
    pairs = [(p, t) for pred, true in zip(predicted, data.tags) for p, t in zip(pred, true)]
    metrics = {"accuracy": sum(p == t for p, t in pairs) / max(len(pairs), 1), "valid_tokens": len(pairs)}
    if looks_like_bio(tags):
        metrics.update(entity_f1(data.tags, predicted))
    return metrics


def _tag_sentences(net: SequenceModel, tokenizer: WordTokenizer, sentences: list[list[str]],
                   tags: list[str]) -> list[list[str]]:
    logits = predict_logits(net, [encode_tokens(tokenizer, s) for s in sentences])
    return [[tags[int(i)] for i in row.argmax(dim=1)] for row in logits]


# ---- BIO entities ----------------------------------------------------------------------
def looks_like_bio(tags: list[str]) -> bool:
    """True when every tag is `O` or `B-X` / `I-X`, and some are not `O`."""
    return any(t != "O" for t in tags) and all(t == "O" or t[:2] in ("B-", "I-") for t in tags)


def bio_spans(tags: list[str]) -> set[tuple[int, int, str]]:
    """Entities `(start, end exclusive, type)` of a BIO tag sequence.

    `B-X` starts an entity; `I-X` continues one of type X, or starts one after
    `O` or another type (the lenient reading conlleval uses).
    """
    spans, start, kind = set(), None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, name = tag.partition("-")
        continues = prefix == "I" and kind == name
        if start is not None and not continues:
            spans.add((start, i, kind))
            start, kind = None, None
        if prefix in ("B", "I") and not continues:
            start, kind = i, name
    return spans


def entity_f1(true: list[list[str]], predicted: list[list[str]]) -> dict:
    """Micro precision, recall and F1 over exact entity matches (span and type)."""
    hits = n_true = n_pred = 0
    for t, p in zip(true, predicted):
        gold, found = bio_spans(t), bio_spans(p)
        hits, n_true, n_pred = hits + len(gold & found), n_true + len(gold), n_pred + len(found)
    precision = hits / n_pred if n_pred else 0.0
    recall = hits / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"entity_precision": precision, "entity_recall": recall, "entity_f1": f1}


# ---- prediction ------------------------------------------------------------------------
def load_tagger(path: str | Path) -> LoadedSequenceRun:
    """The trained tagger of a `heron tag train` run folder."""
    return load_run(path, TASK)


def predict(run: LoadedSequenceRun | str | Path, sentences: list[str] | list[list[str]]) -> list[list[tuple[str, str]]]:
    """(token, tag) pairs for each sentence: a string (split on whitespace) or a list of tokens."""
    loaded = run if isinstance(run, LoadedSequenceRun) else load_tagger(run)
    tokens = [s.split() if isinstance(s, str) else list(s) for s in sentences]
    for i, sentence in enumerate(tokens):
        if not sentence:
            raise DataError(f"sentence {i + 1} is empty; give some words to tag")
    tagged = _tag_sentences(loaded.net, loaded.tokenizer, tokens, loaded.labels)
    return [list(zip(s, t)) for s, t in zip(tokens, tagged)]
