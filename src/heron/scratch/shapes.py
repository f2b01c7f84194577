"""Output sizes of sliding-window layers, in one place.

Every convolution and pooling function in `heron.scratch` asks this module how
big its output is, so the course formula floor((n + 2p - f) / s + 1) is written
exactly once.
"""

from __future__ import annotations

__all__ = ["conv_output_size", "as_tuple"]


def conv_output_size(n: int, f: int, p: int = 0, s: int = 1) -> int:
    """Length of one spatial axis after a window of size `f`, padding `p`, stride `s`.

    Implements floor((n + 2p - f) / s + 1) in integer arithmetic. Raises
    ValueError when the window does not fit even once.
    """
    if n < 1 or f < 1 or p < 0 or s < 1:
        raise ValueError(f"need n >= 1, f >= 1, p >= 0, s >= 1; got n={n}, f={f}, p={p}, s={s}")
    span = n + 2 * p - f
    if span < 0:
        raise ValueError(f"window {f} does not fit in size {n} with padding {p}")
    return span // s + 1


def as_tuple(value: int | tuple[int, ...], ndim: int, name: str = "value") -> tuple[int, ...]:
    """Repeat an int `ndim` times, or check that a tuple has `ndim` entries."""
    if isinstance(value, int):
        return (value,) * ndim
    value = tuple(int(v) for v in value)
    if len(value) != ndim:
        raise ValueError(f"{name} needs {ndim} entries, got {value}")
    return value
