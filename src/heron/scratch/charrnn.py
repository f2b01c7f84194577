"""A character-level language model in numpy: one-hot characters in, next character out.

The text becomes integer codes over its own alphabet. Each training step takes
`batch` random windows of `seq_len + 1` characters, feeds the first `seq_len`
as one-hot vectors through a vanilla RNN or a GRU, predicts every next
character with a dense layer and softmax, and backpropagates the mean
cross-entropy through time by hand. Gradients are clipped by global norm
before an Adam step. Sampling feeds each drawn character back in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from heron.scratch.functional import cross_entropy, cross_entropy_grad, one_hot, softmax
from heron.scratch.gru import gru_backward, gru_cell_forward, gru_forward
from heron.scratch.layers import dense_backward, dense_forward
from heron.scratch.optim import Adam, clip_by_norm
from heron.scratch.rnn import rnn_backward, rnn_forward, rnn_step

__all__ = ["Vocab", "CharRNN", "CharRNNConfig", "CharRNNResult", "train_char_rnn"]


@dataclass
class Vocab:
    """The sorted set of characters in a text, with encode/decode."""

    chars: str

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.chars)}
        return np.array([index[c] for c in text], dtype=np.int64)

    def decode(self, codes) -> str:
        return "".join(self.chars[int(i)] for i in codes)


class CharRNN:
    """Vanilla-RNN or GRU character model with parameters in a dict (PyTorch layouts).

    rnn: W_xh (H, V), W_hh (H, H), b_h (H,);  gru: W_ih (3H, V), W_hh (3H, H), b_ih, b_hh (3H,);
    both: W_hy (V, H), b_y (V,).
    """

    def __init__(self, vocab_size: int, hidden: int = 64, cell: str = "rnn", seed: int = 0):
        if cell not in ("rnn", "gru"):
            raise ValueError(f"cell must be 'rnn' or 'gru', got {cell!r}")
        rng = np.random.default_rng(seed)
        self.vocab_size, self.hidden, self.cell = vocab_size, hidden, cell
        bound = 1.0 / np.sqrt(hidden)  # PyTorch's RNN/GRU initialisation range

        def uniform(*shape):
            return rng.uniform(-bound, bound, shape)

        if cell == "rnn":
            self.params = {
                "W_xh": uniform(hidden, vocab_size),
                "W_hh": uniform(hidden, hidden),
                "b_h": np.zeros(hidden),
            }
        else:
            self.params = {
                "W_ih": uniform(3 * hidden, vocab_size),  # rows: reset, update, candidate
                "W_hh": uniform(3 * hidden, hidden),
                "b_ih": uniform(3 * hidden),
                "b_hh": uniform(3 * hidden),
            }
        self.params["W_hy"] = uniform(vocab_size, hidden)
        self.params["b_y"] = np.zeros(vocab_size)

    def _recurrent(self) -> tuple[Callable, Callable, tuple[str, ...]]:
        if self.cell == "rnn":
            return rnn_forward, rnn_backward, ("W_xh", "W_hh", "b_h")
        return gru_forward, gru_backward, ("W_ih", "W_hh", "b_ih", "b_hh")

    def loss_and_grads(self, inputs: np.ndarray, targets: np.ndarray, h0: np.ndarray | None = None):
        """Mean cross-entropy of predicting `targets` (T, N) from `inputs` (T, N), with gradients.

        Returns (loss, grads dict, last hidden state (N, H)).
        """
        steps, batch = inputs.shape
        h0 = np.zeros((batch, self.hidden)) if h0 is None else h0
        forward, backward, names = self._recurrent()
        x = one_hot(inputs, self.vocab_size)  # (T, N, V)
        hs, cache = forward(x, h0, *(self.params[k] for k in names))  # (T, N, H)
        flat = hs.reshape(steps * batch, self.hidden)  # (T*N, H)
        logits = dense_forward(flat, self.params["W_hy"], self.params["b_y"])  # (T*N, V)
        labels = targets.reshape(-1)
        loss = cross_entropy(logits, labels)
        dflat, dW_hy, db_y = dense_backward(cross_entropy_grad(logits, labels), flat, self.params["W_hy"])
        _, _, *recurrent_grads = backward(dflat.reshape(hs.shape), cache)
        grads = dict(zip(names, recurrent_grads))
        grads.update(W_hy=dW_hy, b_y=db_y)
        return loss, grads, hs[-1]

    def step(self, code: int, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed one character code with state h (1, H); returns (next-char probabilities (V,), new h)."""
        x = one_hot(np.array([code]), self.vocab_size)  # (1, V)
        p = self.params
        if self.cell == "rnn":
            h = rnn_step(x, h, p["W_xh"], p["W_hh"], p["b_h"])
        else:
            h, _ = gru_cell_forward(x, h, p["W_ih"], p["W_hh"], p["b_ih"], p["b_hh"])
        return softmax(dense_forward(h, p["W_hy"], p["b_y"]))[0], h

    def sample(self, start: int, length: int, rng: np.random.Generator, temperature: float = 1.0) -> list[int]:
        """Draw `length` character codes after `start`, each fed back in as the next input."""
        h, code, out = np.zeros((1, self.hidden)), start, []
        for _ in range(length):
            probs, h = self.step(code, h)
            if temperature != 1.0:
                probs = softmax(np.log(probs + 1e-12) / temperature)
            code = int(rng.choice(self.vocab_size, p=probs))
            out.append(code)
        return out


@dataclass
class CharRNNConfig:
    """Training settings for `train_char_rnn`."""

    cell: str = "rnn"
    hidden: int = 64
    seq_len: int = 25
    batch: int = 16
    steps: int = 500
    lr: float = 5e-3
    clip: float = 5.0
    seed: int = 0
    log_every: int = 50


@dataclass
class CharRNNResult:
    """A trained model, its vocabulary and the loss after every step."""

    model: CharRNN
    vocab: Vocab
    losses: list[float] = field(default_factory=list)


def _windows(codes: np.ndarray, seq_len: int, batch: int, rng: np.random.Generator):
    """Random (inputs, targets), each (seq_len, batch), targets shifted one character on."""
    starts = rng.integers(0, len(codes) - seq_len, size=batch)
    idx = starts[None, :] + np.arange(seq_len + 1)[:, None]  # (L+1, N)
    chunk = codes[idx]
    return chunk[:-1], chunk[1:]


def train_char_rnn(
    text: str, config: CharRNNConfig | None = None, log: Callable[[int, float], None] | None = None
) -> CharRNNResult:
    """Train a character model on `text`; `log(step, loss)` is called every `config.log_every` steps.

    The text needs at least `seq_len + 1` characters. Returns a `CharRNNResult`.
    """
    config = config or CharRNNConfig()
    if len(text) < config.seq_len + 1:
        raise ValueError(f"text has {len(text)} characters; need at least seq_len + 1 = {config.seq_len + 1}")
    vocab = Vocab.from_text(text)
    codes = vocab.encode(text)
    rng = np.random.default_rng(config.seed)
    model = CharRNN(len(vocab), config.hidden, config.cell, config.seed)
    opt = Adam(lr=config.lr)
    result = CharRNNResult(model, vocab)
    for step in range(1, config.steps + 1):
        inputs, targets = _windows(codes, config.seq_len, config.batch, rng)
        loss, grads, _ = model.loss_and_grads(inputs, targets)
        grads, _ = clip_by_norm(grads, config.clip)
        opt.step(model.params, grads)
        result.losses.append(loss)
        if log and (step % config.log_every == 0 or step == 1 or step == config.steps):
            log(step, loss)
    return result
