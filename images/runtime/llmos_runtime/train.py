"""llmos-train: distributed training with checkpoint/resume, exporting a Hugging Face version.

Single process:
    llmos-train --data DIR --checkpoint-dir DIR --version-dir DIR --steps 200 --hidden-size 256 …
Two processes on one machine (gloo on CPU, nccl on GPU):
    torchrun --standalone --nproc-per-node=2 -m llmos_runtime.train --procs-per-node 2 …
A group of pods (what the operator renders):
    torchrun --nnodes=N --nproc-per-node=P --node-rank=$JOB_COMPLETION_INDEX \
        --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 -m llmos_runtime.train --nodes N …

Distributed setup comes only from RANK / LOCAL_RANK / WORLD_SIZE. `--batch-size` is global
(sequences per optimizer step) and the sequences of step s are drawn from a generator seeded
with (seed, s), so a resumed run sees exactly the data an uninterrupted one would.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from llmos_contract.config import (
    CHECKPOINT_PREFIX,
    EXPORT_PREFIX,
    Architecture,
    Checkpointing,
    Export,
    Hyperparameters,
    add_arguments,
    from_arguments,
)
from llmos_contract.events import CheckpointEvent, ExportedEvent, ProgressEvent, ResumedEvent
from torch.distributed.elastic.multiprocessing.errors import record
from torch.nn.parallel import DistributedDataParallel

from llmos_runtime import checkpoint
from llmos_runtime.errors import UsageError, exits_cleanly_on_usage_error
from llmos_runtime.hardware import compute_precision, detect, threads_per_process
from llmos_runtime.model import LlamaModel, ModelConfig
from llmos_runtime.prepare import MANIFEST
from llmos_runtime.progress import humanize_seconds, report
from llmos_runtime.version import load_model, read_config, save_version, write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="llmos-train", description=__doc__.split("\n")[0])
    io = p.add_argument_group("inputs and outputs")
    io.add_argument("--data", type=Path, required=True, help="directory written by llmos-prepare")
    io.add_argument("--checkpoint-dir", type=Path, required=True)
    io.add_argument("--version-dir", type=Path, required=True, help="where the version goes")
    io.add_argument("--job-name", default="local", help="recorded in the version's lineage")
    io.add_argument("--init-from", type=Path, help="fine-tune this HF-format Llama checkpoint")
    # Declared once in llmos_contract.config (the TrainingJob and LanguageModel CRDs embed
    # the same types): flags, bounds, defaults and help come from there.
    add_arguments(p, Hyperparameters)
    add_arguments(p, Checkpointing, CHECKPOINT_PREFIX)
    add_arguments(p, Export, EXPORT_PREFIX)
    add_arguments(p, Architecture)  # ignored with --init-from
    rt = p.add_argument_group("runtime")
    rt.add_argument("--nodes", type=int, default=1, help="must match the launcher's nnodes")
    rt.add_argument("--procs-per-node", type=int, default=1, help="must match nproc-per-node")
    rt.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    rt.add_argument("--threads", type=int, help="torch threads per process")
    rt.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = p.parse_args(argv)
    try:
        hyperparameters = from_arguments(Hyperparameters, args)
        checkpointing = from_arguments(Checkpointing, args, CHECKPOINT_PREFIX)
        args.export = from_arguments(Export, args, EXPORT_PREFIX)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    vars(args).update(hyperparameters.model_dump())
    args.checkpoint_every_steps, args.checkpoint_keep = checkpointing.every_steps, checkpointing.keep
    return args


@dataclass
class Dist:
    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_env(args: argparse.Namespace) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    expected = args.nodes * args.procs_per_node
    if world != expected:
        raise UsageError(
            f"--nodes {args.nodes} × --procs-per-node {args.procs_per_node} = {expected} "
            f"processes, but the launcher started WORLD_SIZE={world}"
        )
    return Dist(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world)


def validate(args: argparse.Namespace, world: int, manifest: dict[str, Any]) -> int:
    """Check the numbers against the world and the data (the flags' own bounds were checked
    by their types); returns the micro-batch size per rank."""
    per_step = world * args.gradient_accumulation
    if args.batch_size % per_step:
        raise UsageError(
            f"--batch-size {args.batch_size} must be a multiple of ranks ({world}) × "
            f"--gradient-accumulation ({args.gradient_accumulation}) = {per_step}"
        )
    if args.sequence_length + 1 > manifest["train_tokens"]:
        raise UsageError(
            f"--data {args.data}: {manifest['train_tokens']} training tokens is smaller than "
            f"one batch row of --sequence-length {args.sequence_length} + 1"
        )
    return int(args.batch_size // per_step)


def build_model(args: argparse.Namespace, vocab_size: int) -> LlamaModel:
    if args.init_from:
        config = read_config(args.init_from)
        if config.vocab_size < vocab_size:
            raise UsageError(
                f"--init-from {args.init_from}: vocabulary of {config.vocab_size} is smaller "
                f"than the data's {vocab_size}; prepare the data with its tokenizer.json"
            )
        model = load_model(args.init_from)
    else:
        try:
            arch = from_arguments(Architecture, args)
        except ValueError as exc:
            raise UsageError(f"{exc} (or give --init-from)") from exc
        config = ModelConfig(vocab_size=vocab_size, **arch.model_dump())
        model = LlamaModel(config)
        model.init_weights(args.seed)
    if args.sequence_length > model.config.context_length:
        raise UsageError(
            f"--sequence-length {args.sequence_length} exceeds the model's context length "
            f"{model.config.context_length} (--context-length)"
        )
    return model


def batch_offsets(seed: int, step: int, batch_size: int, high: int) -> torch.Tensor:
    """Start positions of the global batch of `step`: a pure function of (seed, step)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, high, (batch_size,), generator=gen)


