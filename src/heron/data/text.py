"""Text into integer codes and back: character and word tokenisers, padding.

Both tokenisers share three special tokens at fixed codes, `<pad>` = 0,
`<unk>` = 1 and `<eos>` = 2, so padding masks and unknown words mean the same
thing in every sequence task. A tokeniser is fitted on the training text,
saved beside the model as JSON (`tokenizer.json` in a run folder) and loaded
back with `load_tokenizer`; a run is never decoded with a vocabulary other
than the one it was trained on.

- `CharTokenizer`: every character of the training text is a token; the
  round trip `decode(encode(text)) == text` is exact for those characters, and
  characters never seen become `<unk>`.
- `WordTokenizer`: words and punctuation marks, the `max_vocab` most frequent
  kept (ties broken alphabetically, so fitting is deterministic), the rest
  `<unk>`; `<eos>` closes every sentence (after `.`, `!`, `?` or at a line
  end); `lower=True` folds case first.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from heron.errors import DataError

__all__ = [
    "PAD", "UNK", "EOS", "SPECIALS",
    "CharTokenizer", "WordTokenizer", "Tokenizer",
    "load_tokenizer", "read_text", "pad_sequences",
]

PAD, UNK, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<unk>", "<eos>")

_WORD = re.compile(r"\w+(?:'\w+)?|[^\w\s]")
_SENTENCE_END = {".", "!", "?"}
_NO_SPACE_BEFORE = {".", ",", "!", "?", ";", ":", ")", "]", "}", "'s", "n't"}
_NO_SPACE_AFTER = {"(", "[", "{"}


class Tokenizer:
    """A vocabulary: `itos` (code -> token) with the specials first, and its inverse."""

    level = "base"

    def __init__(self, itos: Sequence[str]) -> None:
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise DataError(f"a vocabulary must start with {SPECIALS}; got {list(itos[:3])}")
        self.itos = list(itos)
        self.stoi = {token: code for code, token in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def tokens(self, text: str) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Integer codes of `text`; tokens outside the vocabulary become UNK."""
        return [self.stoi.get(token, UNK) for token in self.tokens(text)]

    def decode(self, codes: Iterable[int]) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"level": self.level, "itos": self.itos}

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary as JSON (atomically: temp file + rename)."""
        from heron._atomic import atomic_write_text

        return atomic_write_text(Path(path), json.dumps(self.to_dict(), ensure_ascii=False))


class CharTokenizer(Tokenizer):
    """One token per character; the alphabet is the sorted set of the training text's characters."""

    level = "char"

    @classmethod
    def fit(cls, text: str) -> CharTokenizer:
        chars = sorted(set(text) - set(SPECIALS))
        return cls(list(SPECIALS) + chars)

    def tokens(self, text: str) -> list[str]:
        return list(text)

    def decode(self, codes: Iterable[int]) -> str:
        special = {PAD: "", UNK: "\ufffd", EOS: "\n"}
        return "".join(special[c] if c in special else self.itos[c] for c in map(int, codes))


class WordTokenizer(Tokenizer):
    """Words and punctuation; the `max_vocab` most frequent kept, `<eos>` at sentence ends."""

    level = "word"

    def __init__(self, itos: Sequence[str], lower: bool = False) -> None:
        super().__init__(itos)
        self.lower = lower

    @classmethod
    def fit(cls, text: str, max_vocab: int = 20000, lower: bool = False, min_freq: int = 1) -> WordTokenizer:
        if max_vocab <= len(SPECIALS):
            raise DataError(f"max_vocab must be more than {len(SPECIALS)} (the special tokens); got {max_vocab}")
        words = _split_words(text.lower() if lower else text)
        counts = Counter(w for w in words if w not in SPECIALS)
        ranked = sorted((w for w, n in counts.items() if n >= min_freq), key=lambda w: (-counts[w], w))
        return cls(list(SPECIALS) + ranked[: max_vocab - len(SPECIALS)], lower=lower)

    def tokens(self, text: str) -> list[str]:
        out: list[str] = []
        for line in (text.lower() if self.lower else text).splitlines():
            words = _split_words(line)
            if not words:
                continue
            for word in words:
                out.append(word)
                if word in _SENTENCE_END:
                    out.append("<eos>")
            if out[-1] != "<eos>":
                out.append("<eos>")
        return out

    def decode(self, codes: Iterable[int]) -> str:
        """Tokens joined with single spaces, punctuation attached; `<eos>` ends a line."""
        pieces: list[str] = []
        glue = True
        for code in map(int, codes):
            token = self.itos[code] if 0 <= code < len(self.itos) else "<unk>"
            if code == PAD:
                continue
            if code == EOS:
                pieces.append("\n")
                glue = True
                continue
            if not glue and token not in _NO_SPACE_BEFORE:
                pieces.append(" ")
            pieces.append(token)
            glue = token in _NO_SPACE_AFTER
        return "".join(pieces).rstrip("\n")

    def to_dict(self) -> dict:
        return {**super().to_dict(), "lower": self.lower}


def _split_words(text: str) -> list[str]:
    return _WORD.findall(text)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokeniser saved at `path` by `Tokenizer.save`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        level = data["level"]
        itos = data["itos"]
    except FileNotFoundError:
        raise DataError(f"{path}: no tokenizer file; is this a heron sequence run folder?") from None
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{path}: not a heron tokenizer (expected JSON with 'level' and 'itos')") from None
    if level == "char":
        return CharTokenizer(itos)
    if level == "word":
        return WordTokenizer(itos, lower=bool(data.get("lower", False)))
    raise DataError(f"{path}: unknown tokenizer level {level!r} (expected 'char' or 'word')")


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's contents; a clear error for a missing, empty or binary file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder; give a text file") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}); convert it, e.g. with iconv -t utf-8") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    return text


def pad_sequences(sequences: Sequence[Sequence[int]], pad: int = PAD, length: int | None = None):
    """A (N, T) LongTensor of the sequences padded on the right with `pad`, and their lengths.

    T is the longest sequence unless `length` is given (longer ones are cut).
    """
    import torch

    lengths = [min(len(s), length) if length else len(s) for s in sequences]
    width = length or max(lengths, default=0)
    out = torch.full((len(sequences), width), pad, dtype=torch.long)
    for row, (seq, n) in enumerate(zip(sequences, lengths)):
        if n:
            out[row, :n] = torch.as_tensor(list(seq[:n]), dtype=torch.long)
    return out, torch.as_tensor(lengths, dtype=torch.long)
