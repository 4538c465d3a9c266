"""The hardware decisions (precision, serving dtype, threads) as pure functions of the facts."""

from __future__ import annotations

import pytest
import torch
from llmos_runtime.hardware import (
    Hardware,
    available_cpus,
    cgroup_cpus,
    compute_precision,
    detect,
    serving_dtype,
    threads_per_process,
)

AMX_CPU = Hardware("cpu", native_bfloat16=True, cpus=2)
AVX2_CPU = Hardware("cpu", native_bfloat16=False, cpus=2)
AMPERE = Hardware("cuda", native_bfloat16=True, cpus=8)
TURING = Hardware("cuda", native_bfloat16=False, cpus=8)


@pytest.mark.parametrize(
    ("hardware", "auto"), [(AMX_CPU, "bfloat16"), (AVX2_CPU, "float32"), (AMPERE, "bfloat16"), (TURING, "float32")]
)
def test_auto_precision_is_bfloat16_only_where_it_is_native(hardware: Hardware, auto: str) -> None:
    assert compute_precision("auto", hardware) == auto
    for asked in ("float32", "bfloat16"):  # an explicit choice is kept, native or not
        assert compute_precision(asked, hardware) == asked


def test_serving_follows_the_same_rule_with_float16_for_older_gpus() -> None:
    assert serving_dtype("auto", AMX_CPU) is torch.bfloat16
    assert serving_dtype("auto", AVX2_CPU) is torch.float32
    assert serving_dtype("auto", AMPERE) is torch.bfloat16
    assert serving_dtype("auto", TURING) is torch.float16
    assert serving_dtype("float32", AMX_CPU) is torch.float32


@pytest.mark.parametrize(("cpus", "procs", "threads"), [(2, 1, 2), (2, 2, 1), (16, 2, 8), (2, 4, 1), (7, 2, 3)])
def test_threads_split_the_cpus_among_local_processes(cpus: int, procs: int, threads: int) -> None:
    assert threads_per_process(cpus, procs) == threads


@pytest.mark.parametrize(
    ("line", "cpus"), [("200000 100000\n", 2.0), ("150000 100000", 1.5), ("max 100000\n", None), ("max", None)]
)
def test_a_cgroup_quota_bounds_the_cpus(line: str, cpus: float | None) -> None:
    assert cgroup_cpus(line) == cpus


def test_detect_reads_this_machine() -> None:
    found = detect("cpu")
    assert found.device == "cpu" and 1 <= found.cpus == available_cpus()
    assert found.native_bfloat16 == (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
