"""LanguageModel: what a model is, and where its versions live."""

from __future__ import annotations

from typing import ClassVar, Literal

from llmos_contract.config import Architecture
from pydantic import Field

from llmos.api.base import ApiModel, Condition, ObjectMeta, Rule, no_s3

STORAGE_URI_PATTERN = r"^(pvc|s3|file)://[^\s]+$"


class BaseCheckpoint(ApiModel):
    """A pretrained Hugging-Face-format Llama-family checkpoint to fine-tune or serve."""

    rules: ClassVar[tuple[Rule, ...]] = (no_s3("uri"),)

    uri: str = Field(pattern=STORAGE_URI_PATTERN, max_length=1024)
    """Where the checkpoint directory is (pvc://claim/path, s3://bucket/path, file:///path)."""


class Tokenizer(ApiModel):
    """How text becomes tokens."""

    rules: ClassVar[tuple[Rule, ...]] = (no_s3("uri", optional=True),)

    vocab_size: int = Field(default=4096, ge=260, le=262144)
    """Vocabulary size of the byte-level BPE trained on the dataset (256 bytes + merges + specials)."""
    uri: str | None = Field(default=None, pattern=STORAGE_URI_PATTERN, max_length=1024)
    """Load this tokenizer.json instead of training one."""


class Storage(ApiModel):
    """Where versions and checkpoints are written."""

    rules: ClassVar[tuple[Rule, ...]] = (no_s3("uri"),)

    uri: str = Field(pattern=STORAGE_URI_PATTERN, max_length=1024)
    """pvc://claim/prefix (mounted by every pod of the chain), s3://bucket/prefix, or file:///path in local mode."""


class LanguageModelSpec(ApiModel):
    """The desired model."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.architecture) != has(self.base)",
            message="set exactly one of architecture (train from scratch) or base (start from a checkpoint)",
            check=lambda s: (s.architecture is None) != (s.base is None),
        ),
    )

    architecture: Architecture | None = None
    """The network to train from scratch. Exactly one of architecture or base."""
    base: BaseCheckpoint | None = None
    """A checkpoint to start from. Exactly one of architecture or base."""
    tokenizer: Tokenizer = Field(default_factory=Tokenizer)
    """How to tokenize (ignored with base: the checkpoint's tokenizer is used)."""
    storage: Storage
    """Where versions live."""
    keep_versions: int = Field(default=20, ge=1, le=1000)
    """Versions kept in status.versions, the latest passing one always among them (files stay on storage)."""


class Verdict(ApiModel):
    """Measured metrics and the gate's verdict on them."""

    metrics: dict[str, float] = Field(default_factory=dict)
    """Metric name to value, e.g. bitsPerByte, validationLoss, perplexity."""
    passed: bool
    """Whether every gate held."""
    reason: str = ""
    """Why the gate failed, or 'all gates passed'."""


class Evaluation(Verdict):
    """The evaluation of one version."""

    variants: dict[str, Verdict] = Field(default_factory=dict)
    """The same gate on each compressed variant (int8), measured as the server computes it;
    an endpoint serving a variant follows that variant's verdict."""


class ModelVersion(ApiModel):
    """One trained, evaluated version."""

    name: str = Field(pattern=r"^v[0-9]+$")
    """v1, v2, …"""
    uri: str
    """Where the Hugging Face format directory is."""
    step: int = Field(ge=0)
    """Optimizer steps taken."""
    tokens_seen: int = Field(ge=0)
    """Training tokens consumed."""
    produced_by: str
    """The TrainingJob that made it."""
    evaluation: Evaluation | None = None
    """Its evaluation and gate verdict."""
    created_at: str
    """When it was exported (RFC 3339)."""

    @property
    def number(self) -> int:
        return int(self.name[1:])


class LanguageModelStatus(ApiModel):
    """What the operator observed."""

    versions: list[ModelVersion] = Field(default_factory=list)
    """The version history, oldest first (at most spec.keepVersions)."""
    latest_version: str | None = None
    """The newest version."""
    latest_passing_version: str | None = None
    """The newest version whose evaluation passed its gate."""
    allocated_versions: int = 0
    """Version names handed out so far (v1 … vN): a job takes the next one when it starts, so
    its files are named by version, and a name is never given twice (pruned ones included)."""
    last_allocated_to: str | None = None
    """The run (TrainingJob name/uid/generation) that took the newest name; it gets the same
    name if it asks again, any other run the next one."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready (storage ready and a passing version to serve), StorageReady, HasPassingVersion."""
    observed_generation: int | None = None
    """The spec generation this status describes."""


class LanguageModel(ApiModel):
    """A language model and its versions."""

    api_version: Literal["llmos.dev/v1alpha1"] = "llmos.dev/v1alpha1"
    """llmos.dev/v1alpha1"""
    kind: Literal["LanguageModel"] = "LanguageModel"
    """LanguageModel"""
    metadata: ObjectMeta
    """Standard object metadata."""
    spec: LanguageModelSpec
    """The desired model."""
    status: LanguageModelStatus = Field(default_factory=LanguageModelStatus)
    """The observed state."""
