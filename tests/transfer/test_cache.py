"""The feature cache: reuse, invalidation by content/size/weights, damage, and memmapped reads."""

import numpy as np
import torch

from heron.data.transforms import Preprocessing, eval_transform
from heron.transfer.cache import FeatureCache, fingerprint, weights_fingerprint
from heron.transfer.extract import FeatureBatches, extract_features
from heron.transfer.heads import make_head
from heron.transfer.model import ClassifierModel
from heron.models import build


def _model(seed=0):
    torch.manual_seed(seed)
    backbone = build("resnet18", include_top=False)
    return ClassifierModel(backbone, make_head("gap", 512, 3), (0.5,) * 3, (0.25,) * 3).eval()


def _extract(model, paths, root, size=32):
    pre = Preprocessing(size=(size, size), crop_pct=1.0)
    key = {"weights": weights_fingerprint(model.backbone), "pre": pre.to_dict(), "kind": model.feature_kind}
    cache = FeatureCache(root, key)
    ext = extract_features(model, paths, cache, {"eval": eval_transform(pre)}, workers=0, progress=False)
    return cache, ext


def _paths(folder):
    return sorted(folder.rglob("*.jpg"))


def test_second_run_computes_nothing_and_matches_direct_forward(color_dataset, tmp_path):
    model, paths = _model(), _paths(color_dataset)
    cache, first = _extract(model, paths, tmp_path / "cache")
    assert first.forwards == len(paths) and first.ok().all()
    cache2, second = _extract(model, paths, tmp_path / "cache")
    assert second.forwards == 0
    feats = cache2.array()[second.rows[:, 0]]
    # Same numbers as running the model directly (float16 storage precision).
    from heron.data.images import load_image
    x = torch.stack([eval_transform(Preprocessing(size=(32, 32), crop_pct=1.0))(load_image(p)) for p in paths[:4]])
    with torch.inference_mode():
        direct = model.features(x.float() / 255)
    np.testing.assert_allclose(np.asarray(feats[:4], dtype=np.float32), direct.numpy(), rtol=2e-2, atol=2e-2)


def test_changed_file_recomputes_only_that_file(color_dataset, tmp_path):
    model, paths = _model(), _paths(color_dataset)
    _extract(model, paths, tmp_path / "cache")
    from PIL import Image
    Image.new("RGB", (40, 40), (1, 2, 3)).save(paths[0])
    _, again = _extract(model, paths, tmp_path / "cache")
    assert again.forwards == 1


def test_changed_size_or_weights_use_a_new_cache(color_dataset, tmp_path):
    paths = _paths(color_dataset)
    _extract(_model(0), paths, tmp_path / "cache")
    _, other_size = _extract(_model(0), paths, tmp_path / "cache", size=48)
    assert other_size.forwards == len(paths)
    _, other_weights = _extract(_model(1), paths, tmp_path / "cache")
    assert other_weights.forwards == len(paths)


def test_damaged_cache_is_rebuilt(color_dataset, tmp_path):
    model, paths = _model(), _paths(color_dataset)
    cache, _ = _extract(model, paths, tmp_path / "cache")
    raw = bytearray(cache.features_path.read_bytes())
    raw[10:40] = b"\xff" * 30  # flip bytes of the first row
    cache.features_path.write_bytes(bytes(raw))
    _, again = _extract(model, paths, tmp_path / "cache")
    assert again.forwards == len(paths)
    cache.features_path.write_bytes(b"short")
    fresh, rebuilt = _extract(model, paths, tmp_path / "cache")
    assert fresh.rebuilt and rebuilt.forwards == len(paths)


def test_corrupt_file_is_reported_and_skipped(color_dataset, tmp_path):
    paths = _paths(color_dataset)
    bad = paths[2]
    bad.write_bytes(bad.read_bytes()[:100])  # truncated JPEG
    _, ext = _extract(_model(), paths, tmp_path / "cache")
    assert not ext.ok()[2] and ext.ok().sum() == len(paths) - 1
    assert len(ext.errors) == 1 and str(bad) in ext.errors[0]


def test_feature_batches_shuffle_follows_torch_seed():
    feats = np.arange(20, dtype=np.float16).reshape(10, 2)
    rows, y = np.arange(10), torch.arange(10)
    torch.manual_seed(3)
    a = [yb.tolist() for _, yb in FeatureBatches(feats, rows, y, 4, shuffle=True)]
    torch.manual_seed(3)
    b = [yb.tolist() for _, yb in FeatureBatches(feats, rows, y, 4, shuffle=True)]
    assert a == b and sorted(sum(a, [])) == list(range(10))
    x0, y0 = next(iter(FeatureBatches(feats, rows, y, 4)))
    assert x0.dtype == torch.float32 and torch.equal(x0[:, 0], 2 * y0.float())


def test_fingerprint_is_order_independent():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_preloaded_and_streamed_batches_are_identical():
    """Small sets are read into memory once, large ones stream: the batches must not differ."""
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((30, 5)).astype(np.float16)
    rows = rng.permutation(30)[:24].reshape(12, 2)  # two cached copies per item
    y = torch.arange(12)
    batches = {}
    for name, budget in (("preloaded", 1 << 20), ("streamed", 0)):
        loader = FeatureBatches(feats, rows, y, 5, shuffle=True, preload_bytes=budget)
        assert (loader.table is not None) == (name == "preloaded")
        torch.manual_seed(7)
        batches[name] = [(xb, yb) for xb, yb in loader]
    assert len(batches["preloaded"]) == len(batches["streamed"]) == 3
    for (xa, ya), (xb, yb) in zip(batches["preloaded"], batches["streamed"]):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
