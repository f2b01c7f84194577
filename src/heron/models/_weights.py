"""Weights: specs, files, downloads and key maps.

A `WeightSpec` says where a model's pretrained weights live and how its input
must be prepared (size, mean/std, interpolation, categories), so preprocessing
travels with the weights. Files are safetensors (ours) or `.pth` state dicts
read with `torch.load(weights_only=True)`: never a pickle that can run code.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from heron._atomic import atomic_save
from heron.errors import ModelError

__all__ = [
    "WeightSpec",
    "adapt_first_conv",
    "copy_keys",
    "cache_dir",
    "download",
    "load_state_dict_file",
    "load_torchvision",
    "load_weights",
    "resolve_weights_file",
    "save_weights",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightSpec:
    """Where pretrained weights come from and how inputs must look for them.

    `file` is a local path or a callable returning one (weights a package
    ships); `url` + `sha256` describe a checksummed download the user asks for.
    `convert` turns the file's state dict into heron's keys when its layout is
    not torchvision's.
    """

    name: str
    file: str | Callable[[], str] | None = None
    url: str | None = None
    sha256: str | None = None
    input_size: tuple[int, int] = (224, 224)
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    categories: tuple[str, ...] | None = None
    convert: Callable[[dict], dict] | None = field(default=None, compare=False)

    def preprocessing(self) -> dict:
        """The plain-data part of the spec, for config files and reports."""
        return {
            "weights": self.name,
            "input_size": list(self.input_size),
            "crop_pct": self.crop_pct,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }


def cache_dir() -> Path:
    """Where downloaded weights are kept: $XDG_CACHE_HOME/heron or ~/.cache/heron."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "heron"


def resolve_weights_file(spec: WeightSpec) -> Path:
    """The local file for `spec`: shipped file, cached download, or an error saying how to get it."""
    if spec.file is not None:
        path = Path(spec.file() if callable(spec.file) else spec.file)
        if not path.is_file():
            raise ModelError(f"{path}: weights file for {spec.name} is missing; reinstall the package that ships it")
        return path
    if spec.url is None:
        raise ModelError(f"weights {spec.name} have neither a file nor a URL")
    cached = cache_dir() / "weights" / Path(spec.url).name
    if cached.is_file():
        return cached
    raise ModelError(
        f"{cached}: weights {spec.name} are not downloaded; run `heron download {spec.name}` "
        "or pass the weights file with --weights PATH"
    )


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, sha256: str | None, dest: Path | None = None, progress: bool = True) -> Path:
    """Fetch `url` to the cache (or `dest`), resumable, atomic, and checksummed.

    Bytes go to `<dest>.part`; an interrupted download continues from where it
    stopped with an HTTP Range request. Only a file whose sha256 matches is
    renamed into place, so a partial or tampered file is never used.
    """
    dest = Path(dest) if dest else cache_dir() / "weights" / Path(url).name
    if dest.is_file() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = start and getattr(response, "status", 200) == 206
            mode = "ab" if resumed else "wb"
            total = int(response.headers.get("Content-Length") or 0) + (start if resumed else 0)
            from tqdm.auto import tqdm

            with open(part, mode) as fh, tqdm(
                total=total or None, initial=start if resumed else 0, unit="B", unit_scale=True,
                desc=dest.name, disable=not progress,
            ) as bar:
                while block := response.read(1 << 16):
                    fh.write(block)
                    bar.update(len(block))
    except OSError as err:
        raise ModelError(f"{url}: download failed ({err}); run the command again to resume") from None
    if sha256 is not None:
        got = sha256_of(part)
        if got != sha256:
            part.unlink()
            raise ModelError(f"{url}: checksum mismatch (expected {sha256[:12]}..., got {got[:12]}...); file removed")
    os.replace(part, dest)
    return dest


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from `.safetensors` or a `.pth`/`.pt` (tensors only, no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found; check the path")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # damaged files raise many types
        raise ModelError(f"{path}: cannot read weights ({type(err).__name__}: {err}); is the file complete?") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path}: not a state dict (got {type(state).__name__})")
    return state


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write `model.state_dict()` as safetensors, atomically (temp file + rename).

    A tensor shared under two names (tied embedding and output weights) is
    stored under each, as a copy: safetensors refuses tensors sharing memory.
    """
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    return atomic_save(path, lambda tmp: save_file(state, tmp, metadata=metadata))


def load_weights(model: nn.Module, path: str | Path, strict: bool = True) -> nn.Module:
    """Load a heron safetensors (or `.pth`) file into `model`."""
    state = load_state_dict_file(path)
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ModelError(f"{path}: weights do not fit {type(model).__name__} ({first})") from None
    return model


def load_torchvision(model: nn.Module, state_dict: dict[str, torch.Tensor] | str | Path) -> nn.Module:
    """Load a torchvision-format state dict into our model by its explicit key map.

    Every one of our keys must have a torchvision key and every torchvision key
    must be used: the counts are asserted, so a silently skipped layer is
    impossible. Accepts a state dict or a path to a `.pth` file.
    """
    if not isinstance(state_dict, dict):
        state_dict = load_state_dict_file(state_dict)
    key_map = model.torchvision_key_map()
    ours = model.state_dict()
    missing = [k for k in ours if k not in key_map]
    if missing:
        raise ModelError(f"key map for {type(model).__name__} misses {len(missing)} keys, e.g. {missing[:3]}")
    theirs = set(state_dict)
    wanted = set(key_map.values())
    if wanted != theirs:
        absent = sorted(wanted - theirs)[:3]
        extra = sorted(theirs - wanted)[:3]
        raise ModelError(
            f"torchvision state dict does not match {type(model).__name__}: "
            f"{len(wanted - theirs)} expected keys absent {absent}, {len(theirs - wanted)} unexpected {extra}"
        )
    assert len(key_map) == len(ours) == len(state_dict), "key counts must agree one to one"
    new_state = {}
    for ours_key, tv_key in key_map.items():
        tensor = state_dict[tv_key]
        if tensor.shape != ours[ours_key].shape:
            raise ModelError(f"{tv_key}: shape {tuple(tensor.shape)} does not fit {ours_key} {tuple(ours[ours_key].shape)}")
        new_state[ours_key] = tensor
    model.load_state_dict(new_state)
    return model


def copy_keys(module: nn.Module, ours: str, theirs: str, key_map: dict[str, str]) -> None:
    """Add `ours.<name> -> theirs.<name>` for every state-dict entry of `module` (key-map building)."""
    for name in module.state_dict():
        key_map[f"{ours}.{name}"] = f"{theirs}.{name}"


def adapt_first_conv(model: nn.Module, in_chans: int) -> None:
    """Make the first conv take `in_chans` channels, keeping what its RGB filters learned.

    One channel sums the RGB filters (a grey image is R = G = B); more channels
    repeat them cyclically and rescale by 3 / in_chans so activations keep their size.
    """
    conv = model.get_submodule(model.first_conv)
    weight = conv.weight.detach()  # (out, 3, k, k)
    if in_chans == 1:
        new_weight = weight.sum(dim=1, keepdim=True)
    else:
        reps = -(-in_chans // weight.shape[1])
        new_weight = weight.repeat(1, reps, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)
    conv.in_channels = in_chans
    conv.weight = nn.Parameter(new_weight.contiguous())
