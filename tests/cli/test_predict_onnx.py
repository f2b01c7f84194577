"""`heron predict --model model.onnx`: the same labels as the run folder it was exported from, one-line errors."""

import json

import numpy as np
import pytest

pytest.importorskip("onnx", reason="ONNX export needs the onnx package (pip install onnx)")
pytest.importorskip("onnxruntime", reason="running an .onnx model needs onnxruntime (pip install onnxruntime)")

from PIL import Image  # noqa: E402

from heron.cli import main  # noqa: E402
from tests.conftest import write_color_classes  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(run folder, its model.onnx, a folder of photos of assorted sizes and formats) for the comparisons.

    The run is the default recipe in small: pretrained EfficientNet-Lite0 (its batch norms folded in the
    export), a head trained on cached features, at 32x32 pixels.
    """
    root = tmp_path_factory.mktemp("predict_onnx")
    data = write_color_classes(root / "colors", per_class=4, size=40)
    train = ["train", str(data), "--out", str(root / "run"), "--arch", "efficientnet_lite0",
             "--size", "32", "--crop-pct", "0.875", "--epochs", "10", "--lr", "0.03", "--quiet", "--workers", "0",
             "--cache-dir", str(root / "cache"), "--engine", "torch", "--figures", "none"]
    assert main(train) == 0
    onnx_file = root / "model.onnx"
    assert main(["export", str(root / "run"), "-o", str(onnx_file)]) == 0
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for i, (h, w) in enumerate([(40, 40), (61, 37), (90, 140), (33, 200), (25, 25)]):  # shrink, crop, enlarge
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        pixels[..., i % 3] = np.clip(pixels[..., i % 3].astype(int) + 120, 0, 255)  # a dominant colour
        Image.fromarray(pixels).save(photos / f"photo{i}.{'jpg' if i % 2 else 'png'}")
    return root / "run", onnx_file, photos


def _rows(text):
    return {row["file"]: row for row in map(json.loads, text.splitlines()) if "file" in row}


def test_onnx_predictions_equal_the_run_folders(exported, capsys):
    run, onnx_file, photos = exported
    capsys.readouterr()
    assert main(["predict", str(photos), "--model", str(run), "--json", "--topk", "3", "--engine", "torch"]) == 0
    torch_rows = _rows(capsys.readouterr().out)
    assert main(["predict", str(photos), "--model", str(onnx_file), "--json", "--topk", "3"]) == 0
    out, err = capsys.readouterr()
    onnx_rows = _rows(out)
    assert "heron: engine onnxruntime, precision fp32" in err
    assert len(onnx_rows) == 5 and onnx_rows.keys() == torch_rows.keys()
    for name, row in onnx_rows.items():
        want = torch_rows[name]["predictions"]
        assert [(p["label"], p["index"]) for p in row["predictions"]] == [(p["label"], p["index"]) for p in want]
        assert set(row["predictions"][0]) == {"label", "index", "prob"}
        np.testing.assert_allclose([p["prob"] for p in row["predictions"]], [p["prob"] for p in want], atol=1e-3)
    orders = {tuple(p["index"] for p in row["predictions"]) for row in onnx_rows.values()}
    assert len(orders) >= 2  # the photos are ranked differently: the comparison of rankings means something


def test_text_output_and_a_bad_file_in_the_folder(exported, tmp_path, capsys):
    _, onnx_file, photos = exported
    (tmp_path / "good.png").write_bytes((photos / "photo0.png").read_bytes())
    (tmp_path / "broken.jpg").write_text("not a picture")
    assert main(["predict", str(tmp_path), "--model", str(onnx_file), "--topk", "2"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[0].endswith("good.png") and len(lines) == 3
    assert "broken.jpg" in err


@pytest.mark.parametrize("content", [None, b"not an onnx model"])
def test_a_missing_or_unreadable_onnx_file_exits_2_with_one_line(exported, tmp_path, capsys, content):
    _, _, photos = exported
    model = tmp_path / "model.onnx"
    if content is not None:
        model.write_bytes(content)
    assert main(["predict", str(photos / "photo0.png"), "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("heron: error: ") and "model.onnx" in err[0]


def test_another_engine_for_an_onnx_model_exits_2(exported, capsys):
    _, onnx_file, photos = exported
    assert main(["predict", str(photos / "photo0.png"), "--model", str(onnx_file), "--engine", "openvino"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "onnxruntime" in err[0]
