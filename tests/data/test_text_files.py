"""The text,label CSV and CoNLL readers: good files parse, each bad one is a DataError naming file and line."""

from __future__ import annotations

import pytest

from heron.data.text_files import read_conll, read_labelled_csv
from heron.errors import DataError


def _write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD_CSV = ('label,id,text\n'
            'pos,1,"a fine, sunny day"\n'
            'neg,2,"it rained\nall day"\n'
            'pos,3,lovely\n'
            '\n'
            'neg,4,grim\n')


def test_csv_reads_quoted_commas_and_line_breaks_in_any_column_order(tmp_path):
    rows = read_labelled_csv(_write(tmp_path, GOOD_CSV))
    assert rows.texts == ["a fine, sunny day", "it rained\nall day", "lovely", "grim"]
    assert rows.labels == ["pos", "neg", "pos", "neg"]
    assert rows.lines == [2, 3, 5, 7]  # where each record starts; the quoted line break moves the rest down
    assert rows.classes == ["neg", "pos"]


def test_csv_header_is_case_insensitive_and_may_carry_a_bom(tmp_path):
    rows = read_labelled_csv(_write(tmp_path, "\ufeffText,Label\na,x\nb,y\nc,x\nd,y\n"))
    assert rows.labels == ["x", "y", "x", "y"]


@pytest.mark.parametrize("content, line, words", [
    ("words,label\na,x\nb,y\n", 1, "no 'text' column"),
    ("text\na\nb\n", 1, "no 'label' column"),
    ("text,label\na,x\n  ,y\nc,x\nd,y\n", 3, "the text is empty"),
    ("text,label\na,x\nb,\nc,x\nd,y\n", 3, "the label is empty"),
    ("text,label\na,x\n\"b\nc\",y\ne\n", 5, "the label is empty"),  # a short row after a two-line record
])
def test_csv_bad_rows_name_the_file_and_line(tmp_path, content, line, words):
    path = _write(tmp_path, content)
    with pytest.raises(DataError) as err:
        read_labelled_csv(path)
    message = str(err.value)
    assert str(path) in message and f"line {line}:" in message and words in message


@pytest.mark.parametrize("content, words", [
    ("", "empty"),
    ("text,label\na,x\nb,y\n", r"too few rows of text \(2\)"),
    ("text,label\na,x\nb,x\nc,x\nd,x\n", "at least two classes"),
])
def test_csv_too_little_to_learn_from_is_refused(tmp_path, content, words):
    path = _write(tmp_path, content)
    with pytest.raises(DataError, match=words) as err:
        read_labelled_csv(path)
    assert str(path) in str(err.value)


def test_missing_csv_names_the_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv: no such file"):
        read_labelled_csv(tmp_path / "nope.csv")


GOOD_CONLL = ("-DOCSTART- -X- O O\n\n"
              "EU NNP B-ORG\nrejects VBZ O\nGerman JJ B-MISC\n\n\n"
              "Peter B-PER\nBlackburn\tI-PER\n")


def test_conll_takes_the_first_and_last_columns_and_skips_docstart(tmp_path):
    data = read_conll(_write(tmp_path, GOOD_CONLL, "train.conll"))
    assert data.tokens == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert data.tags == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]]
    assert data.lines == [3, 8]
    assert data.tag_set == ["B-MISC", "B-ORG", "B-PER", "I-PER", "O"]


def test_conll_line_without_a_tag_names_the_line(tmp_path):
    path = _write(tmp_path, "a X\nb Y\n\nc\nd X\n", "bad.conll")
    with pytest.raises(DataError) as err:
        read_conll(path)
    assert str(path) in str(err.value) and "line 4:" in str(err.value) and "no tag" in str(err.value)


@pytest.mark.parametrize("content, words", [
    ("a X\nb Y\n", r"too few sentences \(1\)"),
    ("a O\n\nb O\n", "at least two tags"),
    ("\n\n", "empty"),
])
def test_conll_too_little_to_learn_from_is_refused(tmp_path, content, words):
    path = _write(tmp_path, content, "small.conll")
    with pytest.raises(DataError, match=words) as err:
        read_conll(path)
    assert str(path) in str(err.value)
