"""`heron text train | predict` (a label per text) and `heron tag train | predict` (a tag per token).

Parsing imports nothing heavy; the run functions import the sequence tasks.
"""

from __future__ import annotations

import argparse
import json
import sys

# The tasks' defaults, repeated here so that parsing does not import torch (tests/cli check they agree).
TEXT_DEFAULTS = {"epochs": 5, "cell": "gru", "max_vocab": 20000, "seed": 0, "valid_pct": 0.2, "embed_dim": 64,
                 "hidden_size": 64, "num_layers": 1, "lr": 3e-3, "batch_size": 64, "max_len": 200, "level": "word",
                 "unk_prob": 0.5}
TAG_DEFAULTS = {**TEXT_DEFAULTS, "epochs": 10, "batch_size": 32}
TAG_DEFAULTS.pop("level")


def add_parser(sub: argparse._SubParsersAction) -> None:
    text = sub.add_parser("text", help="text classification (sentiment-style): train on a text,label CSV, predict",
                          description="A bidirectional recurrent network reads each text and gives one label.")
    commands = text.add_subparsers(dest="text_command", metavar="COMMAND", required=True)
    p = commands.add_parser("train", help="train on a CSV with a header row naming text and label columns")
    p.add_argument("data", help="CSV file: a header row with text,label, then one row per text")
    p.add_argument("--valid", metavar="CSV", help="a second CSV to validate on (default: hold out --valid-pct)")
    p.add_argument("--level", choices=("word", "char"), default=TEXT_DEFAULTS["level"],
                   help="tokens are words and punctuation (default) or characters")
    p.add_argument("--case-sensitive", dest="lower", action="store_false", help="keep case (default: fold it)")
    _common_flags(p, TEXT_DEFAULTS)
    p.set_defaults(func=run_text_train)

    p = commands.add_parser("predict", help="label texts with a trained run")
    p.add_argument("run", help="run folder from `heron text train`")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="text(s) to classify (quote each)")
    p.add_argument("--json", action="store_true", help="one JSON object per text, with every class's probability")
    p.set_defaults(func=run_text_predict)

    tag = sub.add_parser("tag", help="tag every token (named entities, parts of speech): train on CoNLL, predict",
                         description="A bidirectional recurrent network gives one tag per token.")
    commands = tag.add_subparsers(dest="tag_command", metavar="COMMAND", required=True)
    p = commands.add_parser("train", help="train on a CoNLL-style file: 'token tag' per line, blank between sentences")
    p.add_argument("data", help="CoNLL-style file (token first, tag last column; -DOCSTART- lines skipped)")
    p.add_argument("--valid", metavar="CONLL", help="a second file to validate on (default: hold out --valid-pct)")
    p.add_argument("--lower", action="store_true", help="fold case in the vocabulary (default: keep it)")
    _common_flags(p, TAG_DEFAULTS)
    p.set_defaults(func=run_tag_train)

    p = commands.add_parser("predict", help="tag sentences with a trained run")
    p.add_argument("run", help="run folder from `heron tag train`")
    p.add_argument("sentences", nargs="+", metavar="SENTENCE", help="sentence(s), tokens separated by spaces")
    p.add_argument("--json", action="store_true", help="one JSON list of [token, tag] pairs per sentence")
    p.set_defaults(func=run_tag_predict)


def _common_flags(p: argparse.ArgumentParser, defaults: dict) -> None:
    p.add_argument("--valid-pct", type=float, default=defaults["valid_pct"], help="held out when there is no --valid")
    p.add_argument("--out", help="run folder (default runs/<task>-<data>-<time>); an existing run there is refused")
    p.add_argument("--overwrite", action="store_true", help="replace the finished run in --out")
    p.add_argument("--epochs", type=int, default=defaults["epochs"], help="default %(default)s")
    p.add_argument("--cell", choices=("rnn", "gru", "lstm"), default=defaults["cell"], help="default %(default)s")
    p.add_argument("--max-vocab", type=int, default=defaults["max_vocab"],
                   help="most frequent training tokens kept, the rest <unk> (default %(default)s)")
    p.add_argument("--max-len", type=int, default=defaults["max_len"], help="tokens kept per sequence in training")
    p.add_argument("--unk-prob", type=float, default=defaults["unk_prob"],
                   help="in training, a word seen once becomes <unk> with this probability, so words new at "
                   "prediction time meet a trained <unk> (default %(default)s; 0 turns it off)")
    p.add_argument("--embed-dim", type=int, default=defaults["embed_dim"])
    p.add_argument("--hidden-size", type=int, default=defaults["hidden_size"])
    p.add_argument("--layers", dest="num_layers", type=int, default=defaults["num_layers"])
    p.add_argument("--unidirectional", dest="bidirectional", action="store_false",
                   help="read left to right only (default: both directions)")
    p.add_argument("--lr", type=float, default=defaults["lr"], help="peak learning rate, one-cycle")
    p.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    p.add_argument("--seed", type=int, default=defaults["seed"])
    p.add_argument("--max-minutes", type=float, help="stop after the epoch in which this many minutes have passed")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _options(args: argparse.Namespace, config_type) -> object:
    names = config_type.__dataclass_fields__
    config = config_type(**{k: v for k, v in vars(args).items() if k in names})
    return config


def _summary(metrics: dict, keys: tuple[str, ...]) -> str:
    parts = [f"{k} {metrics[k]:.4f}" for k in keys if isinstance(metrics.get(k), float)]
    return "  ".join(parts) or "no validation data"


def run_text_train(args: argparse.Namespace) -> int:
    from heron.tasks.sequence.text_classify import TextConfig, train

    run = train(_options(args, TextConfig))
    m = run.metrics
    print(f"{run.path}: {len(run.classes)} classes, {m['train_texts']} train / {m['valid_texts']} valid texts, "
          f"vocab {m['vocab']}, {m['epochs_run']} epochs in {m['seconds']:.1f}s")
    print(f"valid {_summary(m, ('accuracy', 'valid_loss'))}")
    return 0


def run_text_predict(args: argparse.Namespace) -> int:
    from heron.tasks.sequence.text_classify import predict

    for p in predict(args.run, args.texts):
        if args.json:
            print(json.dumps({"text": p.text, "label": p.label, "prob": round(p.prob, 4),
                              "probs": {k: round(v, 4) for k, v in p.probs.items()}}))
        else:
            print(f"{p.label}\t{p.prob:.4f}\t{p.text}")
    return 0


def run_tag_train(args: argparse.Namespace) -> int:
    from heron.tasks.sequence.tag import TagConfig, train

    run = train(_options(args, TagConfig))
    m = run.metrics
    print(f"{run.path}: {len(run.tags)} tags, {m['train_sentences']} train / {m['valid_sentences']} valid "
          f"sentences, vocab {m['vocab']}, {m['epochs_run']} epochs in {m['seconds']:.1f}s")
    print(f"valid token {_summary(m, ('accuracy', 'entity_f1'))}")
    return 0


def run_tag_predict(args: argparse.Namespace) -> int:
    from heron.tasks.sequence.tag import predict

    for pairs in predict(args.run, args.sentences):
        if args.json:
            print(json.dumps([[token, tag] for token, tag in pairs]))
        else:
            print(" ".join(f"{token}/{tag}" for token, tag in pairs))
    sys.stdout.flush()
    return 0
