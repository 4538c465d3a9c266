"""TrainingJob: Pending → Preparing → Training → Evaluating → Succeeded | Failed.

Every transition is written before the next action: the version name is taken from the
model before any file is written, a restart is counted before the failed group is removed,
the version is recorded in the model before the job says Succeeded. A reconciler killed at
any moment therefore repeats, on its next visit, at most one idempotent action.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmos_contract import EXIT_USAGE
from llmos_contract.events import EvaluationResult
from pydantic import ValidationError

from llmos import conditions as c
from llmos.api.base import condition_is_true, set_condition
from llmos.api.language_model import LanguageModel
from llmos.api.training_job import TERMINAL_PHASES, Progress, TrainingJob, TrainingJobStatus
from llmos.lifecycle import allocate_version, complete_training, judge, now, ready, seconds_since
from llmos.reconcile.seams import Executor, ObjectStore, Step, StepState

PHASE_REASONS = {
    "Pending": c.REASON_PENDING,
    "Preparing": c.REASON_PREPARING,
    "Training": c.REASON_TRAINING,
    "Evaluating": c.REASON_EVALUATING,
}


@dataclass(frozen=True)
class TrainingSettings:
    progress_interval: float = 10.0
    """Seconds between reads of a running group's progress."""
    restart_grace: float = 15.0
    """Seconds a failed group gets to stop (beyond its processes being gone) before the next."""


def reconcile_training_job(
    job: TrainingJob, store: ObjectStore, executor: Executor, settings: TrainingSettings
) -> tuple[TrainingJobStatus, float | None]:
    """One step of the chain: the status to write (equal to the old one when idle) and when
    to look again without an event (a running group's progress has no events)."""
    job = job.model_copy(deep=True)  # the executor sees the status as it is being decided
    status = job.status
    generation = job.metadata.generation
    if status.phase in TERMINAL_PHASES and status.observed_generation == generation:
        return status, None  # terminal phases are sticky
    if status.observed_generation not in (None, generation):
        job.status = status = TrainingJobStatus()  # a changed spec (local mode) is a new run: a new version
    status.observed_generation = generation
    wait = waiting_reason(job, store)
    if isinstance(wait, tuple):
        reason, message = wait
        status.message = message
        status.conditions = ready(status.conditions, False, reason, message)
        return status, None
    model = wait
    dataset = executor.storage_problem(job.metadata.namespace or "default", [job.spec.dataset.uri])
    if dataset is not None:
        status.message = f"waiting for the dataset: {dataset.message}"
        status.conditions = ready(status.conditions, False, dataset.reason, status.message)
        return status, None
    problem = configuration_problem(job, model)
    if problem is not None:
        return failed(status, problem, c.REASON_INVALID_CONFIGURATION), None
    status.start_time = status.start_time or now()
    if status.produced_version is None:
        # The name comes first (files are named by it); written to the model before use.
        run = f"{job.metadata.name}/{job.metadata.uid}/{generation}"  # a re-created job or a new spec is a new run
        status.produced_version, changed = allocate_version(model, run)
        if changed:
            write_model(store, model)
    advance(job, model, store, executor, settings, status)
    if status.phase not in TERMINAL_PHASES:
        status.conditions = ready(status.conditions, False, PHASE_REASONS[status.phase], status.message)
    revisit = settings.progress_interval if status.phase == "Training" else None
    return status, revisit


def waiting_reason(job: TrainingJob, store: ObjectStore) -> LanguageModel | tuple[str, str]:
    """The model to train, or (reason, message) of what the job waits for."""
    namespace = job.metadata.namespace or "default"
    name = job.spec.model_ref.name
    body = store.read("LanguageModel", namespace, name)
    if body is None:
        return c.REASON_MODEL_NOT_FOUND, f"waiting for LanguageModel {name!r}: it does not exist"
    try:
        model = LanguageModel.model_validate(body)
    except ValidationError:
        return c.REASON_MODEL_NOT_FOUND, f"waiting for LanguageModel {name!r}: it is invalid (see its status)"
    storage = next((cond for cond in model.status.conditions if cond.type == c.STORAGE_READY), None)
    if storage is None or not condition_is_true(model.status.conditions, c.STORAGE_READY):
        why = storage.message if storage else "not checked yet"
        return c.REASON_STORAGE_NOT_READY, f"waiting for the storage of LanguageModel {name!r}: {why}"
    return model


def configuration_problem(job: TrainingJob, model: LanguageModel) -> str | None:
    """What admission cannot check (it spans two objects) and no restart could fix."""
    arch = model.spec.architecture
    length = job.spec.hyperparameters.sequence_length
    if arch is not None and length > arch.context_length:
        return (
            f"spec.hyperparameters.sequenceLength {length} exceeds the contextLength {arch.context_length} "
            f"of LanguageModel {model.metadata.name!r}"
        )
    return None


