"""`llmos report tj/NAME`: the loss curve as a PNG, and the evaluation metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def read_history(path: Path) -> list[dict[str, Any]]:
    """Progress events, the last one per step (a resumed run logs some steps twice)."""
    by_step: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        event = json.loads(line)
        by_step[event["step"]] = event
    return [by_step[s] for s in sorted(by_step)]


def write_report(history: list[dict[str, Any]], metrics: dict[str, Any] | None, title: str, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([e["step"] for e in history], [e["loss"] for e in history], label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if metrics:
        text = "\n".join(f"{k}: {v:g}" for k, v in metrics.get("metrics", {}).items())
        verdict = "passed" if metrics.get("passed") else "did not pass"
        for variant, result in metrics.get("variants", {}).items():
            bpb = result["metrics"].get("bitsPerByte")
            text += f"\n{variant}: bitsPerByte {bpb:g}" if bpb is not None else ""
        ax.text(
            0.98,
            0.95,
            f"{text}\ngate {verdict}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            bbox={"facecolor": "white", "alpha": 0.8},
        )
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
