"""Frozen-trunk engines: same features as torch fp32, the choice of engine, the on-disk cache."""

import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from heron.data.transforms import resize
from heron.errors import HeronError
from heron.models import build
from heron.nn import precision
from heron.transfer import engine as engines
from heron.transfer.cache import FeatureCache
from heron.transfer.engine import EngineError, create_engine, resolve_engine, trunk_fingerprint
from heron.transfer.extract import extract_features
from heron.transfer.model import ClassifierModel

skdata = pytest.importorskip("skimage.data")
COMPILED = ["openvino", "onnxruntime"]


def _installed(name):
    return all(importlib.util.find_spec(p) is not None for p in engines._PACKAGES[name])


def _cosine(a, b):
    return nn.functional.cosine_similarity(a, b, dim=1)


@pytest.fixture(scope="module")
def lite0():
    """The bundled pretrained EfficientNet-Lite0 trunk with a head, as transfer learning builds it."""
    backbone = build("efficientnet_lite0", weights="imagenet", include_top=False)
    spec = backbone.pretrained_cfg
    return ClassifierModel(backbone, nn.Linear(1280, 3), spec.mean, spec.std).eval()


@pytest.fixture(scope="module")
def photos():
    """Four real photos as a uint8 batch (4, 3, 64, 64)."""
    images = [skdata.chelsea(), skdata.coffee(), skdata.astronaut(), skdata.rocket()]
    return torch.stack([resize(torch.from_numpy(i).permute(2, 0, 1).contiguous(), (64, 64)) for i in images])


