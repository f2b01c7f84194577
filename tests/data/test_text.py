"""The text tokenisers: exact round trips, <unk> for unseen words, JSON save/load, clear errors."""

from __future__ import annotations

import pytest

from heron.data.text import (EOS, PAD, UNK, CharTokenizer, WordTokenizer, load_tokenizer, pad_sequences,
                             read_text)
from heron.errors import DataError

TEXT = "The cat sat.\nThe dog ran, and the cat ran!\nA bird?\n"


def test_char_round_trip_is_exact_and_specials_are_fixed():
    tok = CharTokenizer.fit(TEXT)
    assert tok.itos[:3] == ["<pad>", "<unk>", "<eos>"]
    codes = tok.encode(TEXT)
    assert min(codes) > EOS and len(codes) == len(TEXT)
    assert tok.decode(codes) == TEXT
    assert tok.encode("cat#")[-1] == UNK  # an unseen character


def test_word_tokens_unknown_words_and_sentence_ends():
    tok = WordTokenizer.fit(TEXT, max_vocab=9)
    # the 6 most frequent after the 3 specials: The, cat, ran (2 each), then "!", ",", "." (ties alphabetical)
    assert tok.itos[3:] == ["The", "cat", "ran", "!", ",", "."]
    codes = tok.encode("The cat flew.")
    assert tok.itos[codes[0]] == "The" and tok.itos[codes[1]] == "cat"
    assert codes[2] == UNK  # "flew" was never seen
    assert codes[-1] == EOS and codes.count(EOS) == 1  # "." closes the sentence, the line end adds no second one
    assert tok.decode(tok.encode("The cat ran, and the cat sat.")) == "The cat ran, <unk> <unk> cat <unk>."
    full = WordTokenizer.fit(TEXT)
    assert full.decode(full.encode("The cat ran, and the cat sat.")) == "The cat ran, and the cat sat."


def test_word_lower_folds_case():
    tok = WordTokenizer.fit(TEXT, lower=True)
    assert "The" not in tok.stoi and tok.encode("THE")[0] == tok.stoi["the"]


def test_save_and_load_round_trip(tmp_path):
    for tok in (CharTokenizer.fit(TEXT), WordTokenizer.fit(TEXT, max_vocab=50, lower=True)):
        path = tok.save(tmp_path / f"{tok.level}.json")
        back = load_tokenizer(path)
        assert type(back) is type(tok) and back.itos == tok.itos
        assert back.encode(TEXT) == tok.encode(TEXT)
    assert load_tokenizer(tmp_path / "word.json").lower is True


@pytest.mark.parametrize("content", ["not json", '{"itos": ["<pad>"]}', '{"level": "byte", "itos": []}'])
def test_a_bad_tokenizer_file_is_a_data_error_naming_it(tmp_path, content):
    path = tmp_path / "tokenizer.json"
    path.write_text(content)
    with pytest.raises(DataError, match="tokenizer.json"):
        load_tokenizer(path)
    with pytest.raises(DataError, match="no tokenizer file"):
        load_tokenizer(tmp_path / "missing.json")


def test_read_text_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_text(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match="empty"):
        read_text(tmp_path / "empty.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(DataError, match="UTF-8"):
        read_text(tmp_path / "bin.txt")


def test_pad_sequences_pads_right_and_reports_lengths():
    padded, lengths = pad_sequences([[5, 6, 7], [8]])
    assert padded.tolist() == [[5, 6, 7], [8, PAD, PAD]]
    assert lengths.tolist() == [3, 1]
