"""`heron train` end to end on small real image folders: run folder, cache, errors, resume, export."""

import json

import pytest
import torch
from safetensors.torch import load_file

from heron.cli import main
from heron.config import TrainConfig
from heron.errors import TrainingError
from heron.tasks.classify import evaluate, load_run, predict_images, train


def _config(data, out, cache, **overrides):
    base = dict(data=str(data), out=str(out), arch="resnet18", weights=None, size=[32], crop_pct=1.0,
                epochs=3, lr=1e-2, quiet=True, cache_dir=str(cache), workers=0, seed=0)
    return TrainConfig(**{**base, **overrides})


def test_train_writes_a_complete_run_folder(color_dataset, tmp_path):
    run = train(_config(color_dataset, tmp_path / "run", tmp_path / "cache"))
    for name in ("config.json", "model.safetensors", "metrics.jsonl", "history.png", "confusion.png",
                 "top_losses.png", "report.html", "errors.txt"):
        assert (run.path / name).is_file(), name
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert {"phase", "epoch", "train_loss", "valid_loss", "valid_accuracy", "seconds"} <= set(row)
    saved = json.loads((run.path / "config.json").read_text())
    assert saved["result"]["classes"] == ["blue", "green", "red"]
    assert 0.0 <= run.metrics["accuracy"] <= 1.0
    report = (run.path / "report.html").read_text()
    assert "history.png" in report and "confusion.png" in report
    # The whole network is in plain safetensors: backbone, head and normalisation.
    keys = load_file(str(run.path / "model.safetensors"))
    assert any(k.startswith("backbone.") for k in keys) and "head.fc.weight" in keys and "mean" in keys


def test_exported_run_reproduces_its_validation_scores(color_dataset, tmp_path):
    run = train(_config(color_dataset, tmp_path / "run", tmp_path / "cache", unfreeze="1", finetune_epochs=1,
                        augment="none"))
    scores = evaluate(run.path, color_dataset, quiet=True)
    assert scores["images"] == 6
    assert scores["accuracy"] == pytest.approx(run.metrics["accuracy"])
    assert scores["log_loss"] == pytest.approx(run.metrics["log_loss"], rel=1e-4)
    # predict with the run gives a probability per class that sums to one
    files = sorted((color_dataset / "valid").rglob("*.jpg"))
    preds = list(predict_images(files, run=run.path, topk=3))
    assert [p.path for p in preds] == files
    assert all(abs(sum(t["prob"] for t in p.top) - 1) < 1e-3 for p in preds)


def test_second_run_reuses_the_cache(color_dataset, tmp_path, capsys):
    train(_config(color_dataset, tmp_path / "a", tmp_path / "cache"))
    config = _config(color_dataset, tmp_path / "b", tmp_path / "cache", quiet=False)
    train(config)
    out = capsys.readouterr().out
    assert "train: 18 images, 0 computed, 18 from cache" in out
    assert "valid: 6 images, 0 computed, 6 from cache" in out


def test_corrupt_images_are_listed_and_skipped(color_dataset, tmp_path):
    bad = sorted((color_dataset / "train" / "red").glob("*.jpg"))[0]
    bad.write_bytes(bad.read_bytes()[:64])
    run = train(_config(color_dataset, tmp_path / "run", tmp_path / "cache"))
    errors = (run.path / "errors.txt").read_text().splitlines()
    assert len(errors) == 1 and str(bad) in errors[0]


def test_interrupted_run_resumes_to_the_same_weights(color_dataset, tmp_path, monkeypatch):
    full = train(_config(color_dataset, tmp_path / "full", tmp_path / "cache"))

    from heron.train import learner as learner_module

    original = learner_module.Learner._one_epoch
    calls = {"n": 0}

    def interrupt_in_epoch_2(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(learner_module.Learner, "_one_epoch", interrupt_in_epoch_2)
    config = _config(color_dataset, tmp_path / "cut", tmp_path / "cache")
    with pytest.raises(TrainingError, match="--resume"):
        train(config)
    monkeypatch.setattr(learner_module.Learner, "_one_epoch", original)
    resumed = train(config, resume=True)
    a = load_file(str(full.path / "model.safetensors"))
    b = load_file(str(resumed.path / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_train_prints_the_run_folder_last(color_dataset, tmp_path, capsys):
    code = main(["train", str(color_dataset), "--arch", "resnet18", "--weights", "none", "--size", "32",
                 "--epochs", "1", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c"),
                 "--workers", "0", "--quiet"])
    assert code == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "run")
    loaded = load_run(tmp_path / "run")
    assert loaded.classes == ["blue", "green", "red"]


def test_cli_errors_are_one_line_with_exit_2(tmp_path, capsys):
    (tmp_path / "only" / "cats").mkdir(parents=True)
    assert main(["train", str(tmp_path / "missing")]) == 2
    assert main(["train", str(tmp_path / "only")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("heron: error: ") for line in err)
    assert "missing" in err[0]


def test_multilabel_csv_trains_with_sigmoid_outputs(tmp_path):
    from PIL import Image
    import numpy as np

    rng = np.random.default_rng(0)
    rows = ["path,label"]
    for i in range(24):
        red, blue = i % 2 == 0, i % 3 == 0
        pixels = rng.integers(0, 60, size=(32, 32, 3)).astype(np.uint8)
        pixels[..., 0] += 180 if red else 0
        pixels[..., 2] += 180 if blue else 0
        Image.fromarray(pixels).save(tmp_path / f"img{i}.png")
        labels = " ".join(n for n, on in (("red", red), ("blue", blue)) if on) or "plain"
        rows.append(f"img{i}.png,{labels}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    run = train(_config(tmp_path / "labels.csv", tmp_path / "run", tmp_path / "cache", valid_pct=0.25))
    saved = json.loads((run.path / "config.json").read_text())["result"]
    assert saved["multilabel"] and saved["classes"] == ["blue", "plain", "red"]
    assert 0.0 <= run.metrics["accuracy"] <= 1.0


def test_cached_augmented_copies_and_lr_finder(color_dataset, tmp_path, capsys):
    config = _config(color_dataset, tmp_path / "run", tmp_path / "cache", precompute_aug=2, lr_find=True, quiet=False)
    run = train(config)
    out = capsys.readouterr().out
    assert "train: 18 images x 2 views, 36 computed, 0 from cache" in out
    assert (run.path / "lr_find.png").is_file() and "lr_find.png" in (run.path / "report.html").read_text()
    train(_config(color_dataset, tmp_path / "again", tmp_path / "cache", precompute_aug=2, quiet=False))
    assert "train: 18 images x 2 views, 0 computed, 36 from cache" in capsys.readouterr().out


def test_unlabelled_test_folder_gets_a_predictions_csv(color_dataset, tmp_path):
    import csv
    import shutil

    test_dir = color_dataset / "test"
    test_dir.mkdir()
    for path in sorted((color_dataset / "valid").rglob("*.jpg"))[:4]:
        shutil.copy(path, test_dir / path.name)
    (test_dir / "broken.jpg").write_text("not an image")
    run = train(_config(color_dataset, tmp_path / "run", tmp_path / "cache", clip=0.01))
    with open(run.path / "test_predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5
    good = [r for r in rows if r["label"]]
    assert len(good) == 4 and all(r["label"] in ("blue", "green", "red") for r in good)
    for r in good:
        probs = [float(r[c]) for c in ("blue", "green", "red")]
        assert min(probs) >= 0.01 and max(probs) <= 0.99
        assert r["label"] == ("blue", "green", "red")[probs.index(max(probs))]
    assert [r for r in rows if not r["label"]][0]["file"].endswith("broken.jpg")
