"""A classifier exported by `heron export --format onnx`, run by ONNX Runtime.

`OnnxClassifier` reads what it needs from the file's metadata (classes,
preprocessing, multilabel; see `heron.serve.export`) and runs the graph on
uint8 `(N, 3, H, W)` pixels at the run's eval size; scaling, mean/std and
the softmax (sigmoid for multilabel runs) are inside the graph.

Running a batch that is already at the input size needs numpy and
onnxruntime only: torch is not imported. Images of any size and files are
decoded and resized with heron's own decoder and `eval_transform` (the
same pixels `heron predict --model RUN` feeds PyTorch, so the same top-k),
which are torch code: torch is imported for that decoding only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from heron._onnx import ort_session
from heron.errors import DataError, ModelError

__all__ = ["OnnxClassifier", "is_onnx_path"]

_EXPORT_HINT = "export a run with heron export RUN --format onnx"


def is_onnx_path(path: str | Path | None) -> bool:
    """Whether `--model PATH` names an ONNX file (a .onnx name, or any file: a run is a folder)."""
    return path is not None and (Path(path).suffix.lower() == ".onnx" or Path(path).is_file())


def _default_threads() -> int:
    """torch's thread count when torch is loaded (`heron --threads N` sets it), else the cores given."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.get_num_threads()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ModelError("onnxruntime is not installed; pip install onnxruntime (or 'heron[serve]')") from None
    return onnxruntime


