"""`heron lm`: train, sample and evaluate round trip on a tiny text; bad files are one line and exit code 2."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from heron.cli import build_parser, main
from heron.cli.lm import DEFAULTS
from heron.tasks.sequence.lm import LMConfig

TEXT = "".join(f"to be or not to be, line {i % 7}.\n" for i in range(300))


def test_flag_defaults_are_the_config_defaults():
    fields = {f.name: f.default for f in dataclasses.fields(LMConfig)}
    assert DEFAULTS == {k: fields[k] for k in DEFAULTS}
    args = build_parser().parse_args(["lm", "train", "x.txt"])
    assert (args.hidden, args.bptt, args.max_minutes) == (DEFAULTS["hidden"], DEFAULTS["bptt"], DEFAULTS["max_minutes"])


def test_train_sample_evaluate_round_trip(tmp_path, capsys):
    text = tmp_path / "play.txt"
    text.write_text(TEXT)
    run = tmp_path / "run"
    code = main(["lm", "train", str(text), "--out", str(run), "--hidden", "32", "--bptt", "16", "--batch-size", "8",
                 "--epochs", "2", "--batches-per-epoch", "15", "--lr", "0.01", "--max-minutes", "0", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "valid bits per char = " in out and str(run) in out
    config = json.loads((run / "config.json").read_text())
    assert config["tokenizer"]["level"] == "char" and config["train"]["grad_clip"] == 0.25
    assert config["model"]["hidden_size"] == 32

    assert main(["lm", "sample", str(run), "--prime", "to be", "-n", "40", "--temperature", "0.5", "--seed", "1"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("to be") and len(first) == len("to be") + 40 + 1
    assert main(["lm", "sample", str(run), "--prime", "to be", "-n", "40", "--temperature", "0.5", "--seed", "1"]) == 0
    assert capsys.readouterr().out == first

    assert main(["lm", "evaluate", str(run), str(text)]) == 0
    lines = capsys.readouterr().out.splitlines()
    bpc = float(re.fullmatch(r"bits per char = (\d+\.\d{3})", lines[0]).group(1))
    perplexity = float(re.fullmatch(r"perplexity = ([\d.]+)", lines[1]).group(1))
    assert 0 < bpc < 3.0 and 1.0 < perplexity < 2 ** 3.0  # char level: perplexity = 2 ** bpc


def test_word_level_with_tied_weights_trains_from_the_cli(tmp_path, capsys):
    text = tmp_path / "play.txt"
    text.write_text(TEXT)
    run = tmp_path / "words"
    code = main(["lm", "train", str(text), "--level", "word", "--max-vocab", "30", "--lower", "--tie-weights",
                 "--out", str(run), "--hidden", "16", "--bptt", "8", "--batch-size", "4", "--epochs", "1",
                 "--batches-per-epoch", "10", "--max-minutes", "0", "--quiet"])
    assert code == 0
    assert main(["lm", "sample", str(run), "--prime", "To be", "-n", "12", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("To be")


@pytest.mark.parametrize("content", [None, "", "   \n"])
def test_a_missing_or_empty_text_is_exit_code_2_with_one_line(tmp_path, capsys, content):
    path = tmp_path / "play.txt"
    if content is not None:
        path.write_text(content)
    code = main(["lm", "train", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "play.txt" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_sample_from_a_folder_that_is_no_run_is_exit_code_2(tmp_path, capsys):
    assert main(["lm", "sample", str(tmp_path), "-n", "5"]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and len(err.strip().splitlines()) == 1
