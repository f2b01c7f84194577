"""`heron scratch lenet|rnn` and `heron filters`: the numpy-from-scratch course models.

`scratch lenet` trains the numpy LeNet-5 on scikit-learn's digits and prints each
epoch; `scratch rnn TEXTFILE` trains a numpy character RNN or GRU on a text file
and prints a sample; `filters IMAGE` saves a grid of classic and random 3x3
filters applied to a photo. Heavy imports happen inside the commands.

The numpy models multiply small matrices, where a multi-threaded BLAS only
adds overhead (measured here: one LeNet epoch 3 s on one BLAS thread, 99 s on
two while other processes shared the cores), so training runs with numpy's
BLAS held to one thread.
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from pathlib import Path

from heron.errors import DataError


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


@contextmanager
def _one_blas_thread():
    """numpy's BLAS on one thread for the duration (threadpoolctl ships with scikit-learn)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def add_parser(sub: argparse._SubParsersAction) -> None:
    scratch = sub.add_parser(
        "scratch",
        help="course models written from scratch in numpy (LeNet-5, char RNN/GRU)",
        description="Train the numpy-only reference models: every gradient written by hand.",
    )
    models = scratch.add_subparsers(dest="scratch_command", metavar="MODEL", required=True)

    lenet = models.add_parser("lenet", help="numpy LeNet-5 on scikit-learn's 8x8 digits (padded to 32x32)")
    lenet.add_argument("--epochs", type=_positive_int, default=4, help="passes over the data (default %(default)s)")
    lenet.add_argument("--batch", type=_positive_int, default=16, help="mini-batch size (default %(default)s)")
    lenet.add_argument("--lr", type=_positive_float, default=0.01, help="peak SGD learning rate (default %(default)s)")
    lenet.add_argument("--seed", type=int, default=0, help="seed for the split, weights and batches")
    lenet.set_defaults(func=run_lenet)

    rnn = models.add_parser("rnn", help="numpy character RNN or GRU trained on a text file")
    rnn.add_argument("textfile", help="a UTF-8 text file to learn from")
    rnn.add_argument("--cell", choices=("rnn", "gru"), default="rnn", help="recurrent cell (default %(default)s)")
    rnn.add_argument("--steps", type=_positive_int, default=500, help="training steps (default %(default)s)")
    rnn.add_argument("--hidden", type=_positive_int, default=64, help="hidden units (default %(default)s)")
    rnn.add_argument("--seq-len", type=_positive_int, default=25,
                     help="characters per BPTT window (default %(default)s)")
    rnn.add_argument("--batch", type=_positive_int, default=16, help="windows per step (default %(default)s)")
    rnn.add_argument("--lr", type=_positive_float, default=5e-3, help="Adam learning rate (default %(default)s)")
    rnn.add_argument("--sample", type=int, default=200, help="characters to generate at the end (default %(default)s)")
    rnn.add_argument("--temperature", type=_positive_float, default=1.0, help="sampling temperature (default 1.0)")
    rnn.add_argument("--seed", type=int, default=0)
    rnn.set_defaults(func=run_rnn)

    filters = sub.add_parser(
        "filters",
        help="apply edge, Sobel, Scharr and random 3x3 filters to an image and save a grid",
        description="Slide classic and random 3x3 filters over a grayscale version of IMAGE.",
    )
    filters.add_argument("image", help="an image file")
    filters.add_argument("-o", "--output", default="filters.png", help="PNG to write (default %(default)s)")
    filters.add_argument("--random", type=int, default=3, help="random filters to add (default %(default)s)")
    filters.add_argument("--seed", type=int, default=0, help="seed of the random filters")
    filters.set_defaults(func=run_filters)


def run_lenet(args: argparse.Namespace) -> int:
    """Train and print one line per epoch, then the final validation accuracy."""
    from heron.scratch.lenet import train_lenet

    print("epoch  train_loss  val_loss  val_acc")
    start = time.perf_counter()

    def log(epoch: int, train_loss: float, val_loss: float, val_acc: float) -> None:
        print(f"{epoch:5d}  {train_loss:10.4f}  {val_loss:8.4f}  {val_acc:7.4f}", flush=True)

    with _one_blas_thread():
        history = train_lenet(epochs=args.epochs, batch=args.batch, lr=args.lr, seed=args.seed, log=log)
    n_params = sum(p.size for p in history.model.parameters().values())
    print(
        f"numpy LeNet-5 ({n_params:,} parameters): validation accuracy {history.val_acc[-1]:.4f} "
        f"after {args.epochs} epochs ({time.perf_counter() - start:.1f} s)"
    )
    return 0


def read_text(path: str | Path, min_chars: int) -> str:
    """The text of a UTF-8 file with at least `min_chars` characters, or a DataError saying why not."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such text file; give the path of a UTF-8 text file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save it as UTF-8 or pick a plain text file") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty; give a text file with some writing in it")
    if len(text) < min_chars:
        raise DataError(f"{path}: only {len(text)} characters; need at least {min_chars} (or lower --seq-len)")
    return text


def run_rnn(args: argparse.Namespace) -> int:
    """Train on the text file, print the loss as it goes and a sample at the end."""
    import numpy as np

    from heron.scratch.charrnn import CharRNNConfig, train_char_rnn

    text = read_text(args.textfile, args.seq_len + 1)
    config = CharRNNConfig(
        cell=args.cell, hidden=args.hidden, seq_len=args.seq_len, batch=args.batch,
        steps=args.steps, lr=args.lr, seed=args.seed, log_every=max(1, args.steps // 10),
    )
    print(f"{len(text):,} characters, {len(set(text))} distinct; training a numpy {args.cell.upper()} "
          f"with {args.hidden} hidden units")

    def log(step: int, loss: float) -> None:
        print(f"step {step:6d}/{args.steps}  loss {loss:.4f}", flush=True)

    with _one_blas_thread():
        result = train_char_rnn(text, config, log=log)
    if args.sample > 0:
        rng = np.random.default_rng(args.seed)
        start = int(result.vocab.encode(text[0])[0])
        codes = result.model.sample(start, args.sample, rng, temperature=args.temperature)
        print("sample:")
        print(text[0] + result.vocab.decode(codes))
    return 0


def run_filters(args: argparse.Namespace) -> int:
    """Load the image, draw the filter grid, print where it went."""
    from heron.data.images import load_image
    from heron.interpret.filter_grid import plot_filter_grid

    image = load_image(args.image).numpy()  # (3, H, W) uint8
    path = plot_filter_grid(image, args.output, n_random=max(0, args.random), seed=args.seed)
    print(f"wrote {path}")
    return 0
