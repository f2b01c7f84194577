"""`heron text` and `heron tag`: train + predict on tiny files; a malformed file is one line and exit code 2."""

from __future__ import annotations

import csv
import json
from dataclasses import fields

from heron.cli import main
from heron.cli.text import TAG_DEFAULTS, TEXT_DEFAULTS

TINY = ["--epochs", "6", "--embed-dim", "8", "--hidden-size", "16", "--batch-size", "8", "--lr", "0.02", "--quiet"]


def _csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("text", "label"), *rows])
    return str(path)


def test_text_train_then_predict(tmp_path, capsys):
    rows = [(f"w{i % 7} good w{i % 5}", "pos") if i % 2 else (f"w{i % 5} bad w{i % 7}", "neg") for i in range(40)]
    out = tmp_path / "run"
    assert main(["text", "train", _csv(tmp_path / "tiny.csv", rows), "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "valid accuracy" in printed
    assert main(["text", "predict", str(out), "w1 good w2", "unseen bad words", "--json"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["label"] for a in answers] == ["pos", "neg"]
    assert all(a["prob"] == max(a["probs"].values()) for a in answers)
    assert main(["text", "predict", str(out), "good"]) == 0
    label, prob, text = capsys.readouterr().out.strip().split("\t")
    assert label == "pos" and 0.5 < float(prob) <= 1.0 and text == "good"


def test_tag_train_then_predict(tmp_path, capsys):
    sentences = [[("the", "O"), (f"w{i % 6}", "O"), (str(i), "NUM")] if i % 2 else [(str(i), "NUM"), ("w1", "O")]
                 for i in range(80)]
    data = tmp_path / "tiny.conll"
    data.write_text("\n\n".join("\n".join(f"{t}\t{g}" for t, g in s) for s in sentences) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    assert main(["tag", "train", str(data), "--out", str(out), *TINY, "--epochs", "10"]) == 0
    assert "valid token accuracy" in capsys.readouterr().out
    assert main(["tag", "predict", str(out), "the w2 7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [["the", "O"], ["w2", "O"], ["7", "NUM"]]
    assert main(["tag", "predict", str(out), "12 w1"]) == 0
    assert capsys.readouterr().out.strip() == "12/NUM w1/O"


def test_a_malformed_csv_is_one_line_naming_the_file_and_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,label\nhello,x\n", encoding="utf-8")
    assert main(["text", "train", str(bad), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "line 1" in err
    assert not (tmp_path / "run").exists()


def test_a_malformed_conll_file_is_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.conll"
    bad.write_text("a O\nb O\n\nlonely\n", encoding="utf-8")
    assert main(["tag", "train", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{bad}: line 4:" in err


def test_predict_on_a_folder_that_is_not_a_text_run_is_exit_code_2(tmp_path, capsys):
    assert main(["text", "predict", str(tmp_path), "hello"]) == 2
    assert "not a finished heron run" in capsys.readouterr().err


def test_the_flag_defaults_are_the_tasks_defaults():
    from heron.tasks.sequence.tag import TagConfig
    from heron.tasks.sequence.text_classify import TextConfig

    for defaults, config in ((TEXT_DEFAULTS, TextConfig()), (TAG_DEFAULTS, TagConfig())):
        values = {f.name: getattr(config, f.name) for f in fields(config)}
        assert {k: values[k] for k in defaults} == defaults
