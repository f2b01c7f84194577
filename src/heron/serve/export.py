"""A trained run as one ONNX file: uint8 pixels in, class probabilities out, heron's metadata inside.

The exported graph is the whole network a run folder holds, made for
clients that know nothing of heron or PyTorch:

    images uint8 (N, 3, H, W), RGB, at the run's eval size
      -> / 255 -> (x - mean) / std -> trunk -> head -> softmax (sigmoid when multilabel)
      -> probabilities float32 (N, C)

so a client only decodes, resizes and center-crops (`heron.preprocessing`
says how) and feeds the pixels. Batch norm is folded into the convolutions
where `heron.nn.fuse` does it. The model's metadata properties carry what
a client needs: `heron.classes` (JSON list), `heron.preprocessing`
(`Preprocessing.to_dict` JSON), `heron.multilabel`, `heron.input` (layout,
dtype and size of the input), `heron.run` and `heron.version`.

Before the file is put in place, ONNX Runtime's output is checked against
the run's PyTorch model on sample inputs (`check_export`); a file that
disagrees is never written.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from heron.errors import HeronError

__all__ = ["ExportError", "CHECK_TOLERANCE", "INPUT_NAME", "OUTPUT_NAME", "export_onnx", "check_export",
           "export_graph", "metadata_props"]

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
CHECK_TOLERANCE = 1e-4  # largest |ONNX Runtime - PyTorch| probability the check accepts
CHECK_SAMPLES = 4  # sample images the check runs through both
OPSETS = (11, 20)  # opsets torch's TorchScript-based exporter writes for these networks (dynamic Pad needs 11)


class ExportError(HeronError):
    """A run that cannot be exported, or an export whose output disagrees with PyTorch's."""


class _ExportGraph(nn.Module):
    """uint8 images -> probabilities: the scaling and the activation around a [0, 1]-input classifier."""

    def __init__(self, model: nn.Module, multilabel: bool) -> None:
        super().__init__()
        self.model, self.multilabel = model, multilabel

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0  # (N, 3, H, W) in [0, 1]; mean/std are inside the model
        logits = self.model(x)  # (N, C)
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)


