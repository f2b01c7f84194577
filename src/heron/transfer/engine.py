"""Inference engines for a frozen trunk: images in, float32 features out.

Feature extraction runs one fixed network over every image, so it can use a
runtime that compiles the network once for the CPU instead of running it op by
op. Three engines, one interface (`engine(batch) -> Tensor[N, D]`):

- "torch": eager PyTorch on a copy of the model with batch norm folded into
  the convolutions, channels_last memory, inference mode; bf16/fp16 by casting
  the weights. Runs everywhere (CPU, CUDA), every precision.
- "openvino": the trunk converted to OpenVINO IR and compiled for this CPU;
  fp32, and bf16 on CPUs with native bf16 (AVX512-BF16, AMX).
- "onnxruntime": the trunk exported to ONNX and run by ONNX Runtime's CPU
  provider; fp32 only.

`engine="auto"` takes the first of `AUTO_ORDER` that is installed and can run
the precision on the device. The order is measured (benchmarks/engines.py,
EfficientNet-Lite0 trunk, batch 32 and 64 at 224x224, 2 threads, AMD EPYC Zen 2
with AVX2, img/s): openvino 132-146, onnxruntime 110-117, torch fp32 70-76,
torch bf16 3.8 (emulated); with JPEG decoding of 1600x1200 photos included:
openvino 86, onnxruntime 76, torch 56.

A compiled engine is kept on disk under `cache_dir`, one folder per
(engine and its version, trunk weights, input shape, precision) holding the
model files and a manifest of their hashes: a warm run loads it instead of
converting again, and a damaged or half-written one is converted again.
Inputs are uint8 images (scaled by 1/255 here) or floats already in [0, 1],
NCHW; any batch size; each new input size (C, H, W) compiles once.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from heron.errors import HeronError
from heron.nn.fuse import fold_batchnorm
from heron.nn import precision as _precision  # looked up at call time: tests simulate other CPUs
from heron.nn.precision import device_type, precision_dtype, resolve_precision
from heron.transfer.cache import content_hash, fingerprint

__all__ = [
    "AUTO_ORDER",
    "ENGINES",
    "METHODS",
    "Engine",
    "EngineError",
    "OnnxRuntimeEngine",
    "OpenVINOEngine",
    "TorchEngine",
    "create_engine",
    "engine_installed",
    "inference_copy",
    "resolve_engine",
    "trunk_fingerprint",
]

ENGINES = ("auto", "torch", "openvino", "onnxruntime")
AUTO_ORDER = ("openvino", "onnxruntime", "torch")  # fastest first, as measured (module docstring)
_PACKAGES = {"torch": ("torch",), "openvino": ("openvino",), "onnxruntime": ("onnxruntime", "onnx")}
_INSTALL_HINT = {"openvino": "pip install 'heron[fast]' (or pip install openvino)",
                 "onnxruntime": "pip install onnxruntime onnx"}


class EngineError(HeronError, ValueError):
    """An engine that is unknown, not installed, or unable to run the precision on the device."""


# ----------------------------------------------------------------- choosing (cheap: no model work)


def engine_installed(name: str) -> bool:
    """Whether the packages engine `name` needs are importable (nothing is imported)."""
    return all(importlib.util.find_spec(package) is not None for package in _PACKAGES[name])


def _why_not(name: str, precision: str, kind: str) -> str | None:
    """Why engine `name` cannot run `precision` on a `kind` device, or None when it can."""
    if name == "torch":
        return None
    if kind != "cpu":
        return f"engine {name} runs on the CPU only; use --engine torch on {kind}"
    if name == "onnxruntime" and precision != "fp32":
        return "engine onnxruntime runs fp32 only on the CPU; use --precision fp32 or --engine torch"
    if name == "openvino" and precision == "bf16" and not _precision.cpu_supports_bf16():
        return ("engine openvino runs bf16 only on CPUs with native bf16 (AVX512-BF16 or AMX), "
                "and this one has neither; use --precision fp32 or --engine torch")
    return None


def resolve_engine(engine: str = "auto", precision: str = "auto",
                   device: str | torch.device = "cpu") -> tuple[str, str]:
    """(engine name, precision) that `create_engine` will use; cheap, so cache keys can be made first.

    `precision` goes through `resolve_precision`; "auto" engine picks the first
    of `AUTO_ORDER` installed and able to run that precision on `device`.
    Raises `EngineError` for an unknown or missing engine, or one that cannot
    run the precision there (openvino bf16 without native bf16, onnxruntime
    bf16, either on a GPU).
    """
    if engine not in ENGINES:
        raise EngineError(f"engine {engine!r} is not one of {', '.join(ENGINES)}; use auto to pick the fastest installed")
    precision = resolve_precision(precision, device)
    kind = device_type(device)
    if engine == "auto":
        name = next(n for n in AUTO_ORDER if engine_installed(n) and _why_not(n, precision, kind) is None)
        return name, precision
    if not engine_installed(engine):
        raise EngineError(f"engine {engine} is not installed; {_INSTALL_HINT[engine]}, or use --engine torch")
    reason = _why_not(engine, precision, kind)
    if reason:
        raise EngineError(reason)
    return engine, precision


# ----------------------------------------------------------------- the trunk as one function


METHODS = ("features", "forward")


class _Features(nn.Module):
    """The computation an engine runs, as a module's forward.

    method "features": `model.features(x)` (what the feature cache stores),
    or `model(x)` for a model without one; "forward": `model(x)` (prediction).
    """

    def __init__(self, model: nn.Module, method: str = "features") -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.model, self.method = model, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = getattr(self.model, "features", None) if self.method == "features" else None
        return features(x) if callable(features) else self.model(x)


def inference_copy(model: nn.Module, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
    """A copy of `model` for inference only: eval, batch norm folded, on `device` in `dtype`, channels_last."""
    with torch.inference_mode(False), torch.no_grad():  # normal tensors: tracing and exporting need them
        trunk = fold_batchnorm(copy.deepcopy(model).eval())
        return trunk.to(device=device, dtype=dtype, memory_format=torch.channels_last)


def trunk_fingerprint(model: nn.Module, method: str = "features") -> str:
    """Hash of what the engine computes with: the tensors (the head's too unless unused), class, method.

    A heron `ClassifierModel` keeps its trainable head in `head`, which
    `features` never reads, so a new head does not invalidate a compiled trunk.
    """
    skip_head = (method == "features" and callable(getattr(model, "features", None))
                 and isinstance(getattr(model, "head", None), nn.Module))
    digest = hashlib.blake2b(digest_size=10)
    digest.update(f"{type(model).__qualname__}|{getattr(model, 'feature_kind', '')}|{method}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        if skip_head and name.startswith("head."):
            continue
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _as_input(batch: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1]; floats pass through as float32."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(255.0)
    return batch.float()


# ----------------------------------------------------------------- engines


class Engine:
    """A frozen trunk ready to run: `engine(batch (N, C, H, W)) -> features float32 (N, D)` on the CPU."""

    name = "?"

    def __init__(self, precision: str) -> None:
        self.precision = precision

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        """One line for the run's log: "engine openvino, precision fp32"."""
        return f"engine {self.name}, precision {self.precision}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


class TorchEngine(Engine):
    """Eager PyTorch: folded batch norm, channels_last, inference mode; bf16/fp16 by casting the weights.

    It runs at the process's torch thread count, which the process sets once
    (changing it here, per call, hangs forked children under OpenMP).
    """

    name = "torch"

    def __init__(self, model: nn.Module, precision: str = "fp32", device: str | torch.device = "cpu",
                 method: str = "features") -> None:
        super().__init__(precision)
        self.device = torch.device(device)
        self.dtype = precision_dtype(precision)
        self.trunk = _Features(inference_copy(model, self.device, self.dtype), method)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = _as_input(batch.to(self.device, non_blocking=True)).to(self.dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.trunk(x).float().cpu()


class _CompiledEngine(Engine):
    """An engine that converts the trunk once per input shape and keeps the result in `cache_dir`.

    Subclasses write the model files into a folder (`_convert`) and load them
    from one (`_load`). `conversions` counts the conversions this object ran
    (0 on a warm cache).
    """

    files: tuple[str, ...] = ()

    def __init__(self, model: nn.Module, precision: str = "fp32", cache_dir: str | Path | None = None,
                 threads: int | None = None, method: str = "features") -> None:
        super().__init__(precision)
        self.threads = threads or torch.get_num_threads()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.trunk = _Features(inference_copy(model), method)
        self._trunk_key: str | None = None
        self._compiled: dict[tuple[int, ...], object] = {}
        self.conversions = 0

    # ---- subclass hooks
    def _version(self) -> str:
        raise NotImplementedError

    def _convert(self, example: torch.Tensor, folder: Path) -> None:
        raise NotImplementedError

    def _load(self, folder: Path, shape: tuple[int, ...]):
        raise NotImplementedError

    def _run(self, compiled, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # ---- shape -> compiled model, through the disk cache
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = _as_input(batch.cpu()).contiguous()
        shape = tuple(x.shape[1:])
        compiled = self._compiled.get(shape)
        if compiled is None:
            compiled = self._compiled[shape] = self._prepare(shape)
        return self._run(compiled, x)

    def cache_key(self, shape: tuple[int, ...]) -> str:
        """Name of the cached folder for inputs of `shape` (C, H, W)."""
        if self._trunk_key is None:
            self._trunk_key = trunk_fingerprint(self.trunk.model, self.trunk.method)
        key = {"engine": self.name, "version": self._version(), "precision": self.precision,
               "shape": list(shape), "trunk": self._trunk_key}
        return f"{self.name}-{fingerprint(key)}"

    def _prepare(self, shape: tuple[int, ...]):
        if self.cache_dir is None:
            with tempfile.TemporaryDirectory(prefix="heron-engine-", ignore_cleanup_errors=True) as tmp:
                self._convert_into(shape, Path(tmp))
                return self._load(Path(tmp), shape)
        folder = self.cache_dir / self.cache_key(shape)
        if self._intact(folder):
            try:
                return self._load(folder, shape)
            except Exception:  # noqa: BLE001 - a file the runtime rejects is rebuilt like a damaged one
                pass
        self._publish(shape, folder)
        return self._load(folder, shape)

    def _convert_into(self, shape: tuple[int, ...], folder: Path) -> None:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer notes on shape arithmetic: shapes are fixed per engine
            example = torch.zeros((2, *shape))  # (2, C, H, W): batch 2 keeps the batch dimension general
            self._convert(example, folder)
        self.conversions += 1

    def _intact(self, folder: Path) -> bool:
        """The folder holds a complete conversion: manifest readable, every file's hash matches."""
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            return all(content_hash(folder / name) == manifest["files"][name] for name in self.files)
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def _publish(self, shape: tuple[int, ...], folder: Path) -> None:
        """Convert into a temporary folder beside `folder`, write the manifest, rename into place."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the published folder reads like any other
        try:
            self._convert_into(shape, tmp)
            manifest = {"engine": self.name, "version": self._version(), "precision": self.precision,
                        "shape": list(shape), "files": {name: content_hash(tmp / name) for name in self.files}}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
            try:
                os.replace(tmp, folder)
            except OSError:  # another process published the same conversion first: theirs is as good
                if not self._intact(folder):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class OpenVINOEngine(_CompiledEngine):
    """The trunk as OpenVINO IR (weights kept fp32 on disk), compiled for this CPU at `threads` threads.

    Precision is set explicitly: OpenVINO would otherwise run bf16 by itself
    on CPUs that have it, and "fp32" must mean fp32.
    """

    name = "openvino"
    files = ("model.xml", "model.bin")

    def __init__(self, model: nn.Module, precision: str = "fp32", cache_dir: str | Path | None = None,
                 threads: int | None = None, method: str = "features") -> None:
        import openvino

        super().__init__(model, precision, cache_dir, threads, method)
        self._ov = openvino
        self._core = openvino.Core()

    def _version(self) -> str:
        return f"{self._ov.__version__}|torch {torch.__version__}"

    def _convert(self, example: torch.Tensor, folder: Path) -> None:
        ov = self._ov
        shape = ov.PartialShape([-1, *example.shape[1:]])  # any batch size, fixed image size
        converted = ov.convert_model(self.trunk, example_input=example, input=[shape])
        ov.save_model(converted, str(folder / "model.xml"), compress_to_fp16=False)

    def _load(self, folder: Path, shape: tuple[int, ...]):
        config = {
            "PERFORMANCE_HINT": "LATENCY",  # one stream: the whole batch in one request
            "INFERENCE_NUM_THREADS": int(self.threads),
            "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
        }
        compiled = self._core.compile_model(self._core.read_model(str(folder / "model.xml")), "CPU", config)
        return compiled.create_infer_request()

    def _run(self, request, x: torch.Tensor) -> torch.Tensor:
        request.infer({0: x.numpy()}, share_inputs=True)
        return torch.from_numpy(request.get_output_tensor(0).data.copy()).float()  # (N, D)


class OnnxRuntimeEngine(_CompiledEngine):
    """The trunk exported to ONNX and run by ONNX Runtime's CPU provider at `threads` threads (fp32)."""

    name = "onnxruntime"
    files = ("model.onnx",)

    def __init__(self, model: nn.Module, precision: str = "fp32", cache_dir: str | Path | None = None,
                 threads: int | None = None, method: str = "features") -> None:
        import onnxruntime

        super().__init__(model, precision, cache_dir, threads, method)
        self._ort = onnxruntime

    def _version(self) -> str:
        return f"{self._ort.__version__}|torch {torch.__version__}"

    def _convert(self, example: torch.Tensor, folder: Path) -> None:
        torch.onnx.export(
            self.trunk, (example,), str(folder / "model.onnx"), input_names=["images"], output_names=["features"],
            dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}}, opset_version=17, dynamo=False,
        )

    def _load(self, folder: Path, shape: tuple[int, ...]):
        from heron._onnx import ort_session

        return ort_session(self._ort, str(folder / "model.onnx"), self.threads)

    def _run(self, session, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"images": x.numpy()})[0]).float()  # (N, D)


_CLASSES = {"torch": TorchEngine, "openvino": OpenVINOEngine, "onnxruntime": OnnxRuntimeEngine}


def create_engine(model: nn.Module, engine: str = "auto", precision: str = "auto",
                  device: str | torch.device = "cpu", cache_dir: str | Path | None = None,
                  threads: int | None = None, method: str = "features") -> Engine:
    """An engine running `model.features` (or, with `method="forward"`, `model`) on `device`.

    See `resolve_engine` for the choice of engine and precision.

    `cache_dir` keeps compiled engines between runs (None: convert in a
    temporary folder every time); `threads` is a compiled engine's thread
    count (None: torch's current one; the torch engine always uses that).
    The model itself is not changed.
    """
    name, precision = resolve_engine(engine, precision, device)
    if name == "torch":
        return TorchEngine(model, precision, device, method)
    return _CLASSES[name](model, precision, cache_dir, threads, method)
