"""Frames from video files: a few evenly spaced RGB frames per clip.

A liveness data set (`heron faces liveness train`) may hold short clips
beside photos; each clip becomes `count` frames taken from the middles of
`count` equal stretches of the clip, so fades at the ends are avoided and
the frames cover the whole clip. Decoding uses PyAV (FFmpeg, in its wheel)
or, without it, OpenCV's VideoCapture; both are optional
(`pip install 'heron[faces]'`). A file that cannot be decoded raises
`ImageError` naming it, as an unreadable image does.

`stage_class_folders` turns a class-folder set that holds clips as well as
photos into a CSV set `heron train` reads: each clip's frames written once,
and kept on one side of the train/valid split.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from heron.errors import DataError, ImageError

__all__ = ["VIDEO_EXTENSIONS", "StagedSet", "frame_positions", "is_video_file", "sample_frames",
           "sample_indexed_frames", "stage_class_folders", "video_backend"]

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})


def is_video_file(path: str | Path) -> bool:
    """True when the file name has a video extension (case-insensitive); the file is not opened."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def frame_positions(total: int, count: int) -> list[int]:
    """Indices of `count` frames out of `total`: the middle of each of `count` equal stretches.

    All frames when the clip has `count` or fewer.
    """
    if total <= count:
        return list(range(total))
    return sorted({min(total - 1, int((i + 0.5) * total / count)) for i in range(count)})


def video_backend() -> str | None:
    """The installed library `sample_frames` decodes with: "av", else "opencv", else None."""
    for module, name in (("av", "av"), ("cv2", "opencv")):
        try:
            __import__(module)
            return name
        except ImportError:
            continue
    return None


def _unreadable(path: Path, reason: str) -> ImageError:
    return ImageError(f"{path}: not a readable video ({reason}); re-encode it (for example as H.264 MP4) or remove it")


Frames = list[tuple[int, np.ndarray]]  # (frame index in the clip, (H, W, 3) uint8 RGB)


def _av_frames(path: Path, count: int) -> Frames:
    """PyAV: count the packets of the first video stream, then decode once keeping the chosen frames."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise _unreadable(path, "no video stream")
            stream = container.streams.video[0]
            total = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
        wanted = set(frame_positions(total, count))
        frames: Frames = []
        with av.open(str(path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index in wanted:
                    frames.append((index, frame.to_ndarray(format="rgb24")))
                if len(frames) == len(wanted):
                    break
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as exc:
        raise _unreadable(path, getattr(exc, "strerror", None) or type(exc).__name__) from None
    return frames


def _opencv_frames(path: Path, count: int) -> Frames:
    """OpenCV's VideoCapture: the same frames by reading through the clip once."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise _unreadable(path, "OpenCV cannot open it")
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        wanted = set(frame_positions(max(total, 0), count))
        frames: Frames = []
        index = 0
        while len(frames) < len(wanted):
            ok, bgr = capture.read()
            if not ok:
                break
            if index in wanted:
                frames.append((index, np.ascontiguousarray(bgr[..., ::-1])))
            index += 1
    finally:
        capture.release()
    return frames


def sample_frames(path: str | Path, count: int = 8) -> list[np.ndarray]:
    """`count` evenly spaced frames of a video as (H, W, 3) uint8 RGB arrays, in clip order.

    Fewer when the clip is shorter. ImageError (naming the file) for a
    missing, empty or undecodable file; DataError when neither PyAV nor
    OpenCV is installed.
    """
    return [frame for _, frame in sample_indexed_frames(path, count)]


def sample_indexed_frames(path: str | Path, count: int = 8) -> Frames:
    """`sample_frames` with each frame's index in the clip: [(index, frame)]."""
    path = Path(path)
    if count < 1:
        raise ValueError(f"count must be 1 or more, got {count}")
    if not path.is_file():
        raise ImageError(f"{path}: video not found; check the path")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes); replace or remove it")
    backend = video_backend()
    if backend is None:
        raise DataError(f"{path}: reading video needs PyAV or OpenCV: pip install 'heron[faces]'")
    frames = _av_frames(path, count) if backend == "av" else _opencv_frames(path, count)
    if not frames:
        raise ImageError(f"{path}: no video frames could be decoded; re-encode it or remove it")
    return frames


# ---- a class-folder data set with video clips: clips expanded into frame images ----------------
STAGED_MAX_SIDE = 1024  # frames larger than this are shrunk before they are written (classifiers see 224 px)
SPLIT_FILE = "split.csv"
SUMMARY_FILE = "staged.json"
STAGE_FORMAT = 1  # part of the staged folder's key: a new layout never reuses an old folder


