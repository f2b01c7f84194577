"""`heron faces train` and `heron faces evaluate` from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from heron.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks" / "faces"))
from test_train_faces import write_people  # noqa: E402


def _train(data, run, tmp_path, *extra):
    return main(["--threads", "1", "faces", "train", str(data), "--out", str(run), "--arch", "lenet5",
                 "--weights", "none", "--size", "32", "--dim", "8", "--epochs", "2", "--p", "3", "--k", "2",
                 "--valid-people", "2", "--target-far", "0.1", "--cache-dir", str(tmp_path / "cache"),
                 "--workers", "0", "--no-augment", "--quiet", *extra])


def test_train_then_evaluate(tmp_path, capsys):
    data = write_people(tmp_path / "people", people=6, images=5)
    assert _train(data, tmp_path / "run", tmp_path) == 0
    assert capsys.readouterr().out.strip() == f"run: {tmp_path / 'run'}"
    result = json.loads((tmp_path / "run" / "config.json").read_text())["result"]
    assert result["dim"] == 8 and "tau" in result
    unseen = write_people(tmp_path / "unseen", people=4, images=4, seed=5)
    assert main(["faces", "evaluate", str(tmp_path / "run"), str(unseen), "--out", str(tmp_path / "eval"),
                 "--strangers", "0.25"]) == 0
    table = capsys.readouterr().out
    assert "ROC AUC" in table and "rank-1 (1 enrolment image)" in table and "stranger rejection" in table
    metrics = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert (tmp_path / "eval" / "roc.png").is_file()
    assert metrics["people"] == 4 and metrics["gallery_people"] == 3 and metrics["stranger_people"] == 1
    assert metrics["probes"] == 3 * 3 and metrics["tau"] == pytest.approx(result["tau"])
    # a second train into the same folder needs --overwrite
    assert _train(data, tmp_path / "run", tmp_path) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("layout, message", [
    ("empty", "no images in sub-folders"),
    ("three", "at least 4"),
    ("lonely", "add another photo or remove the folder"),
])
def test_bad_data_is_one_line_with_the_fix(tmp_path, capsys, layout, message):
    data = tmp_path / "data"
    data.mkdir()
    if layout == "three":
        write_people(data, people=3, images=3)
    elif layout == "lonely":
        write_people(data, people=5, images=3)
        for extra in sorted((data / "person1").iterdir())[1:]:
            extra.unlink()
    assert _train(data, tmp_path / "run", tmp_path) == 2
    err = capsys.readouterr().err
    assert err.startswith("heron: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()
