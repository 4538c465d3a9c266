"""Pure state transitions shared by the operator and local mode.

They take and return API objects and never touch the API server, files or processes, so
both backends record versions and pick the served version the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmos import conditions as c
from llmos.api.base import set_condition
from llmos.api.language_model import Evaluation, LanguageModel, ModelVersion
from llmos.api.model_endpoint import LATEST, LATEST_PASSING, ModelEndpoint
from llmos.api.training_job import TrainingJobStatus
from llmos.storage import version_uri


def record_version(
    model: LanguageModel,
    job_name: str,
    uri: str,
    step: int,
    tokens_seen: int,
    evaluation: Evaluation,
    created_at: str,
) -> ModelVersion:
    """Add (or, for a re-run of the same job, update) a version; move the latest pointers."""
    status = model.status
    existing = next((v for v in status.versions if v.produced_by == job_name and v.uri == uri), None)
    name = existing.name if existing else f"v{max((v.number for v in status.versions), default=0) + 1}"
    version = ModelVersion(
        name=name,
        uri=uri,
        step=step,
        tokens_seen=tokens_seen,
        produced_by=job_name,
        evaluation=evaluation,
        created_at=created_at,
    )
    status.versions = [v for v in status.versions if v.name != name] + [version]
    status.versions.sort(key=lambda v: v.number)
    status.latest_version = status.versions[-1].name
    passing = [v for v in status.versions if v.evaluation and v.evaluation.passed]
    status.latest_passing_version = passing[-1].name if passing else None
    prune_versions(model)
    status.conditions = set_condition(
        status.conditions,
        c.HAS_PASSING_VERSION,
        bool(passing),
        c.REASON_ALL_GATES_PASSED if passing else c.REASON_NO_PASSING_VERSION,
        f"{passing[-1].name} passed its gate" if passing else "no version has passed its gate yet",
        now=created_at,
    )
    status.observed_generation = model.metadata.generation
    return version


def prune_versions(model: LanguageModel) -> None:
    """Drop the oldest versions beyond spec.keepVersions, never the latest passing one."""
    status = model.status
    while len(status.versions) > model.spec.keep_versions:
        oldest = next(v for v in status.versions if v.name != status.latest_passing_version)
        status.versions.remove(oldest)


def complete_training(
    status: TrainingJobStatus,
    job_name: str,
    model: LanguageModel,
    evaluation: Evaluation,
    step: int,
    tokens_seen: int,
    now: str,
) -> ModelVersion:
    """Record the job's version in the model and mark the job Succeeded with its verdict."""
    uri = version_uri(model, job_name)
    version = record_version(model, job_name, uri, step, tokens_seen, evaluation, now)
    status.evaluation, status.produced_version = evaluation, version.name
    passed = evaluation.passed
    reason = c.REASON_ALL_GATES_PASSED if passed else c.REASON_GATE_FAILED
    status.conditions = set_condition(status.conditions, c.GATE_PASSED, passed, reason, evaluation.reason, now)
    produced = f"produced {model.metadata.name}@{version.name}"
    status.conditions = set_condition(status.conditions, c.SUCCEEDED, True, c.REASON_COMPLETED, produced, now)
    status.phase, status.completion_time = "Succeeded", now
    verdict = "passed" if passed else "did not pass"
    status.message = f"{model.metadata.name}@{version.name} {verdict} its gate"
    return version


@dataclass(frozen=True)
class Selection:
    """The version an endpoint should serve, or why there is none."""

    version: ModelVersion | None
    reason: str
    message: str


def select_version(endpoint: ModelEndpoint, model: LanguageModel | None) -> Selection:
    wanted = endpoint.spec.model_ref.version
    if model is None:
        name = endpoint.spec.model_ref.name
        return Selection(None, c.REASON_MODEL_NOT_FOUND, f"LanguageModel {name!r} does not exist")
    versions = {v.name: v for v in model.status.versions}
    if wanted == LATEST_PASSING:
        if model.status.latest_passing_version is None:
            failing = [f"{v.name}: {v.evaluation.reason}" for v in model.status.versions if v.evaluation]
            why = "; ".join(failing) if failing else "no version has been trained yet"
            return Selection(
                None,
                c.REASON_NO_PASSING_VERSION,
                f"model {model.metadata.name!r} has no version that passed its gate ({why})",
            )
        chosen = versions[model.status.latest_passing_version]
    elif wanted == LATEST:
        if model.status.latest_version is None:
            return Selection(None, c.REASON_NO_PASSING_VERSION, "no version has been trained yet")
        chosen = versions[model.status.latest_version]
    else:
        if wanted not in versions:
            return Selection(None, c.REASON_VERSION_NOT_FOUND, f"version {wanted} does not exist")
        chosen = versions[wanted]
    return Selection(chosen, c.REASON_SERVING, f"serving {model.metadata.name}@{chosen.name}")
