"""`heron export --format onnx`: ONNX Runtime's probabilities equal PyTorch's, metadata round trip, errors."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnx", reason="ONNX export needs the onnx package (pip install onnx)")
pytest.importorskip("onnxruntime", reason="running the export needs onnxruntime (pip install onnxruntime)")

import onnx  # noqa: E402

from heron.cli import main  # noqa: E402
from heron.config import TrainConfig  # noqa: E402
from heron.data.images import load_image  # noqa: E402
from heron.data.transforms import Preprocessing, eval_transform  # noqa: E402
from heron.errors import DataError  # noqa: E402
from heron.nn.layers import ConvBnAct  # noqa: E402
from heron.serve import export as exporting  # noqa: E402
from heron.serve.export import ExportError, check_export, export_graph, export_onnx  # noqa: E402
from heron.serve.onnx_model import OnnxClassifier  # noqa: E402
from heron.tasks import classify  # noqa: E402
from tests.conftest import write_color_classes  # noqa: E402


def _train(data, out, cache, **overrides):
    """A tiny real run: resnet18 from scratch at 32x32 (crop 0.875, so eval resizes and crops), one epoch."""
    base = dict(data=str(data), out=str(out), arch="resnet18", weights=None, size=[32], crop_pct=0.875, epochs=1,
                lr=1e-2, quiet=True, cache_dir=str(cache), workers=0, seed=0, engine="torch", figures="none")
    return classify.train(TrainConfig(**{**base, **overrides})).path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = write_color_classes(root / "colors", per_class=4, size=40)
    return _train(data, root / "run", root / "cache")


@pytest.fixture(scope="module")
def exported(run):
    return export_onnx(run)


def _valid_images(run, pre):
    files = sorted((run.parent / "colors" / "valid").rglob("*.jpg"))
    return torch.stack([eval_transform(pre)(load_image(f)) for f in files])  # (N, 3, H, W) uint8


def test_onnx_runtime_probabilities_equal_pytorch_within_1e4(run, exported):
    assert exported == run / "model.onnx" and exported.is_file()
    loaded = classify.load_run(run)
    batch = _valid_images(run, loaded.pre)
    with torch.inference_mode():
        want = torch.softmax(loaded.model(batch.float() / 255.0), dim=1).numpy()
    classifier = OnnxClassifier(exported, threads=1)
    got = classifier.predict(batch.numpy())
    assert got.shape == (len(batch), 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    assert want.std(0).max() > 1e-3  # the images give different outputs: the comparison means something
    np.testing.assert_allclose(classifier.predict(batch[:1].numpy()), want[:1], atol=1e-4, rtol=0)  # any batch size


def test_metadata_round_trip(run, exported):
    loaded = classify.load_run(run)
    proto = onnx.load(str(exported))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["heron.classes"]) == loaded.classes == ["blue", "green", "red"]
    assert Preprocessing.from_dict(json.loads(props["heron.preprocessing"])) == loaded.pre
    assert json.loads(props["heron.multilabel"]) is False
    assert props["heron.run"] == str(run.resolve()) and props["heron.version"]
    described = json.loads(props["heron.input"])
    assert described["dtype"] == "uint8" and described["layout"] == "NCHW" and described["shape"] == ["N", 3, 32, 32]
    [graph_input], [graph_output] = proto.graph.input, proto.graph.output
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert graph_output.name == "probabilities"
    classifier = OnnxClassifier(exported)
    assert classifier.classes == loaded.classes and classifier.pre == loaded.pre
    assert classifier.size == (32, 32) and classifier.batch is None and not classifier.multilabel


def test_a_list_of_images_is_resized_as_the_eval_transform_does(run, exported):
    from PIL import Image

    classifier = OnnxClassifier(exported, threads=1)
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, size=(45, 70, 3), dtype=np.uint8)  # not square, not the input size
    tensor = torch.from_numpy(photo).permute(2, 0, 1).contiguous()
    want = classifier.predict(eval_transform(classifier.pre)(tensor)[None].numpy())
    got = classifier.predict([Image.fromarray(photo), tensor])
    np.testing.assert_array_equal(got, np.concatenate([want, want]))
    with pytest.raises(ValueError, match="uint8"):
        classifier.predict(np.zeros((1, 3, 40, 40), np.uint8))  # not at the input size


def test_multilabel_run_exports_sigmoid_outputs(run, tmp_path, monkeypatch):
    loaded = classify.load_run(run)
    monkeypatch.setattr(classify, "load_run", lambda path: dataclasses.replace(loaded, multilabel=True))
    classifier = OnnxClassifier(export_onnx(run, tmp_path / "multi.onnx"), threads=1)
    assert classifier.multilabel and classifier.classes == loaded.classes
    batch = _valid_images(run, loaded.pre).numpy()
    with torch.inference_mode():
        want = torch.sigmoid(loaded.model(torch.from_numpy(batch).float() / 255.0)).numpy()
    got = classifier.predict(batch)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert np.abs(got.sum(1) - 1).max() > 1e-2  # sigmoid per class, not a softmax


class _TinyNet(nn.Module):
    """[0, 1] images -> logits through ConvBnAct blocks whose batch norms have non-trivial statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvBnAct(3, 8), ConvBnAct(8, 8, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(8, 4))
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.2, 0.2)

    def forward(self, x):
        return self.body(x)


