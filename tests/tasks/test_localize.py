"""Classification with localisation (`heron localize`): box files, the two-part loss, and a real fit."""

import json

import pytest
import torch
from PIL import Image

from heron.cli import main
from heron.data.boxes import largest_boxes, read_boxes
from heron.data.synthetic import SHAPES, write_shapes
from heron.errors import DataError
from heron.tasks.localize import BoxClassHead, BoxClassLoss, _targets


def test_box_files_in_csv_and_json_give_the_same_largest_boxes(tmp_path):
    (tmp_path / "a.png").touch()
    (tmp_path / "b.png").touch()
    (tmp_path / "boxes.csv").write_text("path,label,xmin,ymin,xmax,ymax\na.png,x,0,0,10,10\na.png,y,5,5,40,30\n"
                                        "b.png,x,1,2,3,4\n")
    (tmp_path / "boxes.json").write_text(json.dumps({"a.png": [[0, 0, 10, 10], [5, 5, 40, 30]], "b.png": [[1, 2, 3, 4]]}))
    from_csv = largest_boxes(read_boxes(tmp_path / "boxes.csv"))
    from_json = largest_boxes(read_boxes(tmp_path / "boxes.json"))
    assert from_csv == from_json == {(tmp_path / "a.png").resolve(): (5.0, 5.0, 40.0, 30.0),
                                      (tmp_path / "b.png").resolve(): (1.0, 2.0, 3.0, 4.0)}


@pytest.mark.parametrize("text, message", [
    ("file,x,y\na.png,1,2\n", "header must name"),
    ("file,x1,y1,x2,y2\na.png,5,5,5,9\n", "no area"),
    ("file,x1,y1,x2,y2\na.png,1,2,three,4\n", "four numbers"),
])
def test_bad_box_files_are_one_line_errors_naming_the_file(tmp_path, text, message):
    path = tmp_path / "boxes.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as err:
        read_boxes(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="not found"):
        read_boxes(tmp_path / "missing.csv")


def test_targets_are_fractions_of_the_image_and_zero_without_a_box(tmp_path):
    Image.new("RGB", (200, 100)).save(tmp_path / "wide.png")
    Image.new("RGB", (50, 50)).save(tmp_path / "none.png")
    boxes = {(tmp_path / "wide.png").resolve(): (20.0, 10.0, 220.0, 60.0)}  # runs past the right edge
    targets, found = _targets([(tmp_path / "wide.png", 1), (tmp_path / "none.png", 0)], boxes)
    assert found == 1
    torch.testing.assert_close(targets, torch.tensor([[1.0, 0.1, 0.1, 1.0, 0.6], [0.0, 0.0, 0.0, 0.0, 0.0]]))


def test_the_loss_is_the_seeds_y_vector_loss():
    head = BoxClassHead((8, 2, 2), num_classes=3)
    out, target = torch.randn(5, 8), torch.tensor([[0, .1, .2, .5, .6], [1, 0, 0, 1, 1], [2, .3, .3, .4, .4],
                                                   [0, 0, 0, 0, 0], [1, .5, .5, .9, .9]])
    present = torch.tensor([1.0, 1, 1, 0, 1])
    box_error = ((torch.sigmoid(out[:, 3:7]) - target[:, 1:]) ** 2)[present.bool()].mean()  # only where p_c = 1
    expected = (torch.nn.functional.cross_entropy(out[:, :3], target[:, 0].long())
                + torch.nn.functional.binary_cross_entropy_with_logits(out[:, 7], present) + 7.0 * box_error)
    torch.testing.assert_close(BoxClassLoss(head, 7.0)(out, target), expected)
    assert head(torch.randn(5, 8 * 2 * 2)).shape == (5, 8)  # the cache's flattened map works as the map does
    # an image without a box: moving its predicted box changes nothing
    moved = out.clone()
    moved[3, 3:7] += 5.0
    torch.testing.assert_close(BoxClassLoss(head, 7.0)(moved, target), expected)


def test_localize_finds_class_and_box_of_synthetic_shapes(tmp_path, capsys):
    boxes = write_shapes(tmp_path / "shapes", per_class=100, size=96, seed=1)
    out = tmp_path / "run"
    code = main(["localize", str(tmp_path / "shapes"), "--boxes", str(boxes), "--out", str(out), "--size", "128",
                 "--cache-dir", str(tmp_path / "cache"), "--workers", "0", "--quiet", "--engine", "torch"])
    assert code == 0
    result = json.loads((out / "config.json").read_text())["result"]
    assert result["classes"] == sorted(SHAPES)
    metrics = result["metrics"]
    assert metrics["accuracy"] >= 0.9 and metrics["mean_iou"] >= 0.6 and metrics["presence_accuracy"] >= 0.95, metrics
    assert metrics["images_with_boxes"] == {"train": 240, "valid": 60}
    assert (out / "boxes.png").stat().st_size > 10_000 and (out / "model.safetensors").is_file()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 60
