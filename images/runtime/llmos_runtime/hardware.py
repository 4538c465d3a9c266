"""What the machine computes well: one decision of precision and threads for training,
evaluation and serving.

`detect` reads the facts (device, native bfloat16, the CPUs this process may use); the
decisions (`compute_precision`, `serving_dtype`, `int8_compute`, `int8_weight_bits`,
`threads_per_process`) are pure functions of them, so they are tested without the hardware.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from llmos_contract.config import Precision

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class Hardware:
    device: Literal["cpu", "cuda"]
    native_bfloat16: bool
    """bfloat16 matmuls run natively: a GPU with bfloat16, a CPU with AMX or AVX512-BF16 (on
    other CPUs they are emulated, several times slower than float32)."""
    cpus: int
    """CPUs this process may use: its affinity, bounded by its cgroup's CPU quota."""
    native_int8: bool = False
    """int8 products accumulate straight into int32: a GPU, a CPU with VNNI or AMX (others
    add pairs in int16 first, which saturates with 8-bit weights)."""


def compute_precision(requested: Precision, hardware: Hardware) -> Literal["float32", "bfloat16"]:
    """The precision training and evaluation autocast to; `auto` takes bfloat16 only where it is native."""
    if requested != "auto":
        return requested
    return "bfloat16" if hardware.native_bfloat16 else "float32"


def serving_dtype(requested: str, hardware: Hardware) -> torch.dtype:
    """The dtype of served weights and KV cache: `auto` is bfloat16 where native, float16 on
    GPUs without bfloat16, float32 on other CPUs."""
    if requested != "auto":
        return getattr(torch, requested)
    if hardware.native_bfloat16:
        return torch.bfloat16
    return torch.float16 if hardware.device == "cuda" else torch.float32


Int8Compute = Literal["w8a8", "w8a16"]
"""How int8 weights are multiplied: with per-token int8 activations and integer
accumulation (w8a8), or with bfloat16 activations, weight-only (w8a16)."""


def int8_compute(requested: str, hardware: Hardware) -> Int8Compute:
    """`auto`: w8a8 where int8 products are native (GPUs, CPUs with VNNI or AMX), else w8a16
    (on AVX2, w8a8 measured no faster than float32; weight-only reads a quarter of the bytes)."""
    if requested in ("w8a8", "w8a16"):
        return requested  # type: ignore[return-value]
    return "w8a8" if hardware.native_int8 else "w8a16"


def int8_weight_bits(compute: Int8Compute, hardware: Hardware) -> int:
    """Bits of served int8 weights: 7 for w8a8 where products pass through int16 (exact on
    AVX2), else 8."""
    return 7 if compute == "w8a8" and not hardware.native_int8 else 8


def threads_per_process(cpus: int, local_processes: int) -> int:
    """Torch threads for each of `local_processes` processes sharing `cpus` (at least one)."""
    return max(1, cpus // max(1, local_processes))


def cgroup_cpus(cpu_max: str) -> float | None:
    """CPUs allowed by a cgroup v2 `cpu.max` line ("200000 100000" → 2.0; "max …" → None)."""
    quota, _, period = cpu_max.strip().partition(" ")
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def available_cpus() -> int:
    """CPUs this process may use: a pod limited to 2 CPUs on a 64-core node gets 2, not 64."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota = cgroup_cpus(CGROUP_CPU_MAX.read_text())
    except (OSError, ValueError):
        quota = None
    if quota is not None:
        cpus = min(cpus, max(1, int(quota)))
    return max(1, cpus)


def detect(device: torch.device | str = "cpu") -> Hardware:
    device = torch.device(device)
    if device.type == "cuda":
        return Hardware("cuda", torch.cuda.is_bf16_supported(), available_cpus(), native_int8=True)
    amx = torch.cpu._is_amx_tile_supported()
    native = torch.cpu._is_avx512_bf16_supported() or amx
    return Hardware("cpu", native, available_cpus(), native_int8=amx or torch.cpu._is_vnni_supported())
