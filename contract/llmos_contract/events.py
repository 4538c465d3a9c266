"""What the runtime tells the operator: JSON lines from rank 0, and the evaluation result.

Rank 0 prints one JSON object a line on stdout; the operator reads the newest progress line
from its log (pods need no API credentials). The evaluation step writes its result to the
termination log; its size is bounded by its schema, so it can never be cut into invalid JSON.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

TERMINATION_MESSAGE_BYTES = 4096
"""The kubelet keeps at most this much of a termination message."""


class ProgressEvent(BaseModel):
    """Training progress, every --log-every-steps steps."""

    event: Literal["progress"] = "progress"
    step: int
    total_steps: int
    loss: float
    lr: float
    tokens_per_second: float
    tokens_seen: int
    eta_seconds: float
    eta: str
    precision: str | None = None
    """The precision the step computes in (float32 or bfloat16), as the runtime chose it."""


class CheckpointEvent(BaseModel):
    """A complete checkpoint was written."""

    event: Literal["checkpoint"] = "checkpoint"
    step: int
    path: str


class ResumedEvent(BaseModel):
    """Training resumed from a checkpoint."""

    event: Literal["resumed"] = "resumed"
    step: int
    checkpoint: str


class ExportedEvent(BaseModel):
    """The version directory was written."""

    event: Literal["exported"] = "exported"
    step: int
    version_dir: str


class UsageErrorEvent(BaseModel):
    """The step cannot run as configured (it exits 2; restarting cannot help)."""

    event: Literal["usage_error"] = "usage_error"
    message: str


AnyEvent = ProgressEvent | CheckpointEvent | ResumedEvent | ExportedEvent | UsageErrorEvent
Event = Annotated[AnyEvent, Field(discriminator="event")]
EVENT = TypeAdapter(Event)


def encode_event(event: BaseModel) -> str:
    """One log line: `{"event": "progress", "step": 10, …}`."""
    return json.dumps(event.model_dump())


def decode_event(line: str) -> AnyEvent | None:
    """The event a log line carries, or None for any other line."""
    if not line.startswith('{"event"'):
        return None
    try:
        return EVENT.validate_json(line)
    except ValidationError:
        return None


MetricName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9]{0,63}$")]


class EvaluationResult(BaseModel):
    """What the evaluation measured. The runtime measures; the operator judges the gate."""

    metrics: dict[MetricName, float] = Field(max_length=16)
    """Metric name to value: bitsPerByte, validationLoss, perplexity."""
    variants: dict[MetricName, Annotated[dict[MetricName, float], Field(max_length=4)]] = Field(
        default_factory=dict, max_length=2
    )
    """The same metrics of each compressed variant (int8), measured as it is served."""
    step: int = Field(ge=0)
    """Optimizer steps of the evaluated version."""
    tokens_seen: int = Field(ge=0)
    """Training tokens the version has seen."""

    def encode(self) -> str:
        """At most 16 + 2 × 5 names of 64 characters and 24 numbers: always below 4096 bytes."""
        text = self.model_dump_json()
        assert len(text.encode()) < TERMINATION_MESSAGE_BYTES
        return text

    @classmethod
    def decode(cls, text: str) -> EvaluationResult:
        """Raises ValueError for anything but a whole result."""
        try:
            return cls.model_validate(json.loads(text))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ValueError(f"not an evaluation result: {text[:200]!r}") from exc
