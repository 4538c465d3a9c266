"""Rank 0's progress event → the status' progress, one mapping for both backends."""

from __future__ import annotations

from typing import Any

from llmos.api.training_job import Progress


def format_progress(event: dict[str, Any]) -> Progress:
    return Progress(
        step=event["step"],
        total_steps=event["total_steps"],
        loss=event["loss"],
        tokens_per_second=event["tokens_per_second"],
        eta=event["eta"],
    )
