"""A version's bits per byte, measured twice side by side: by llmos-eval (our model code) and
by Hugging Face transformers loading the same directory (LlamaForCausalLM).

    uv run python bench/quality.py .llmos/volumes/llmos-models/shakespeare/versions/v1 \
        .llmos/volumes/llmos-models/shakespeare/data/shakespeare-v1

Both score the validation split in the same windows (consecutive, --sequence-length tokens,
at most --max-batches × --batch-size of them), so the two numbers must agree.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from llmos_runtime.evaluate import validation_loss
from llmos_runtime.version import load_model
from transformers import LlamaForCausalLM


class HuggingFaceLogits(torch.nn.Module):
    """transformers' model behind the (B, T) → logits interface llmos-eval scores."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.hf = LlamaForCausalLM.from_pretrained(directory, torch_dtype=torch.float32).eval()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.hf(idx).logits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("version", type=Path)
    p.add_argument("data", type=Path)
    p.add_argument("--sequence-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-batches", type=int, default=50)
    args = p.parse_args()
    manifest = json.loads((args.data / "manifest.json").read_text())
    tokens = np.memmap(args.data / "val.bin", dtype=manifest["dtype"], mode="r")
    bytes_per_token = manifest["val_bytes"] / manifest["val_tokens"]
    window = (args.sequence_length, args.batch_size, args.max_batches)
    ours = validation_loss(load_model(args.version).eval(), tokens, *window)
    theirs = validation_loss(HuggingFaceLogits(args.version), tokens, *window)  # type: ignore[arg-type]
    lineage = json.loads((args.version / "llmos.json").read_text())
    for name, loss in (("llmos-eval", ours), ("transformers", theirs)):
        bits = loss / math.log(2) / bytes_per_token
        print(f"{name:>12}: validation loss {loss:.4f} nats/token, {bits:.4f} bits/byte")
    print(f"transformers / llmos-eval: {theirs / ours:.5f}; recorded at evaluation: {lineage.get('metrics')}")
    print(f"trained {lineage['step']} steps, {lineage['tokens_seen']} tokens, {lineage['parameters']} parameters")


if __name__ == "__main__":
    main()
