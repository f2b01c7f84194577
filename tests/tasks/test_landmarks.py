"""Landmark detection (`heron landmarks`): the points file, the seeds' loss, and a real fit."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from heron.cli import main
from heron.config import LandmarksConfig
from heron.data.landmarks import landmark_targets, read_landmarks, write_landmark_shapes
from heron.errors import DataError
from heron.tasks.landmarks import LandmarkHead, LandmarkLoss, landmark_scores, landmarks


def test_the_loss_is_the_seeds_all_terms_with_an_object_and_presence_alone_without():
    out = torch.tensor([[2.0, 0.0, 1.0, -1.0, 0.5], [-1.0, 3.0, 3.0, 3.0, 3.0]])  # K = 2
    target = torch.tensor([[1.0, 0.5, 0.6, 0.2, 0.7], [0.0, 0.0, 0.0, 0.0, 0.0]])
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    # y = 1: -log p + w * mean of the four squared coordinate errors
    first = -np.log(sig(2.0)) + 10.0 * np.mean([(sig(0.0) - 0.5) ** 2, (sig(1.0) - 0.6) ** 2,
                                                 (sig(-1.0) - 0.2) ** 2, (sig(0.5) - 0.7) ** 2])
    second = -np.log(1 - sig(-1.0))  # y = 0: the presence term only, whatever the points say
    loss = LandmarkLoss(point_weight=10.0)(out, target)
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)
    assert LandmarkLoss(10.0)(out[1:], target[1:]).item() == pytest.approx(second, rel=1e-6)
    head = LandmarkHead((8, 2, 2), points=3)
    assert head(torch.randn(4, 8 * 2 * 2)).shape == (4, 7)  # the cache's flattened map works as the map does


def test_the_points_file_reads_rows_empty_rows_and_absent_files(tmp_path):
    for name, side in (("a.png", (200, 100)), ("b.png", (50, 50)), ("c.png", (40, 40))):
        Image.new("RGB", side).save(tmp_path / name)
    (tmp_path / "points.csv").write_text("file,x1,y1,x2,y2\na.png,20,10,100,50\nb.png,,,,\n")
    found, k = read_landmarks(tmp_path / "points.csv")
    assert k == 2
    assert found == {(tmp_path / "a.png").resolve(): (20.0, 10.0, 100.0, 50.0), (tmp_path / "b.png").resolve(): None}
    targets, sizes = landmark_targets([tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"], found, k)
    np.testing.assert_allclose(targets, [[1, 0.1, 0.1, 0.5, 0.5], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])  # c: absent
    np.testing.assert_allclose(sizes, [[200, 100], [50, 50], [40, 40]])


@pytest.mark.parametrize("text, message, line", [
    ("file,x1,y1,x2,y2\na.png,1,2,3,4\nb.png,1,2,3\n", "expected 4 coordinates", ":3"),
    ("file,x1,y1,x2,y2\na.png,1,2,three,4\n", "must be numbers", ":2"),
    ("file,x1,y1,x2\na.png,1,2,3\n", "even number", ":1"),
])
def test_bad_points_files_are_one_line_errors_naming_the_file_and_line(tmp_path, text, message, line):
    path = tmp_path / "points.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as err:
        read_landmarks(path)
    assert f"{path}{line}" in str(err.value) and "\n" not in str(err.value)


def test_a_missing_file_or_another_k_is_refused(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_landmarks(tmp_path / "missing.csv")
    (tmp_path / "points.csv").write_text("file,x1,y1,x2,y2\na.png,1,2,3,4\n")
    with pytest.raises(DataError, match="2 points per image but 3"):
        read_landmarks(tmp_path / "points.csv", points=3)


def test_the_synthetic_triangles_have_top_right_left_vertices_inside_the_image(tmp_path):
    found, k = read_landmarks(write_landmark_shapes(tmp_path, images=50, size=64, seed=3))
    assert k == 3 and len(found) == 50 == len(list(tmp_path.glob("*.png")))
    rows = np.array([p for p in found.values() if p is not None]).reshape(-1, 3, 2)  # (n, K, 2)
    assert 0.6 * 50 <= len(rows) <= 0.95 * 50  # about a fifth without a triangle
    assert (rows >= 0).all() and (rows <= 64).all()
    top, right, left = rows[:, 0], rows[:, 1], rows[:, 2]
    assert (top[:, 1] < np.maximum(right[:, 1], left[:, 1])).all() and (right[:, 0] > left[:, 0]).all()


def test_scores_measure_points_on_images_with_an_object_only():
    prob = np.array([0.9, 0.2, 0.6])
    targets = np.array([[1, 0.5, 0.5], [0, 0, 0], [0, 0, 0]], np.float32)  # K = 1
    points = np.array([[0.5, 0.58], [0.9, 0.9], [0.1, 0.1]], np.float32)
    scores = landmark_scores(prob, points, targets, np.array([[200, 100]] * 3, np.float32))
    assert scores["presence_accuracy"] == pytest.approx(2 / 3)
    assert scores["mean_point_error"] == pytest.approx(0.08, abs=1e-6)
    assert scores["mean_point_error_px"] == pytest.approx(8.0, abs=1e-4)
    assert scores["pck_at_0.1"] == 1.0


def test_training_on_triangles_lowers_the_loss_and_writes_the_run(tmp_path):
    points = write_landmark_shapes(tmp_path / "data", images=200, size=64, seed=1)
    config = LandmarksConfig(data=str(tmp_path / "data"), points=str(points), out=str(tmp_path / "run"),
                             arch="resnet18", weights=None, size=[64], epochs=20, cache_dir=str(tmp_path / "cache"),
                             workers=0, quiet=True, engine="torch")
    run = landmarks(config)
    losses = [h["train_loss"] for h in run.history]
    assert losses[-1] < 0.5 * losses[0], losses
    valid = run.metrics["images"]["valid"]
    majority = max(run.metrics["images_with_object"]["valid"], valid - run.metrics["images_with_object"]["valid"])
    assert run.metrics["presence_accuracy"] > majority / valid, run.metrics  # better than always saying the same
    result = json.loads((run.path / "config.json").read_text())["result"]
    assert result["points"] == 3 and result["metrics"]["pck_at_0.1"] == run.metrics["pck_at_0.1"]
    assert (run.path / "landmarks.png").stat().st_size > 10_000 and (run.path / "model.safetensors").is_file()
    assert len((run.path / "metrics.jsonl").read_text().splitlines()) == 20


def test_the_cli_answers_a_missing_points_file_with_one_line(tmp_path, capsys):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    code = main(["landmarks", str(tmp_path), "--points", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nope.csv: points file not found" in err
    assert main(["landmarks", str(tmp_path)]) == 2 and "--points" in capsys.readouterr().err
