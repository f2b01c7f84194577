"""`heron lm train | sample | evaluate`: character and word language models on a text file.

The flags map onto `heron.tasks.sequence.lm.LMConfig` (`DEFAULTS` below
mirrors its defaults, checked by a test, so that parsing imports no torch).
`sample` prints the prime and then each new piece of text as it is chosen.
Threads: `heron --threads N lm ...` (the global flag).
"""

from __future__ import annotations

import argparse
import sys

# LMConfig's defaults for the flags (tests/cli/test_lm_cli.py checks that they agree)
DEFAULTS = {"level": "char", "cell": "lstm", "hidden": 256, "layers": 1, "bptt": 64, "batch_size": 32, "lr": 3e-3,
            "epochs": 20, "max_minutes": 3.0, "max_vocab": 10000, "dropout": 0.1, "grad_clip": 0.25, "seed": 0,
            "precision": "fp32"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lm", help="language models: train on a text file, sample, evaluate (bits per char)",
                       description="Character or word RNN language models trained with truncated BPTT.")
    commands = p.add_subparsers(dest="lm_command", metavar="COMMAND", required=True)
    _add_train(commands)
    _add_sample(commands)
    _add_evaluate(commands)


def _add_train(commands) -> None:
    d = DEFAULTS
    p = commands.add_parser("train", help="train a language model on TEXT_FILE",
                            description="Train on TEXT_FILE (the last 10%% validates unless --valid is given); "
                            "writes a run folder with config.json, tokenizer.json, model.safetensors, metrics.jsonl.")
    p.add_argument("text", metavar="TEXT_FILE", help="UTF-8 text to learn")
    p.add_argument("--level", choices=("char", "word"), default=d["level"], help="tokens (default %(default)s)")
    p.add_argument("--max-vocab", type=int, default=d["max_vocab"], help="word level: most frequent words kept "
                   "(default %(default)s), the rest <unk>")
    p.add_argument("--lower", action="store_true", help="word level: fold case")
    p.add_argument("--cell", choices=("gru", "lstm", "rnn"), default=d["cell"], help="default %(default)s")
    p.add_argument("--hidden", type=int, default=d["hidden"], help="hidden size (default %(default)s)")
    p.add_argument("--layers", type=int, default=d["layers"], help="stacked layers (default %(default)s)")
    p.add_argument("--embed-dim", type=int, help="embedding size (default 64 for char, the hidden size for word)")
    p.add_argument("--dropout", type=float, default=d["dropout"], help="default %(default)s")
    p.add_argument("--tie-weights", action="store_true", help="share the embedding with the output layer")
    p.add_argument("--bptt", type=int, default=d["bptt"], help="steps per window of truncated BPTT (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help="parallel streams (default %(default)s)")
    p.add_argument("--lr", type=float, default=d["lr"], help="peak learning rate, AdamW one-cycle (default %(default)s)")
    p.add_argument("--grad-clip", type=float, default=d["grad_clip"], help="gradient norm cap, 0: off (default %(default)s)")
    p.add_argument("--epochs", type=int, default=d["epochs"],
                   help="validation rounds, at most: with --max-minutes they are sized from timed steps and the "
                   "budget may stop sooner (default %(default)s)")
    p.add_argument("--batches-per-epoch", type=int, help="batches per epoch (default: from the budget, or one pass)")
    p.add_argument("--max-minutes", type=float, default=d["max_minutes"],
                   help="time budget; training stops at an epoch boundary keeping the best weights; 0: none "
                   "(default %(default)s)")
    p.add_argument("--valid", metavar="FILE", help="validation text (default: the last 10%% of TEXT_FILE)")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default=d["precision"],
                   help="autocast precision (default %(default)s: bf16 measured slower for GRU/LSTM here)")
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--out", help="run folder (default runs/<text>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace the finished run in --out")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_train)


def _add_sample(commands) -> None:
    p = commands.add_parser("sample", help="write text with a trained model",
                            description="Continue --prime with -n tokens; temperature 0 is greedy decoding.")
    p.add_argument("run", metavar="RUN", help="run folder written by heron lm train")
    p.add_argument("--prime", default="", help="text to continue (default: a line start)")
    p.add_argument("-n", type=int, default=500, help="tokens to write (default %(default)s)")
    p.add_argument("--temperature", type=float, default=0.8, help="0: greedy; higher: more varied (default %(default)s)")
    p.add_argument("--top-k", type=int, help="sample among the K most likely tokens only")
    p.add_argument("--seed", type=int, default=0, help="same seed, same text (default %(default)s)")
    p.set_defaults(func=run_sample)


def _add_evaluate(commands) -> None:
    p = commands.add_parser("evaluate", help="bits per character and perplexity of a text",
                            description="Score TEXT_FILE with a trained model: bits per char and per-token perplexity.")
    p.add_argument("run", metavar="RUN", help="run folder written by heron lm train")
    p.add_argument("text", metavar="TEXT_FILE", help="UTF-8 text to score")
    p.set_defaults(func=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    from heron.tasks.sequence.lm import LMConfig, train_language_model

    config = LMConfig(
        text=args.text, valid=args.valid, out=args.out, level=args.level, max_vocab=args.max_vocab, lower=args.lower,
        cell=args.cell, embed_dim=args.embed_dim, hidden=args.hidden, layers=args.layers, dropout=args.dropout,
        tie_weights=args.tie_weights, bptt=args.bptt, batch_size=args.batch_size, lr=args.lr,
        grad_clip=args.grad_clip or None, epochs=args.epochs, batches_per_epoch=args.batches_per_epoch,
        max_minutes=args.max_minutes or None, precision=args.precision, seed=args.seed, overwrite=args.overwrite,
        quiet=args.quiet,
    )
    result = train_language_model(config, resume=args.resume)
    m = result.metrics
    print(f"valid bits per char = {m['valid_bpc']:.3f}  perplexity = {m['valid_perplexity']:.2f}  "
          f"({m['epochs_run']} epochs, {m['tokens_trained']:,} tokens, {m['seconds']:.0f}s)")
    print(result.run)
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from heron.tasks.sequence.lm import load_language_model

    if args.n < 1:
        from heron.errors import DataError

        raise DataError(f"-n must be at least 1, got {args.n}")
    if args.temperature < 0:
        from heron.errors import DataError

        raise DataError(f"--temperature must be 0 (greedy) or more, got {args.temperature}")
    lm = load_language_model(args.run)
    out = sys.stdout
    out.write(args.prime)
    out.flush()

    def show(piece: str) -> None:
        out.write(piece)
        out.flush()

    lm.generate(args.prime, n=args.n, temperature=args.temperature, top_k=args.top_k, seed=args.seed, on_text=show)
    out.write("\n")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from heron.tasks.sequence.lm import load_language_model

    lm = load_language_model(args.run)
    scores = lm.evaluate_file(args.text)
    print(f"bits per char = {scores['bits_per_char']:.3f}")
    print(f"perplexity = {scores['perplexity']:.3f}")
    print(f"({scores['tokens']:,} tokens, {scores['chars']:,} characters, {lm.tokenizer.level} level)")
    return 0
