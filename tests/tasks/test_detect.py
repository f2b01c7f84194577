"""`heron detect`: training on synthetic shapes, the run folder, predict and evaluate, bad input."""

import json

import pytest

from heron.cli import main
from heron.config import DetectConfig
from heron.data.synthetic import write_detection_shapes
from heron.errors import DataError
from heron.tasks.detect import evaluate, load_detector, predict, train


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_detection_shapes(tmp_path_factory.mktemp("shapes") / "set", images=48, size=128, seed=0,
                                  fmt="yolo", max_objects=3, min_frac=0.2, max_frac=0.45)


def _config(data, out, cache, **overrides):
    base = dict(data=str(data), valid=str(data), out=str(out), size=[160], anchors=3, epochs=30, lr=3e-3,
                batch_size=16, width=64, quiet=True, cache_dir=str(cache), workers=0, engine="torch",
                precision="fp32", seed=0)
    return DetectConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def trained(shapes, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    return train(_config(shapes, tmp / "run", tmp / "cache"))


def test_training_lowers_the_loss_and_finds_the_shapes(trained):
    losses = [row["train_loss"] for row in trained.history]
    assert losses[-1] < 0.5 * losses[0]
    assert trained.metrics["map50"] > 0.3  # the training images themselves: some correct detections at least
    for name in ("config.json", "model.safetensors", "metrics.jsonl", "report.html", "detections.png",
                 "pr_curves.png"):
        assert (trained.path / name).is_file(), name
    saved = json.loads((trained.path / "config.json").read_text())
    assert saved["result"]["classes"] == ["circle", "square", "triangle"] and len(saved["result"]["anchors"]) == 3


def test_a_finished_run_predicts_and_evaluates_the_same_as_training_scored(trained, shapes, tmp_path):
    detector = load_detector(trained.path)
    assert detector.classes == trained.classes
    images = sorted((shapes / "images").glob("*.png"))[:4]
    found = list(predict(trained.path, images))
    assert [p for p, _, _ in found] == images and all(e is None for _, _, e in found)
    assert any(len(d.scores) for _, d, _ in found)
    scores = evaluate(trained.path, shapes, tmp_path / "pr.png")
    assert scores["map50"] == pytest.approx(trained.metrics["map50"], abs=0.02)
    assert (tmp_path / "pr.png").is_file()


def test_cli_predict_writes_a_picture_and_json_per_image_and_flags_a_bad_file(trained, shapes, tmp_path):
    image = sorted((shapes / "images").glob("*.png"))[0]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    code = main(["detect", "predict", str(trained.path), str(image), str(bad), "-o", str(tmp_path / "out")])
    assert code == 2
    record = json.loads((tmp_path / "out" / f"{image.stem}.json").read_text())
    assert record["file"] == str(image) and all(d["label"] in trained.classes for d in record["detections"])
    assert (tmp_path / "out" / f"{image.stem}.png").is_file()


def test_cli_evaluate_prints_both_maps_and_per_class_ap(trained, shapes, capsys):
    assert main(["detect", "evaluate", str(trained.path), str(shapes)]) == 0
    out = capsys.readouterr().out
    assert "mAP@0.5 = " in out and "mAP@[.5:.95] = " in out and "circle" in out


def test_a_folder_without_annotations_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError):
        train(_config(tmp_path / "photos", tmp_path / "run", tmp_path / "cache", valid=None))
    assert main(["detect", "train", str(tmp_path / "photos"), "--out", str(tmp_path / "run2")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_fine_tuning_the_last_stage_on_augmented_images_keeps_the_run_usable(shapes, tmp_path):
    run = train(_config(shapes, tmp_path / "run", tmp_path / "cache", size=[96], epochs=3, unfreeze="1",
                        finetune_epochs=1, finetune_batch_size=16))
    phases = [row["phase"] for row in run.history]
    assert phases.count("finetune") == 1 and phases.count("head") == 3
    assert run.metrics["valid_images"] == 48 and 0.0 <= run.metrics["map50"] <= 1.0
    again = evaluate(run.path, shapes)  # the saved weights are the fine-tuned ones
    assert again["map50"] == pytest.approx(run.metrics["map50"], abs=1e-6)
    with pytest.raises(Exception, match="--unfreeze two"):
        train(_config(shapes, tmp_path / "run2", tmp_path / "cache", unfreeze="two"))


def test_an_interrupted_run_resumes_to_the_same_weights(shapes, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    from heron.errors import TrainingError
    from heron.train import learner as learner_module

    full = train(_config(shapes, tmp_path / "full", tmp_path / "cache", epochs=4))
    original = learner_module.Learner._one_epoch
    calls = {"n": 0}

    def interrupt_in_epoch_3(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(learner_module.Learner, "_one_epoch", interrupt_in_epoch_3)
    config = _config(shapes, tmp_path / "cut", tmp_path / "cache", epochs=4)
    with pytest.raises(TrainingError, match="--resume"):
        train(config)
    monkeypatch.setattr(learner_module.Learner, "_one_epoch", original)
    assert main(["detect", "train", str(shapes), "--out", str(tmp_path / "cut"), "--resume", "--quiet"]) == 0
    a = load_file(str(full.path / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
