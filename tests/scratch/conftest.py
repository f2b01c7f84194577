"""Shared checks for the numpy implementations: relative error and finite differences."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """numpy's BLAS on one thread, like torch in the root conftest (workers share 2 cores)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _rel_error(a, b) -> float:
    """max |a - b| / max(|a|, |b|): 0 for identical arrays, ~1e-16 for float64 round-off."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), 1e-300)
    return float(np.abs(a - b).max(initial=0.0) / scale)


def _numeric_grad(f, array: np.ndarray, index: tuple, h: float = 1e-6) -> float:
    """Central difference (f(x + h) - f(x - h)) / 2h of scalar f() in one entry of `array` (in place)."""
    old = array[index]
    array[index] = old + h
    up = f()
    array[index] = old - h
    down = f()
    array[index] = old
    return (up - down) / (2 * h)


def _check_numeric(f, array: np.ndarray, analytic: np.ndarray, entries: int = 4, seed: int = 0, tol: float = 1e-6):
    """Compare `analytic` d f / d array with central differences on a few random entries."""
    rng = np.random.default_rng(seed)
    for flat in rng.choice(array.size, size=min(entries, array.size), replace=False):
        index = np.unravel_index(flat, array.shape)
        numeric = _numeric_grad(f, array, index)
        assert abs(numeric - analytic[index]) <= tol * max(1.0, abs(numeric)), (index, numeric, analytic[index])


@pytest.fixture
def rel_error():
    return _rel_error


@pytest.fixture
def check_numeric():
    return _check_numeric
