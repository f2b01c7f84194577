"""Images for style transfer: reading, sizing, luminance and saving.

Everything here works on float pixels in [0, 1], `(1, 3, H, W)`. Colour
preservation (Gatys et al. 2016, "luminance-only transfer") moves to YIQ:
the network sees only luminance (Y, repeated on three channels), the style's
luminance is shifted and scaled to the content's mean and spread, and the
result's Y is recombined with the content's chroma (I, Q).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from heron._atomic import atomic_save
from heron.errors import ImageError

__all__ = ["as_image", "fit_size", "luminance", "match_luminance", "resize", "save_image", "with_chroma_of"]

_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def as_image(image: str | Path | torch.Tensor) -> torch.Tensor:
    """A path, a uint8 `(3, H, W)` tensor or a float one in [0, 1] -> float `(1, 3, H, W)` in [0, 1]."""
    if isinstance(image, (str, Path)):
        from heron.data.images import load_image

        image = load_image(image)
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[1] != 3:
        raise ImageError(f"expected an RGB image (3, H, W), got shape {tuple(image.shape)}; pass an RGB picture")
    return image.float().div(255.0) if image.dtype == torch.uint8 else image.float().clamp(0.0, 1.0)


def fit_size(hw: tuple[int, int], longest: int) -> tuple[int, int]:
    """(height, width) with the longer side `longest`, the aspect ratio kept (each side at least 16 px)."""
    h, w = hw
    scale = longest / max(h, w)
    return max(16, round(h * scale)), max(16, round(w * scale))


def resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of `(N, 3, H, W)` to `hw`, antialiased when shrinking; unchanged when already that size."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True).clamp(0.0, 1.0)


def _to_yiq(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("kc,nchw->nkhw", _RGB_TO_YIQ.to(x), x)  # (N, 3, H, W): Y, I, Q


def _from_yiq(yiq: torch.Tensor) -> torch.Tensor:
    return torch.einsum("kc,nchw->nkhw", torch.linalg.inv(_RGB_TO_YIQ).to(yiq), yiq)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """Y of `(N, 3, H, W)` repeated on three channels: a grey image the RGB network can read."""
    return _to_yiq(x)[:, :1].expand(-1, 3, -1, -1).contiguous()


def match_luminance(style_y: torch.Tensor, content_y: torch.Tensor) -> torch.Tensor:
    """The style's grey image shifted and scaled to the content's mean and standard deviation."""
    scaled = (style_y - style_y.mean()) * (content_y.std() / style_y.std().clamp_min(1e-6)) + content_y.mean()
    return scaled.clamp(0.0, 1.0)


def with_chroma_of(result: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The result's luminance with the content's colour (I, Q), back in RGB."""
    chroma = _to_yiq(resize(content, tuple(result.shape[-2:])))[:, 1:]
    return _from_yiq(torch.cat([_to_yiq(result)[:, :1], chroma], dim=1)).clamp(0.0, 1.0)


def save_image(x: torch.Tensor, path: str | Path) -> Path:
    """Write `(1, 3, H, W)` or `(3, H, W)` in [0, 1] as an 8-bit PNG (or JPEG by suffix), atomically."""
    from PIL import Image

    path = Path(path)
    x = x[0] if x.ndim == 4 else x
    array = x.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()  # (H, W, 3)
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    return atomic_save(path, lambda tmp: Image.fromarray(array).save(tmp, format=fmt, quality=92))
