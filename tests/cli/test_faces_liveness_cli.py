"""`heron faces liveness train|predict` and `check_liveness` on the synthetic live/spoof set.

One gate is trained for the module (frozen EfficientNet-Lite0 features, a
head on the cache, about 2 s) on 24 live and 24 spoof images plus a live
video clip, and is scored on a fresh set drawn with another seed, which it
never saw. The verify test composes it with an untrained face run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from heron.cli import main
from heron.data.spoof import write_liveness_set
from heron.data.video import video_backend

SIZE = 128
PER_CLASS = 24
FRAMES = 4


def _write_clip(path: Path, frames: int = 12, size: int = 64) -> Path:
    """A short live clip: a window panning across a bundled photograph."""
    import av
    import skimage.data

    photo = skimage.data.coffee()
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for i in range(frames):
            window = np.asarray(Image.fromarray(photo[:300, 20 * i:20 * i + 300]).resize((size, size)))
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(window), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def heron(capsys, *argv) -> tuple[int, str, str]:
    code = main(["--threads", "1", "faces", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _train_args(data: Path, out: Path, work: Path) -> list:
    return ["liveness", "train", data, "--out", out, "--size", SIZE, "--crop-pct", "1.0", "--epochs", "8",
            "--lr", "3e-3", "--frames-per-video", FRAMES, "--frames-dir", work / "frames", "--cache-dir",
            work / "features", "--workers", "0", "--engine", "torch", "--figures", "none", "--quiet"]


@pytest.fixture(scope="module")
def gate(tmp_path_factory) -> dict:
    """The trained gate's run folder, its data and a fresh held-out set (with a live clip where PyAV is)."""
    work = tmp_path_factory.mktemp("liveness")
    data = write_liveness_set(work / "data", per_class=PER_CLASS, size=SIZE, seed=0)
    if video_backend() == "av":
        _write_clip(data / "live" / "clips" / "pan.mp4")
    fresh = write_liveness_set(work / "fresh", per_class=10, size=SIZE, seed=1)
    run = work / "run"
    assert main(["--threads", "1", "faces", *map(str, _train_args(data, run, work))]) == 0
    return {"run": run, "data": data, "fresh": fresh, "work": work}


def test_the_gate_tells_fresh_spoofs_from_live_images(gate, capsys):
    from sklearn.metrics import accuracy_score

    code, out, _ = heron(capsys, "liveness", "predict", gate["run"], gate["fresh"], "--json")
    answers = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(answers) == 20
    truth = [Path(a["file"]).parent.name for a in answers]
    assert accuracy_score(truth, [a["answer"] for a in answers]) >= 0.9
    assert all((a["answer"] == "spoof") == (a["spoof_score"] >= 0.5) for a in answers)


def test_check_liveness_answers_spoof_for_a_spoof_and_live_for_a_live_photo(gate):
    from heron.cli.faces_liveness import check_liveness

    label, score = check_liveness(gate["run"], gate["fresh"] / "spoof" / "spoof_000.png")
    assert label == "spoof" and 0.5 <= score <= 1
    label, score = check_liveness(gate["run"], gate["fresh"] / "live" / "live_000.png")
    assert label == "live" and 0 <= score < 0.5


