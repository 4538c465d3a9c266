"""Pure state transitions shared by every reconciler: naming and recording versions, judging
gates, choosing the served version. They take and return API objects and touch nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from llmos_contract.events import EvaluationResult

from llmos import conditions as c
from llmos.api.base import Condition, set_condition
from llmos.api.language_model import Evaluation, LanguageModel, ModelVersion, Verdict
from llmos.api.model_endpoint import LATEST, LATEST_PASSING, ModelEndpoint
from llmos.api.training_job import Gate, TrainingJobStatus
from llmos.storage import version_uri

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # RFC 3339, UTC, as Kubernetes writes times


def now() -> str:
    return datetime.now(UTC).strftime(TIME_FORMAT)


def seconds_since(timestamp: str | None) -> float:
    if timestamp is None:
        return float("inf")
    return (datetime.now(UTC) - datetime.strptime(timestamp, TIME_FORMAT).replace(tzinfo=UTC)).total_seconds()


def allocate_version(model: LanguageModel, run: str) -> tuple[str, bool]:
    """The next version name of the model for a run (job name, uid and generation), and
    whether the model's status changed (the caller writes it back before using the name).
    The same run asking again, after a crash between the two writes, gets the same name."""
    status = model.status
    if status.last_allocated_to == run and status.allocated_versions:
        return f"v{status.allocated_versions}", False
    status.allocated_versions = max(status.allocated_versions, max((v.number for v in status.versions), default=0))
    status.allocated_versions += 1
    status.last_allocated_to = run
    return f"v{status.allocated_versions}", True


def verdict(gates: list[Gate], metrics: dict[str, float]) -> Verdict:
    failed = []
    for gate in gates:
        if gate.metric not in metrics:
            failed.append(f"{gate} (not measured)")
        elif not gate.holds(metrics):
            failed.append(f"{gate} (got {metrics[gate.metric]:g})")
    reason = "gate failed: " + "; ".join(failed) if failed else "all gates passed"
    return Verdict(metrics=metrics, passed=not failed, reason=reason)


def judge(gates: list[Gate], result: EvaluationResult) -> Evaluation:
    """The runtime measured; this decides whether the version, and each of its compressed
    variants, may be served."""
    main = verdict(gates, result.metrics)
    variants = {name: verdict(gates, metrics) for name, metrics in result.variants.items()}
    return Evaluation(metrics=main.metrics, passed=main.passed, reason=main.reason, variants=variants)


def record_version(model: LanguageModel, version: ModelVersion, at: str) -> None:
    """Add (or, recorded again after a crash, replace) a version; move the latest pointers."""
    status = model.status
    status.versions = sorted([v for v in status.versions if v.name != version.name] + [version], key=lambda v: v.number)
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
        now=at,
    )


def prune_versions(model: LanguageModel) -> None:
    """Drop the oldest versions beyond spec.keepVersions; the latest, the latest passing and
    the latest whose int8 variant passed always stay (so with keepVersions 1 all may be kept)."""
    status = model.status
    kept = {status.latest_version, status.latest_passing_version}
    for variant in {name for v in status.versions if v.evaluation for name in v.evaluation.variants}:
        passing = [v.name for v in status.versions if variant_passed(v, variant)]
        kept.update(passing[-1:])  # what an endpoint serving that variant follows
    while len(status.versions) > model.spec.keep_versions:
        oldest = next((v for v in status.versions if v.name not in kept), None)
        if oldest is None:
            return
        status.versions.remove(oldest)


def complete_training(
    status: TrainingJobStatus, job_name: str, model: LanguageModel, evaluation: Evaluation, result: EvaluationResult
) -> ModelVersion:
    """Record the job's version in the model and mark the job Succeeded with its verdict."""
    assert status.produced_version is not None
    at = now()
    version = ModelVersion(
        name=status.produced_version,
        uri=version_uri(model, status.produced_version),
        step=result.step,
        tokens_seen=result.tokens_seen,
        produced_by=job_name,
        evaluation=evaluation,
        created_at=at,
    )
    record_version(model, version, at)
    status.evaluation = evaluation
    passed = evaluation.passed
    reason = c.REASON_ALL_GATES_PASSED if passed else c.REASON_GATE_FAILED
    variants = "".join(
        f"; its {name} variant {'passed' if v.passed else 'did not: ' + v.reason}"
        for name, v in evaluation.variants.items()
    )
    message = evaluation.reason + variants
    status.conditions = set_condition(status.conditions, c.GATE_PASSED, passed, reason, message, at)
    produced = f"produced {model.metadata.name}@{version.name}"
    status.conditions = set_condition(status.conditions, c.SUCCEEDED, True, c.REASON_COMPLETED, produced, at)
    status.phase, status.completion_time = "Succeeded", at
    verdict = "passed" if passed else "did not pass"
    status.message = f"{model.metadata.name}@{version.name} {verdict} its gate{variants}"
    return version


