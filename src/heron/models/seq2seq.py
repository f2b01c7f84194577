"""An attention encoder-decoder (Bahdanau et al. 2015) for many-to-many tasks with T_x != T_y.

The encoder is a bidirectional GRU over the source tokens: every source
position gets an annotation h_j = [forward h_j; backward h_j] that sees the
whole input. The decoder is a GRU that writes one target token per step;
before each step it looks back at the annotations through attention:

    e_tj  = score(s_{t-1}, h_j)                 for the real source positions j
    a_t   = softmax_j(e_tj)                     (padding gets exactly weight 0)
    c_t   = sum_j a_tj h_j                      the context of step t
    s_t   = GRU([embed(y_{t-1}); c_t], s_{t-1})
    p(y_t) = softmax(W [s_t; c_t; embed(y_{t-1})])

`score` is additive (Bahdanau: v^T tanh(W_s s + W_h h)) or dot-product
(Luong: (W s) . h / sqrt(d)). The first decoder input is `<eos>`, which
doubles as the start token, and a sequence ends when the decoder writes
`<eos>`. Token code 0 is padding everywhere (heron.data.text).

- `forward(src, src_lengths, tgt_in)` -> logits (B, T_y, V) for training;
  `teacher_forcing` < 1 feeds the model's own previous guess instead of the
  true previous token at a random share of the steps.
- `greedy(src, src_lengths)`: the most likely token at every step, batched.
- `beam_search(src, src_lengths, beam)`: the `beam` best partial outputs
  kept at every step; a hypothesis is finished when it writes `<eos>`.
- `sequence_log_prob` scores given outputs, to compare decoders.
All decoders return the attention weights (T_y, T_x) of each output, for
plots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = ["Seq2Seq", "Decoded", "AdditiveAttention", "DotAttention", "masked_cross_entropy", "PAD", "EOS"]

PAD, EOS = 0, 2  # the codes of heron.data.text


@dataclass
class Decoded:
    """One decoded output: its tokens (without `<eos>`), total log-probability and attention (T_y, T_x).

    `finished`: it ended with `<eos>` (counted in `log_prob` and in the attention rows) rather than at max_len.
    """

    tokens: list[int]
    log_prob: float
    attention: torch.Tensor  # (steps written, T_x real source positions); rows sum to 1
    finished: bool = True


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the real target tokens; PAD positions add nothing.

    logits: Tensor[B, T, V], targets: LongTensor[B, T] with PAD after each sequence's end.
    """
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD)