class Tiny(nn.Module):
    """A small trunk with `features` and a head it never uses: cheap to convert."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                                   nn.Conv2d(8, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, 2)
        with torch.no_grad():
            self.trunk[1].running_mean.uniform_(-0.5, 0.5)
            self.trunk[1].running_var.uniform_(0.5, 2.0)
        self.eval()

    def features(self, x):
        return self.trunk(x)  # (N, 16)

    def forward(self, x):
        return self.head(self.features(x))


def _reference(model, batch):
    with torch.no_grad():
        return model.features(batch.float() / 255)


# ---- torch engine -----------------------------------------------------------------------


def test_torch_fp32_engine_gives_the_models_features(lite0, photos):
    engine = create_engine(lite0, "torch", "fp32")
    got = engine(photos)
    assert got.dtype == torch.float32 and got.shape == (4, 1280)
    assert _cosine(got, _reference(lite0, photos)).min() >= 0.9999
    torch.testing.assert_close(engine(photos.float() / 255), got)  # floats in [0, 1] too
    assert engine.describe() == "engine torch, precision fp32"


def test_torch_bf16_features_agree_with_fp32(lite0, photos):
    fp32 = create_engine(lite0, "torch", "fp32")(photos)
    bf16 = create_engine(lite0, "torch", "bf16")
    assert bf16.precision == "bf16" and next(bf16.trunk.parameters()).dtype == torch.bfloat16
    cos = _cosine(bf16(photos), fp32)
    # bf16 keeps 8 bits of mantissa: per photo ~0.999, far closer than a +-1 grey-level change (~0.98)
    assert cos.mean() >= 0.998 and cos.min() >= 0.995


# ---- compiled engines match torch fp32 ---------------------------------------------------


@pytest.mark.parametrize("name", COMPILED)
def test_compiled_engine_matches_torch_fp32(lite0, photos, tmp_path, name):
    pytest.importorskip(name)
    if not _installed(name):
        pytest.skip(f"{name} needs {engines._PACKAGES[name]}")
    engine = create_engine(lite0, name, "fp32", cache_dir=tmp_path, threads=2)
    assert (engine.name, engine.precision) == (name, "fp32")
    assert engine.describe() == f"engine {name}, precision fp32"
    reference = _reference(lite0, photos)
    got = engine(photos)
    assert got.dtype == torch.float32 and got.shape == reference.shape
    assert _cosine(got, reference).min() >= 0.9999
    torch.testing.assert_close(engine(photos[:3]), got[:3], atol=1e-4, rtol=1e-4)  # a smaller last batch


# ---- the compiled engine's cache ---------------------------------------------------------


def _compiled_available():
    return [n for n in COMPILED if _installed(n)] or pytest.skip("neither openvino nor onnxruntime is installed")


@pytest.mark.parametrize("name", COMPILED)
def test_warm_cache_loads_instead_of_converting(tmp_path, name):
    if name not in _compiled_available():
        pytest.skip(f"{name} is not installed")
    model, x = Tiny(), torch.randint(0, 256, (5, 3, 20, 20), dtype=torch.uint8)
    cold = create_engine(model, name, "fp32", cache_dir=tmp_path, threads=1)
    first = cold(x)
    assert cold.conversions == 1
    torch.testing.assert_close(first, _reference(model, x), atol=1e-5, rtol=1e-4)
    cold(x[:2])  # another batch size: the same compiled engine
    assert cold.conversions == 1
    warm = create_engine(model, name, "fp32", cache_dir=tmp_path, threads=1)
    torch.testing.assert_close(warm(x), first)
    assert warm.conversions == 0
    warm(torch.randint(0, 256, (2, 3, 28, 28), dtype=torch.uint8))  # a new input size converts once more
    assert warm.conversions == 1
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 2


@pytest.mark.parametrize("damage", ["flip", "truncate", "no_manifest"])
def test_damaged_cached_engine_is_rebuilt(tmp_path, damage):
    name = _compiled_available()[-1]  # the cheapest to convert
    model, x = Tiny(), torch.randint(0, 256, (3, 3, 20, 20), dtype=torch.uint8)
    expected = create_engine(model, name, "fp32", cache_dir=tmp_path)(x)
    (folder,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    weights = max((p for p in folder.iterdir() if p.name != "manifest.json"), key=lambda p: p.stat().st_size)
    data = bytearray(weights.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(bytes(data[: len(data) // 3]))
    else:
        (folder / "manifest.json").unlink()
    again = create_engine(model, name, "fp32", cache_dir=tmp_path)
    torch.testing.assert_close(again(x), expected)
    assert again.conversions == 1
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["engine"] == name and manifest["shape"] == [3, 20, 20]
    warm = create_engine(model, name, "fp32", cache_dir=tmp_path)
    warm(x)
    assert warm.conversions == 0  # the rebuilt one is used from then on


def test_cache_key_follows_the_trunk_not_the_head():
    model, other = Tiny(0), Tiny(1)
    key = trunk_fingerprint(model)
    model.head.weight.data += 1.0  # a newly trained head: the compiled trunk still fits
    assert trunk_fingerprint(model) == key
    assert trunk_fingerprint(other) != key
    assert trunk_fingerprint(model, "forward") != key  # prediction runs the head too


# ---- choosing an engine (cheap) ----------------------------------------------------------


def test_auto_takes_the_fastest_installed_and_falls_back_to_torch(monkeypatch):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    installed = {"torch"}
    monkeypatch.setattr(engines, "engine_installed", lambda n: n in installed)
    assert resolve_engine("auto", "auto", "cpu") == ("torch", "fp32")
    installed.add("onnxruntime")
    assert resolve_engine("auto", "auto", "cpu") == ("onnxruntime", "fp32")
    installed.add("openvino")
    assert resolve_engine("auto", "auto", "cpu") == ("openvino", "fp32")
    assert resolve_engine("auto", "bf16", "cpu") == ("torch", "bf16")  # no native bf16: only torch runs it
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_engine("auto", "auto", "cuda") == ("torch", "fp16")  # compiled engines are CPU-only


def test_auto_on_a_cpu_with_native_bf16_compiles_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(engines, "engine_installed", lambda n: True)
    assert resolve_engine("auto", "auto", "cpu") == ("openvino", "bf16")
    assert resolve_engine("onnxruntime", "fp32", "cpu") == ("onnxruntime", "fp32")


def test_engines_that_cannot_run_the_request_say_what_to_do(monkeypatch):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(engines, "engine_installed", lambda n: n != "onnxruntime")
    with pytest.raises(EngineError, match="not installed; pip install onnxruntime onnx"):
        resolve_engine("onnxruntime", "fp32", "cpu")
    with pytest.raises(EngineError, match="openvino runs bf16 only on CPUs with native bf16"):
        resolve_engine("openvino", "bf16", "cpu")
    with pytest.raises(EngineError, match="runs on the CPU only"):
        resolve_engine("openvino", "fp32", "cuda")
    with pytest.raises(EngineError, match="'tensorrt' is not one of"):
        resolve_engine("tensorrt", "fp32", "cpu")
    with pytest.raises(HeronError, match="fp16 needs a GPU"):
        resolve_engine("torch", "fp16", "cpu")


# ---- extraction through an engine --------------------------------------------------------


def test_extraction_through_a_compiled_engine_matches_torch(tmp_path):
    name = _compiled_available()[-1]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    model, views = Tiny(), {"eval": lambda img: img}
    got = {}
    for engine in ("torch", name):
        cache = FeatureCache(tmp_path / f"cache-{engine}", {"engine": engine})
        ext = extract_features(model, paths, cache, views, batch_size=2, workers=0, progress=False,
                               engine=engine, engine_dir=tmp_path / "engines")
        assert ext.ok().all() and ext.forwards == 5
        got[engine] = np.asarray(cache.array()[ext.rows[:, 0]], dtype=np.float32)
    np.testing.assert_allclose(got[name], got["torch"], atol=2e-3, rtol=2e-3)  # the cache stores float16
