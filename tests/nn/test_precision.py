"""Precision: native bf16 detection, what "auto" resolves to, fp16 refused on the CPU, autocast."""

import pytest
import torch

from heron.errors import HeronError
from heron.nn import precision
from heron.nn.precision import PrecisionError, autocast, cpu_supports_bf16, precision_dtype, resolve_precision


@pytest.fixture
def no_torch_probe(monkeypatch):
    """Detection from /proc/cpuinfo flags alone."""
    monkeypatch.setattr(precision, "_torch_reports_bf16", lambda: False)


@pytest.mark.parametrize("flags, native", [
    ({"avx2", "fma"}, False),                      # Zen 2, Skylake client: emulated bf16
    ({"avx2", "avx512f", "avx512_bf16"}, True),   # Cooper Lake, Zen 4
    ({"avx512f", "amx_tile", "amx_bf16"}, True),  # Sapphire Rapids
    (set(), False),                                # no /proc/cpuinfo
])
def test_bf16_detection_reads_the_cpu_flags(monkeypatch, no_torch_probe, flags, native):
    monkeypatch.setattr(precision, "_cpuinfo_flags", lambda: frozenset(flags))
    assert cpu_supports_bf16() is native


def test_torch_probe_alone_also_detects_bf16(monkeypatch):
    monkeypatch.setattr(precision, "_cpuinfo_flags", lambda: frozenset())
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_supports_bf16()


def test_auto_is_fp32_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"  # asked for explicitly: runs, emulated


def test_auto_is_bf16_on_a_cpu_with_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("fp32", "cpu") == "fp32"


@pytest.mark.parametrize("bf16_gpu, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda_prefers_bf16_where_supported(monkeypatch, bf16_gpu, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_gpu)
    assert resolve_precision("auto", "cuda") == expected
    assert resolve_precision("fp16", "cuda:0") == "fp16"


def test_auto_elsewhere_is_fp32():
    assert resolve_precision("auto", "meta") == "fp32"


def test_fp16_on_the_cpu_is_refused_with_what_to_use():
    with pytest.raises(PrecisionError, match="fp16 needs a GPU.*bf16 or fp32") as info:
        resolve_precision("fp16", "cpu")
    assert isinstance(info.value, HeronError) and isinstance(info.value, ValueError)


def test_unknown_precision_names_the_choices():
    with pytest.raises(PrecisionError, match="'fp8' is not one of auto, fp32, bf16, fp16"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(PrecisionError, match="not resolved"):
        precision_dtype("auto")


def test_autocast_fp32_changes_nothing_and_bf16_computes_in_bf16():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu") and (a @ b).dtype == torch.float32
    with autocast("bf16", "cpu"):
        assert (a @ b).dtype == torch.bfloat16
    assert precision_dtype("fp16") == torch.float16
