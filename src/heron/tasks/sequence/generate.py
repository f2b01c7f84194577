"""Text from a trained language model, one token at a time.

The prime text is read through the model in one call (its final state and
last logits are where sampling starts); then each step divides the logits
by the temperature, keeps the `top_k` largest, samples the next token from
the softmax with a seeded generator (the same seed gives the same text) and
feeds it back. Temperature 0 is greedy decoding (argmax); as the
temperature goes to 0 sampling turns into it. `<pad>` is never produced,
and `<unk>` only with `allow_unk=True`.

`on_text(piece)` receives the text each new token adds, as soon as it is
chosen, so a caller can print the sample as it grows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from heron.data.text import EOS, PAD, UNK, Tokenizer
from heron.models.rnn import SequenceModel

__all__ = ["generate", "next_token", "prime_codes"]


def prime_codes(tokenizer: Tokenizer, prime: str) -> list[int]:
    """The codes the model reads before sampling; an empty prime starts at a line break (or `<eos>`)."""
    codes = tokenizer.encode(prime) if prime else []
    if tokenizer.level == "word" and codes and codes[-1] == EOS and not prime.endswith("\n"):
        codes = codes[:-1]  # the word tokenizer closes every line; a prime is continued, not closed
    if not codes:
        codes = [tokenizer.stoi.get("\n", EOS)] if tokenizer.level == "char" else [EOS]
    return codes


def next_token(logits: torch.Tensor, temperature: float, top_k: int | None,
               generator: torch.Generator | None) -> int:
    """One code from logits Tensor[V]: argmax at temperature 0, else a sample of softmax(logits / T) over the top k."""
    if temperature <= 0:
        return int(torch.argmax(logits))
    scaled = logits.double() / temperature  # float64: a tiny temperature does not overflow into ties
    if top_k is not None and 0 < top_k < scaled.numel():
        kth = torch.topk(scaled, top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=0)
    return int(torch.multinomial(probs, 1, generator=generator))


def generate(model: SequenceModel, tokenizer: Tokenizer, prime: str = "", n: int = 200, temperature: float = 0.8,
             top_k: int | None = None, seed: int = 0, on_text: Callable[[str], None] | None = None,
             allow_unk: bool = False) -> str:
    """`n` new tokens after `prime`, decoded to text (the prime itself is not repeated)."""
    if temperature < 0:
        raise ValueError(f"temperature must be 0 (greedy) or more, got {temperature}")
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    banned = [PAD] if allow_unk else [PAD, UNK]
    was_training = model.training
    model.eval()
    base = prime_codes(tokenizer, prime)
    codes, shown = [], ""
    with torch.inference_mode():
        x = torch.tensor([base], device=device)  # (1, T)
        logits, state = model.forward_state(x)
        for _ in range(n):
            step = logits[0, -1].float().cpu()  # (V,)
            step[banned] = float("-inf")
            code = next_token(step, temperature, top_k, generator)
            codes.append(code)
            text = _continuation(tokenizer, base, codes)
            if on_text is not None and len(text) > len(shown) and text.startswith(shown):
                on_text(text[len(shown):])
                shown = text
            logits, state = model.forward_state(torch.tensor([[code]], device=device), state=state)
    model.train(was_training)
    text = _continuation(tokenizer, base, codes)
    if on_text is not None and text != shown and text.startswith(shown):
        on_text(text[len(shown):])
    return text


def _continuation(tokenizer: Tokenizer, base: list[int], codes: list[int]) -> str:
    """The text `codes` add after `base` (so a word after a primed word gets its space)."""
    if tokenizer.level == "char":  # one character per code: no context to consult
        return tokenizer.decode(codes)
    before, after = tokenizer.decode(base), tokenizer.decode(base + codes)
    return after[len(before):] if after.startswith(before) else tokenizer.decode(codes)