@pytest.mark.skipif(video_backend() != "av", reason="PyAV writes the test clip (pip install 'heron[faces]')")
def test_a_video_in_live_is_expanded_into_frames_on_one_side_of_the_split(gate):
    frames = sorted((gate["work"] / "frames").rglob("frame_*.png"))
    assert len(frames) == FRAMES
    assert {f.parent.name for f in frames} == {"pan.mp4"} and all(f.parent.parent.name == "clips" for f in frames)
    staged = frames[0].parents[4]  # <frames-dir>/<data>-<key>/frames/live/clips/pan.mp4/frame_N.png
    with open(staged / "split.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    clip_rows = [r for r in rows if "pan.mp4" in r["path"]]
    assert len(clip_rows) == FRAMES and {r["label"] for r in clip_rows} == {"live"}
    assert len({r["split"] for r in clip_rows}) == 1  # all frames of the clip train, or all validate
    assert len(rows) == 2 * PER_CLASS + FRAMES
    saved = json.loads((gate["run"] / "liveness.json").read_text())
    assert saved["staged"]["videos"] == 1 and saved["staged"]["frames"] == FRAMES and saved["threshold"] == 0.5


def test_predict_prints_label_score_and_file_per_photo(gate, capsys):
    spoof, live = gate["fresh"] / "spoof" / "spoof_000.png", gate["fresh"] / "live" / "live_000.png"
    code, out, _ = heron(capsys, "liveness", "predict", gate["run"], spoof, live)
    lines = [line.split("\t") for line in out.splitlines()]
    assert code == 0 and [(w[0], w[2]) for w in lines] == [("spoof", str(spoof)), ("live", str(live))]
    assert float(lines[0][1]) >= 0.5 > float(lines[1][1])


def test_predict_names_an_unreadable_photo_and_exits_2(gate, capsys, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    code, out, err = heron(capsys, "liveness", "predict", gate["run"], bad)
    assert code == 2 and "broken.png" in err and out == ""


def test_data_without_spoof_folder_is_refused_with_the_fix(tmp_path, capsys):
    (tmp_path / "data" / "live").mkdir(parents=True)
    code, out, err = heron(capsys, "liveness", "train", tmp_path / "data", "--out", tmp_path / "run")
    assert code == 2
    assert err.strip() == (f"heron: error: {tmp_path / 'data'}: no spoof/ folder; a liveness set needs live/ "
                           "(real captures) and spoof/ (photos of screens or prints) side by side")
    assert not (tmp_path / "run").exists()


def test_a_class_with_only_a_broken_clip_is_refused_naming_the_folder(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "live").mkdir(parents=True)
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(data / "live" / "me.png")
    (data / "spoof").mkdir()
    (data / "spoof" / "screen.mp4").write_bytes(b"no video here" * 20)
    code, out, err = heron(capsys, "liveness", "train", data, "--out", tmp_path / "run", "--frames-dir",
                           tmp_path / "frames", "--quiet")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2
    assert lines[0].startswith(f"heron: {data / 'spoof' / 'screen.mp4'}: not a readable video")
    assert lines[1] == (f"heron: error: {data / 'spoof'}: no images or readable video clips; "
                        "add captures of photos shown on a screen or printed there")
    assert not (tmp_path / "run").exists()


def test_a_classifier_run_that_is_not_a_gate_is_refused():
    from heron.cli.faces_liveness import _spoof_probability
    from heron.errors import DataError, ImageError
    from heron.tasks.classify import Prediction

    colours = Prediction(Path("a.png"), top=[{"label": "red", "index": 0, "prob": 0.7},
                                             {"label": "blue", "index": 1, "prob": 0.3}])
    with pytest.raises(DataError, match="colours: not a liveness run"):
        _spoof_probability(colours, "colours")
    gate = Prediction(Path("a.png"), top=[{"label": "spoof", "index": 1, "prob": 0.8},
                                          {"label": "live", "index": 0, "prob": 0.2}])
    assert _spoof_probability(gate, "gate") == 0.8
    with pytest.raises(ImageError, match="a.png: broken"):
        _spoof_probability(Prediction(Path("a.png"), error="a.png: broken"), "gate")


def test_verify_with_the_gate_answers_spoof_before_matching(gate, tmp_path, capsys):
    pytest.importorskip("heron.tasks.faces.run", reason="face runs are not built yet")
    from heron.tasks.faces.encoder import build_encoder
    from heron.tasks.faces.run import save_face_run

    encoder, _ = build_encoder("lenet5", weights=None, dim=16, size=32, seed=0)
    face_run = save_face_run(tmp_path / "faces", encoder, {"arch": "lenet5", "size": 32}, tau=1.0)
    db = tmp_path / "people.db"
    live = gate["fresh"] / "live" / "live_000.png"
    spoof = gate["fresh"] / "spoof" / "spoof_000.png"
    assert heron(capsys, "enroll", face_run, "--db", db, "alice", live)[0] == 0
    code, out, _ = heron(capsys, "verify", face_run, "--db", db, "alice", spoof, "--liveness", gate["run"])
    assert code == 3 and out.splitlines()[0] == "spoof"
    code, out, _ = heron(capsys, "verify", face_run, "--db", db, "alice", live, "--liveness", gate["run"])
    assert code == 0 and out.splitlines()[0] == "yes"  # the enrolled photo itself: distance 0
