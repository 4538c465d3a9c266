"""The two interfaces the reconcilers act through; the operator and local mode each
implement both (the Kubernetes API and Kubernetes objects; `.llmos/` files and processes).

ObjectStore: the custom resources themselves (read, status patch with optimistic
concurrency, events). Executor: the workloads and their environment (start, observe and
stop a training step; run a server group; check claims and Secrets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from llmos_contract.events import CheckpointEvent, ProgressEvent

from llmos.api.language_model import LanguageModel, ModelVersion
from llmos.api.model_endpoint import ModelEndpoint
from llmos.api.training_job import TrainingJob

Step = Literal["prepare", "train", "evaluate"]
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class ObjectRef:
    """The custom resource an event or a workload belongs to."""

    kind: str
    namespace: str
    name: str
    uid: str | None = None


class Conflict(Exception):
    """The object changed since it was read: read it again and retry."""


class ObjectStore(Protocol):
    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object's body (apiVersion, kind, metadata, spec, status), or None."""

    def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any], resource_version: str | None
    ) -> None:
        """Replace the status; with `resource_version`, raise Conflict if the object changed."""

    def event(self, ref: ObjectRef, type_: EventType, reason: str, message: str) -> None:
        """Tell people what happened to the object (a Kubernetes Event, or a line locally)."""


@dataclass(frozen=True)
class StepState:
    """What one step (a group of N nodes × P processes) of a job is doing."""

    exists: bool
    succeeded: bool = False
    failed: bool = False
    exit_code: int | None = None
    message: str = ""
    """Last words: the termination message (the evaluation result) or the log's tail."""


@dataclass(frozen=True)
class StepReport:
    """The newest progress and checkpoint rank 0 reported."""

    progress: ProgressEvent | None = None
    checkpoint: CheckpointEvent | None = None


@dataclass(frozen=True)
class ServerState:
    """A server group as observed: how many replicas, and what the ready ones serve."""

    replicas: int
    ready_replicas: int
    target: str
    """The version the group is being brought to."""
    rolled_out: bool
    """Every replica serves `target` and at least one is ready."""
    url: str


@dataclass(frozen=True)
class Problem:
    """Why something a workload needs is not there: a condition's reason and message."""

    reason: str
    message: str


class Executor(Protocol):
    def start(self, job: TrainingJob, model: LanguageModel, step: Step, attempt: int) -> None:
        """Start the step (again, if it vanished); a no-op while it exists."""

    def observe(self, job: TrainingJob, step: Step, attempt: int) -> StepState: ...

    def report(self, job: TrainingJob, attempt: int) -> StepReport:
        """Rank 0's newest progress and checkpoint of a running training attempt."""

    def stop(self, job: TrainingJob, step: Step, attempt: int) -> None: ...

    def gone(self, job: TrainingJob, step: Step, attempt: int) -> bool:
        """No process of the step is left (the next attempt may write the checkpoints)."""

    def serve(self, endpoint: ModelEndpoint, version: ModelVersion) -> ServerState:
        """Bring the endpoint's server group to `version` (start, roll, scale) and observe it."""

    def storage_problem(self, namespace: str, uris: list[str]) -> Problem | None: ...

    def secret_problem(self, namespace: str, name: str, key: str) -> Problem | None: ...
