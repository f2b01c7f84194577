"""Training a face encoder: data checks, the split by person, the losses, the run folder and its threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from heron.errors import DataError, TrainingError
from heron.tasks.faces import verification as V
from heron.tasks.faces.losses import batch_triplet_loss, contrastive_loss
from heron.tasks.faces.run import load_face_run
from heron.tasks.faces.people import find_people, split_people
from heron.tasks.faces.train import FaceConfig, PairObjective, make_loss, train_faces


def write_people(root, people: int = 6, images: int = 6, size: int = 32, seed: int = 0):
    """`root/person<i>/<n>.png`: each person a fixed random pattern, each image it shifted with noise."""
    rng = np.random.default_rng(seed)
    for person in range(people):
        template = np.kron(rng.random((8, 8)), np.ones((size // 8, size // 8)))
        folder = root / f"person{person}"
        folder.mkdir(parents=True)
        for n in range(images):
            shifted = np.roll(template, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
            pixels = (shifted * 200 + rng.normal(0, 20, shifted.shape)).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{n}.png")
    return root


def config(tmp_path, data, **options) -> FaceConfig:
    settings = dict(data=str(data), out=str(tmp_path / "run"), arch="lenet5", weights=None, dim=8, size=32,
                    epochs=3, p=3, k=2, valid_people=2, target_far=0.1, cache_dir=str(tmp_path / "cache"),
                    workers=0, quiet=True, augment_copies=1)
    settings.update(options)
    return FaceConfig(**settings)


@pytest.fixture(scope="module")
def people_dir(tmp_path_factory):
    return write_people(tmp_path_factory.mktemp("people"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, people_dir):
    tmp = tmp_path_factory.mktemp("trained")
    return train_faces(config(tmp, people_dir)), people_dir


# ---------------------------------------------------------------- data


def test_bad_data_gives_one_line_errors_with_the_fix(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        find_people(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images in sub-folders"):
        find_people(tmp_path / "empty")
    few = write_people(tmp_path / "few", people=3, images=2)
    with pytest.raises(DataError, match="3 people.*at least 4"):
        find_people(few)
    lonely = write_people(tmp_path / "lonely", people=4, images=2)
    for extra in (lonely / "person2").iterdir():
        if extra.name != "0.png":
            extra.unlink()
    with pytest.raises(DataError, match=r"person2: 1 image.*add another photo") as err:
        find_people(lonely)
    assert "\n" not in str(err.value)


def test_people_are_split_by_person_with_a_seed(people_dir):
    people = find_people(people_dir)
    train, valid = split_people(people, None, seed=3)
    assert len(valid.names) == 3 and len(train.names) == 3  # a quarter of 6, at least 3
    assert not set(train.names) & set(valid.names)
    assert sorted(train.names + valid.names) == people.names
    assert {p.parent.name for p in valid.paths} == set(valid.names)
    assert [valid.names[label] for label in valid.labels] == [p.parent.name for p in valid.paths]
    again = split_people(people, None, seed=3)[1]
    assert again.names == valid.names
    with pytest.raises(DataError, match="valid-people 5"):
        split_people(people, 5, seed=0)


# ---------------------------------------------------------------- losses


def test_losses_match_their_definitions():
    torch.manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    triplet = make_loss(FaceConfig(loss="triplet", mining="semi_hard", margin=0.3), PairObjective(torch.nn.Identity()))
    assert torch.allclose(triplet(emb, labels), batch_triplet_loss(emb, labels, margin=0.3, mining="semi_hard"))
    contrastive = make_loss(FaceConfig(loss="contrastive"), PairObjective(torch.nn.Identity()))
    i, j = torch.triu_indices(6, 6, offset=1)
    same = labels[i] == labels[j]
    d = (emb[i] - emb[j]).norm(dim=1)
    by_hand = 0.5 * ((d[same] ** 2).mean() + (torch.clamp(1.0 - d[~same], min=0) ** 2).mean())
    assert torch.allclose(contrastive(emb, labels), by_hand, atol=1e-6)
    assert torch.allclose(contrastive_loss(emb[i[same]], emb[j[same]], same[same]), (d[same] ** 2).mean(), atol=1e-6)


def test_binary_loss_is_weighted_cross_entropy_of_the_verification_head():
    from heron.tasks.faces.losses import VerificationHead

    torch.manual_seed(0)
    head = VerificationHead(4)
    loss = make_loss(FaceConfig(loss="binary"), PairObjective(torch.nn.Identity(), head))
    emb = torch.nn.functional.normalize(torch.randn(4, 4), dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    i, j = torch.triu_indices(4, 4, offset=1)
    same = (labels[i] == labels[j]).float()
    probs = torch.sigmoid(head(emb[i], emb[j]))
    weight = (1 - same).sum() / same.sum()  # 4 different pairs per 2 same pairs
    by_hand = -(weight * same * probs.log() + (1 - same) * (1 - probs).log()).mean()
    assert torch.allclose(loss(emb, labels), by_hand, atol=1e-6)


# ---------------------------------------------------------------- the run


def test_run_folder_holds_encoder_threshold_roc_and_metrics(trained):
    path, data = trained
    for name in ("model.safetensors", "config.json", "metrics.jsonl", "roc.json", "roc.png"):
        assert (path / name).is_file(), name
    saved = json.loads((path / "config.json").read_text())
    result = saved["result"]
    epochs = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2, 3] and all("valid_auc" in e for e in epochs)
    valid = saved["people"]["valid"]
    assert len(valid) == 2 and not set(valid) & set(saved["people"]["train"])
    # tau and the AUC again, from the loaded run's embeddings of the held-out people (sklearn as the reference)
    from sklearn.metrics import roc_auc_score

    run = load_face_run(path)
    paths = [p for name in valid for p in sorted((data / name).iterdir())]
    labels = [valid.index(p.parent.name) for p in paths]
    i, j, same = V.pair_indices(labels)
    distances = V.pair_distances(run.embed(paths), i, j)
    assert result["metrics"]["auc"] == pytest.approx(roc_auc_score(same, -distances), abs=1e-6)
    assert run.tau == pytest.approx(V.threshold_for_far(distances, same, 0.1), abs=1e-5)
    assert np.mean(distances[~same] <= run.tau) <= 0.1
    roc = json.loads((path / "roc.json").read_text())
    assert roc["auc"] == pytest.approx(result["metrics"]["auc"]) and len(roc["far"]) == len(roc["tar"])


def test_same_seed_same_run_and_out_is_not_overwritten_silently(trained, tmp_path):
    path, data = trained
    again = train_faces(config(tmp_path, data, cache_dir=str(path.parent / "cache")))  # now a warm cache
    assert load_face_run(again).encoder_hash == load_face_run(path).encoder_hash
    with pytest.raises(TrainingError, match="--overwrite"):
        train_faces(config(tmp_path, data))
    other = train_faces(config(tmp_path, data, seed=1, overwrite=True))
    assert load_face_run(other).encoder_hash != load_face_run(path).encoder_hash


@pytest.mark.parametrize("loss", ["contrastive", "binary"])
def test_pair_losses_train(tmp_path, people_dir, loss):
    path = train_faces(config(tmp_path, people_dir, loss=loss, epochs=4, threshold="accuracy"))
    epochs = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    saved = json.loads((path / "config.json").read_text())
    assert saved["loss"] == loss and 0 <= saved["result"]["tau"] <= 2


def test_finetuning_trains_only_the_last_trunk_group(tmp_path, people_dir):
    first = load_face_run(train_faces(config(tmp_path / "a", people_dir))).encoder
    tuned = load_face_run(train_faces(config(tmp_path / "b", people_dir, finetune_epochs=1))).encoder
    changed = {name for (name, a), b in zip(first.layer_groups().items(), tuned.layer_groups().values())
               if any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))}
    assert changed == {"stage2", "head"}  # lenet5's groups: stem, stage1, stage2; then the projection


def test_crop_faces_says_when_no_face_is_found(tmp_path, people_dir):
    pytest.importorskip("cv2")
    with pytest.raises(DataError, match="no face|drop --crop-faces"):
        train_faces(config(tmp_path, people_dir, crop_faces=True))


def test_bad_options_are_refused_before_any_work(tmp_path, people_dir):
    with pytest.raises(TrainingError, match="--loss"):
        train_faces(config(tmp_path, people_dir, loss="arcface"))
    assert not (tmp_path / "run").exists()


def test_a_stopped_run_resumes_to_the_uninterrupted_weights(trained, tmp_path):
    path, data = trained
    stopped = train_faces(config(tmp_path, data, max_minutes=1e-9))  # the time budget stops it after epoch 1
    assert len((stopped / "metrics.jsonl").read_text().splitlines()) == 1
    resumed = train_faces(config(tmp_path, data), resume=True)
    assert [json.loads(line)["epoch"] for line in (resumed / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert load_face_run(resumed).encoder_hash == load_face_run(path).encoder_hash


def test_scores_match_brute_force():
    from sklearn.metrics import roc_auc_score

    from heron.tasks.faces.evaluate import gallery_split, score_embeddings

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 4)
    centres = rng.normal(size=(8, 6))
    emb = centres[labels] + rng.normal(scale=0.7, size=(32, 6))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    tau = 0.9
    metrics, _ = score_embeddings(emb, labels, tau, enrol_per_person=1, strangers=0.25, seed=4)
    enrolled, probes, strangers = gallery_split(labels, 1, 0.25, seed=4)
    assert len(np.unique(labels[strangers])) == 2 and len(enrolled) == 6 and len(probes) == 18
    assert not set(labels[strangers]) & set(labels[enrolled])
    dist = lambda a, b: float(np.sqrt(((emb[a] - emb[b]) ** 2).sum()))  # noqa: E731
    nearest = [min(enrolled, key=lambda g: dist(p, g)) for p in probes]
    assert metrics["rank1"] == pytest.approx(np.mean([labels[g] == labels[p] for g, p in zip(nearest, probes)]))
    rejected = [min(dist(s, g) for g in enrolled) > tau for s in strangers]
    assert metrics["stranger_rejection"] == pytest.approx(np.mean(rejected))
    pairs = [(a, b) for a in range(32) for b in range(a + 1, 32)]
    same = np.array([labels[a] == labels[b] for a, b in pairs])
    d = np.array([dist(a, b) for a, b in pairs])
    assert metrics["auc"] == pytest.approx(roc_auc_score(same, -d))
    assert metrics["accuracy_at_tau"] == pytest.approx(np.mean((d <= tau) == same))


def test_the_default_hold_out_is_a_quarter_at_least_three_leaving_two_to_train():
    from heron.tasks.faces.people import default_valid_people

    assert [default_valid_people(n) for n in (4, 5, 6, 10, 15, 40, 100)] == [2, 3, 3, 3, 4, 10, 25]