def ready(conditions: list[Condition], is_ready: bool, reason: str, message: str) -> list[Condition]:
    """The Ready condition every kind has (`kubectl wait --for=condition=Ready`)."""
    return set_condition(conditions, c.READY, is_ready, reason, message, now())


@dataclass(frozen=True)
class Selection:
    """The version an endpoint should serve, or why there is none."""

    version: ModelVersion | None
    reason: str
    message: str


def variant_passed(version: ModelVersion, variant: str) -> bool:
    """Whether the version's `variant` (none: the version itself) passed its gate."""
    evaluation = version.evaluation
    if evaluation is None:
        return False
    if variant == "none":
        return evaluation.passed
    return variant in evaluation.variants and evaluation.variants[variant].passed


def select_version(endpoint: ModelEndpoint, model: LanguageModel | None) -> Selection:
    wanted, variant = endpoint.spec.model_ref.version, endpoint.spec.quantization
    if model is None:
        name = endpoint.spec.model_ref.name
        return Selection(None, c.REASON_MODEL_NOT_FOUND, f"LanguageModel {name!r} does not exist")
    versions = {v.name: v for v in model.status.versions}
    served = "" if variant == "none" else f" ({variant})"
    if wanted == LATEST_PASSING:
        candidates = [v for v in model.status.versions if variant_passed(v, variant)]
        if not candidates:
            if variant != "none":
                return Selection(
                    None,
                    c.REASON_NO_PASSING_VERSION,
                    f"model {model.metadata.name!r} has no version whose {variant} variant passed its gate "
                    f"(a TrainingJob makes one with spec.export.quantization: [{variant}])",
                )
            failing = [f"{v.name}: {v.evaluation.reason}" for v in model.status.versions if v.evaluation]
            why = "; ".join(failing) if failing else "no version has been trained yet"
            return Selection(
                None,
                c.REASON_NO_PASSING_VERSION,
                f"model {model.metadata.name!r} has no version that passed its gate ({why})",
            )
        chosen = candidates[-1]
    elif wanted == LATEST:
        if model.status.latest_version is None:
            return Selection(None, c.REASON_NO_PASSING_VERSION, "no version has been trained yet")
        chosen = versions[model.status.latest_version]
    else:
        if wanted not in versions:
            return Selection(None, c.REASON_VERSION_NOT_FOUND, f"version {wanted} does not exist")
        chosen = versions[wanted]
    evaluation = chosen.evaluation
    if variant != "none" and (evaluation is None or variant not in evaluation.variants):
        # Never an unmeasured variant: latest and pinned versions must have been evaluated as served.
        return Selection(
            None,
            c.REASON_VERSION_NOT_FOUND,
            f"{model.metadata.name}@{chosen.name} has no evaluated {variant} variant "
            f"(a TrainingJob makes one with spec.export.quantization: [{variant}])",
        )
    return Selection(chosen, c.REASON_SERVING, f"serving {model.metadata.name}@{chosen.name}{served}")
