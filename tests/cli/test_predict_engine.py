"""`heron predict --engine/--precision`: the choice is said on stderr, impossible ones exit 2."""

import importlib.util

import pytest

from heron.cli import main
from heron.tasks.classify import PREDICT_COMPILE_MIN, predict_images, prediction_engine

from _photos import write_sample_photos


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = write_sample_photos(tmp_path_factory.mktemp("photos"))
    return folder


def test_engine_and_precision_are_said_on_stderr(photos, capsys):
    assert main(["predict", str(photos / "coffee.png"), "--engine", "torch", "--precision", "fp32"]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == "heron: engine torch, precision fp32"
    assert "espresso" in out


def test_fp16_on_the_cpu_exits_2_with_one_line(photos, capsys):
    assert main(["predict", str(photos / "coffee.png"), "--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fp16 needs a GPU" in err[0]


def test_auto_uses_torch_for_a_few_images_only(monkeypatch):
    from heron.nn import precision
    from heron.transfer import engine as engines

    monkeypatch.setattr(engines, "engine_installed", lambda name: True)
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    assert prediction_engine(3)[0] == "torch"
    assert prediction_engine(PREDICT_COMPILE_MIN)[0] == "openvino"
    assert prediction_engine(3, engine="onnxruntime") == ("onnxruntime", "fp32")  # asked for: used


@pytest.mark.skipif(not all(importlib.util.find_spec(p) for p in ("onnxruntime", "onnx")),
                    reason="needs onnxruntime and onnx")
def test_compiled_engine_predicts_what_torch_predicts(photos, tmp_path):
    files = sorted(photos.iterdir())
    torch_top = [p.top for p in predict_images(files, topk=3, engine="torch", precision="fp32")]
    compiled = [p.top for p in predict_images(files, topk=3, engine="onnxruntime", precision="fp32",
                                              engine_dir=tmp_path)]
    assert [[e["index"] for e in top] for top in compiled] == [[e["index"] for e in top] for top in torch_top]
    for a, b in zip(compiled, torch_top):
        assert all(abs(x["prob"] - y["prob"]) <= 2e-4 for x, y in zip(a, b))
    assert any(tmp_path.iterdir())  # the engine was kept where it was asked to be


def test_a_trained_networks_torch_predictions_fold_batch_norm_and_keep_its_probabilities(photos, monkeypatch):
    import torch

    from heron.data.images import load_image
    from heron.data.transforms import Preprocessing, eval_transform
    from heron.models import build
    from heron.tasks.classify import predict_files
    from heron.transfer import engine as engines
    from heron.transfer.heads import GapHead
    from heron.transfer.model import ClassifierModel

    torch.manual_seed(0)
    backbone = build("efficientnet_lite0", weights="imagenet")
    model = ClassifierModel(backbone, GapHead(backbone.num_features, 3), (0.5,) * 3, (0.5,) * 3).eval()
    pre = Preprocessing(size=(128, 128), crop_pct=1.0)
    folded = []
    real_fold = engines.fold_batchnorm
    monkeypatch.setattr(engines, "fold_batchnorm", lambda m: folded.append(1) or real_fold(m))
    files = sorted(photos.glob("*.png"))
    got = {path: probs for path, probs, _ in predict_files(model, files, pre, batch_size=4, workers=0)}
    with torch.inference_mode():  # the network as trained: batch norm layers in place
        x = torch.stack([eval_transform(pre)(load_image(p)) for p in files]).float() / 255.0
        expected = torch.softmax(model(x), dim=1)
    assert folded  # the engine ran a copy with batch norm folded
    for path, want in zip(files, expected):
        assert torch.allclose(got[path], want, atol=1e-5)
