"""`heron series train | predict`: classify 1-D signals in the UCR archive's text format.

`heron series train X_TRAIN.tsv --test X_TEST.tsv` trains a network from
scratch (default the strided conv1d_net), writes a run folder and prints the scores,
`test accuracy = 0.XXXX` last. `heron series predict RUN FILE` prints one
predicted label per line.

Parsing imports nothing heavy, so the defaults shown in the help are kept
here in `SHOWN_DEFAULTS`; a test checks them against `SeriesConfig`.
"""

from __future__ import annotations

import argparse
import sys

# The SeriesConfig defaults, for the help text (tests/cli/test_series_cli.py keeps them equal).
SHOWN_DEFAULTS = {"model": "conv1d_net", "epochs": 60, "lr": 1e-2, "batch_size": 16, "valid_pct": 0.2, "seed": 0,
                  "hidden_size": 64, "weight_decay": 1e-2}
MODEL_CHOICES = ("fcn", "resnet1d", "conv1d_net", "gru")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("series", help="1-D signal classification (UCR format): train, predict",
                       description="Classify 1-D series stored one per line: the label, then the values, separated "
                       "by tabs, commas or spaces (the UCR archive's format). Series are z-normalised one by one.")
    commands = p.add_subparsers(dest="series_command", metavar="COMMAND", required=True)
    _add_train(commands)
    _add_predict(commands)


def _add_train(commands) -> None:
    d = SHOWN_DEFAULTS
    p = commands.add_parser("train", help="train a classifier on a UCR-format file",
                            description="Hold out --valid-pct of TRAIN_FILE (stratified, seeded), train and score it, "
                            "then train again on all of TRAIN_FILE (unless --no-refit); --test scores the result.")
    p.add_argument("train", metavar="TRAIN_FILE", help="label, then values, one series per line")
    p.add_argument("--test", metavar="FILE", help="scored after training; prints `test accuracy = ...` last")
    p.add_argument("--model", choices=MODEL_CHOICES, default=None,
                   help=f"fcn: Wang et al.'s fully convolutional net; resnet1d: their ResNet; conv1d_net: the "
                   f"strided ECG net; gru: a GRU over the values (default {d['model']})")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs of each fit (default {d['epochs']})")
    p.add_argument("--lr", type=float, default=None, help=f"one-cycle peak learning rate, AdamW (default {d['lr']})")
    p.add_argument("--batch-size", type=int, default=None, help=f"(default {d['batch_size']})")
    p.add_argument("--weight-decay", type=float, default=None, help=f"(default {d['weight_decay']})")
    p.add_argument("--valid-pct", type=float, default=None,
                   help=f"share of each class held out to validate (default {d['valid_pct']}; 0: none)")
    p.add_argument("--no-refit", dest="refit", action="store_false", default=None,
                   help="keep the model trained without the held-out series instead of training again on all")
    p.add_argument("--hidden-size", type=int, default=None, help=f"gru: hidden units (default {d['hidden_size']})")
    p.add_argument("--seed", type=int, default=None, help=f"(default {d['seed']})")
    p.add_argument("--out", help="run folder (default runs/series-<file>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace the finished run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_train)


def _add_predict(commands) -> None:
    p = commands.add_parser("predict", help="print a run's predicted label for every series of a file",
                            description="One label per line on stdout, in the file's order; when the file's labels "
                            "are known classes, the accuracy goes to stderr.")
    p.add_argument("run", help="run folder from `heron series train`")
    p.add_argument("file", help="UCR-format file (label first, ignored) or values only with --no-labels")
    p.add_argument("--no-labels", dest="labelled", action="store_false", help="every field of a line is a value")
    p.set_defaults(func=run_predict)


def run_train(args: argparse.Namespace) -> int:
    from heron.tasks.sequence.series import SeriesConfig, train_series

    values = {k: v for k, v in vars(args).items() if k in SeriesConfig.__dataclass_fields__ and v is not None}
    result = train_series(SeriesConfig(**values))
    m = result.metrics
    print(f"run folder: {result.path}")
    print(f"{m['model']}: "
          f"{len(result.classes)} classes, {m['train_series'] + m['valid_series']} training series of length "
          f"{m['length']}, {m['seconds']:.1f} s")
    if "valid_accuracy" in m:
        print(f"valid accuracy = {m['valid_accuracy']:.4f} ({m['valid_series']} held-out series)")
    if "test_accuracy" in m:
        print(f"test accuracy = {m['test_accuracy']:.4f}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from heron.tasks.sequence.series import predict_series

    labels, accuracy = predict_series(args.run, args.file, labelled=args.labelled)
    sys.stdout.write("".join(f"{label}\n" for label in labels))
    if accuracy is not None:
        print(f"accuracy {accuracy:.4f} on {len(labels)} labelled series", file=sys.stderr)
    return 0
