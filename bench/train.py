"""Training benchmark, side by side in one run: float32 vs bfloat16, eager vs compiled, DDP.

    uv run python bench/train.py

- bfloat16 ÷ float32: tokens/s of the same model, 1 process × all cores, `--precision` each.
- MFU of each precision against its own matmul peak measured here (F.linear, the kernel
  autocast runs). Model FLOPs per token = 6·N (N = parameters in matmuls: blocks and output
  projection) + 12·layers·hidden·seq_len.
- `--precision auto`'s choice on this machine, and DDP scaling in that precision: tokens/s of
  all-cores ranks × 1 thread (torchrun, gloo) ÷ 1 process × all-cores threads.
- torch.compile ÷ eager in the auto precision: steady tokens/s, and the compile time it costs.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from common import BIN, matmul_flops, prepare, progress_events
from llmos_runtime.hardware import compute_precision, detect

HIDDEN, LAYERS, HEADS, SEQ, BATCH, VOCAB = 512, 4, 8, 256, 16, 2048
STEPS, LOG_EVERY = 16, 4
EMULATED_STEPS = 4  # bfloat16 where the CPU only emulates it is several times slower: fewer steps


def model_args(root: Path, data: Path, steps: int, log_every: int) -> list[str]:
    return [
        *("--data", str(data), "--checkpoint-dir", str(root / "ckpt"), "--version-dir", str(root / "v")),
        *("--steps", str(steps), "--batch-size", str(BATCH), "--sequence-length", str(SEQ)),
        *("--hidden-size", str(HIDDEN), "--num-layers", str(LAYERS), "--num-heads", str(HEADS)),
        *("--warmup-steps", "1", "--log-every-steps", str(log_every), "--checkpoint-every-steps", "1000"),
    ]


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Steady tokens/s (the first window warms up) and the wall time of the whole run."""
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    wall = time.perf_counter() - start
    windows = [e["tokens_per_second"] for e in progress_events(out)][1:]
    return sum(windows) / len(windows), wall


def matmul_parameters() -> int:
    inter = 64 * -(-HIDDEN * 8 // 3 // 64)
    per_layer = 4 * HIDDEN * HIDDEN + 3 * HIDDEN * inter + 2 * HIDDEN
    return LAYERS * per_layer + VOCAB * HIDDEN  # the (tied) output projection is a matmul too


def main() -> None:
    hardware = detect("cpu")
    cores = hardware.cpus
    auto = compute_precision("auto", hardware)
    flops_per_token = 6 * matmul_parameters() + 12 * LAYERS * HIDDEN * SEQ
    env = {**os.environ, "OMP_NUM_THREADS": str(cores)}
    peak = {p: matmul_flops(cores, getattr(torch, p)) for p in ("float32", "bfloat16")}
    rate: dict[str, float] = {}
    wall: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = prepare(root / "data", VOCAB)

        def single(name: str, precision: str, *extra: str) -> tuple[float, float]:
            native = precision == "float32" or hardware.native_bfloat16
            steps, log_every = (STEPS, LOG_EVERY) if native else (EMULATED_STEPS, 1)
            cmd = [str(BIN / "llmos-train"), *model_args(root / name, data, steps, log_every)]
            return measure([*cmd, "--threads", str(cores), "--precision", precision, *extra], env)

        for precision in ("float32", "bfloat16"):
            rate[precision], wall[precision] = single(precision, precision)
        compiled, compiled_wall = single("compiled", auto, "--compile")
        ddp_cmd = [
            *(str(BIN / "torchrun"), "--standalone", f"--nproc-per-node={cores}", "-m", "llmos_runtime.train"),
            *("--procs-per-node", str(cores), *model_args(root / "ddp", data, STEPS, LOG_EVERY)),
            *("--threads", "1", "--precision", auto),
        ]
        ddp, _ = measure(ddp_cmd, {**os.environ, "OMP_NUM_THREADS": "1"})

    print(f"model: hidden {HIDDEN}, {LAYERS} layers, seq {SEQ}, batch {BATCH}, vocab {VOCAB}; {cores} CPUs")
    print(f"native bfloat16 (AMX or AVX512-BF16): {hardware.native_bfloat16}; --precision auto → {auto}")
    for p in ("float32", "bfloat16"):
        print(
            f"{p:>8}: matmul peak {peak[p] / 1e9:6.1f} GFLOP/s; training {rate[p]:6.0f} tokens/s, "
            f"{rate[p] * flops_per_token / 1e9:6.1f} GFLOP/s, MFU {rate[p] * flops_per_token / peak[p]:.1%}"
        )
    mfu = {p: rate[p] * flops_per_token / peak[p] for p in rate}
    print(f"bfloat16 / float32 tokens/s: {rate['bfloat16'] / rate['float32']:.2f}  (goal >= 2 where it is native)")
    print(f"MFU of bfloat16 against its peak: {mfu['bfloat16']:.1%}  (goal >= 50%)")
    print(f"MFU of auto ({auto}) against its peak: {mfu[auto]:.1%}")
    print(
        f"torch.compile / eager ({auto}): {compiled / rate[auto]:.2f} steady; "
        f"{STEPS} steps took {compiled_wall:.0f} s compiled vs {wall[auto]:.0f} s eager"
    )
    print(f"{cores} ranks x 1 thread (DDP, gloo, {auto}): {ddp:.0f} tokens/s")
    scaling = ddp / rate[auto]
    print(f"DDP scaling ({cores} ranks x 1 thread / 1 process x {cores} threads): {scaling:.2f}  (goal >= 0.9)")


if __name__ == "__main__":
    main()
