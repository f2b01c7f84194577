"""Frames from video clips, and a class-folder set whose clips are expanded into frames.

The clips are written by the test with PyAV (the mpeg4 encoder in its
wheel): frame i is filled with the value 10 * i in the red channel, so a
decoded frame says which frame it is.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from heron.data import video
from heron.data.video import VIDEO_EXTENSIONS, frame_positions, sample_frames, stage_class_folders
from heron.errors import DataError, ImageError

av = pytest.importorskip("av", reason="PyAV writes the test clips (pip install 'heron[faces]')")

FRAMES = 20


def write_clip(path: Path, frames: int = FRAMES, size: tuple[int, int] = (48, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            rgb = np.zeros((size[1], size[0], 3), np.uint8)
            rgb[..., 0] = 10 * i
            rgb[..., 2] = 100
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _frame_numbers(frames: list[np.ndarray]) -> list[int]:
    return [int(round(f[..., 0].mean() / 10)) for f in frames]


def test_frame_positions_are_the_middles_of_equal_stretches():
    assert frame_positions(20, 4) == [2, 7, 12, 17]
    assert frame_positions(20, 8) == [int((i + 0.5) * 2.5) for i in range(8)]
    assert frame_positions(3, 8) == [0, 1, 2]
    assert frame_positions(0, 8) == []


def test_sample_frames_are_evenly_spaced_rgb(tmp_path):
    frames = sample_frames(write_clip(tmp_path / "clip.mp4"), count=4)
    assert len(frames) == 4 and all(f.shape == (32, 48, 3) and f.dtype == np.uint8 for f in frames)
    assert _frame_numbers(frames) == frame_positions(FRAMES, 4)
    assert abs(float(frames[0][..., 2].mean()) - 100) < 8  # RGB order, not BGR


def test_a_short_clip_gives_all_its_frames(tmp_path):
    frames = sample_frames(write_clip(tmp_path / "short.mkv", frames=3), count=8)
    assert _frame_numbers(frames) == [0, 1, 2]


def test_opencv_reads_the_same_frames(tmp_path):
    pytest.importorskip("cv2", reason="OpenCV is the fallback decoder (pip install 'heron[faces]')")
    clip = write_clip(tmp_path / "clip.avi")
    via_av = video._av_frames(clip, 5)
    via_opencv = video._opencv_frames(clip, 5)
    assert [i for i, _ in via_av] == [i for i, _ in via_opencv] == frame_positions(FRAMES, 5)
    for (_, a), (_, b) in zip(via_av, via_opencv):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 3


@pytest.mark.parametrize("content, message",
                         [(b"", "empty file"), (b"this is not a video" * 20, "not a readable video")])
def test_a_bad_video_names_the_file(tmp_path, content, message):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(ImageError, match=message) as err:
        sample_frames(bad)
    assert str(err.value).startswith(str(bad))
    with pytest.raises(ImageError, match="video not found"):
        sample_frames(tmp_path / "missing.mp4")


def test_without_a_decoder_the_error_says_what_to_install(tmp_path, monkeypatch):
    clip = write_clip(tmp_path / "clip.mp4")
    monkeypatch.setitem(sys.modules, "av", None)
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(DataError, match=r"pip install 'heron\[faces\]'"):
        sample_frames(clip)


def test_video_extensions():
    assert VIDEO_EXTENSIONS == {".mp4", ".avi", ".mov", ".mkv", ".webm"}
    assert video.is_video_file("a/B.MP4") and not video.is_video_file("a/b.png")


def _photo(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(path)
    return path


def test_staging_expands_clips_and_keeps_each_clip_on_one_side(tmp_path):
    data = tmp_path / "data"
    for i in range(4):
        _photo(data / "live" / f"p{i}.png", 10 * i)
        _photo(data / "spoof" / f"s{i}.png", 200 - 10 * i)
    for i in range(3):
        write_clip(data / "live" / "clips" / f"c{i}.mp4")
    write_clip(data / "spoof" / "screen" / "s.mp4")
    (data / "spoof" / "notes.txt").write_text("ignored")
    staged = stage_class_folders(data, ["live", "spoof"], tmp_path / "frames", count=3, valid_pct=0.5, seed=0)
    assert (staged.images, staged.videos, staged.frames, staged.skipped) == (8, 4, 12, [])
    with open(staged.csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 + 12
    by_clip: dict[str, set[str]] = {}
    for row in rows:
        path = Path(row["path"]) if Path(row["path"]).is_absolute() else staged.root / row["path"]
        assert path.is_file() and row["split"] in ("train", "valid")
        if "frame_" in path.name:
            by_clip.setdefault(path.parent.name, set()).add(row["split"])
            assert row["label"] == ("live" if path.parent.name.startswith("c") else "spoof")
    assert sorted(by_clip) == ["c0.mp4", "c1.mp4", "c2.mp4", "s.mp4"]
    assert all(len(sides) == 1 for sides in by_clip.values())
    frame_names = sorted(p.name for p in (staged.root / "frames" / "live" / "clips" / "c0.mp4").iterdir())
    assert frame_names == [f"frame_{i:06d}.png" for i in frame_positions(FRAMES, 3)]
    again = stage_class_folders(data, ["live", "spoof"], tmp_path / "frames", count=3, valid_pct=0.5, seed=0)
    assert again.csv == staged.csv and again.csv.read_text() == staged.csv.read_text()
    assert len(list((tmp_path / "frames").iterdir())) == 1  # reused, and no temporary folder left behind


def test_staging_skips_a_broken_clip_with_its_name(tmp_path):
    data = tmp_path / "data"
    _photo(data / "live" / "p.png", 50)
    _photo(data / "spoof" / "s.png", 90)
    (data / "spoof" / "broken.mp4").write_bytes(b"garbage" * 30)
    staged = stage_class_folders(data, ["live", "spoof"], tmp_path / "frames", count=3)
    assert staged.videos == 0 and staged.frames == 0
    assert len(staged.skipped) == 1 and "broken.mp4: not a readable video" in staged.skipped[0]
