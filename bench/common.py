"""Helpers shared by the benchmarks: the demo corpus, prepared data, timing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CORPUS = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"


def prepare(out: Path, vocab_size: int) -> Path:
    if not (out / "manifest.json").is_file():
        subprocess.run(
            [str(BIN / "llmos-prepare"), "--data", str(CORPUS), "--out", str(out), "--vocab-size", str(vocab_size)],
            check=True,
            capture_output=True,
        )
    return out


def matmul_flops(threads: int, dtype: torch.dtype = torch.float32, size: int = 2048, seconds: float = 2.0) -> float:
    """Matmul FLOP/s of this machine at `threads` threads in `dtype` (an MFU denominator).

    Measured with F.linear, the kernel autocast runs (on CPUs without native bfloat16 a plain
    bfloat16 `a @ b` takes a far slower path than the one training uses)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    F.linear(a, b)
    repeats, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or repeats < 2:
        F.linear(a, b)
        repeats += 1
    return 2 * size**3 * repeats / elapsed


def memory_bandwidth(threads: int, megabytes: int = 512, repeats: int = 10) -> float:
    """Bytes/s moved by a large tensor copy (read + write), the decode roofline's denominator."""
    torch.set_num_threads(threads)
    src = torch.ones(megabytes * (1 << 20) // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    start = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    return 2 * src.numel() * 4 * repeats / (time.perf_counter() - start)


def progress_events(stdout: str) -> list[dict[str, float]]:
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [e for e in events if e.get("event") == "progress"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]
