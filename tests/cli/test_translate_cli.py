"""`heron translate train PAIRS`, `heron translate demo` and `heron translate RUN TEXT` through `main`."""

from __future__ import annotations

import json
import random

from heron.cli import build_parser, main


def _write_pairs(path, n, seed):
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcd") for _ in range(rng.randint(2, 4))) for _ in range(n)]
    path.write_text("".join(f"{w}\t{w[::-1]}\n" for w in words), encoding="utf-8")
    return path


def test_the_three_forms_parse_apart():
    parser = build_parser()
    train = parser.parse_args(["translate", "train", "p.tsv", "--valid", "v.tsv", "--epochs", "2", "--beam", "3"])
    assert (train.what, train.rest, train.valid, train.epochs, train.beam) == ("train", ["p.tsv"], "v.tsv", 2, 3)
    demo = parser.parse_args(["translate", "demo", "--pairs", "50", "--out", "r"])
    assert (demo.what, demo.rest, demo.pairs, demo.out) == ("demo", [], 50, "r")
    use = parser.parse_args(["translate", "runs/x", "3 May 1998", "--beam", "4"])
    assert (use.what, use.rest, use.beam) == ("runs/x", ["3 May 1998"], 4)


def test_train_then_translate_prints_the_translation_last(tmp_path, capsys):
    pairs = _write_pairs(tmp_path / "pairs.tsv", 120, seed=0)
    valid = _write_pairs(tmp_path / "valid.tsv", 30, seed=1)
    run = tmp_path / "run"
    assert main(["translate", "train", str(pairs), "--valid", str(valid), "--out", str(run), "--epochs", "1",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0] == str(run) and printed[-1].startswith("held-back exact match: ")
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["valid"] == str(valid) and config["results"]["epochs"] == 1

    from heron.tasks.sequence.translate import translate

    assert main(["translate", str(run), "abcd", "--beam", "2"]) == 0
    last = capsys.readouterr().out.rstrip("\n").splitlines()[-1]
    assert last == translate(run, ["abcd"], beam=2)[0]


def test_demo_trains_on_generated_dates_and_prints_the_score_last(tmp_path, capsys):
    run = tmp_path / "dates"
    assert main(["translate", "demo", "--out", str(run), "--pairs", "200", "--epochs", "1", "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("held-back exact match: ") and 0.0 <= float(lines[-1].split()[-1]) <= 1.0
    assert len((run / "dates-train.tsv").read_text().splitlines()) == 200
    assert (run / "attention.png").is_file()
    assert main(["translate", str(run), "Tuesday, March 5, 2002"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_a_pairs_file_without_tabs_is_one_line_and_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("ab\tba\nno tab on this line\n", encoding="utf-8")
    assert main(["translate", "train", str(bad), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bad}:2:" in err[0] and "tab" in err[0]
    assert not (tmp_path / "run").exists()


def test_a_missing_run_or_text_is_exit_code_2(tmp_path, capsys):
    assert main(["translate", str(tmp_path / "nowhere"), "3 May 1998"]) == 2
    assert main(["translate", str(tmp_path)]) == 2
    assert main(["translate", "train"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("heron: error: ") for line in err)
