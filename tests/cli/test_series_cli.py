"""`heron series train | predict` on tiny files the tests write; user errors are one line and exit code 2."""

import json

import numpy as np
import pytest

from heron.cli import main
from heron.cli.series import MODEL_CHOICES, SHOWN_DEFAULTS


def write_bumps(path, per_class: int, length: int, seed: int) -> None:
    """Class "1": a bump in the first half; class "2": in the second half (space separated, old UCR style)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    lines = []
    for _ in range(per_class):
        for label, centre in (("1", length * 0.25), ("2", length * 0.75)):
            values = np.exp(-0.5 * ((t - centre - rng.uniform(-2, 2)) / 2.0) ** 2) + rng.normal(0, 0.05, length)
            lines.append(" ".join([label, *(f"{v:.4f}" for v in values)]))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series-cli")
    write_bumps(folder / "B_TRAIN.txt", per_class=5, length=40, seed=0)
    write_bumps(folder / "B_TEST.txt", per_class=4, length=40, seed=1)
    return folder


def test_train_with_test_prints_test_accuracy_last_and_predict_prints_labels(trained, capsys):
    run = trained / "run"
    code = main(["series", "train", str(trained / "B_TRAIN.txt"), "--test", str(trained / "B_TEST.txt"),
                 "--out", str(run), "--epochs", "2", "--threads", "1", "--quiet"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert out[-1].startswith("test accuracy = ")
    accuracy = float(out[-1].split("=")[1])
    assert 0.0 <= accuracy <= 1.0 and len(out[-1].split("=")[1].strip()) == 6  # 0.XXXX
    assert any(line.startswith("valid accuracy = ") for line in out)
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["test_accuracy"] == pytest.approx(accuracy)

    assert main(["series", "predict", str(run), str(trained / "B_TEST.txt")]) == 0
    captured = capsys.readouterr()
    labels = captured.out.splitlines()
    assert len(labels) == 8 and set(labels) <= {"1", "2"}
    assert f"accuracy {accuracy:.4f} on 8 labelled series" in captured.err


def test_predict_reads_values_only_files_with_no_labels(trained, capsys):
    run = trained / "run"
    if not (run / "model.safetensors").exists():
        pytest.skip("needs the run of the test above")
    rows = [line.split(" ", 1)[1] for line in (trained / "B_TEST.txt").read_text().splitlines()]
    (trained / "values.txt").write_text("\n".join(rows[:3]) + "\n")
    assert main(["series", "predict", str(run), str(trained / "values.txt"), "--no-labels"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 3 and captured.err == ""


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1 0.1 0.2\n2 0.3 x7\n", "line 2, column 3: 'x7' is not a number"),
        ("1 0.1 0.2\n1 0.3 0.1\n", "has 1 class ('1')"),
        ("", "line 1: the file is empty"),
    ],
)
def test_a_bad_training_file_is_one_line_and_exit_2(tmp_path, capsys, text, expected):
    bad = tmp_path / "BAD_TRAIN.tsv"
    bad.write_text(text)
    code = main(["series", "train", str(bad), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("heron: error: ") and str(bad) in err and expected in err
    assert not (tmp_path / "run").exists()


def test_predict_on_a_folder_that_is_not_a_run_is_exit_2(tmp_path, capsys):
    (tmp_path / "x.tsv").write_text("1 1 2\n")
    assert main(["series", "predict", str(tmp_path), str(tmp_path / "x.tsv")]) == 2
    assert "not a finished series run" in capsys.readouterr().err


def test_help_defaults_are_the_configs():
    from heron.tasks.sequence.series import MODELS, SeriesConfig

    config = SeriesConfig()
    assert SHOWN_DEFAULTS == {k: getattr(config, k) for k in SHOWN_DEFAULTS}
    assert MODEL_CHOICES == MODELS
