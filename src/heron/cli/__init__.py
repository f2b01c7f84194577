"""The `heron` command line.

Sub-commands live in small modules beside this one, one per capability; each
exposes `add_parser(subparsers)` which registers its arguments and a `run`
function. This module assembles them, sets threads once, and turns a
`HeronError` into one line on stderr and exit code 2 (`--debug` shows the
traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from heron.errors import HeronError

# Modules under heron.cli that each add one or more sub-commands.
COMMAND_MODULES = ("predict", "train", "demo", "summary", "scratch", "ensemble", "localize", "landmarks", "leakage", "heatmap", "units", "augment", "detect", "style", "translate", "series", "text", "lm", "faces", "export", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heron",
        description="Practical deep learning for vision: transfer learning, "
        "inspection and the classic course models on your own images.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for torch, for any command (default: torch's own, one per core)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"heron.cli.{name}").add_parser(sub)
    return parser


def _take_threads(argv: list[str]) -> tuple[list[str], int | None]:
    """`--threads N` (or `--threads=N`) taken out of the line wherever it is, as `--debug` is."""
    rest, threads, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        value = arg.partition("=")[2] if arg.startswith("--threads=") else None
        if arg == "--threads" and i + 1 < len(argv):
            value, i = argv[i + 1], i + 1
        if value is None:
            rest.append(arg)
        elif value.isdigit() and int(value) > 0:
            threads = int(value)
        else:
            raise ValueError(f"--threads {value}: give a whole number of threads, 1 or more")
        i += 1
    return rest, threads


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    argv = [a for a in argv if a != "--debug"]
    try:
        argv, threads = _take_threads(argv)
    except ValueError as err:
        print(f"heron: error: {err}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    args.debug = debug
    if threads is not None:
        _set_threads(threads)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except HeronError as err:
        if args.debug:
            raise
        print(f"heron: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("heron: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
