"""The operator's executor: a training step is a batch/v1 Job (an Indexed Job plus a
headless Service for the training group), a server group is a Deployment with its Service,
HorizontalPodAutoscaler and PodDisruptionBudget; storage is claims, keys are Secrets."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from llmos_contract import EXIT_USAGE
from llmos_contract.events import CheckpointEvent, ProgressEvent, UsageErrorEvent, decode_event

from llmos import conditions as c
from llmos.api.language_model import LanguageModel, ModelVersion
from llmos.api.model_endpoint import ModelEndpoint
from llmos.api.training_job import TrainingJob
from llmos.builders.common import MODEL_VERSION, Images, Owner
from llmos.builders.serving import (
    build_autoscaler,
    build_deployment,
    build_disruption_budget,
    build_service,
    service_url,
)
from llmos.builders.training import (
    build_eval_job,
    build_prepare_job,
    build_rendezvous_service,
    build_train_job,
    eval_job_name,
    prepare_job_name,
    train_job_name,
)
from llmos.kube import Kube
from llmos.reconcile.seams import Problem, ServerState, Step, StepReport, StepState
from llmos.storage import UnsupportedStorage, claim_of, resolve

LOG_TAIL_LINES = 200
JOB_NAME = "batch.kubernetes.io/job-name"


def owner_of(obj: TrainingJob | ModelEndpoint) -> Owner:
    assert obj.metadata.uid is not None, "objects from the API server have a uid"
    return Owner(obj.kind, obj.metadata.name, obj.metadata.uid)


def step_job_name(job: TrainingJob, step: Step, attempt: int) -> str:
    if step == "prepare":
        return prepare_job_name(job)
    if step == "train":
        return train_job_name(job, attempt)
    return eval_job_name(job)


def namespace_of(obj: TrainingJob | ModelEndpoint | LanguageModel) -> str:
    return obj.metadata.namespace or "default"


class ClusterExecutor:
    def __init__(self, kube: Kube, images: Images) -> None:
        self.kube, self.images = kube, images

    def start(self, job: TrainingJob, model: LanguageModel, step: Step, attempt: int) -> None:
        owner = owner_of(job)
        if step == "prepare":
            self.kube.ensure(build_prepare_job(job, model, owner, self.images))
        elif step == "train":
            self.kube.ensure(build_rendezvous_service(job, owner, attempt))
            self.kube.ensure(build_train_job(job, model, owner, self.images, attempt))
        else:
            self.kube.ensure(build_eval_job(job, model, owner, self.images))

    def _job(self, job: TrainingJob, step: Step, attempt: int) -> dict[str, Any] | None:
        return self.kube.read("batch/v1", "Job", namespace_of(job), step_job_name(job, step, attempt))

    def _pods(self, job: TrainingJob, name: str, index: int | None = None) -> list[dict[str, Any]]:
        selector = f"{JOB_NAME}={name}" + (
            "" if index is None else f",batch.kubernetes.io/job-completion-index={index}"
        )
        return self.kube.list("v1", "Pod", namespace_of(job), selector)

    def observe(self, job: TrainingJob, step: Step, attempt: int) -> StepState:
        body = self._job(job, step, attempt)
        if body is None:
            return StepState(False)
        conditions = {cond["type"]: cond["status"] for cond in body.get("status", {}).get("conditions", [])}
        succeeded, failed = conditions.get("Complete") == "True", conditions.get("Failed") == "True"
        if not (succeeded or failed):
            return StepState(True)
        name = step_job_name(job, step, attempt)
        exit_code, message = None, ""
        for pod in self._pods(job, name):
            for container in pod.get("status", {}).get("containerStatuses", []):
                terminated = container.get("state", {}).get("terminated", {})
                if terminated and (exit_code is None or terminated.get("exitCode", 0) != 0):
                    exit_code, message = terminated.get("exitCode"), terminated.get("message", "").strip()
            if failed:
                usage = self._usage_error(job, pod["metadata"]["name"])
                if usage is not None:
                    exit_code, message = EXIT_USAGE, usage
        return StepState(True, succeeded, failed, exit_code, message)

    def _usage_error(self, job: TrainingJob, pod: str) -> str | None:
        for line in self.kube.pod_log(namespace_of(job), pod, LOG_TAIL_LINES).splitlines():
            event = decode_event(line)
            if isinstance(event, UsageErrorEvent):
                return event.message
        return None

    def report(self, job: TrainingJob, attempt: int) -> StepReport:
        """From rank 0's log: training pods need no API credentials and never write the CR."""
        progress: ProgressEvent | None = None
        checkpoint: CheckpointEvent | None = None
        for pod in self._pods(job, train_job_name(job, attempt), index=0):
            lines = self.kube.pod_log(namespace_of(job), pod["metadata"]["name"], LOG_TAIL_LINES).splitlines()
            for line in reversed(lines):
                event = decode_event(line)
                if progress is None and isinstance(event, ProgressEvent):
                    progress = event
                elif checkpoint is None and isinstance(event, CheckpointEvent):
                    checkpoint = event
        return StepReport(progress, checkpoint)

    def stop(self, job: TrainingJob, step: Step, attempt: int) -> None:
        if self._job(job, step, attempt) is not None:
            self.kube.delete("batch/v1", "Job", namespace_of(job), step_job_name(job, step, attempt))

    def gone(self, job: TrainingJob, step: Step, attempt: int) -> bool:
        return self._job(job, step, attempt) is None and not self._pods(job, step_job_name(job, step, attempt))

    def serve(self, endpoint: ModelEndpoint, version: ModelVersion) -> ServerState:
        owner = owner_of(endpoint)
        children = [
            build_deployment(endpoint, version, owner, self.images),
            build_service(endpoint, owner),
            build_autoscaler(endpoint, owner),
        ]
        budget = build_disruption_budget(endpoint, owner)
        deployment = self.kube.ensure_all(children if budget is None else [*children, budget])[0]
        if budget is None:
            namespace, name = namespace_of(endpoint), endpoint.metadata.name
            if self.kube.read("policy/v1", "PodDisruptionBudget", namespace, name) is not None:
                self.kube.delete("policy/v1", "PodDisruptionBudget", namespace, name)  # min dropped to 1
        state = deployment.get("status", {})
        wanted, ready = state.get("replicas", 0), state.get("readyReplicas", 0)
        rolled_out = (
            state.get("observedGeneration") == deployment["metadata"].get("generation")
            and state.get("updatedReplicas", 0) == wanted
            and ready >= 1
            and wanted == ready
        )
        target = deployment["spec"]["template"]["metadata"]["labels"].get(MODEL_VERSION, version.name)
        return ServerState(wanted, ready, target, rolled_out, service_url(endpoint))

    def storage_problem(self, namespace: str, uris: list[str]) -> Problem | None:
        for uri in uris:
            try:
                resolve(uri, PurePosixPath("/"), allow_files=False)
            except UnsupportedStorage as exc:
                return Problem(c.REASON_UNSUPPORTED_STORAGE, str(exc))
            claim = claim_of(uri)
            if claim is None:
                continue
            body = self.kube.get("v1", "PersistentVolumeClaim", namespace, claim)
            if body is None:
                return Problem(
                    c.REASON_CLAIM_MISSING, f"{uri}: PersistentVolumeClaim {claim!r} does not exist in {namespace}"
                )
            if body.get("status", {}).get("phase") == "Lost":
                return Problem(c.REASON_CLAIM_MISSING, f"{uri}: PersistentVolumeClaim {claim!r} lost its volume")
        return None

    def secret_problem(self, namespace: str, name: str, key: str) -> Problem | None:
        body = self.kube.get("v1", "Secret", namespace, name)
        if body is None:
            return Problem(c.REASON_SECRET_MISSING, f"Secret {name!r} does not exist in {namespace}")
        if key not in {**body.get("data", {}), **body.get("stringData", {})}:
            keys = ", ".join(sorted(body.get("data", {}))) or "none"
            return Problem(c.REASON_SECRET_MISSING, f"Secret {name!r} has no key {key!r} (keys: {keys})")
        return None