@dataclass
class StagedSet:
    """A class-folder set with its clips expanded: a CSV of path,label,split for `heron train`.

    Each clip's frames are written under `root/frames/<class>/<clip path>/frame_<index>.png`
    (the clip's own path, the frame's index in it) and all sit on one side of
    the train/valid split, as each photo does: frames of one clip are near
    copies, and one clip on both sides would score memory, not recognition.
    """

    csv: Path  # path,label,split; photos by absolute path, frames relative to `root`
    root: Path
    images: int  # photos listed as they are
    videos: int  # clips expanded
    frames: int  # frame images written from them
    skipped: list[str] = field(default_factory=list)  # one line per clip that could not be read
    rows: dict[str, int] = field(default_factory=dict)  # class -> photos + frames listed for it

    def summary(self) -> dict:
        return {"csv": str(self.csv), "root": str(self.root), "images": self.images, "videos": self.videos,
                "frames": self.frames, "skipped": self.skipped, "rows": self.rows}


def _class_files(data: Path, classes: list[str]) -> dict[str, tuple[list[Path], list[Path]]]:
    """class -> (photos, clips) under `data/<class>/`, sorted; other files are ignored."""
    from heron.data.images import scan_files

    found = {}
    for name in classes:
        images, others = scan_files(data / name)
        found[name] = ([Path(p) for p in images], [Path(p) for p in others if is_video_file(p)])
    return found


def _stage_key(data: Path, files: dict, count: int, valid_pct: float, seed: int) -> str:
    """Fingerprint of the inputs: the same folder (names, sizes, times) and settings reuse the frames."""
    digest = hashlib.sha256(json.dumps([STAGE_FORMAT, str(data.resolve()), count, valid_pct, seed]).encode())
    for name, (images, clips) in sorted(files.items()):
        for path in images + clips:
            stat = path.stat()
            digest.update(f"{name}\0{path.relative_to(data)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _write_frames(clip: Path, folder: Path, count: int) -> list[Path]:
    """The clip's sampled frames as PNGs in `folder` (named by frame index); their paths."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, frame in sample_indexed_frames(clip, count):
        image = Image.fromarray(frame)
        if max(image.size) > STAGED_MAX_SIDE:
            image.thumbnail((STAGED_MAX_SIDE, STAGED_MAX_SIDE), Image.BILINEAR)
        path = folder / f"frame_{index:06d}.png"
        image.save(path, compress_level=1)
        written.append(path)
    return written


def _split_sources(files: dict, classes: list[str], valid_pct: float, seed: int) -> dict[Path, str]:
    """Each photo and each clip -> "train" | "valid", stratified by class (a clip counts as one source)."""
    from heron.data.folders import split_stratified

    sources = [(path, classes.index(name)) for name, (images, clips) in files.items() for path in images + clips]
    train, valid = split_stratified(sources, valid_pct, seed)
    return {**{p: "train" for p, _ in train}, **{p: "valid" for p, _ in valid}}


def _build(data: Path, files: dict, classes: list[str], build: Path, count: int, valid_pct: float,
           seed: int) -> StagedSet:
    split = _split_sources(files, classes, valid_pct, seed)
    rows, skipped, frames = [], [], 0
    for name, (images, clips) in files.items():
        rows += [(str(p.resolve()), name, split[p]) for p in images]
        for clip in clips:
            try:
                written = _write_frames(clip, build / "frames" / name / clip.relative_to(data / name), count)
            except ImageError as err:
                skipped.append(f"{err}; skipped")
                continue
            rows += [(str(p.relative_to(build)), name, split[clip]) for p in written]
            frames += len(written)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "label", "split"])
    writer.writerows(rows)
    (build / SPLIT_FILE).write_text(out.getvalue(), encoding="utf-8")
    videos = sum(len(clips) for _, clips in files.values()) - len(skipped)
    images = sum(len(images) for images, _ in files.values())
    per_class = {name: sum(1 for row in rows if row[1] == name) for name in classes}
    return StagedSet(build / SPLIT_FILE, build, images, videos, frames, skipped, per_class)


def stage_class_folders(data: str | Path, classes: list[str], root: str | Path, count: int = 8,
                        valid_pct: float = 0.2, seed: int = 0) -> StagedSet:
    """Expand the clips of `data/<class>/` folders into frames under `root`, once; a CSV set to train on.

    Photos stay where they are (listed by absolute path). The split is drawn
    per source (photo or clip), stratified by class and seeded, so it is the
    same on every call. The frames are built in a temporary folder renamed
    into place: an interrupted run leaves nothing half-written, and a later
    run over the same files reuses them.
    """
    data = Path(data)
    files = _class_files(data, classes)
    target = Path(root) / f"{data.resolve().name or 'data'}-{_stage_key(data, files, count, valid_pct, seed)}"
    if not (target / SUMMARY_FILE).is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            staged = _build(data, files, classes, build, count, valid_pct, seed)
            counts = {k: v for k, v in staged.summary().items() if k not in ("csv", "root")}  # the folder moves
            (build / SUMMARY_FILE).write_text(json.dumps(counts, indent=2), encoding="utf-8")
            os.replace(build, target)
        except OSError:
            if not (target / SUMMARY_FILE).is_file():  # else another process finished the same set first
                raise
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return _load(target)


def _load(target: Path) -> StagedSet:
    saved = json.loads((target / SUMMARY_FILE).read_text(encoding="utf-8"))
    return StagedSet(target / SPLIT_FILE, target, saved["images"], saved["videos"], saved["frames"], saved["skipped"],
                     saved["rows"])
