"""`heron predict` from the command line: real photos, folders with a bad file, clear errors."""

import json

import pytest

from heron.cli import main

from _photos import write_sample_photos


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = write_sample_photos(tmp_path_factory.mktemp("photos"))
    (folder / "broken.jpg").write_text("this is not a picture")
    return folder


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_predict_folder_predicts_good_files_and_reports_the_bad_one(photos, capsys):
    code = main(["predict", str(photos), "--json", "--topk", "3"])
    out, err = capsys.readouterr()
    rows = {r["file"].split("/")[-1]: r for r in _json_lines(out)}
    assert code == 0
    assert 281 <= rows["chelsea.jpg"]["predictions"][0]["index"] <= 285
    assert rows["coffee.png"]["predictions"][0]["label"] == "espresso"
    assert len(rows["coffee.png"]["predictions"]) == 3
    assert "error" in rows["broken.jpg"] and "broken.jpg" in err


def test_predict_text_output_lists_topk_probabilities(photos, capsys):
    assert main(["predict", str(photos / "coffee.png"), "--topk", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].endswith("coffee.png") and len(lines) == 3
    probs = [float(line.split()[0]) for line in lines[1:]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_named_bad_file_exits_2(photos, capsys):
    assert main(["predict", str(photos / "broken.jpg")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.jpg" in err[0]


def test_missing_path_exits_2_with_one_line(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope.jpg")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "nope.jpg" in err[0] and "Traceback" not in "\n".join(err)


def test_unknown_architecture_exits_2(photos, capsys):
    assert main(["predict", str(photos / "coffee.png"), "--arch", "resnet5O"]) == 2
    err = capsys.readouterr().err
    assert "resnet5O" in err and "resnet50" in err and len(err.strip().splitlines()) == 1


def test_a_folders_files_without_an_image_extension_are_named_as_skipped(tmp_path, capsys):
    folder = write_sample_photos(tmp_path)
    (folder / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (folder / "README").write_text("notes")
    (folder / ".hidden.txt").write_text("not listed")
    code = main(["predict", str(folder), "--json", "--topk", "1"])
    out, err = capsys.readouterr()
    assert code == 0
    predicted = {r["file"].split("/")[-1] for r in _json_lines(out)}
    assert "chelsea.jpg" in predicted and "logo.svg" not in predicted
    skipped = [line for line in err.splitlines() if "skipped" in line]
    assert len(skipped) == 2
    assert any("logo.svg: skipped, .svg is not an image extension" in line for line in skipped)
    assert any("README: skipped, no extension" in line for line in skipped)
