"""TrainingJob: data preparation → distributed training → evaluation → gate."""

from __future__ import annotations

from typing import ClassVar, Literal

from llmos_contract.config import Checkpointing, Export, Hyperparameters
from llmos_contract.events import ProgressEvent
from pydantic import Field

from llmos.api.base import ApiModel, Condition, LocalObjectReference, ObjectMeta, Rule, no_s3
from llmos.api.language_model import Evaluation

QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"
GateMetric = Literal["bitsPerByte", "validationLoss", "perplexity"]
GateOperator = Literal["<", "<=", ">", ">="]
Phase = Literal["Pending", "Preparing", "Training", "Evaluating", "Succeeded", "Failed"]
TERMINAL_PHASES: tuple[Phase, ...] = ("Succeeded", "Failed")


class Dataset(ApiModel):
    """The training corpus: one UTF-8 text file."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!self.uri.startsWith('https://') || has(self.sha256)",
            message="sha256 is required for an https:// dataset",
            check=lambda d: not d.uri.startswith("https://") or d.sha256 is not None,
        ),
        no_s3("uri"),
    )

    uri: str = Field(pattern=r"^(https|pvc|s3|file)://[^\s]+$", max_length=2048)
    """https://… (downloaded once into a content-addressed cache), pvc://claim/path or file:///path."""
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """Expected SHA-256 of the file (required for https://)."""
    validation_fraction: float = Field(default=0.05, gt=0, le=0.5)
    """Share of the corpus (its tail) held out for evaluation."""


class Resources(ApiModel):
    """Compute for the training group."""

    nodes: int = Field(default=1, ge=1, le=1024)
    """Pods in the group (torchrun nodes)."""
    procs_per_node: int = Field(default=1, ge=1, le=64)
    """Processes per pod (torchrun --nproc-per-node); one per GPU on GPU nodes."""
    gpus_per_node: int = Field(default=0, ge=0, le=64)
    """GPUs per pod; 0 trains on CPU with gloo, more uses nccl."""
    cpu: str | None = Field(default=None, pattern=QUANTITY_PATTERN)
    """CPU request and limit per pod, e.g. "2"."""
    memory: str | None = Field(default=None, pattern=QUANTITY_PATTERN)
    """Memory request and limit per pod, e.g. "8Gi"."""


class Toleration(ApiModel):
    """A Kubernetes toleration, passed through to every pod."""

    key: str | None = None
    """Taint key."""
    operator: Literal["Exists", "Equal"] | None = None
    """Exists or Equal."""
    value: str | None = None
    """Taint value."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect."""
    toleration_seconds: int | None = None
    """For NoExecute: how long the pod stays bound."""


class Gate(ApiModel):
    """One condition a version must meet to be served, e.g. bitsPerByte <= 2.5."""

    metric: GateMetric
    """bitsPerByte, validationLoss or perplexity."""
    op: GateOperator
    """<, <=, > or >=."""
    value: float
    """The threshold."""

    def holds(self, metrics: dict[str, float]) -> bool:
        actual = metrics[self.metric]
        return {
            "<": actual < self.value,
            "<=": actual <= self.value,
            ">": actual > self.value,
            ">=": actual >= self.value,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


class EvaluationSpec(ApiModel):
    """How a trained version is evaluated and gated."""

    max_batches: int = Field(default=50, ge=1)
    """Validation batches to average over (the whole split if it is smaller)."""
    samples: int = Field(default=2, ge=0, le=16)
    """Text samples to generate for people to read."""
    gate: list[Gate] = Field(default_factory=list, max_length=16)
    """Every gate must hold for the version to pass; no gate means it passes."""


def _ranks(spec: TrainingJobSpec) -> int:
    return spec.resources.nodes * spec.resources.procs_per_node * spec.hyperparameters.gradient_accumulation


class TrainingJobSpec(ApiModel):
    """What to train. Immutable: make a new TrainingJob to train again."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.hyperparameters.batchSize % ((has(self.resources) ? "
            "self.resources.nodes * self.resources.procsPerNode : 1) * self.hyperparameters.gradientAccumulation) == 0",
            message="hyperparameters.batchSize must be a multiple of resources.nodes × resources.procsPerNode "
            "× hyperparameters.gradientAccumulation (it is split over the ranks and accumulation steps)",
            check=lambda s: s.hyperparameters.batch_size % _ranks(s) == 0,
        ),
    )

    model_ref: LocalObjectReference
    """The LanguageModel to train."""
    dataset: Dataset
    """The corpus."""
    hyperparameters: Hyperparameters
    """Optimisation settings."""
    resources: Resources = Field(default_factory=Resources)
    """Compute."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels the pods must match."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    """Tolerations of every pod."""
    checkpoint: Checkpointing = Field(default_factory=Checkpointing)
    """Resume checkpoints."""
    max_restarts: int = Field(default=3, ge=0, le=100)
    """Group restarts (from the last checkpoint) before the job fails."""
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    """Evaluation and gate."""
    export: Export = Field(default_factory=Export)
    """The version's dtype and its compressed variants (each evaluated and gated as served)."""


class Progress(ApiModel):
    """Training progress, as rank 0 last reported it."""

    step: int = 0
    """Optimizer steps done."""
    total_steps: int = 0
    """Optimizer steps planned."""
    loss: float | None = None
    """Training loss at step."""
    tokens_per_second: float | None = None
    """Training throughput over all ranks."""
    eta: str | None = None
    """Estimated time left, e.g. 4m10s."""
    precision: str | None = None
    """The precision training computes in (float32 or bfloat16; hyperparameters.precision decides)."""

    @classmethod
    def from_event(cls, event: ProgressEvent) -> Progress:
        """Rank 0's progress event as the status shows it."""
        return cls(
            step=event.step,
            total_steps=event.total_steps,
            loss=event.loss,
            tokens_per_second=event.tokens_per_second,
            eta=event.eta,
            precision=event.precision,
        )


class TrainingJobStatus(ApiModel):
    """What happened."""

    phase: Phase = "Pending"
    """Pending, Preparing, Training, Evaluating, Succeeded or Failed (the last two are final)."""
    message: str = ""
    """What is going on, in a sentence."""
    progress: Progress = Field(default_factory=Progress)
    """Training progress."""
    restarts: int = 0
    """Group restarts so far."""
    restarted_at: str | None = None
    """When the last restart was counted (RFC 3339); the next group waits a grace period after it."""
    latest_checkpoint: str | None = None
    """The newest complete checkpoint."""
    produced_version: str | None = None
    """The LanguageModel version this job makes (its name is taken when the job starts)."""
    evaluation: Evaluation | None = None
    """The evaluation and gate verdict."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready (true once Succeeded), Succeeded, Failed, GatePassed, ModelAvailable."""
    observed_generation: int | None = None
    """The spec generation this status describes."""
    start_time: str | None = None
    """When the job started (RFC 3339)."""
    completion_time: str | None = None
    """When the job reached Succeeded or Failed (RFC 3339)."""


class TrainingJob(ApiModel):
    """A run of data preparation, distributed training, evaluation and gate."""

    api_version: Literal["llmos.dev/v1alpha1"] = "llmos.dev/v1alpha1"
    """llmos.dev/v1alpha1"""
    kind: Literal["TrainingJob"] = "TrainingJob"
    """TrainingJob"""
    metadata: ObjectMeta
    """Standard object metadata."""
    spec: TrainingJobSpec
    """What to train."""
    status: TrainingJobStatus = Field(default_factory=TrainingJobStatus)
    """The observed state."""
