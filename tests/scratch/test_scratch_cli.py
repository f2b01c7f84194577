"""`heron scratch lenet|rnn` and `heron filters` through their argument parser."""

import argparse

import numpy as np
import pytest
from PIL import Image

from heron.cli import scratch
from heron.errors import DataError, HeronError


def _run(argv):
    parser = argparse.ArgumentParser(prog="heron")
    scratch.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat on the mat. the dog sat on the log. " * 10, encoding="utf-8")
    return path


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_scratch_rnn_prints_losses_and_a_sample(cell, text_file, capsys):
    argv = ["scratch", "rnn", str(text_file), "--cell", cell, "--steps", "40", "--hidden", "16", "--seq-len", "12"]
    assert _run(argv + ["--sample", "30"]) == 0
    out = capsys.readouterr().out
    losses = [float(line.split("loss")[1]) for line in out.splitlines() if line.startswith("step")]
    assert len(losses) >= 5 and losses[-1] < losses[0]
    sample = out.split("sample:\n")[1].rstrip("\n")
    assert len(sample) == 31 and set(sample) <= set(text_file.read_text())


def test_scratch_rnn_refuses_bad_text_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 20)
    short = tmp_path / "short.txt"
    short.write_text("abc")
    cases = [(tmp_path / "missing.txt", "no such text file"), (empty, "empty"), (binary, "not UTF-8"),
             (short, "only 3 characters"), (tmp_path, "no such text file")]
    for path, message in cases:
        with pytest.raises(DataError, match=message) as err:
            _run(["scratch", "rnn", str(path)])
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_scratch_lenet_prints_each_epoch(capsys):
    assert _run(["scratch", "lenet", "--epochs", "1", "--seed", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["epoch", "train_loss", "val_loss", "val_acc"]
    epoch, train_loss, val_loss, val_acc = lines[1].split()
    assert epoch == "1" and float(train_loss) > 0 and 0.5 < float(val_acc) <= 1
    assert "61,706 parameters" in lines[2] and "after 1 epochs" in lines[2]


def test_bad_numbers_are_argument_errors():
    with pytest.raises(SystemExit):
        _run(["scratch", "lenet", "--epochs", "0"])


def test_filters_writes_a_grid(tmp_path, capsys):
    yy, xx = np.mgrid[0:60, 0:80]
    photo = np.stack([xx * 3, yy * 4, (xx + yy) * 2], axis=-1).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    out = tmp_path / "grid.png"
    assert _run(["filters", str(tmp_path / "photo.png"), "-o", str(out), "--random", "2"]) == 0
    assert out.is_file() and Image.open(out).size[0] > 300
    assert str(out) in capsys.readouterr().out


def test_filters_missing_image_is_a_heron_error(tmp_path):
    with pytest.raises(HeronError):
        _run(["filters", str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "g.png")])
    assert not (tmp_path / "g.png").exists()
