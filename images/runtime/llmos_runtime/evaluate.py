"""llmos-eval: validation loss, perplexity and bits per byte of a version.

    llmos-eval --version DIR --data DIR --metrics-file metrics.json --result-file result.json

Every variant the version carries (llmos.json `variants`: the int8 directory) is measured
too, loaded as the server loads it, so its metrics are those of what will be served; the
int8 computation it used (w8a8 or w8a16) is recorded, and the server's `auto` follows it.

Bits per byte divides the validation loss (nats per token) by ln 2 and by the split's bytes
per token, so it compares models whatever their tokenizer (uniform bytes score 8).
The runtime measures, the operator judges: no gate here. `--metrics-file` gets everything
(metrics and samples); `--result-file` the EvaluationResult of the contract (metrics, step,
tokens seen), small enough for a termination message (/dev/termination-log in a pod), which
is how the operator reads it without mounting the volume. Exit status: 0; 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
import torch.nn.functional as F
from llmos_contract.config import Precision
from llmos_contract.events import EvaluationResult

from llmos_runtime.errors import UsageError, exits_cleanly_on_usage_error
from llmos_runtime.hardware import available_cpus, compute_precision, detect
from llmos_runtime.model import LlamaModel
from llmos_runtime.prepare import MANIFEST
from llmos_runtime.quantize import int8_compute_of
from llmos_runtime.version import LINEAGE_FILE, load_model, load_tokenizer, read_lineage, write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="llmos-eval", description=__doc__.split("\n")[0])
    p.add_argument("--version", type=Path, required=True, help="HF-format version directory")
    p.add_argument("--data", type=Path, required=True, help="directory written by llmos-prepare")
    p.add_argument("--max-batches", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--sequence-length", type=int, default=256)
    p.add_argument(
        "--precision",
        choices=get_args(Precision),
        default="auto",
        help="compute precision, as in training: auto is bfloat16 where native, else float32",
    )
    p.add_argument("--samples", type=int, default=2, help="texts to generate for people")
    p.add_argument("--sample-tokens", type=int, default=64)
    p.add_argument("--metrics-file", type=Path, help="default: VERSION/metrics.json")
    p.add_argument("--result-file", type=Path, help="the EvaluationResult (a pod: /dev/termination-log)")
    return p.parse_args(argv)


@torch.inference_mode()
def validation_loss(model: LlamaModel, tokens: np.ndarray, seq_len: int, batch_size: int, max_batches: int) -> float:
    """Mean next-token loss (nats) over consecutive, non-overlapping windows of the split."""
    windows = (len(tokens) - 1) // seq_len
    if windows < 1:
        raise UsageError(f"--sequence-length {seq_len}: the validation split has {len(tokens)} tokens")
    total, count = 0.0, 0
    for b in range(min(max_batches, math.ceil(windows / batch_size))):
        starts = range(b * batch_size * seq_len, min(windows, (b + 1) * batch_size) * seq_len, seq_len)
        rows = np.stack([tokens[s : s + seq_len + 1] for s in starts]).astype(np.int64)
        batch = torch.from_numpy(rows)
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), batch[:, 1:].reshape(-1), reduction="sum")
        total += loss.item()
        count += batch[:, 1:].numel()
    return total / count


@torch.inference_mode()
def sample(model: LlamaModel, prompt_ids: list[int], tokens: int, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.tensor([prompt_ids])
    for _ in range(tokens):
        logits = model(ids[:, -model.config.context_length :])[0, -1].float()
        probs = torch.softmax(logits / 0.8, dim=-1)
        ids = torch.cat([ids, torch.multinomial(probs, 1, generator=gen)[None]], dim=1)
    return list(ids[0, len(prompt_ids) :].tolist())


def served_variants(version: Path) -> dict[str, Path]:
    """The compressed variants a server can load (name → directory), from the lineage."""
    recorded = read_lineage(version).get("variants", {})
    return {name: version / v["path"] for name, v in recorded.items() if name == "int8"}


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    manifest_path = args.data / MANIFEST
    if not manifest_path.is_file():
        raise UsageError(f"--data {args.data}: no {MANIFEST}; run llmos-prepare first")
    manifest = json.loads(manifest_path.read_text())
    precision = compute_precision(args.precision, detect())
    with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bfloat16"):
        metrics, samples = measure(args, manifest, load_model(args.version).eval())
        variants, computes = {}, {}
        for name, path in served_variants(args.version).items():
            variant = load_model(path).eval()
            variants[name] = measure(args, manifest, variant, samples=0)[0]
            computes[name] = int8_compute_of(variant)
    return {"metrics": metrics, "samples": samples, "precision": precision, "variants": variants, "computes": computes}


def measure(
    args: argparse.Namespace, manifest: dict[str, Any], model: LlamaModel, samples: int | None = None
) -> tuple[dict[str, float], list[str]]:
    """The metrics and the samples of a version, in the precision of the caller's autocast."""
    tokenizer = load_tokenizer(args.version)
    seq_len = min(args.sequence_length, model.config.context_length)
    tokens = np.memmap(args.data / "val.bin", dtype=manifest["dtype"], mode="r")
    loss = validation_loss(model, tokens, seq_len, args.batch_size, args.max_batches)
    bytes_per_token = manifest["val_bytes"] / manifest["val_tokens"]
    metrics = {
        "validationLoss": round(loss, 6),
        "perplexity": round(math.exp(loss), 4),
        "bitsPerByte": round(loss / math.log(2) / bytes_per_token, 6),
    }
    prompt = tokenizer.encode("\n").ids or [0]
    count = args.samples if samples is None else samples
    texts = [tokenizer.decode(sample(model, prompt, args.sample_tokens, seed=i)) for i in range(count)]
    return metrics, texts


@exits_cleanly_on_usage_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(available_cpus())
    result = evaluate(args)
    write_json(args.metrics_file or args.version / "metrics.json", result)
    lineage = read_lineage(args.version)
    lineage["metrics"] = result["metrics"]
    for name, metrics in result["variants"].items():
        # The server's `--int8-compute auto` follows what was measured here.
        lineage["variants"][name].update(metrics=metrics, compute=result["computes"][name])
    write_json(args.version / LINEAGE_FILE, lineage)
    measured = EvaluationResult(
        metrics=result["metrics"],
        variants=result["variants"],
        step=lineage["step"],
        tokens_seen=lineage["tokens_seen"],
    )
    if args.result_file is not None:
        args.result_file.parent.mkdir(parents=True, exist_ok=True)
        args.result_file.write_text(measured.encode())
    print(json.dumps({"event": "evaluated", **result}), flush=True)


if __name__ == "__main__":
    main()