def export_graph(model: nn.Module, size: tuple[int, int], multilabel: bool = False, opset: int = 17,
                 dynamic_batch: bool = True) -> bytes:
    """The serialised ONNX graph of `model` (floats in [0, 1] -> logits) as uint8 images -> probabilities.

    `model` is not changed: a copy with batch norm folded is exported. With
    `dynamic_batch` the batch dimension is free, else it is fixed at 1.
    """
    from heron.transfer.engine import inference_copy

    if not OPSETS[0] <= opset <= OPSETS[1]:
        raise ExportError(f"--opset {opset}: give an opset from {OPSETS[0]} to {OPSETS[1]} (default 17)")
    graph = _ExportGraph(inference_copy(model).to(memory_format=torch.contiguous_format), multilabel).eval()
    example = torch.zeros((2 if dynamic_batch else 1, 3, *size), dtype=torch.uint8)  # batch 2: keeps N general
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes on shape arithmetic: the image size is fixed
        try:
            torch.onnx.export(graph, (example,), buffer, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
        except Exception as exc:  # noqa: BLE001 - the exporter's own errors; --debug shows the cause
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ExportError(f"torch.onnx.export failed at opset {opset} ({first}); try --opset 17") from exc
    return buffer.getvalue()


def metadata_props(classes: list[str], pre, multilabel: bool, run: str, dynamic_batch: bool = True) -> dict[str, str]:
    """The `heron.*` metadata properties of an exported classifier (every value a string)."""
    from heron import __version__

    shape = ["N" if dynamic_batch else 1, 3, *(int(s) for s in pre.size)]
    described = {"name": INPUT_NAME, "layout": "NCHW", "dtype": "uint8", "channels": "RGB", "shape": shape,
                 "range": [0, 255], "scaling": "inside the graph: /255 then (x - mean) / std",
                 "output": f"{OUTPUT_NAME} float32 (N, {len(classes)}), {'sigmoid' if multilabel else 'softmax'}"}
    return {
        "heron.classes": json.dumps(list(classes)),
        "heron.preprocessing": json.dumps(pre.to_dict()),
        "heron.multilabel": json.dumps(bool(multilabel)),
        "heron.input": json.dumps(described),
        "heron.run": run,
        "heron.version": __version__,
    }


def _with_metadata(graph: bytes, props: dict[str, str]) -> bytes:
    """The ONNX bytes with `props` set as the model's metadata properties."""
    import onnx

    proto = onnx.load_from_string(graph)
    onnx.helper.set_model_props(proto, props)
    proto.producer_name = "heron"
    return proto.SerializeToString()


def sample_inputs(size: tuple[int, int], count: int = CHECK_SAMPLES, seed: int = 0) -> np.ndarray:
    """uint8 `(count, 3, H, W)` images for the check: noise, then flat grey, then half black, half white."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 3, *size), dtype=np.uint8)
    if count > 1:
        images[1] = 128
    if count > 2:
        images[2, :, : size[0] // 2] = 0
        images[2, :, size[0] // 2 :] = 255
    return images


def check_export(onnx_model: str | Path | bytes, model: nn.Module, multilabel: bool, size: tuple[int, int],
                 samples: int = CHECK_SAMPLES, tolerance: float = CHECK_TOLERANCE) -> float:
    """Largest |ONNX Runtime - PyTorch| probability on `samples` sample images; `ExportError` above `tolerance`.

    The reference is `model` itself (batch norm not folded, eager PyTorch,
    fp32), so the check covers the folding as well as the export.
    """
    from heron.serve.onnx_model import OnnxClassifier

    images = sample_inputs(size, samples)
    if isinstance(onnx_model, bytes):
        runner = OnnxClassifier.from_bytes(onnx_model, name="the exported model")
    else:
        runner = OnnxClassifier(onnx_model)
    got = runner.predict(images)
    with torch.inference_mode():
        logits = model.eval()(torch.from_numpy(images).float() / 255.0)
        want = (torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)).numpy()
    if got.shape != want.shape:
        raise ExportError(f"the exported model gives {got.shape[1:]} outputs per image where PyTorch gives "
                          f"{want.shape[1:]}; report it with the run's config.json")
    diff = float(np.abs(got - want).max())
    if not diff <= tolerance:  # NaN fails too
        raise ExportError(f"the exported model's probabilities differ from PyTorch's by {diff:.2e} "
                          f"(limit {tolerance:.0e}) on sample images; report it with the run's config.json")
    return diff


def _require(packages: list[str]) -> None:
    """ExportError naming the install command when a package the export needs is missing."""
    import importlib.util

    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"ONNX export needs {' and '.join(missing)}; pip install {' '.join(missing)} "
                          "(or pip install 'heron[serve]')")


def _refuse_metadata_run(run_path: str | Path, loaded) -> None:
    if loaded.metadata is not None:
        raise ExportError(f"{run_path}: a --metadata run takes two inputs (pixels and file-header columns); "
                          "ONNX export takes image-only runs: train again without --metadata")


def export_onnx(run_path: str | Path, out: str | Path | None = None, opset: int = 17, dynamic_batch: bool = True,
                check: bool = True, say: Callable[[str], None] | None = None) -> Path:
    """Export run folder `run_path`'s whole network to `out` (default `RUN/model.onnx`; a folder: `model.onnx` in
    it); returns the path.

    The file is written atomically, and only after `check_export` passed
    (with `check`); `say` receives a line with the check's result. Raises
    `DataError` for a folder that is not a finished run, `ExportError` for a
    `--metadata` run or a failed check.
    """
    from heron._atomic import atomic_save
    from heron.tasks.classify import load_run

    _require(["onnx", "onnxruntime"] if check else ["onnx"])
    loaded = load_run(run_path)
    _refuse_metadata_run(run_path, loaded)
    out = Path(out) if out is not None else Path(run_path)
    out = out / "model.onnx" if out.is_dir() else out
    size = tuple(int(s) for s in loaded.pre.size)
    graph = export_graph(loaded.model, size, loaded.multilabel, opset, dynamic_batch)
    props = metadata_props(loaded.classes, loaded.pre, loaded.multilabel, str(Path(run_path).resolve()),
                           dynamic_batch)
    data = _with_metadata(graph, props)
    if check:
        diff = check_export(data, loaded.model, loaded.multilabel, size)
        if say is not None:
            say(f"checked: ONNX Runtime matches PyTorch on {CHECK_SAMPLES} sample images "
                f"(largest probability difference {diff:.1e}, limit {CHECK_TOLERANCE:.0e})")
    return atomic_save(out, lambda tmp: Path(tmp).write_bytes(data))
