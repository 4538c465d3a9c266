"""ModelEndpoint: an autoscaled OpenAI-compatible API serving a LanguageModel version."""

from __future__ import annotations

from typing import ClassVar, Literal

from llmos_contract.config import Limits, Quantization
from pydantic import Field

from llmos.api.base import ApiModel, Condition, ObjectMeta, Rule
from llmos.api.training_job import QUANTITY_PATTERN

LATEST_PASSING = "latestPassing"
LATEST = "latest"


class ModelSelector(ApiModel):
    """Which model and which of its versions to serve."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """The LanguageModel."""
    version: str = Field(default=LATEST_PASSING, pattern=r"^(latestPassing|latest|v[0-9]+)$")
    """latestPassing (default: follow new passing versions), latest, or a pinned vN."""


class Replicas(ApiModel):
    """How many server pods."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.min <= self.max",
            message="replicas.min must not exceed replicas.max",
            check=lambda r: r.min <= r.max,
        ),
    )

    min: int = Field(default=1, ge=1, le=1000)
    """Fewest replicas."""
    max: int = Field(default=1, ge=1, le=1000)
    """Most replicas (the autoscaler moves between min and max)."""


class Autoscaling(ApiModel):
    """What the autoscaler follows."""

    metric: Literal["cpu", "inFlightRequests"] = "cpu"
    """cpu (utilisation, in percent of the request) or inFlightRequests (per pod; needs a metrics adapter)."""
    target: int = Field(default=80, ge=1, le=1000)
    """Target value per pod."""


class EndpointResources(ApiModel):
    """Compute per server pod."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.gpus) || self.gpus == 0",
            message="GPUs for endpoints are not supported yet; leave resources.gpus at 0",
            check=lambda r: r.gpus == 0,
        ),
    )

    cpu: str | None = Field(default=None, pattern=QUANTITY_PATTERN)
    """CPU request and limit, e.g. "2"."""
    memory: str | None = Field(default=None, pattern=QUANTITY_PATTERN)
    """Memory request and limit, e.g. "4Gi"."""
    gpus: int = Field(default=0, ge=0, le=64)
    """GPUs per pod."""


class SecretKeyRef(ApiModel):
    """A key of a Secret in the endpoint's namespace."""

    name: str = Field(min_length=1, max_length=253)
    """The Secret."""
    key: str = Field(default="api-keys", min_length=1, max_length=253)
    """The key holding the API keys, one per line."""


class Auth(ApiModel):
    """Who may call the endpoint."""

    api_key_secret_ref: SecretKeyRef
    """The Secret holding the accepted API keys (mounted, never copied)."""


class ModelEndpointSpec(ApiModel):
    """The desired endpoint."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.runtime) || self.runtime != 'vllm'",
            message="runtime vllm is not supported yet; use builtin",
            check=lambda s: s.runtime != "vllm",
        ),
    )

    model_ref: ModelSelector
    """The model and version to serve."""
    runtime: Literal["builtin", "vllm"] = "builtin"
    """builtin (llmos-serve, CPU or GPU) or vllm (GPU clusters)."""
    quantization: Quantization = "none"
    """none (the version's weights) or int8 (int8 weights and per-token int8 activations: the
    int8 variant of spec.export.quantization, following the newest version whose int8 variant
    passed its gate)."""
    served_model_name: str | None = Field(default=None, max_length=256)
    """The model name clients send (default: the LanguageModel's name)."""
    replicas: Replicas = Field(default_factory=Replicas)
    """Replica bounds."""
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    """Autoscaler target."""
    resources: EndpointResources = Field(default_factory=EndpointResources)
    """Compute per pod."""
    auth: Auth | None = None
    """API keys; without it the endpoint is open."""
    limits: Limits = Field(default_factory=Limits)
    """Admission limits."""


class ModelEndpointStatus(ApiModel):
    """What the operator observed."""

    phase: Literal["Pending", "WaitingForModel", "RollingOut", "Ready", "Failed"] = "Pending"
    """Pending, WaitingForModel, RollingOut, Ready or Failed."""
    url: str | None = None
    """Base URL of the OpenAI-compatible API (…/v1)."""
    served_version: str | None = None
    """The version the ready replicas serve."""
    replicas: int = 0
    """Replicas that exist."""
    ready_replicas: int = 0
    """Replicas ready to serve."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready, ModelAvailable, RolloutProgressing."""
    observed_generation: int | None = None
    """The spec generation this status describes."""


class ModelEndpoint(ApiModel):
    """An OpenAI-compatible endpoint serving a LanguageModel."""

    api_version: Literal["llmos.dev/v1alpha1"] = "llmos.dev/v1alpha1"
    """llmos.dev/v1alpha1"""
    kind: Literal["ModelEndpoint"] = "ModelEndpoint"
    """ModelEndpoint"""
    metadata: ObjectMeta
    """Standard object metadata."""
    spec: ModelEndpointSpec
    """The desired endpoint."""
    status: ModelEndpointStatus = Field(default_factory=ModelEndpointStatus)
    """The observed state."""