def advance(
    job: TrainingJob,
    model: LanguageModel,
    store: ObjectStore,
    executor: Executor,
    settings: TrainingSettings,
    status: TrainingJobStatus,
) -> None:
    if status.phase == "Pending":
        executor.start(job, model, "prepare", 0)
        status.phase, status.message = "Preparing", "tokenizer and token shards"
    elif status.phase == "Preparing":
        state = executor.observe(job, "prepare", 0)
        if not state.exists:
            executor.start(job, model, "prepare", 0)  # deleted by someone: made again
        elif state.failed:
            step_failed(status, state, "data preparation")
        elif state.succeeded:
            start_training(job, model, executor, status)
    elif status.phase == "Training":
        train(job, model, executor, settings, status)
    elif status.phase == "Evaluating":
        state = executor.observe(job, "evaluate", 0)
        if not state.exists:
            executor.start(job, model, "evaluate", 0)
        elif state.failed:
            step_failed(status, state, "evaluation")
        elif state.succeeded:
            try:
                result = EvaluationResult.decode(state.message)
            except ValueError as exc:
                failed(status, f"evaluation ended without a result: {exc}")
                return
            evaluation = judge(job.spec.evaluation.gate, result)
            complete_training(status, job.metadata.name, model, evaluation, result)
            write_model(store, model)
            status.conditions = ready(status.conditions, True, c.REASON_COMPLETED, status.message)


def train(
    job: TrainingJob, model: LanguageModel, executor: Executor, settings: TrainingSettings, status: TrainingJobStatus
) -> None:
    attempt = status.restarts
    state = executor.observe(job, "train", attempt)
    report = executor.report(job, attempt)
    if report.progress is not None:
        status.progress = Progress.from_event(report.progress)
    if report.checkpoint is not None:
        status.latest_checkpoint = report.checkpoint.path
    if not state.exists:
        if not executor.gone(job, "train", attempt):
            status.message = f"waiting for the processes of attempt {attempt} to stop"  # its Job was deleted
        elif attempt and not executor.gone(job, "train", attempt - 1):
            executor.stop(job, "train", attempt - 1)  # the failed group, removed only once counted
            status.message = f"waiting for the processes of attempt {attempt - 1} to stop"
        elif attempt and seconds_since(status.restarted_at) < settings.restart_grace:
            # A force-deleted pod leaves the API at once while its processes may still run on
            # its node for a moment: two groups must never write the same checkpoints.
            status.message = f"waiting {settings.restart_grace:g} s after attempt {attempt - 1} stopped"
        else:
            start_training(job, model, executor, status)
    elif state.succeeded:
        executor.start(job, model, "evaluate", 0)
        status.phase, status.message = "Evaluating", "validation loss, bits per byte and gate"
    elif state.failed:
        if state.exit_code == EXIT_USAGE:
            failed(status, f"training: {state.message}", c.REASON_INVALID_CONFIGURATION)
        elif status.restarts >= job.spec.max_restarts:
            failed(status, f"training failed after {status.restarts} restarts: {state.message}"[:1024])
        else:
            status.restarts += 1  # counted (written) before the old group is removed
            status.restarted_at = now()
            status.message = f"restart {status.restarts} of {job.spec.max_restarts} from the last checkpoint"
            status.conditions = set_condition(
                status.conditions, c.FAILED, False, c.REASON_RESTARTING, f"attempt {attempt} failed", now()
            )


def start_training(job: TrainingJob, model: LanguageModel, executor: Executor, status: TrainingJobStatus) -> None:
    executor.start(job, model, "train", status.restarts)
    status.phase = "Training"
    status.progress = Progress(step=status.progress.step, total_steps=job.spec.hyperparameters.steps)
    res = job.spec.resources
    status.message = f"{res.nodes} node(s) × {res.procs_per_node} process(es)"


def step_failed(status: TrainingJobStatus, state: StepState, what: Step | str) -> None:
    reason = c.REASON_INVALID_CONFIGURATION if state.exit_code == EXIT_USAGE else c.REASON_STEP_FAILED
    failed(status, f"{what} failed (exit {state.exit_code}): {state.message}"[:1024], reason)


def failed(status: TrainingJobStatus, message: str, reason: str = c.REASON_STEP_FAILED) -> TrainingJobStatus:
    at = now()
    status.phase, status.message, status.completion_time = "Failed", message, at
    status.conditions = set_condition(status.conditions, c.FAILED, True, reason, message, at)
    status.conditions = ready(status.conditions, False, reason, message)
    return status


def write_model(store: ObjectStore, model: LanguageModel) -> None:
    """The model's status with what this job changed (Conflict when someone wrote first)."""
    store.patch_status(
        "LanguageModel",
        model.metadata.namespace or "default",
        model.metadata.name,
        model.status.wire(),
        model.metadata.resource_version,
    )
