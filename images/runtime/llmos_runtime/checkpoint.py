"""Resume checkpoints: written atomically by rank 0, verified before they are loaded.

    checkpoints/step-00000040/state.pt    model, optimizer, step, tokens seen, RNG
    checkpoints/step-00000040/meta.json   step and the sha256 of state.pt

A directory appears under its final name only once complete (temp dir, then rename), and a
newest checkpoint whose state.pt does not match its recorded sha256 is skipped with a warning.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from llmos_runtime.dataset import sha256_of

PREFIX = "step-"


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete-looking checkpoints, newest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
    return sorted(found, key=lambda p: int(p.name.removeprefix(PREFIX)), reverse=True)


def save(root: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(state, tmp / "state.pt")
    meta = {"step": step, "sha256": sha256_of(tmp / "state.pt")}
    (tmp / "meta.json").write_text(json.dumps(meta))
    with open(tmp / "state.pt", "rb") as f:
        os.fsync(f.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in checkpoint_dirs(root)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_newest(root: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that verifies, or None; broken ones are reported and skipped."""
    for directory in checkpoint_dirs(root):
        try:
            meta = json.loads((directory / "meta.json").read_text())
            if sha256_of(directory / "state.pt") != meta["sha256"]:
                raise ValueError("state.pt does not match the sha256 in meta.json")
            state = torch.load(
                directory / "state.pt", map_location="cpu", weights_only=True
            )  # tensors only: no pickled code
            return directory, state
        except (OSError, ValueError, KeyError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            print(f"warning: skipping checkpoint {directory}: {exc}", file=sys.stderr, flush=True)
    return None
