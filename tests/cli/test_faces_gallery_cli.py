"""`heron faces enroll|verify|identify|list|remove` on a small untrained encoder saved as a face run.

The run is real (a LeNet-5 trunk with weights=None, saved with `save_face_run`);
the expected distances are computed independently from `FaceRun.embed` and
`np.linalg.norm`, and tau is set from them so that the answers are known.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from heron.cli import main

ARCH, SIZE, DIM = "lenet5", 32, 16


def pattern(kind: int, seed: int, size: int = 40) -> np.ndarray:
    """An HxWx3 uint8 picture of one of a few distinct patterns, with a little noise of its own."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = {0: np.sin(8 * x), 1: np.cos(10 * y), 2: np.sin(6 * (x + y)), 3: (x - 0.5) ** 2 + (y - 0.5) ** 2}[kind]
    grey = 127 + 100 * (base - base.mean()) / (np.abs(base).max() + 1e-9) + rng.normal(0, 4, (size, size))
    colour = np.stack([grey, grey * (0.6 + 0.1 * kind), 255 - grey], axis=2)
    return np.clip(colour, 0, 255).astype(np.uint8)


def write(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path


def save_run(folder: Path, tau: float, seed: int = 0, crop_faces: bool = False) -> Path:
    from heron.tasks.faces.encoder import build_encoder
    from heron.tasks.faces.run import save_face_run

    encoder, _ = build_encoder(ARCH, weights=None, dim=DIM, size=SIZE, seed=seed)
    return save_face_run(folder, encoder, {"arch": ARCH, "size": SIZE, "crop_faces": crop_faces}, tau=tau)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("photos")
    return {
        "alice": [write(root / "alice" / f"{i}.png", pattern(0, i)) for i in range(2)],
        "bob": [write(root / "bob" / "0.png", pattern(1, 10))],
        "alice_probe": [write(root / "probe" / "alice.png", pattern(0, 99))],
        "stranger": [write(root / "probe" / "stranger.png", pattern(3, 7))],
    }


@pytest.fixture(scope="module")
def run_and_tau(tmp_path_factory, photos) -> tuple[Path, float]:
    """A run whose tau lies halfway between the probe's distance to alice and the stranger's to anyone."""
    from heron.tasks.faces.run import load_face_run

    folder = tmp_path_factory.mktemp("runs")
    run = load_face_run(save_run(folder / "draft", tau=1.0))
    enrolled = run.embed(photos["alice"] + photos["bob"])
    own = np.linalg.norm(enrolled[:2] - run.embed(photos["alice_probe"]), axis=1).min()
    stranger = np.linalg.norm(enrolled - run.embed(photos["stranger"]), axis=1).min()
    assert own < stranger  # the patterns differ enough even for an untrained encoder
    tau = float((own + stranger) / 2)
    return save_run(folder / "run", tau=tau), tau


def heron(capsys, *argv: str) -> tuple[int, list[str], str]:
    code = main(["--threads", "1", "faces", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_enroll_list_verify_identify_remove(tmp_path, capsys, photos, run_and_tau):
    run, tau = run_and_tau
    db = tmp_path / "faces.db"
    code, out, _ = heron(capsys, "enroll", run, "--db", db, "alice", photos["alice"][0].parent)  # a folder
    assert code == 0 and out[0] == f"alice: added 2 embeddings (2 in all) to {db}" and len(out) == 3
    assert heron(capsys, "enroll", run, "--db", db, "bob", *photos["bob"])[0] == 0

    code, out, err = heron(capsys, "list", "--db", db)
    assert code == 0 and [line.split() for line in out] == [["alice", "2"], ["bob", "1"]]
    assert "2 people, 3 embeddings" in err

    code, out, _ = heron(capsys, "verify", run, "--db", db, "alice", photos["alice_probe"][0])
    assert code == 0 and out[0] == "yes" and out[1].endswith(f"tau {tau:.4f}")
    code, out, _ = heron(capsys, "verify", run, "--db", db, "bob", photos["alice_probe"][0], "--json")
    assert code == 0 and json.loads(out[0])["answer"] == "no"

    code, out, _ = heron(capsys, "identify", run, "--db", db, photos["alice_probe"][0], "--top-k", "5")
    assert code == 0 and out[0] == "alice" and [line.split()[1] for line in out[2:]] == ["alice", "bob"]
    code, out, _ = heron(capsys, "identify", run, "--db", db, photos["alice_probe"][0], "--json")
    answer = json.loads(out[0])
    assert answer["answer"] == "alice" and [t["name"] for t in answer["top"]] == ["alice", "bob"]

    code, out, _ = heron(capsys, "remove", "--db", db, "bob")
    assert code == 0 and out == [f"removed bob (1 embedding) from {db}"]
    assert [line.split()[0] for line in heron(capsys, "list", "--db", db)[1]] == ["alice"]
    code, out, err = heron(capsys, "remove", "--db", db, "bob")
    assert code == 2 and err.count("\n") == 1 and "no one named 'bob'" in err


def test_distances_printed_are_the_encoders_and_a_stranger_is_unknown_at_tau(tmp_path, capsys, photos,
                                                                              run_and_tau):
    from heron.tasks.faces.run import load_face_run

    run, tau = run_and_tau
    db = tmp_path / "faces.db"
    heron(capsys, "enroll", run, "--db", db, "alice", *photos["alice"])
    heron(capsys, "enroll", run, "--db", db, "bob", *photos["bob"])
    embed = load_face_run(run).embed
    enrolled = {"alice": embed(photos["alice"]), "bob": embed(photos["bob"])}

    code, out, _ = heron(capsys, "identify", run, "--db", db, photos["stranger"][0], "--json")
    answer = json.loads(out[0])
    stranger = embed(photos["stranger"])[0]
    expected = sorted((float(np.linalg.norm(rows - stranger, axis=1).min()), name) for name, rows in enrolled.items())
    assert code == 0 and answer["answer"] == "unknown" and answer["tau"] == pytest.approx(tau)
    assert [(t["distance"], t["name"]) for t in answer["top"]] == [(pytest.approx(d, abs=2e-3), n)
                                                                    for d, n in expected]
    assert expected[0][0] > tau
    assert heron(capsys, "identify", run, "--db", db, photos["stranger"][0])[1][0] == "unknown"
    code, out, _ = heron(capsys, "verify", run, "--db", db, "alice", photos["stranger"][0])
    assert code == 0 and out[0] == "no"
    assert heron(capsys, "identify", run, "--db", db, photos["alice_probe"][0])[1][0] == "alice"


def test_database_of_another_encoder_is_refused(tmp_path, capsys, photos, run_and_tau):
    run, _ = run_and_tau
    other = save_run(tmp_path / "other", tau=0.5, seed=1)
    db = tmp_path / "faces.db"
    heron(capsys, "enroll", run, "--db", db, "alice", *photos["alice"])
    for argv in (["enroll", other, "--db", db, "bob", *photos["bob"]],
                 ["identify", other, "--db", db, photos["bob"][0]]):
        code, out, err = heron(capsys, *argv)
        assert code == 2 and out == [] and err.count("\n") == 1
        assert str(db) in err and "use the run that made this database, or a new --db" in err
    assert [line.split() for line in heron(capsys, "list", "--db", db)[1]] == [["alice", "2"]]


def test_bad_image_or_unknown_name_is_one_line_and_writes_nothing(tmp_path, capsys, photos, run_and_tau):
    run, _ = run_and_tau
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    db = tmp_path / "faces.db"
    code, _, err = heron(capsys, "enroll", run, "--db", db, "alice", photos["alice"][0], broken)
    assert code == 2 and str(broken) in err and err.count("\n") == 1
    assert not db.exists()  # a new database is made only once every photo is embedded

    heron(capsys, "enroll", run, "--db", db, "alice", *photos["alice"])
    code, _, err = heron(capsys, "enroll", run, "--db", db, "alice", photos["bob"][0], tmp_path / "missing.png")
    assert code == 2 and "missing.png" in err
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 2
    con.close()
    code, out, err = heron(capsys, "verify", run, "--db", db, "carol", photos["alice"][0])
    assert code == 2 and out == [] and "no one named 'carol'" in err and err.count("\n") == 1
    code, _, err = heron(capsys, "identify", run, "--db", tmp_path / "nowhere.db", photos["alice"][0])
    assert code == 2 and "no such enrolment database" in err and not (tmp_path / "nowhere.db").exists()


def test_run_trained_on_crops_refuses_a_photo_without_a_face(tmp_path, capsys, photos):
    pytest.importorskip("cv2", reason="OpenCV not installed (pip install 'heron[faces]')")
    run = save_run(tmp_path / "cropping", tau=0.5, crop_faces=True)
    db = tmp_path / "faces.db"
    code, _, err = heron(capsys, "enroll", run, "--db", db, "alice", photos["alice"][0])
    assert code == 2 and str(photos["alice"][0]) in err and "no face" in err and err.count("\n") == 1
    assert not db.exists()


def test_liveness_gate_answers_spoof_with_exit_3_before_matching(tmp_path, capsys, monkeypatch, photos,
                                                                run_and_tau):
    import heron.cli.faces_liveness as liveness
    from heron.tasks.faces.gallery import FaceGallery

    run, _ = run_and_tau
    db = tmp_path / "faces.db"
    heron(capsys, "enroll", run, "--db", db, "alice", *photos["alice"])
    judged = {}

    def check_liveness(run_path, image_path):
        judged[Path(image_path).name] = run_path
        return ("spoof", 0.97) if "alice" in Path(image_path).name else ("live", 0.02)

    def no_matching(*_):
        raise AssertionError("matched a spoof")

    monkeypatch.setattr(liveness, "check_liveness", check_liveness, raising=False)
    with monkeypatch.context() as patch:
        patch.setattr(FaceGallery, "verify", no_matching)
        patch.setattr(FaceGallery, "identify", no_matching)
        code, out, _ = heron(capsys, "verify", run, "--db", db, "alice", photos["alice_probe"][0], "--liveness", "gate")
        assert code == 3 and out[0] == "spoof" and "0.9700" in out[1]
        code, out, _ = heron(capsys, "identify", run, "--db", db, photos["alice_probe"][0], "--liveness", "gate",
                             "--json")
        assert code == 3 and json.loads(out[0]) == {"image": str(photos["alice_probe"][0]), "answer": "spoof",
                                                   "spoof_score": 0.97}
    code, out, _ = heron(capsys, "identify", run, "--db", db, photos["stranger"][0], "--liveness", "gate")
    assert code == 0 and out[0] == "unknown" and judged == {"alice.png": "gate", "stranger.png": "gate"}
