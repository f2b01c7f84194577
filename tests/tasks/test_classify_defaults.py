"""`heron train` on datasets of any shape: default schedule, --unfreeze auto, run folders, label files."""

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

import heron
from heron.cli import main
from heron.config import TrainConfig
from heron.errors import TrainingError
from heron.tasks.classify import HEAD_EPOCHS, choose_unfreeze, head_epochs, train
from heron.train.run import RunFolder


def _config(data, out, cache, **overrides):
    base = dict(data=str(data), out=str(out), arch="resnet18", weights=None, size=[32], crop_pct=1.0,
                quiet=True, cache_dir=str(cache), workers=0, seed=0)
    return TrainConfig(**{**base, **overrides})


def write_many_classes(root, classes=32, train=6, valid=2, size=32, seed=0):
    """A small many-class set: each class a hue and a stripe pattern, each image a noisy copy."""
    import colorsys

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for c in range(classes):
        rgb = np.array(colorsys.hsv_to_rgb(c / classes, 0.8, 0.9)) * 255
        angle = (c % 4) * np.pi / 4
        stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * (0.4 + 0.3 * (c // 8)))
        for i in range(train + valid):
            pixels = rgb * (0.75 + 0.25 * stripes[..., None]) + rng.normal(0, 25, size=(size, size, 3))
            split = "train" if i < train else "valid"
            folder = root / split / f"class{c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


# ---- defaults that fit the dataset ----------------------------------------------------------
def test_head_epochs_follow_a_step_budget():
    assert head_epochs(280, 64) == 80  # 5 batches an epoch
    assert head_epochs(10_000, 64) == HEAD_EPOCHS[0]  # a large set still gets today's 5 epochs
    assert head_epochs(10, 64) == HEAD_EPOCHS[1]  # never more than the ceiling
    assert head_epochs(2_000, 64, steps=640) == 20


def test_default_schedule_beats_five_fixed_epochs_on_a_small_many_class_set(tmp_path, capsys):
    data = write_many_classes(tmp_path / "many")
    cache = tmp_path / "cache"
    old = train(_config(data, tmp_path / "old", cache, epochs=5, lr=3e-3))
    new = train(_config(data, tmp_path / "new", cache, quiet=False))
    out = capsys.readouterr().out
    assert "head: 134 epochs, lr" in out and "lr finder" in out  # 192 images, 3 batches an epoch
    assert len(new.history) == 134 and len(old.history) == 5
    assert new.history[-1]["train_loss"] < 0.5 * old.history[-1]["train_loss"]
    assert new.metrics["accuracy"] >= old.metrics["accuracy"]
    assert new.metrics["log_loss"] < old.metrics["log_loss"]
    choices = json.loads((new.path / "config.json").read_text())["result"]["choices"]
    assert choices["head_epochs"] == 134 and 1e-4 <= choices["head_lr"] <= 3e-2


def test_explicit_epochs_and_lr_keep_their_meaning(color_dataset, tmp_path):
    run = train(_config(color_dataset, tmp_path / "run", tmp_path / "cache", epochs=3, lr=1e-2))
    assert [h["epoch"] for h in run.history] == [1, 2, 3]
    assert max(h["lr"] for h in run.history) <= 1e-2


# ---- the seeds' transfer rule ----------------------------------------------------------------
@pytest.mark.parametrize("images, expected, words", [
    (120, None, "head alone"),
    (2_400, "2", "last 2 stages"),
    (60_000, "all", "whole network"),
])
def test_unfreeze_auto_by_dataset_size(images, expected, words):
    stages, reason = choose_unfreeze("auto", images)
    assert stages == expected and words in reason and str(images) in reason


def test_unfreeze_other_values_pass_through():
    assert choose_unfreeze("3", 10) == ("3", "")
    assert choose_unfreeze(None, 10**6) == (None, "")


def test_unfreeze_auto_on_a_small_set_trains_the_head_and_says_why(color_dataset, tmp_path, capsys):
    run = train(_config(color_dataset, tmp_path / "run", tmp_path / "cache", epochs=2, unfreeze="auto",
                        quiet=False))
    assert "unfreeze auto: 18 training images (< 500): the head alone" in capsys.readouterr().out
    assert {h["phase"] for h in run.history} == {"head"}


# ---- one run per folder ------------------------------------------------------------------------
def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_finished_run_is_never_replaced_silently(color_dataset, tmp_path, capsys):
    args = ["train", str(color_dataset), "--arch", "resnet18", "--weights", "none", "--size", "32", "--epochs", "2",
            "--lr", "1e-2", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c"), "--workers", "0",
            "--quiet", "--figures", "inline"]
    assert main(args) == 0
    before = _digest(tmp_path / "run")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0] and "--resume" in err[0] and "--overwrite" in err[0]
    assert _digest(tmp_path / "run") == before
    assert main(args + ["--overwrite", "--epochs", "1"]) == 0
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1  # the new run's single epoch, not appended to the old two


def test_overwrite_only_replaces_run_folders(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.txt").write_text("keep me")
    with pytest.raises(TrainingError, match="not a heron run folder"):
        RunFolder.create(tmp_path / "notes", "x", overwrite=True)
    assert (tmp_path / "notes" / "thesis.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    assert RunFolder.create(tmp_path / "empty", "x").path == tmp_path / "empty"


# ---- label files ------------------------------------------------------------------------------
def test_a_missing_file_in_a_label_file_is_skipped_and_listed(color_dataset, tmp_path):
    images = sorted(color_dataset.rglob("*.jpg"))
    lines = ["path,label"] + [f"{p},{p.parent.name}" for p in images] + [f"{tmp_path / 'gone.jpg'},red"]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    run = train(_config(tmp_path / "labels.csv", tmp_path / "run", tmp_path / "cache", epochs=2, lr=1e-2))
    errors = (run.path / "errors.txt").read_text()
    assert "gone.jpg: not found" in errors
    assert len(errors.splitlines()) == 1
    scored = json.loads((run.path / "config.json").read_text())["result"]
    assert scored["skipped_files"] == 1 and len(run.history) == 2


def test_image_root_flag_points_relative_paths_elsewhere(color_dataset, tmp_path):
    images = sorted((color_dataset / "train").rglob("*.jpg"))
    lines = [f"{p.relative_to(color_dataset)},{p.parent.name}" for p in images]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    args = ["train", str(tmp_path / "labels.csv"), "--arch", "resnet18", "--weights", "none", "--size", "32",
            "--epochs", "1", "--lr", "1e-2", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c"),
            "--workers", "0", "--quiet", "--figures", "none"]
    assert main(args) == 2  # relative to the CSV's folder nothing is there
    assert main(args + ["--image-root", str(color_dataset)]) == 0


def test_fit_is_the_top_level_verb(color_dataset, tmp_path):
    run = heron.fit(color_dataset, out=str(tmp_path / "run"), arch="resnet18", weights=None, size=[32],
                    crop_pct=1.0, epochs=1, lr=1e-2, quiet=True, cache_dir=str(tmp_path / "c"), workers=0)
    assert run.classes == ["blue", "green", "red"] and (run.path / "model.safetensors").is_file()
