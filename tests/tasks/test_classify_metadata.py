"""The multi-input model: `heron train --metadata`, the head's last layer sees the files' metadata too."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from heron.cli import main
from heron.config import TrainConfig
from heron.errors import TrainingError
from heron.tasks.classify import evaluate, load_run, predict_images, train
from heron.transfer.heads import GapHead, MetadataHead, TransferDenseHead


def _camera_planted(root, per_class=16, seed=0):
    """JPEGs whose class only the EXIF camera tells: both classes share the same three noise pictures."""
    rng = np.random.default_rng(seed)
    pictures = [Image.fromarray(rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)) for _ in range(3)]
    for name, camera in {"ant": "Canon", "bee": "Nikon"}.items():
        for i in range(per_class):
            split = "train" if i < per_class * 3 // 4 else "valid"
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            exif = Image.Exif()
            exif[0x010F] = camera  # Make
            pictures[i % 3].save(folder / f"{name}_{i}.jpg", quality=90, exif=exif)
    return root


def _config(data, out, cache, **overrides):
    base = dict(data=str(data), out=str(out), arch="resnet18", weights=None, size=[32], crop_pct=1.0,
                epochs=8, lr=1e-2, quiet=True, cache_dir=str(cache), workers=0, seed=0, engine="torch",
                figures="none", head="dense", hidden=[32])
    return TrainConfig(**{**base, **overrides})


def test_metadata_head_concatenates_batch_normalised_columns_before_the_last_layer():
    torch.manual_seed(0)
    base = TransferDenseHead(6, 3, hidden=[4], dropout=0.0)
    head = MetadataHead(base, 2).eval()
    x, meta = torch.randn(5, 6), torch.randn(5, 2)
    penultimate = base.body(x)  # base.fc is now the identity
    normed = head.meta_bn(meta)
    expected = torch.cat([penultimate, normed], 1) @ head.fc.weight.T + head.fc.bias
    torch.testing.assert_close(head((x, meta)), expected)
    assert head.fc.in_features == 4 + 2
    with pytest.raises(ValueError, match="trained with --metadata"):
        head(x)
    with pytest.raises(ValueError, match="ends in a linear layer"):
        MetadataHead(nn.Conv2d(3, 3, 1), 2)
    gap = MetadataHead(GapHead(6, 2, dropout=0.0), 3)
    assert gap((torch.randn(4, 6, 2, 2), torch.randn(4, 3))).shape == (4, 2)


def test_metadata_that_holds_the_label_is_learned_and_compared_with_the_image_alone(tmp_path):
    data = _camera_planted(tmp_path / "planted", per_class=24)
    result = train(_config(data, tmp_path / "run", tmp_path / "cache", metadata=["exif", "size"], epochs=40))
    saved = json.loads((result.path / "config.json").read_text())
    meta = saved["result"]["choices"]["metadata"]
    assert saved["metadata"] == ["camera", "size"]
    assert meta["columns"] == 3 + 2  # Canon, Nikon, other; 40x40, other
    assert result.metrics["accuracy"] == 1.0 and meta["with_metadata"]["accuracy"] == 1.0
    # Each picture is in both classes equally often: the image alone cannot beat a coin.
    assert meta["image_only"]["accuracy"] == 0.5
    assert meta["with_metadata"]["log_loss"] < meta["image_only"]["log_loss"] - 0.1
    report = (result.path / "report.html").read_text()
    assert "with vs without metadata" in report and "camera (2 values + other)" in report

    loaded = load_run(result.path)
    assert isinstance(loaded.model.head, MetadataHead) and loaded.metadata.fields == ["camera", "size"]
    files = sorted((data / "valid").rglob("*.jpg"))
    preds = list(predict_images(files, run=result.path, topk=1))
    assert [p.top[0]["label"] for p in preds] == [f.parent.name for f in files]
    scores = evaluate(result.path, data, quiet=True)
    assert scores["accuracy"] == 1.0 and scores["images"] == len(files)


@pytest.mark.parametrize("overrides, flag", [
    (dict(metadata=["colour"]), "unknown metadata field"),
    (dict(metadata=["size"], head="fcn"), "--head fcn"),
    (dict(metadata=["size"], unfreeze="2"), "--unfreeze 2"),
    (dict(metadata=["size"], ensemble=2), "--ensemble"),
    (dict(metadata=["size"], precompute=False), "--no-precompute"),
])
def test_metadata_options_that_cannot_work_fail_before_any_work(tmp_path, overrides, flag):
    data = _camera_planted(tmp_path / "planted", per_class=4)
    with pytest.raises(TrainingError, match=flag):
        train(_config(data, tmp_path / "run", tmp_path / "cache", **overrides))
    assert not (tmp_path / "run").exists()


def test_heatmap_of_a_metadata_run_is_a_one_line_error(tmp_path, capsys):
    data = _camera_planted(tmp_path / "planted", per_class=4)
    run = train(_config(data, tmp_path / "run", tmp_path / "cache", metadata=["size"], epochs=1, head="gap"))
    image = next((data / "valid").rglob("*.jpg"))
    code = main(["heatmap", str(run.path), str(image), "-o", str(tmp_path / "maps")])
    assert code == 2 and "--metadata" in capsys.readouterr().err