class AdditiveAttention(nn.Module):
    """Bahdanau's score v^T tanh(W_s s + W_h h); the keys W_h h are computed once per source."""

    def __init__(self, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(query_size, attention_size, bias=False)
        self.key = nn.Linear(key_size, attention_size)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.key(memory)  # (B, T_x, A)

    def scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return self.v(torch.tanh(keys + self.query(query).unsqueeze(1))).squeeze(-1)  # (B, T_x)


class DotAttention(nn.Module):
    """Luong's "general" score (W s) . h, scaled by 1/sqrt(key size)."""

    def __init__(self, query_size: int, key_size: int, attention_size: int = 0) -> None:
        super().__init__()
        self.query = nn.Linear(query_size, key_size, bias=False)
        self.scale = 1.0 / math.sqrt(key_size)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return memory  # (B, T_x, K)

    def scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return torch.bmm(keys, self.query(query).unsqueeze(-1)).squeeze(-1) * self.scale  # (B, T_x)


_ATTENTION = {"additive": AdditiveAttention, "dot": DotAttention}


class Seq2Seq(nn.Module):
    """Bidirectional GRU encoder, attention, GRU decoder; `config` rebuilds it: `Seq2Seq(**config)`."""

    def __init__(self, source_vocab: int, target_vocab: int, embed_dim: int = 32, hidden_size: int = 64,
                 decoder_size: int = 128, attention: str = "additive", attention_size: int = 64,
                 num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if attention not in _ATTENTION:
            raise ValueError(f"attention must be one of {sorted(_ATTENTION)}, got {attention!r}")
        self.config = dict(source_vocab=source_vocab, target_vocab=target_vocab, embed_dim=embed_dim,
                           hidden_size=hidden_size, decoder_size=decoder_size, attention=attention,
                           attention_size=attention_size, num_layers=num_layers, dropout=dropout)
        memory_size = 2 * hidden_size
        self.src_embed = nn.Embedding(source_vocab, embed_dim, padding_idx=PAD)
        self.encoder = nn.GRU(embed_dim, hidden_size, num_layers, batch_first=True, bidirectional=True,
                              dropout=dropout if num_layers > 1 else 0.0)
        self.bridge = nn.Linear(memory_size, decoder_size)
        self.attention = _ATTENTION[attention](decoder_size, memory_size, attention_size)
        self.tgt_embed = nn.Embedding(target_vocab, embed_dim, padding_idx=PAD)
        self.cell = nn.GRUCell(embed_dim + memory_size, decoder_size)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(decoder_size + memory_size + embed_dim, target_vocab)

    # ------------------------------------------------------------ encoder

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor):
        """(memory (B, T_x, 2H), attention keys, mask (B, T_x) True on real tokens, first decoder state (B, S))."""
        lengths = src_lengths.cpu().clamp(min=1)
        packed = pack_padded_sequence(self.src_embed(src), lengths, batch_first=True, enforce_sorted=False)
        out, last = self.encoder(packed)  # last: (layers * 2, B, H)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])  # (B, T_x, 2H)
        mask = torch.arange(src.shape[1], device=src.device)[None, :] < src_lengths.to(src.device)[:, None]
        state = torch.tanh(self.bridge(torch.cat([last[-2], last[-1]], dim=-1)))  # (B, S)
        return memory, self.attention.keys(memory), mask, state

    # ------------------------------------------------------------ one decoder step

    def step(self, prev: torch.Tensor, state: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor,
             mask: torch.Tensor):
        """One decoder step: (logits (B, V), new state (B, S), attention weights (B, T_x))."""
        scores = self.attention.scores(state, keys).masked_fill(~mask, float("-inf"))  # (B, T_x)
        weights = torch.softmax(scores, dim=-1)  # exactly 0 on padding
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)  # (B, 2H)
        embedded = self.drop(self.tgt_embed(prev))  # (B, E)
        state = self.cell(torch.cat([embedded, context], dim=-1), state)  # (B, S)
        logits = self.out(self.drop(torch.cat([state, context, embedded], dim=-1)))  # (B, V)
        return logits, state, weights

    # ------------------------------------------------------------ training

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor,
                teacher_forcing: float = 1.0, return_attention: bool = False):
        """Logits (B, T_y, V) of the next token at every target position (and attention (B, T_y, T_x)).

        tgt_in: LongTensor[B, T_y], `<eos>` followed by the target tokens. At
        each step after the first, with probability 1 - `teacher_forcing` the
        whole batch is fed its own previous argmax instead of tgt_in.
        """
        memory, keys, mask, state = self.encode(src, src_lengths)
        prev = tgt_in[:, 0]
        logits, weights = [], []
        for t in range(tgt_in.shape[1]):
            if t > 0:
                use_truth = teacher_forcing >= 1.0 or torch.rand(()).item() < teacher_forcing
                prev = tgt_in[:, t] if use_truth else logits[-1].argmax(-1)
            step_logits, state, step_weights = self.step(prev, state, memory, keys, mask)
            logits.append(step_logits)
            weights.append(step_weights)
        logits = torch.stack(logits, dim=1)  # (B, T_y, V)
        return (logits, torch.stack(weights, dim=1)) if return_attention else logits

    # ------------------------------------------------------------ decoding

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int = 50) -> list[Decoded]:
        """The most likely token at each step for every source in the batch, until `<eos>` or `max_len`."""
        memory, keys, mask, state = self.encode(src, src_lengths)
        batch = src.shape[0]
        prev = torch.full((batch,), EOS, dtype=torch.long, device=src.device)
        done = torch.zeros(batch, dtype=torch.bool, device=src.device)
        tokens, log_probs, weights = [], [], []
        for _ in range(max_len):
            logits, state, step_weights = self.step(prev, state, memory, keys, mask)
            logp = _decoding_log_probs(logits)
            prev = logp.argmax(-1)  # (B,)
            tokens.append(prev)
            log_probs.append(logp.gather(1, prev[:, None]).squeeze(1))
            weights.append(step_weights)
            done = done | (prev == EOS)
            if bool(done.all()):
                break
        return _split_batch(torch.stack(tokens, 1), torch.stack(log_probs, 1), torch.stack(weights, 1),
                            src_lengths, max_len)

    @torch.no_grad()
    def beam_search(self, src: torch.Tensor, src_lengths: torch.Tensor, beam: int = 5, max_len: int = 50,
                    length_norm: float = 0.0) -> list[Decoded]:
        """The best output found keeping the `beam` highest-scoring partial outputs at every step.

        A hypothesis that writes `<eos>` is finished and leaves the beam;
        the search stops when `beam` hypotheses are finished (or at
        `max_len`: the unfinished ones then compete too). The winner has the
        highest log-probability divided by (its length incl. `<eos>`) **
        `length_norm` (0: the plain sum; 1: the mean per token). With
        `beam=1` this is exactly greedy decoding.
        """
        return [self._beam_one(src[i:i + 1, :int(src_lengths[i])], beam, max_len, length_norm)
                for i in range(src.shape[0])]

    def _beam_one(self, src: torch.Tensor, beam: int, max_len: int, length_norm: float) -> Decoded:
        memory, keys, mask, state = self.encode(src, torch.tensor([src.shape[1]]))
        # live hypotheses: tokens so far, score, attention rows; all rows of a tensor batch
        seqs: list[list[int]] = [[]]
        attn: list[list[torch.Tensor]] = [[]]
        scores = torch.zeros(1, device=src.device)
        prev = torch.full((1,), EOS, dtype=torch.long, device=src.device)
        finished: list[tuple[float, list[int], float, list[torch.Tensor], bool]] = []
        for t in range(max_len):
            n = len(seqs)
            logits, state, weights = self.step(prev, state, memory.expand(n, -1, -1), keys.expand(n, -1, -1),
                                               mask.expand(n, -1))
            total = (scores[:, None] + _decoding_log_probs(logits)).reshape(-1)  # (n * V,)
            top_scores, top = total.topk(min(beam, total.numel()))
            vocab = logits.shape[-1]
            keep, new_seqs, new_attn = [], [], []
            for score, index in zip(top_scores.tolist(), top.tolist()):
                row, token = divmod(index, vocab)
                rows = attn[row] + [weights[row]]
                if token == EOS:
                    finished.append((_normalised(score, t + 1, length_norm), seqs[row], score, rows, True))
                else:
                    keep.append((row, token, score))
                    new_seqs.append(seqs[row] + [token])
                    new_attn.append(rows)
            if len(finished) >= beam or not keep:
                break
            rows_kept = torch.tensor([r for r, _, _ in keep], device=src.device)
            state = state[rows_kept]
            prev = torch.tensor([tok for _, tok, _ in keep], device=src.device)
            scores = torch.tensor([s for _, _, s in keep], device=src.device)
            seqs, attn = new_seqs, new_attn
        else:  # max_len reached: unfinished hypotheses compete as they are
            finished += [(_normalised(s, max_len, length_norm), seq, s, rows, False)
                         for (_, _, s), seq, rows in zip(keep, seqs, attn)]
        _, tokens, log_prob, rows, ended = max(finished, key=lambda f: f[0])
        return Decoded(tokens, log_prob, torch.stack(rows).cpu(), ended)

    @torch.no_grad()
    def sequence_log_prob(self, src: torch.Tensor, src_lengths: torch.Tensor,
                          outputs: list[list[int]], eos: bool | list[bool] = True) -> torch.Tensor:
        """Tensor[B]: the model's log-probability of each output (tokens + `<eos>` when `eos`, one or per output)."""
        ends = [eos] * len(outputs) if isinstance(eos, bool) else list(eos)
        rows = [list(o) + ([EOS] if end else []) for o, end in zip(outputs, ends)]
        width = max(len(r) for r in rows)
        tgt_out = torch.tensor([r + [PAD] * (width - len(r)) for r in rows], device=src.device)
        tgt_in = torch.cat([torch.full_like(tgt_out[:, :1], EOS), tgt_out[:, :-1]], dim=1)
        logp = _decoding_log_probs(self(src, src_lengths, tgt_in))  # (B, T, V)
        picked = logp.gather(2, tgt_out.unsqueeze(-1)).squeeze(-1)  # (B, T)
        return torch.where(tgt_out != PAD, picked, torch.zeros_like(picked)).sum(1)


def _decoding_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log-softmax over the tokens a decoder may write: every code but PAD."""
    return torch.log_softmax(logits.index_fill(-1, torch.tensor([PAD], device=logits.device), float("-inf")), dim=-1)


def _normalised(score: float, length: int, length_norm: float) -> float:
    return score / (length ** length_norm) if length_norm else score


def _split_batch(tokens: torch.Tensor, log_probs: torch.Tensor, weights: torch.Tensor,
                 src_lengths: torch.Tensor, max_len: int) -> list[Decoded]:
    """Per-example Decoded from batched greedy steps: cut at the first `<eos>` (included in the score)."""
    out = []
    for i in range(tokens.shape[0]):
        row = tokens[i].tolist()
        steps = row.index(EOS) + 1 if EOS in row else min(len(row), max_len)
        n_src = int(src_lengths[i])
        out.append(Decoded(row[:steps - 1] if EOS in row else row[:steps], float(log_probs[i, :steps].sum()),
                           weights[i, :steps, :n_src].cpu(), EOS in row))
    return out
