"""Series classification end to end on synthetic signals the tests write: the default model and the GRU learn."""

import json

import numpy as np
import pytest
import torch

from heron.errors import DataError, ModelError
from heron.tasks.sequence.series import (
    MODELS,
    SeriesConfig,
    build_series_model,
    load_series_run,
    predict_series,
    train_series,
)

WAVES = ("sine", "square", "sawtooth")
EPOCHS = 10


def wave(kind: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """One period-ish signal of `kind` with a random phase and frequency, plus noise."""
    t = np.arange(length) / length
    phase = rng.uniform(0, 1)
    cycles = rng.uniform(2.0, 3.0)
    u = (t * cycles + phase) % 1.0  # position within the cycle
    clean = {"sine": np.sin(2 * np.pi * u), "square": np.sign(np.sin(2 * np.pi * u)), "sawtooth": 2 * u - 1}[kind]
    return clean + rng.normal(0, 0.15, length)


def write_waves(path, per_class: int, length: int, seed: int, labels=("1", "2", "-1")) -> None:
    rng = np.random.default_rng(seed)
    rows = [(label, wave(kind, length, rng)) for _ in range(per_class) for label, kind in zip(labels, WAVES)]
    path.write_text("".join("\t".join([label, *(f"{v:.5f}" for v in values)]) + "\n" for label, values in rows))


def write_ramps(path, per_class: int, length: int, seed: int) -> None:
    """The easy rule: label "up" for a rising noisy ramp, "down" for a falling one."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(per_class):
        for label, sign in (("up", 1.0), ("down", -1.0)):
            values = sign * np.linspace(-1, 1, length) + rng.normal(0, 0.3, length)
            lines.append(",".join([label, *(f"{v:.4f}" for v in values)]))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def waves_run(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("waves")
    write_waves(folder / "W_TRAIN.tsv", per_class=24, length=64, seed=1)
    write_waves(folder / "W_TEST.tsv", per_class=20, length=64, seed=2)
    config = SeriesConfig(train=str(folder / "W_TRAIN.tsv"), test=str(folder / "W_TEST.tsv"),
                          out=str(folder / "run"), epochs=EPOCHS, batch_size=8, quiet=True)
    return folder, train_series(config)


def test_default_model_separates_sine_square_and_sawtooth(waves_run):
    _, run = waves_run
    assert SeriesConfig().model == "conv1d_net"
    assert run.classes == ["-1", "1", "2"]  # spelling kept, numeric order
    assert run.metrics["test_accuracy"] >= 0.95
    assert run.metrics["test_series"] == 60


def test_run_folder_holds_model_metrics_classes_and_figures(waves_run):
    folder, run = waves_run
    for name in ("config.json", "model.safetensors", "metrics.jsonl", "classes.txt", "confusion.png", "examples.png"):
        assert (run.path / name).is_file(), name
    assert (run.path / "classes.txt").read_text().split() == ["-1", "1", "2"]
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows] == ["train"] * EPOCHS + ["refit"] * EPOCHS + ["test"]
    assert "valid_accuracy" in rows[0] and "valid_accuracy" not in rows[EPOCHS]  # the refit has nothing held out
    assert rows[-1]["test_accuracy"] == run.metrics["test_accuracy"]
    config = json.loads((run.path / "config.json").read_text())
    assert config["model_spec"] == {"name": "conv1d_net", "arch": "conv1d_net",
                                    "kwargs": {"num_classes": 3, "in_chans": 1}}
    assert config["result"]["valid_series"] == 3 * 5 and config["result"]["train_series"] == 72 - 15


def test_predict_reloads_the_run_and_agrees_with_its_test_accuracy(waves_run):
    folder, run = waves_run
    labels, accuracy = predict_series(run.path, folder / "W_TEST.tsv")
    assert accuracy == pytest.approx(run.metrics["test_accuracy"])
    truth = [line.split("\t")[0] for line in (folder / "W_TEST.tsv").read_text().splitlines()]
    assert np.mean([a == b for a, b in zip(labels, truth)]) == pytest.approx(accuracy)
    assert set(labels) <= {"-1", "1", "2"}
    assert not load_series_run(run.path).model.training


def test_training_is_deterministic_for_a_seed(tmp_path):
    write_ramps(tmp_path / "R.csv", per_class=6, length=32, seed=0)
    runs = [train_series(SeriesConfig(train=str(tmp_path / "R.csv"), out=str(tmp_path / f"r{i}"), epochs=2,
                                      model="conv1d_net", refit=False, quiet=True)) for i in range(2)]
    assert runs[0].history[-1]["train_loss"] == runs[1].history[-1]["train_loss"]


def test_gru_learns_the_easy_rule(tmp_path):
    torch.manual_seed(0)
    write_ramps(tmp_path / "R_TRAIN.csv", per_class=12, length=16, seed=3)
    write_ramps(tmp_path / "R_TEST.csv", per_class=20, length=16, seed=4)
    run = train_series(SeriesConfig(train=str(tmp_path / "R_TRAIN.csv"), test=str(tmp_path / "R_TEST.csv"),
                                    out=str(tmp_path / "run"), model="gru", epochs=10, lr=1e-2, refit=False,
                                    quiet=True))
    assert run.classes == ["down", "up"]
    assert run.metrics["test_accuracy"] >= 0.95


@pytest.mark.parametrize("name", MODELS)
def test_every_model_maps_n_1_t_to_class_logits(name):
    torch.manual_seed(0)
    model, spec = build_series_model(name, num_classes=3)
    assert model(torch.randn(2, 1, 40)).shape == (2, 3)
    assert spec["name"] == name and spec.get("arch", name) == {"resnet1d": "conv1d_resnet"}.get(name, name)


def test_series_too_short_for_conv1d_net_is_a_data_error(tmp_path):
    write_ramps(tmp_path / "R.csv", per_class=3, length=16, seed=0)
    with pytest.raises(DataError, match=r"R\.csv, line 1: series of 16 values are too short for conv1d_net"):
        train_series(SeriesConfig(train=str(tmp_path / "R.csv"), out=str(tmp_path / "run"), model="conv1d_net"))


def test_unknown_model_and_a_test_file_with_unknown_labels_fail_before_training(tmp_path):
    with pytest.raises(ModelError, match="choose one of fcn, resnet1d"):
        build_series_model("lstm9", 2)
    write_ramps(tmp_path / "R.csv", per_class=4, length=32, seed=0)
    (tmp_path / "T.csv").write_text("sideways," + ",".join(["1"] * 32) + "\n")
    with pytest.raises(DataError, match=r"T\.csv, line 1: label 'sideways'"):
        train_series(SeriesConfig(train=str(tmp_path / "R.csv"), test=str(tmp_path / "T.csv"),
                                  out=str(tmp_path / "run"), quiet=True))
    assert not (tmp_path / "run").exists()
