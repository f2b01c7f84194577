"""`heron translate train | demo | RUN TEXT`: the attention encoder-decoder on character sequences.

Three forms share one parser, told apart by the first word:

    heron translate train PAIRS [--valid PAIRS] [--out RUN] [--epochs N] [--max-minutes M] [--beam K] [--seed S]
    heron translate demo [--out RUN] [--pairs N]
    heron translate RUN "text" ["text" ...] [--beam K]

`train` and `demo` are words, anything else is a run folder. (A sub-command
parser would refuse a run folder as an "invalid choice", so the words are
read here instead.) The translation of each text is printed one a line, the
last text's last; `demo` prints the held-back exact-match accuracy last.
"""

from __future__ import annotations

import argparse

USAGE = """heron translate train PAIRS [--valid PAIRS] [--out RUN] [--epochs N] [--max-minutes M] [--beam K] [--seed S]
       heron translate demo [--out RUN] [--pairs N] [--epochs N] [--max-minutes M] [--beam K] [--seed S]
       heron translate RUN TEXT [TEXT ...] [--beam K]"""

DEMO_PAIRS = 20000


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "translate", help="sequence to sequence: an attention encoder-decoder on TAB-separated text pairs",
        usage=USAGE,
        description="Character-level translation with a bidirectional GRU encoder, Bahdanau attention and a GRU "
        "decoder. PAIRS is a UTF-8 file of source<TAB>target lines. `demo` trains on generated dates "
        "('Tuesday, March 5, 2002' -> '2002-03-05'), offline. RUN TEXT translates TEXT with a finished run.",
    )
    p.add_argument("what", metavar="train|demo|RUN", help="train, demo, or a finished run folder")
    p.add_argument("rest", nargs="*", metavar="PAIRS|TEXT", help="train: the pairs file; RUN: the texts")
    p.add_argument("--valid", metavar="PAIRS", help="train: a pairs file to validate on (default: hold back 10%%)")
    p.add_argument("--out", metavar="RUN", help="run folder (default runs/translate-<name>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace the finished run in --out")
    p.add_argument("--epochs", type=int, help="epochs (default 4)")
    p.add_argument("--max-minutes", type=float, metavar="M", help="stop after the epoch that would pass M minutes")
    p.add_argument("--beam", type=int, default=1, metavar="K",
                   help="beam width: decoding RUN TEXT, and the extra final score of train/demo (default 1: greedy)")
    p.add_argument("--attention", choices=("additive", "dot"), default="additive", help="score function")
    p.add_argument("--teacher-forcing", type=float, default=1.0, metavar="R",
                   help="share of decoder steps fed the true previous token in training (default 1.0)")
    p.add_argument("--pairs", type=int, default=DEMO_PAIRS, metavar="N",
                   help="demo: generated training pairs (default %(default)s; a tenth more are held back)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace):
    from heron.tasks.sequence.translate import TranslateConfig

    config = TranslateConfig(beam=args.beam, max_minutes=args.max_minutes, seed=args.seed, quiet=args.quiet,
                             overwrite=args.overwrite, attention=args.attention,
                             teacher_forcing=args.teacher_forcing)
    if args.epochs is not None:
        config.epochs = args.epochs
    return config


def run(args: argparse.Namespace) -> int:
    from heron.errors import DataError

    if args.what == "train":
        if len(args.rest) != 1:
            raise DataError("translate train takes one PAIRS file: heron translate train PAIRS [--valid PAIRS]")
        return _train(args)
    if args.what == "demo":
        if args.rest:
            raise DataError(f"translate demo takes no file or text (got {args.rest[0]!r}); see --pairs and --out")
        return _demo(args)
    if not args.rest:
        raise DataError(f"nothing to translate: heron translate {args.what} \"TEXT\" (or train PAIRS, or demo)")
    return _translate(args)


def _train(args: argparse.Namespace) -> int:
    from heron.tasks.sequence.translate import train

    result = train(args.rest[0], valid=args.valid, out=args.out, config=_config(args))
    print(result.path)
    _print_scores(result.metrics)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from heron.tasks.sequence.translate import demo

    result = demo(out=args.out, pairs=args.pairs, config=_config(args))
    m = result.metrics
    print(f"generated dates: {args.pairs} train / {m['valid_pairs']} held back, {m['epochs']} epochs, "
          f"{m['train_seconds']:.1f} s")
    print(result.path)
    _print_scores(m)
    return 0


def _print_scores(m: dict) -> None:
    if "valid_exact_beam" in m:
        print(f"held-back exact match, greedy: {m['valid_exact']:.4f}")
        print(f"held-back exact match, beam {m['beam']}: {m['valid_exact_beam']:.4f}")
    elif "valid_exact" in m:
        print(f"held-back exact match: {m['valid_exact']:.4f}")


def _translate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from heron.errors import DataError
    from heron.tasks.sequence.translate import load_translator, translate

    if not Path(args.what).is_dir():
        raise DataError(f"{args.what}: not a run folder; give train, demo, or a folder made by them")
    outputs = translate(load_translator(args.what), args.rest, beam=args.beam)
    for text in outputs:
        print(text)
    return 0