def test_batch_norm_is_folded_and_the_check_compares_with_the_unfolded_model():
    model = _TinyNet().eval()
    graph = export_graph(model, (16, 16))
    ops = [node.op_type for node in onnx.load_from_string(graph).graph.node]
    assert "Conv" in ops and "BatchNormalization" not in ops
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the model itself is untouched
    pre = Preprocessing(size=(16, 16))
    data = exporting._with_metadata(graph, exporting.metadata_props(list("abcd"), pre, False, "tiny"))
    assert check_export(data, model, False, (16, 16)) <= 1e-4
    other = _TinyNet().eval()  # different weights: the check must notice
    with pytest.raises(ExportError, match="differ from PyTorch"):
        check_export(data, other, False, (16, 16))


def test_a_failed_check_writes_no_file(run, tmp_path, monkeypatch):
    wrong = export_graph(_TinyNet().eval(), (32, 32))  # 4 outputs from another network
    monkeypatch.setattr(exporting, "export_graph", lambda *args, **kwargs: wrong)
    with pytest.raises(ExportError):
        export_onnx(run, tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


def test_cli_export_with_a_static_batch_runs_any_number_of_images(run, exported, tmp_path, capsys):
    out = tmp_path / "fixed.onnx"
    assert main(["export", str(run), "--format", "onnx", "-o", str(out), "--static-batch"]) == 0
    stdout, stderr = capsys.readouterr()
    assert stdout.strip() == str(out) and "matches PyTorch" in stderr
    classifier = OnnxClassifier(out, threads=1)
    assert classifier.batch == 1 and json.loads(classifier.session.get_modelmeta().custom_metadata_map[
        "heron.input"])["shape"] == [1, 3, 32, 32]
    batch = _valid_images(run, classifier.pre).numpy()  # 6 images through a graph that takes 1
    np.testing.assert_allclose(classifier.predict(batch), OnnxClassifier(exported).predict(batch), atol=1e-6)


@pytest.mark.parametrize("name", ["not_a_run", "missing"])
def test_a_folder_that_is_not_a_run_exits_2_with_one_line(tmp_path, capsys, name):
    folder = tmp_path / name
    if name == "not_a_run":
        folder.mkdir()
        (folder / "notes.txt").write_text("hello")
    assert main(["export", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("heron: error: ") and name in err[0]


def test_a_metadata_run_is_refused_with_one_line(run, monkeypatch, capsys):
    loaded = classify.load_run(run)
    with_metadata = dataclasses.replace(loaded, metadata=object())
    monkeypatch.setattr(classify, "load_run", lambda path: with_metadata)
    assert main(["export", str(run), "-o", str(run / "never.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--metadata" in err[0] and not (run / "never.onnx").exists()


def test_files_that_are_not_heron_onnx_models_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="no such ONNX file"):
        OnnxClassifier(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(DataError, match="not a readable ONNX model") as err:
        OnnxClassifier(junk)
    assert "\n" not in str(err.value)
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(export_graph(_TinyNet().eval(), (16, 16)))  # valid ONNX, no heron metadata
    with pytest.raises(DataError, match="without heron's metadata"):
        OnnxClassifier(plain)
    pre = Preprocessing(size=(16, 16))
    props = {**exporting.metadata_props(["a"], pre, False, "tiny"), "heron.classes": "[not json"}
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(exporting._with_metadata(plain.read_bytes(), props))
    with pytest.raises(DataError, match="damaged heron metadata"):
        OnnxClassifier(damaged)


def test_running_a_batch_does_not_import_torch(exported):
    code = ("import sys, numpy as np\n"
            "from heron.serve.onnx_model import OnnxClassifier\n"
            f"c = OnnxClassifier({str(exported)!r}, threads=1)\n"
            "p = c.predict(np.zeros((2, 3, 32, 32), np.uint8))\n"
            "print(p.shape, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "False" and "(2, 3)" in done.stdout
