"""TrainingJob: Pending → Preparing → Training → Evaluating → Succeeded | Failed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from llmos import conditions as c
from llmos.api import API_VERSION
from llmos.api.base import set_condition
from llmos.api.language_model import Evaluation, LanguageModel
from llmos.api.training_job import TERMINAL_PHASES, Progress, TrainingJob, TrainingJobStatus
from llmos.builders.common import Images, Owner
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
from llmos.lifecycle import complete_training
from llmos.progress import format_progress

LOG_TAIL_LINES = 50
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # RFC 3339, UTC, as Kubernetes writes times


def now() -> str:
    return datetime.now(UTC).strftime(TIME_FORMAT)


@dataclass
class JobState:
    """What a batch/v1 Job says: running, succeeded or failed (and its pods' last words)."""

    exists: bool
    succeeded: bool = False
    failed: bool = False


def job_state(kube: Kube, namespace: str, name: str) -> JobState:
    job = kube.get("batch/v1", "Job", namespace, name)
    if job is None:
        return JobState(False)
    conditions = {cond["type"]: cond["status"] for cond in job.get("status", {}).get("conditions", [])}
    return JobState(True, conditions.get("Complete") == "True", conditions.get("Failed") == "True")


def termination_message(kube: Kube, namespace: str, job_name: str) -> dict[str, Any] | None:
    for pod in kube.list("v1", "Pod", namespace, f"batch.kubernetes.io/job-name={job_name}"):
        for status in pod.get("status", {}).get("containerStatuses", []):
            message = status.get("state", {}).get("terminated", {}).get("message")
            if message:
                try:
                    return dict(json.loads(message))
                except json.JSONDecodeError:
                    return None
    return None


def rank_zero_progress(kube: Kube, namespace: str, job_name: str) -> Progress | None:
    """The newest progress line of pod 0 (rank 0), read from its log: no credentials in the
    training pods and no writes from them into the API."""
    selector = f"batch.kubernetes.io/job-name={job_name},batch.kubernetes.io/job-completion-index=0"
    for pod in kube.list("v1", "Pod", namespace, selector):
        for line in reversed(kube.pod_log(namespace, pod["metadata"]["name"], LOG_TAIL_LINES).splitlines()):
            if line.startswith('{"event": "progress"'):
                return format_progress(json.loads(line))
    return None


def seconds_since(timestamp: str | None) -> float:
    if timestamp is None:
        return float("inf")
    return (datetime.now(UTC) - datetime.strptime(timestamp, TIME_FORMAT).replace(tzinfo=UTC)).total_seconds()


def reconcile_training_job(
    kube: Kube, job: TrainingJob, uid: str, images: Images, restart_grace: float = 15.0
) -> TrainingJobStatus:
    """One step of the chain; returns the status to write (equal to the old one when idle)."""
    status = job.status.model_copy(deep=True)
    generation = job.metadata.generation
    if status.phase in TERMINAL_PHASES and status.observed_generation == generation:
        return status  # terminal phases are sticky
    status.observed_generation = generation
    namespace = job.metadata.namespace or "default"
    owner = Owner("TrainingJob", job.metadata.name, uid)
    model_body = kube.read(API_VERSION, "LanguageModel", namespace, job.spec.model_ref.name)
    if model_body is None:
        status.message = f"waiting for LanguageModel {job.spec.model_ref.name!r}"
        return status
    model = LanguageModel.model_validate(model_body)
    status.start_time = status.start_time or now()

    if status.phase == "Pending":
        kube.ensure(build_prepare_job(job, model, owner, images))
        status.phase, status.message = "Preparing", "tokenizer and token shards"
    elif status.phase == "Preparing":
        state = job_state(kube, namespace, prepare_job_name(job))
        if state.failed:
            return failed(status, "data preparation failed (see the logs of job " + prepare_job_name(job) + ")")
        if state.succeeded:
            start_training(kube, job, model, owner, images, status)
    elif status.phase == "Training":
        name = train_job_name(job, status.restarts)
        state = job_state(kube, namespace, name)
        progress = rank_zero_progress(kube, namespace, name)
        if progress is not None:
            status.progress = progress
        if not state.exists:
            previous = f"batch.kubernetes.io/job-name={train_job_name(job, status.restarts - 1)}"
            if status.restarts and (
                kube.list("v1", "Pod", namespace, previous) or seconds_since(status.restarted_at) < restart_grace
            ):
                # Two groups must never write the same checkpoints: let the old one stop first.
                # A force-deleted pod leaves the API at once while its processes may still run
                # on its node for a moment, hence the grace period on top of the listing.
                status.message = f"waiting for the pods of attempt {status.restarts - 1} to stop"
            else:
                start_training(kube, job, model, owner, images, status)
        elif state.succeeded:
            kube.ensure(build_eval_job(job, model, owner, images))
            status.phase, status.message = "Evaluating", "validation loss, bits per byte and gate"
        elif state.failed:
            if status.restarts >= job.spec.max_restarts:
                return failed(status, f"training failed after {status.restarts} restarts")
            status.restarts += 1  # counted (written) before the new group exists
            status.restarted_at = now()
            status.message = f"restart {status.restarts} of {job.spec.max_restarts} from the last checkpoint"
            kube.delete("batch/v1", "Job", namespace, name)
    elif status.phase == "Evaluating":
        state = job_state(kube, namespace, eval_job_name(job))
        if state.succeeded or state.failed:
            result = termination_message(kube, namespace, eval_job_name(job))
            if result is None:
                return failed(status, "evaluation failed without a verdict (see job " + eval_job_name(job) + ")")
            record(kube, job, model, result, status)
    return status


def start_training(
    kube: Kube, job: TrainingJob, model: LanguageModel, owner: Owner, images: Images, status: TrainingJobStatus
) -> None:
    kube.ensure(build_rendezvous_service(job, owner, status.restarts))
    kube.ensure(build_train_job(job, model, owner, images, status.restarts))
    status.phase = "Training"
    status.progress = Progress(step=status.progress.step, total_steps=job.spec.hyperparameters.steps)
    status.message = f"{job.spec.resources.nodes} node(s) × {job.spec.resources.procs_per_node} process(es)"


def record(
    kube: Kube, job: TrainingJob, model: LanguageModel, result: dict[str, Any], status: TrainingJobStatus
) -> None:
    evaluation = Evaluation(metrics=result["metrics"], passed=result["passed"], reason=result["reason"])
    step, tokens_seen = result.get("step", 0), result.get("tokens_seen", 0)
    complete_training(status, job.metadata.name, model, evaluation, step, tokens_seen, now())
    namespace = job.metadata.namespace or "default"
    kube.patch_status(
        API_VERSION,
        "LanguageModel",
        namespace,
        model.metadata.name,
        model.status.wire(),
        resource_version=model.metadata.resource_version,
    )


def revisit_after(status: TrainingJobStatus, progress_interval: float) -> float | None:
    """When to look again without an event: a running group's progress lives in its log
    (no events), everything else is announced by the Jobs' events."""
    return progress_interval if status.phase == "Training" else None


def failed(status: TrainingJobStatus, message: str) -> TrainingJobStatus:
    status.phase, status.message, status.completion_time = "Failed", message, now()
    status.conditions = set_condition(status.conditions, c.FAILED, True, c.REASON_STEP_FAILED, message, now())
    return status
