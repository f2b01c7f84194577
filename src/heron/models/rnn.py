"""The sequence family: embedding (or a linear input) -> stacked RNN/GRU/LSTM -> projection.

One module, `SequenceModel`, covers the shapes of the seeds' sequence notes:

- `output="sequence"`: one prediction per step (language models, T_x = T_y
  tagging), `(N, T) -> (N, T, num_outputs)`;
- `output="last"`: one prediction per sequence (many-to-one, e.g. sentiment or
  a 1-D signal's class), `(N, T) -> (N, num_outputs)`, read from the last
  real step of each sequence (both directions' final states when
  bidirectional), so padding never leaks into the answer.

Token inputs are `(N, T)` integer codes through an embedding (`vocab_size`);
real-valued inputs (`input_size`, e.g. signals) are `(N, T, C)` through a
linear layer. `lengths` (N,) marks the real steps of padded batches; the RNN
then runs on a packed sequence. `tie_weights` shares the embedding matrix with
the output projection (Press & Wolf), adding a linear map from the hidden size
to the embedding size when the two differ.

`forward(x, lengths=None, state=None)` returns logits only; `forward_state`
returns `(logits, state)` for callers that carry the hidden state across
batches (truncated BPTT) or feed one step at a time (sampling).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from heron.data.text import PAD

__all__ = ["SequenceModel", "CELLS", "detach_state"]

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def detach_state(state):
    """The hidden state cut from its graph (a tensor, or LSTM's (h, c) pair)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


class SequenceModel(nn.Module):
    """Embedding or linear input, a stacked recurrent cell with dropout, and a projection."""

    def __init__(
        self,
        num_outputs: int,
        vocab_size: int | None = None,
        input_size: int | None = None,
        embed_dim: int = 128,
        hidden_size: int = 256,
        num_layers: int = 2,
        cell: str = "gru",
        dropout: float = 0.2,
        bidirectional: bool = False,
        tie_weights: bool = False,
        output: str = "sequence",
    ) -> None:
        super().__init__()
        if (vocab_size is None) == (input_size is None):
            raise ValueError("give exactly one of vocab_size (token inputs) or input_size (real-valued inputs)")
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        if output not in ("sequence", "last"):
            raise ValueError(f"output must be 'sequence' or 'last', got {output!r}")
        if tie_weights and (vocab_size is None or num_outputs != vocab_size):
            raise ValueError("tie_weights needs token inputs and as many outputs as the vocabulary")
        self.config = {
            "num_outputs": num_outputs, "vocab_size": vocab_size, "input_size": input_size,
            "embed_dim": embed_dim, "hidden_size": hidden_size, "num_layers": num_layers, "cell": cell,
            "dropout": dropout, "bidirectional": bidirectional, "tie_weights": tie_weights, "output": output,
        }
        self.cell, self.output, self.bidirectional = cell, output, bidirectional
        if vocab_size is not None:
            self.encoder = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        else:
            self.encoder = nn.Linear(input_size, embed_dim)
        self.input_dropout = nn.Dropout(dropout)
        self.rnn = CELLS[cell](embed_dim, hidden_size, num_layers=num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)
        features = hidden_size * (2 if bidirectional else 1)
        self.output_dropout = nn.Dropout(dropout)
        if tie_weights:
            self.bottleneck = nn.Linear(features, embed_dim) if features != embed_dim else nn.Identity()
            self.decoder = nn.Linear(embed_dim, num_outputs)
            self.decoder.weight = self.encoder.weight
        else:
            self.bottleneck = nn.Identity()
            self.decoder = nn.Linear(features, num_outputs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state=None) -> torch.Tensor:
        return self.forward_state(x, lengths, state)[0]

    def forward_state(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state=None):
        """(logits, final state); `state` continues from an earlier call (None: zeros)."""
        steps = self.input_dropout(self.encoder(x))
        if lengths is not None:
            packed = pack_padded_sequence(steps, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
            out, state = self.rnn(packed, state)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        else:
            out, state = self.rnn(steps, state)
        if self.output == "last":
            out = self._last_step(out, state)
        return self.decoder(self.bottleneck(self.output_dropout(out))), state

    def _last_step(self, out: torch.Tensor, state) -> torch.Tensor:
        """Each sequence's final top-layer state (both directions' when bidirectional)."""
        h = state[0] if isinstance(state, tuple) else state  # (layers * directions, N, H)
        if self.bidirectional:
            return torch.cat([h[-2], h[-1]], dim=1)
        return h[-1]