def micro_batch(
    tokens: np.ndarray, offsets: torch.Tensor, seq_len: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    rows = np.stack([tokens[o : o + seq_len + 1] for o in offsets.tolist()]).astype(np.int64)
    batch = torch.from_numpy(rows).to(device)
    return batch[:, :-1], batch[:, 1:]  # inputs (b, T), targets (b, T)


def learning_rate(args: argparse.Namespace, step: int) -> float:
    if step < args.warmup_steps:
        return float(args.learning_rate * (step + 1) / args.warmup_steps)
    progress = (step - args.warmup_steps) / max(1, args.steps - args.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return float(args.min_learning_rate + cosine * (args.learning_rate - args.min_learning_rate))


def make_optimizer(model: LlamaModel, args: argparse.Namespace) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=args.learning_rate, betas=(0.9, 0.95))


def pick_device(args: argparse.Namespace, env: Dist) -> torch.device:
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(env.local_rank)
        return torch.device("cuda", env.local_rank)
    return torch.device("cpu")


def train(args: argparse.Namespace) -> None:
    env = distributed_env(args)
    manifest_path = args.data / MANIFEST
    if not manifest_path.is_file():
        raise UsageError(f"--data {args.data}: no {MANIFEST}; run llmos-prepare first")
    manifest = json.loads(manifest_path.read_text())
    micro = validate(args, env.world_size, manifest)
    device = pick_device(args, env)
    hardware = detect(device)
    if device.type == "cpu":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(args.threads or threads_per_process(hardware.cpus, local))
    args.compute_precision = compute_precision(args.precision, hardware)
    if env.world_size > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        run(args, env, manifest, micro, device)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run(args: argparse.Namespace, env: Dist, manifest: dict[str, Any], micro: int, device: torch.device) -> None:
    torch.manual_seed(args.seed)
    tokens = np.memmap(args.data / "train.bin", dtype=manifest["dtype"], mode="r")
    model = build_model(args, manifest["vocab_size"]).to(device)
    model.dropout = args.dropout
    optimizer = make_optimizer(model, args)
    step, tokens_seen = 0, 0
    resumed = checkpoint.load_newest(args.checkpoint_dir)
    if resumed is not None:
        path, state = resumed
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, tokens_seen = state["step"], state["tokens_seen"]
        torch.set_rng_state(state["rng"])
        if env.is_main:
            report(ResumedEvent(step=step, checkpoint=str(path)))
    ddp: torch.nn.Module = model
    if env.world_size > 1:
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.index else None)
    trainable = torch.compile(ddp) if args.compile else ddp
    use_bf16 = args.compute_precision == "bfloat16"
    high = len(tokens) - args.sequence_length - 1
    tokens_per_step = args.batch_size * args.sequence_length
    started, started_step = time.perf_counter(), step
    window_start, window_step = started, step
    while step < args.steps:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(args, step)
        offsets = batch_offsets(args.seed, step, args.batch_size, high)
        mine = offsets.view(env.world_size, args.gradient_accumulation, micro)[env.rank]
        loss_sum = torch.zeros((), device=device)
        for m in range(args.gradient_accumulation):
            x, y = micro_batch(tokens, mine[m], args.sequence_length, device)
            last = m == args.gradient_accumulation - 1
            sync = ddp.no_sync() if (env.world_size > 1 and not last) else nullcontext()  # type: ignore[operator]
            with sync, torch.autocast(device.type, torch.bfloat16, enabled=use_bf16):
                logits = trainable(x)
                loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))
                (loss / args.gradient_accumulation).backward()
            loss_sum += loss.detach()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += tokens_per_step
        if step % args.log_every_steps == 0 or step == args.steps:
            mean_loss = loss_sum / args.gradient_accumulation
            if env.world_size > 1:
                dist.all_reduce(mean_loss, op=dist.ReduceOp.AVG)
            now = time.perf_counter()
            rate = tokens_per_step * (step - window_step) / max(now - window_start, 1e-9)
            per_step = (now - started) / max(step - started_step, 1)
            window_start, window_step = now, step
            if env.is_main:
                report(
                    ProgressEvent(
                        step=step,
                        total_steps=args.steps,
                        loss=round(mean_loss.item(), 5),
                        lr=learning_rate(args, step - 1),
                        tokens_per_second=round(rate, 1),
                        tokens_seen=tokens_seen,
                        eta_seconds=round(per_step * (args.steps - step), 1),
                        eta=humanize_seconds(per_step * (args.steps - step)),
                        precision=args.compute_precision,
                    )
                )
        if env.is_main and (step % args.checkpoint_every_steps == 0 or step == args.steps):
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "tokens_seen": tokens_seen,
                "rng": torch.get_rng_state(),
            }
            saved = checkpoint.save(args.checkpoint_dir, step, state, args.checkpoint_keep)
            report(CheckpointEvent(step=step, path=str(saved)))
    if env.is_main:
        export(args, model, manifest, step, tokens_seen)


