"""The toolkit against overfitting on `heron train`: pseudo-labels, ensembles, head regularisation, random TTA."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from heron.cli import main
from heron.config import TrainConfig
from heron.errors import TrainingError
from heron.tasks.classify import _run_predictions, ensemble, evaluate, load_run, predict_images, train
from heron.train.losses import SmoothedBCEWithLogits, classification_loss
from heron.transfer.ensemble import EnsembleHead, mean_probabilities
from heron.transfer.extract import FeatureBatches
from heron.transfer.heads import GapHead, TransferDenseHead, head_dropouts, make_head
from heron.transfer.pseudo import MixedBatches, pseudo_batch_split, select_confident

from tests.conftest import write_color_classes


def _config(data, out, cache, **overrides):
    base = dict(data=str(data), out=str(out), arch="resnet18", weights=None, size=[32], crop_pct=1.0,
                epochs=3, lr=1e-2, quiet=True, cache_dir=str(cache), workers=0, seed=0, engine="torch",
                figures="none")
    return TrainConfig(**{**base, **overrides})


# ---- pseudo-labels --------------------------------------------------------------------------
def test_select_confident_keeps_exactly_the_rows_at_or_above_the_threshold():
    probs = torch.tensor([[0.95, 0.05], [0.6, 0.4], [0.1, 0.9], [0.5, 0.5], [0.02, 0.98]])
    picked = select_confident(probs, 0.9)
    assert picked.index.tolist() == [0, 2, 4]
    assert picked.labels.tolist() == [0, 1, 1]
    assert picked.per_class(["a", "b"]) == {"a": 1, "b": 2}
    assert picked.total == 5
    with pytest.raises(ValueError):
        select_confident(probs, 0.0)


def test_mixed_batches_hold_the_pseudo_share_of_every_batch():
    labelled_n, pseudo_n = pseudo_batch_split(16, 0.25)
    assert (labelled_n, pseudo_n) == (12, 4)
    feats = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    labelled = FeatureBatches(feats, np.arange(36)[:, None], torch.zeros(36, dtype=torch.long), labelled_n, shuffle=True)
    batches = list(MixedBatches(labelled, feats, np.arange(40, 50), torch.ones(10, dtype=torch.long), pseudo_n))
    assert len(batches) == len(labelled) == 3
    for x, y in batches:
        assert len(y) == 16 and int(y.sum()) == 4  # the last 4 rows of each batch are pseudo-labelled
        assert (x[-4:, 0] >= 40 * 3).all() and (x[:-4, 0] < 36 * 3).all()
    seen = (torch.cat([x[-4:, 0] for x, _ in batches]) // 3).long().tolist()
    assert sorted(seen[:10]) == list(range(40, 50))  # every pseudo row once before any repeats


def _unlabelled(tmp_path):
    src = write_color_classes(tmp_path / "unl_src", per_class=6, seed=7, layout="flat")
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for path in sorted(src.rglob("*.jpg")):
        shutil.copy(path, folder / path.name)
    return folder


def test_pseudo_labelling_adds_exactly_the_unlabelled_images_above_the_threshold(color_dataset, tmp_path, capsys):
    unlabelled = _unlabelled(tmp_path)
    files = sorted(unlabelled.glob("*.jpg"))
    first = train(_config(color_dataset, tmp_path / "first", tmp_path / "cache", epochs=4))
    probs = {p.path.name: p.top[0]["prob"] for p in predict_images(files, run=first.path, topk=1, engine="torch")}
    ranked = sorted(probs.values())
    gaps = [(b - a, (a + b) / 2) for a, b in zip(ranked, ranked[1:])][2:-2]  # leave a few on each side
    threshold = max(gaps)[1]  # the middle of the widest gap: float16 features cannot move an image across
    expected = {name for name, p in probs.items() if p >= threshold}
    assert 0 < len(expected) < len(files)

    run = train(_config(color_dataset, tmp_path / "pseudo", tmp_path / "cache", epochs=4, quiet=False,
                        pseudo_label=str(unlabelled), pseudo_threshold=threshold))
    with open(run.path / "pseudo_labels.csv") as f:
        rows = list(csv.DictReader(f))
    assert {row["file"].rsplit("/", 1)[-1] for row in rows} == expected
    assert all(float(row["prob"]) >= threshold - 1e-3 for row in rows)
    chosen = json.loads((run.path / "config.json").read_text())["result"]["choices"]["pseudo"]
    assert chosen["used"] == len(expected) and chosen["unlabelled"] == len(files)
    assert sum(chosen["per_class"].values()) == len(expected)
    out = capsys.readouterr().out
    assert f"pseudo-labels: {len(expected)} of {len(files)} unlabelled images" in out
    assert [r["phase"] for r in run.history] == ["head"] * 4 + ["pseudo"] * 4
    report = (run.path / "report.html").read_text()
    assert f"{len(expected)} of {len(files)} unlabelled images at p &gt;= {threshold:g}" in report


def test_pseudo_label_errors_are_one_line(color_dataset, tmp_path, capsys):
    code = main(["train", str(color_dataset), "--out", str(tmp_path / "r"), "--pseudo-label", str(tmp_path / "nope"),
                 "--arch", "resnet18", "--weights", "none", "--size", "32", "--quiet", "--cache-dir", str(tmp_path / "c")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err and "--pseudo-label" in err
    with pytest.raises(TrainingError, match="ratio"):
        train(_config(color_dataset, tmp_path / "r2", tmp_path / "c", pseudo_label=str(tmp_path), pseudo_ratio=1.0))
    with pytest.raises(TrainingError, match="no-precompute"):
        train(_config(color_dataset, tmp_path / "r3", tmp_path / "c", pseudo_label=str(tmp_path), precompute=False))


# ---- ensembles ------------------------------------------------------------------------------
def test_ensemble_head_probabilities_are_the_mean_of_its_members():
    members = [nn.Linear(5, 3), nn.Linear(5, 3)]
    head = EnsembleHead(members)
    x = torch.randn(7, 5) * 10  # confident members: the log-sum-exp must stay exact
    expected = (torch.softmax(members[0](x), 1) + torch.softmax(members[1](x), 1)) / 2
    torch.testing.assert_close(torch.softmax(head(x), 1), expected, rtol=1e-5, atol=1e-6)
    multi = EnsembleHead(members, multilabel=True)
    torch.testing.assert_close(torch.sigmoid(multi(x)), mean_probabilities([m(x) for m in members], True),
                               rtol=1e-4, atol=1e-5)


def test_train_ensemble_saves_one_model_of_k_heads(color_dataset, tmp_path, capsys):
    run = train(_config(color_dataset, tmp_path / "ens", tmp_path / "cache", ensemble=2, quiet=False))
    out = capsys.readouterr().out
    assert "member 1: valid accuracy" in out and "member 2: valid accuracy" in out
    assert [r["phase"] for r in run.history] == ["head-1"] * 3 + ["head-2"] * 3
    loaded = load_run(run.path)
    assert isinstance(loaded.model.head, EnsembleHead) and len(loaded.model.head.members) == 2
    a, b = loaded.model.head.members
    assert not torch.equal(a.fc.weight, b.fc.weight)  # seeded apart
    assert "2 heads, seeded apart" in (run.path / "report.html").read_text()
    scores = evaluate(run.path, color_dataset, quiet=True)
    assert scores["accuracy"] == pytest.approx(run.metrics["accuracy"])
    assert scores["log_loss"] == pytest.approx(run.metrics["log_loss"], rel=1e-4)


def test_heron_ensemble_averages_the_members_probabilities(color_dataset, tmp_path, capsys):
    runs = [train(_config(color_dataset, tmp_path / f"r{seed}", tmp_path / "cache", seed=seed, epochs=2 + seed)).path
            for seed in (0, 1)]
    result = ensemble(runs, color_dataset)
    members = [_run_predictions(run, color_dataset, None) for run in runs]
    assert members[0][2] == members[1][2]  # the same images, in the same order
    torch.testing.assert_close(result["probs"], (members[0][0] + members[1][0]) / 2)
    for scores, run in zip(result["members"], runs):
        assert scores["accuracy"] == pytest.approx(evaluate(run, color_dataset)["accuracy"])
    assert main(["ensemble", str(runs[0]), str(runs[1]), "--data", str(color_dataset)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("ensemble") and "valid accuracy" in lines[-1]
    assert f"log loss {result['ensemble']['log_loss']:.4f}" in lines[-1]


def test_ensemble_of_the_runs_own_split_scores_its_validation_images(tmp_path):
    flat = write_color_classes(tmp_path / "flat", per_class=10, layout="flat")
    runs = [train(_config(flat, tmp_path / f"r{s}", tmp_path / "cache", seed=0, epochs=2 + s)).path for s in (0, 1)]
    result = ensemble(runs, flat)
    assert result["images"] == len(load_run(runs[0]).classes) * 2  # 20% of 10 per class, not all 30 images


# ---- regularisation -------------------------------------------------------------------------
def test_dropout_per_head_layer_and_batch_norm_in_heads():
    assert head_dropouts(None, 2, 0.5) == [0.25, 0.5]
    assert head_dropouts(0.4, 3, 0.5) == [0.2, 0.2, 0.4]
    assert head_dropouts([0.1, 0.3], 2, 0.5) == [0.1, 0.3]
    with pytest.raises(ValueError, match="1 or 2 values"):
        head_dropouts([0.1, 0.2, 0.3], 2, 0.5)
    dense = make_head("dense", 16, 3, hidden=[8], dropout=[0.1, 0.3])
    assert isinstance(dense, TransferDenseHead)
    assert [m.p for m in dense.modules() if isinstance(m, nn.Dropout)] == [0.1, 0.3]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in dense.modules()) == 2
    plain = make_head("dense", 16, 3, hidden=[8], bn=False)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.modules())
    gap = make_head("gap", 16, 3, bn=True)
    assert isinstance(gap, GapHead) and isinstance(gap.bn, nn.BatchNorm1d)
    # inverted dropout: kept units are scaled by 1/(1-p) in training, nothing changes in eval
    drop = make_head("gap", 1000, 1000, dropout=0.5).drop
    x = torch.ones(4, 1000)
    kept = drop.train()(x)
    assert set(kept.unique().tolist()) <= {0.0, 2.0} and abs(float(kept.mean()) - 1.0) < 0.1
    assert torch.equal(drop.eval()(x), x)


def test_label_smoothing_matches_its_formula():
    logits, targets = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    s = 0.1
    smoothed = torch.full((6, 4), s / 4).scatter_(1, targets[:, None], 1 - s + s / 4)
    expected = -(smoothed * torch.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(classification_loss(False, s)(logits, targets), expected)
    multi = torch.randint(0, 2, (6, 4)).float()
    expected_bce = nn.functional.binary_cross_entropy_with_logits(logits, multi * (1 - s) + s / 2)
    torch.testing.assert_close(SmoothedBCEWithLogits(s)(logits, multi), expected_bce)


def test_train_flags_for_regularisation_reach_the_model(color_dataset, tmp_path):
    code = main(["train", str(color_dataset), "--out", str(tmp_path / "r"), "--arch", "resnet18", "--weights", "none",
                 "--size", "32", "--crop-pct", "1.0", "--epochs", "2", "--lr", "0.01", "--quiet", "--workers", "0",
                 "--cache-dir", str(tmp_path / "c"), "--head", "dense", "--hidden", "16", "--dropout", "0.1", "0.3",
                 "--no-head-bn", "--label-smoothing", "0.1", "--figures", "none", "--engine", "torch"])
    assert code == 0
    loaded = load_run(tmp_path / "r")
    assert [m.p for m in loaded.model.head.modules() if isinstance(m, nn.Dropout)] == [0.1, 0.3]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in loaded.model.head.modules())
    assert loaded.config.label_smoothing == 0.1 and loaded.config.dropout == [0.1, 0.3]


# ---- test-time augmentation -----------------------------------------------------------------
def test_random_tta_scores_n_views_of_each_validation_image(color_dataset, tmp_path, capsys):
    run = train(_config(color_dataset, tmp_path / "tta", tmp_path / "cache", tta="random:4", quiet=False))
    assert "valid: 6 images x 4 views" in capsys.readouterr().out
    again = evaluate(run.path, color_dataset, tta="random:4")
    assert again["accuracy"] == pytest.approx(run.metrics["accuracy"])



# ---- augmentation settings ------------------------------------------------------------------
def test_augment_flags_change_the_cached_copies_and_pca_colour_is_cached_once(color_dataset, tmp_path, capsys):
    common = ["train", str(color_dataset), "--arch", "resnet18", "--weights", "none", "--size", "32", "--crop-pct",
              "1.0", "--epochs", "2", "--lr", "0.01", "--workers", "0", "--cache-dir", str(tmp_path / "c"),
              "--figures", "none", "--engine", "torch", "--precompute-aug", "2"]
    assert main([*common, "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--augment", "strong", "--rotate", "5", "--vflip"]) == 0
    out = capsys.readouterr().out
    assert "train: 18 images x 2 views, 36 computed, 0 from cache" in out  # other settings, other copies
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["augment"] == "strong" and saved["augment_options"] == {"rotate": 5.0, "vflip": True}
    pca_files = list((tmp_path / "c").rglob("colour_pca/*.json"))
    assert len(pca_files) == 1  # "strong" has PCA colour noise: its statistics were computed once and kept
    assert main([*common, "--out", str(tmp_path / "c2"), "--augment", "strong", "--rotate", "5", "--vflip"]) == 0
    assert "0 computed, 36 from cache" in capsys.readouterr().out