class OnnxClassifier:
    """An exported heron classifier: `predict(images) -> probabilities float32 (N, C)`.

    Attributes read from the metadata: `classes`, `preprocessing` (the
    `Preprocessing.to_dict` form), `multilabel`, `run`, `version`, `input`;
    `size` is the input's (H, W) and `batch` the fixed batch size of a
    graph exported without a dynamic batch (None when any batch runs).
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such ONNX file; check the path, or {_EXPORT_HINT}")
        self.path = path
        self._open(str(path), threads, str(path))

    @classmethod
    def from_bytes(cls, data: bytes, threads: int | None = None, name: str = "<onnx bytes>") -> "OnnxClassifier":
        """The classifier of ONNX `data` held in memory (the export's check runs it before writing the file)."""
        self = cls.__new__(cls)
        self.path = None
        self._open(data, threads, name)
        return self

    def _open(self, model: str | bytes, threads: int | None, name: str) -> None:
        self.threads = int(threads or _default_threads())
        ort = _onnxruntime()
        try:
            self.session = ort_session(ort, model, self.threads)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types for unreadable files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"{name}: not a readable ONNX model ({first[:160]}); {_EXPORT_HINT}") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if "heron.classes" not in props or "heron.preprocessing" not in props:
            raise DataError(f"{name}: an ONNX model without heron's metadata (heron.classes); {_EXPORT_HINT}")
        self.name = name
        try:
            self._read_metadata(props)
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{name}: damaged heron metadata ({exc}); {_EXPORT_HINT} again") from None
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        self.output_name = self.session.get_outputs()[0].name
        self.batch = graph_input.shape[0] if isinstance(graph_input.shape[0], int) else None
        self._pre = None

    def _read_metadata(self, props: dict[str, str]) -> None:
        self.classes: list[str] = list(json.loads(props["heron.classes"]))
        self.preprocessing: dict = json.loads(props["heron.preprocessing"])
        self.multilabel = bool(json.loads(props.get("heron.multilabel", "false")))
        self.input: dict = json.loads(props.get("heron.input", "{}"))
        self.run, self.version = props.get("heron.run", ""), props.get("heron.version", "")
        self.size = tuple(int(s) for s in self.preprocessing["size"])

    def describe(self) -> str:
        """What runs the model, as `Prediction.engine` says it: "onnxruntime, precision fp32"."""
        return "onnxruntime, precision fp32"

    def __repr__(self) -> str:
        return f"OnnxClassifier({self.name}, {len(self.classes)} classes, input {self.size}, {self.threads} threads)"

    # ---- pixels in, probabilities out
    def predict(self, images) -> np.ndarray:
        """Probabilities float32 `(N, C)` of `images`.

        `images`: a uint8 `(N, 3, H, W)` array (or CPU tensor) of RGB pixels
        already at `size`, or a list of images of any size, each a
        `PIL.Image` or a uint8 `(3, H, W)` array/tensor, which are resized
        and center-cropped as the run's eval transform does.
        """
        batch = self._stack(images) if isinstance(images, (list, tuple)) else self._check_batch(np.asarray(images))
        if self.batch is None:
            return self._run(batch)
        return self._run_fixed(batch, self.batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]  # (N, C)

    def _run_fixed(self, batch: np.ndarray, size: int) -> np.ndarray:
        """A fixed-batch graph: chunks of `size`, the last padded with black images and trimmed."""
        outputs = [np.zeros((0, len(self.classes)), np.float32)]
        for start in range(0, len(batch), size):
            part = batch[start : start + size]
            padded = np.concatenate([part, np.zeros((size - len(part), *part.shape[1:]), np.uint8)])
            outputs.append(self._run(padded)[: len(part)])
        return np.concatenate(outputs)

    def _check_batch(self, batch: np.ndarray) -> np.ndarray:
        expected = (3, *self.size)
        if batch.dtype != np.uint8 or batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ValueError(f"{self.name}: expects uint8 images (N, {expected[0]}, {expected[1]}, {expected[2]}), "
                             f"got {batch.dtype} {tuple(batch.shape)}; pass a list of images to resize them")
        return np.ascontiguousarray(batch)

    def _stack(self, images: Sequence) -> np.ndarray:
        if not images:
            return np.zeros((0, 3, *self.size), np.uint8)
        return np.stack([self.prepare(image) for image in images])

    # ---- decoding and resizing (heron's torch code)
    @property
    def pre(self):
        """The run's `heron.data.transforms.Preprocessing` (imports torch)."""
        if self._pre is None:
            from heron.data.transforms import Preprocessing

            self._pre = Preprocessing.from_dict(self.preprocessing)
        return self._pre

    def prepare(self, image) -> np.ndarray:
        """One image (`PIL.Image`, or uint8 `(3, H, W)`) as uint8 `(3, H, W)` at `size`, as eval_transform makes it.

        A PIL image is taken as its pixels are (`convert("RGB")`); files go
        through `predict_files`, whose decoder also applies EXIF orientation
        and puts transparency on white, as `heron predict` does.
        """
        import torch

        from heron.data.transforms import eval_transform

        if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
            image = np.asarray(image.convert("RGB")).transpose(2, 0, 1)  # (3, H, W)
        tensor = torch.as_tensor(np.ascontiguousarray(image) if isinstance(image, np.ndarray) else image)
        if tensor.dtype != torch.uint8 or tensor.ndim != 3 or tensor.shape[0] != 3:
            raise ValueError(f"{self.name}: an image must be a PIL image or uint8 (3, H, W), "
                             f"got {tensor.dtype} {tuple(tensor.shape)}")
        return eval_transform(self.pre)(tensor.contiguous()).numpy()

    def predict_files(self, paths: list[Path], batch_size: int = 32, workers: int | None = None,
                      progress: bool = False) -> Iterator[tuple[Path, np.ndarray | None, str | None]]:
        """`(path, probabilities (C,) | None, error | None)` for each file, decoded as `heron predict` decodes them."""
        from tqdm.auto import tqdm

        from heron.data.loader import file_loader
        from heron.data.transforms import eval_transform

        _, loader, _ = file_loader(paths, eval_transform(self.pre), batch_size, workers, self.pre.decode_min_size())
        bar = tqdm(total=len(paths), unit="img", disable=not progress, leave=False)
        for x, _, idx, errors in loader:
            for i, message in errors:
                yield paths[i], None, message
            if x is not None:
                for i, probs in zip(idx.tolist(), self.predict(x.numpy())):
                    yield paths[i], probs, None
            bar.update(len(idx) + len(errors))
        bar.close()

    def predict_images(self, paths: list[Path], topk: int = 5, batch_size: int = 32, workers: int | None = None,
                       progress: bool = False):
        """A `heron.tasks.classify.Prediction` per file, with the same top-k entries `heron predict` prints."""
        from heron.tasks.classify import Prediction, top_labels

        for path, probs, error in self.predict_files(paths, batch_size, workers, progress):
            if error:
                yield Prediction(path, error=error)
            else:
                yield Prediction(path, top_labels(probs, self.classes, topk), engine=self.describe())
