"""Training benchmark: tokens/s and MFU of llmos-train, and DDP scaling, side by side.

    uv run python bench/train.py

MFU = model FLOP/s ÷ fp32 matmul FLOP/s measured in the same run, where model FLOPs per
token = 6·N (N = parameters in matmuls: blocks and output projection) + 12·layers·hidden·seq_len.
Scaling = tokens/s of 2 ranks × 1 thread (torchrun, gloo) ÷ 1 process × 2 threads.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from common import BIN, matmul_flops, prepare, progress_events

HIDDEN, LAYERS, HEADS, SEQ, BATCH, VOCAB = 512, 4, 8, 256, 16, 2048
STEPS, LOG_EVERY = 16, 4


def model_args(root: Path, data: Path) -> list[str]:
    return [
        "--data",
        str(data),
        "--checkpoint-dir",
        str(root / "ckpt"),
        "--version-dir",
        str(root / "v"),
        "--steps",
        str(STEPS),
        "--batch-size",
        str(BATCH),
        "--sequence-length",
        str(SEQ),
        "--hidden-size",
        str(HIDDEN),
        "--num-layers",
        str(LAYERS),
        "--num-heads",
        str(HEADS),
        "--warmup-steps",
        "2",
        "--log-every-steps",
        str(LOG_EVERY),
        "--checkpoint-every-steps",
        "1000",
    ]


def steady_tokens_per_second(cmd: list[str], env: dict[str, str]) -> float:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    windows = [e["tokens_per_second"] for e in progress_events(out)][1:]  # the first window warms up
    return sum(windows) / len(windows)


def matmul_parameters() -> int:
    inter = 64 * -(-HIDDEN * 8 // 3 // 64)
    per_layer = 4 * HIDDEN * HIDDEN + 3 * HIDDEN * inter + 2 * HIDDEN
    return LAYERS * per_layer + VOCAB * HIDDEN  # the (tied) output projection is a matmul too


def main() -> None:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = prepare(root / "data", VOCAB)
        peak = matmul_flops(cores)
        env = {**os.environ, "OMP_NUM_THREADS": str(cores)}
        single = steady_tokens_per_second(
            [str(BIN / "llmos-train"), *model_args(root / "single", data), "--threads", str(cores)], env
        )
        env_ddp = {**os.environ, "OMP_NUM_THREADS": "1"}
        ddp = steady_tokens_per_second(
            [
                str(BIN / "torchrun"),
                "--standalone",
                f"--nproc-per-node={cores}",
                "-m",
                "llmos_runtime.train",
                "--procs-per-node",
                str(cores),
                *model_args(root / "ddp", data),
                "--threads",
                "1",
            ],
            env_ddp,
        )
    flops_per_token = 6 * matmul_parameters() + 12 * LAYERS * HIDDEN * SEQ
    mfu = single * flops_per_token / peak
    print(f"model: hidden {HIDDEN}, {LAYERS} layers, seq {SEQ}, batch {BATCH}, vocab {VOCAB}")
    print(f"fp32 matmul peak ({cores} threads): {peak / 1e9:.1f} GFLOP/s")
    print(f"1 process x {cores} threads: {single:.0f} tokens/s, {single * flops_per_token / 1e9:.1f} GFLOP/s")
    print(f"MFU: {mfu:.1%}  (target >= 25%)")
    print(f"{cores} ranks x 1 thread (DDP, gloo): {ddp:.0f} tokens/s")
    print(f"DDP scaling ({cores} ranks x 1 thread / 1 process x {cores} threads): {ddp / single:.2f}  (target >= 0.85)")


if __name__ == "__main__":
    main()
