"""A face run folder: the trained encoder, its threshold tau and the ROC it came from.

Layout (written atomically through `heron.train.run.RunFolder`):

- `model.safetensors`: the FaceEncoder's state dict (trunk, projection, mean/std);
- `config.json`: the training settings plus `"result"`: tau, the embedding
  size, the preprocessing, the encoder hash and the validation metrics;
- `roc.json`: the validation ROC points tau was chosen on (when there is one).

`encoder_hash` is the sha256 of the saved tensors (name, dtype, shape and
bytes of each, in name order): the same weights give the same hash whatever
process loads them, so an enrolment database can refuse embeddings made by
another encoder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from heron.data.images import load_image
from heron.data.transforms import Preprocessing, eval_transform
from heron.errors import DataError, ImageError
from heron.models import load_weights, save_weights
from heron.tasks.faces.encoder import FaceEncoder, build_encoder
from heron.train.run import RunFolder

__all__ = ["FaceRun", "load_face_run", "save_face_run", "tensors_hash"]

WEIGHTS = "model.safetensors"
ImageInput = str | Path | np.ndarray


def tensors_hash(state: dict[str, torch.Tensor]) -> str:
    """Hex sha256 over the tensors of a state dict: name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(name.encode())
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _as_rgb_tensor(image: ImageInput, index: int) -> torch.Tensor:
    """uint8 `(3, H, W)` of a file (decoded with `load_image`) or an `HxWx3` / `HxW` uint8 array."""
    if not isinstance(image, np.ndarray):
        return load_image(image)
    array = image
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ImageError(f"image #{index}: expected an HxWx3 uint8 RGB array, got {array.dtype} {array.shape}; "
                         "convert it (e.g. np.asarray(pil_image.convert('RGB')))")
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def _crop(img: torch.Tensor, image: ImageInput, index: int) -> torch.Tensor:
    """The biggest face of `img` (`heron.tasks.faces.crop.crop_face`), as uint8 `(3, h, w)`."""
    from heron.tasks.faces.crop import crop_face

    where = str(image) if not isinstance(image, np.ndarray) else f"image #{index}"
    face = crop_face(img.permute(1, 2, 0).numpy(), path_for_errors=where)
    return torch.from_numpy(np.ascontiguousarray(face)).permute(2, 0, 1).contiguous()


@dataclass
class FaceRun:
    """A loaded face run: `embed` images, compare distances with `tau`."""

    encoder: FaceEncoder
    pre: Preprocessing
    tau: float
    encoder_hash: str
    path: Path
    crop_faces: bool = False
    config: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def name(self) -> str:
        return self.path.name

    def prepare(self, images: Sequence[ImageInput], start: int = 0) -> torch.Tensor:
        """uint8 batch `(n, 3, h, w)` at the encoder's input size (faces cropped first if the run was)."""
        transform = eval_transform(self.pre)
        batch = []
        for offset, image in enumerate(images):
            img = _as_rgb_tensor(image, start + offset)
            if self.crop_faces:
                img = _crop(img, image, start + offset)
            batch.append(transform(img))
        return torch.stack(batch)

    def embed(self, images: Sequence[ImageInput], batch_size: int = 32) -> np.ndarray:
        """Embeddings `(n, dim)` float32 of image files or HxWx3 uint8 RGB arrays, in order.

        A file that cannot be read raises `heron.errors.ImageError` naming it.
        """
        images = list(images)
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        self.encoder.eval()
        for start in range(0, len(images), batch_size):
            x = self.prepare(images[start : start + batch_size], start)
            x = x.float().div_(255.0).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                out[start : start + len(x)] = self.encoder(x).numpy()
        return out


def save_face_run(folder: str | Path, encoder: FaceEncoder, config: dict, tau: float,
                  roc: dict | None = None, pre: Preprocessing | None = None,
                  metrics: dict | None = None) -> Path:
    """Write `encoder`, `config` (+ its result: tau, preprocessing, hash, `metrics`) and `roc` into `folder`.

    `config` needs "arch" (the zoo name the trunk was built with); "dim"
    comes from the encoder. `pre` defaults to the preprocessing of
    `config["size"]` with the encoder's mean/std. Returns the folder.
    """
    if "arch" not in config:
        raise ValueError("config needs 'arch', the zoo architecture of the encoder's trunk")
    run = RunFolder(folder)
    run.path.mkdir(parents=True, exist_ok=True)
    pre = pre or Preprocessing(size=_size(config.get("size")), mean=_triple(encoder.mean), std=_triple(encoder.std))
    save_weights(encoder, run / WEIGHTS)
    result = {
        "tau": float(tau),
        "dim": int(encoder.dim),
        "preprocessing": pre.to_dict(),
        "encoder_hash": tensors_hash(encoder.state_dict()),  # what load_face_run will hash
        "metrics": metrics or {},
    }
    if roc is not None:
        run.write_json("roc.json", _jsonable(roc))
    run.write_json("config.json", {**config, "dim": int(encoder.dim), "result": result})
    return run.path


def load_face_run(path: str | Path) -> FaceRun:
    """Rebuild a face run's encoder from its config.json and model.safetensors."""
    run = RunFolder(path)
    if not run.exists("config.json") or not run.exists(WEIGHTS):
        raise DataError(f"{path}: not a finished face run (needs config.json and {WEIGHTS}); "
                        "train one with `heron faces train DATA --out RUN`")
    saved = run.read_json("config.json")
    result = saved.get("result") or {}
    if "tau" not in result or "arch" not in saved:
        raise DataError(f"{path}: config.json has no face-run result (tau); is it a `heron faces train` run?")
    pre = Preprocessing.from_dict(result["preprocessing"])
    encoder, _ = build_encoder(saved["arch"], weights=None, dim=int(result["dim"]), preprocessing=pre)
    load_weights(encoder, run / WEIGHTS)  # strict: the state dict holds exactly the file's tensors
    digest = tensors_hash(encoder.state_dict())
    encoder = encoder.eval().to(memory_format=torch.channels_last)
    return FaceRun(encoder, pre, float(result["tau"]), digest, run.path,
                   bool(saved.get("crop_faces", False)), saved)


def _size(size) -> tuple[int, int]:
    from heron.data.transforms import as_size

    return as_size(size or 224)


def _triple(buffer: torch.Tensor) -> tuple[float, float, float]:
    return tuple(float(v) for v in buffer.reshape(-1).tolist())  # type: ignore[return-value]


def _jsonable(data):
    """numpy arrays and scalars in a (nested) dict as lists and numbers; non-finite floats as null."""
    if isinstance(data, dict):
        return {k: _jsonable(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_jsonable(v) for v in data]
    if isinstance(data, np.ndarray):
        return _jsonable(data.tolist())
    if isinstance(data, np.generic):
        data = data.item()
    if isinstance(data, float) and not np.isfinite(data):
        return None  # JSON has no infinity (the ROC's first threshold)
    return data