def export(args: argparse.Namespace, model: LlamaModel, manifest: dict[str, Any], step: int, seen: int) -> None:
    lineage = {
        "job": args.job_name,
        "step": step,
        "tokens_seen": seen,
        "data_sha256": manifest["data_sha256"],
        "tokenizer_sha256": manifest["tokenizer_sha256"],
        "init_from": str(args.init_from) if args.init_from else None,
        "git_revision": os.environ.get("LLMOS_GIT_REVISION"),
        "precision": args.compute_precision,
        "hyperparameters": {
            k: getattr(args, k)
            for k in (
                "steps",
                "batch_size",
                "gradient_accumulation",
                "sequence_length",
                "learning_rate",
                "min_learning_rate",
                "warmup_steps",
                "weight_decay",
                "grad_clip",
                "dropout",
                "seed",
                "precision",
            )
        },
        "parameters": model.num_parameters(),
    }
    args.version_dir.parent.mkdir(parents=True, exist_ok=True)
    save_version(args.version_dir, model.cpu().float(), args.data / "tokenizer.json", lineage, args.export)
    write_json(args.checkpoint_dir / "exported.json", {"version_dir": str(args.version_dir)})
    report(ExportedEvent(step=step, version_dir=str(args.version_dir)))


@record
@exits_cleanly_on_usage_error
def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
