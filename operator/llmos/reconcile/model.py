"""LanguageModel: check the storage its chain will mount, keep the version history bounded."""

from __future__ import annotations

from llmos import conditions as c
from llmos.api.base import set_condition
from llmos.api.language_model import LanguageModel, LanguageModelStatus
from llmos.lifecycle import now, prune_versions, ready
from llmos.reconcile.seams import Executor


def storage_uris(model: LanguageModel) -> list[str]:
    spec = model.spec
    uris = [spec.storage.uri]
    if spec.base is not None:
        uris.append(spec.base.uri)
    if spec.tokenizer.uri is not None:
        uris.append(spec.tokenizer.uri)
    return uris


def reconcile_model(model: LanguageModel, executor: Executor) -> LanguageModelStatus:
    working = model.model_copy(deep=True)
    status = working.status
    status.observed_generation = model.metadata.generation
    uris = storage_uris(model)
    problem = executor.storage_problem(model.metadata.namespace or "default", uris)
    if problem is None:
        reason, message = c.REASON_CLAIM_FOUND, f"usable: {', '.join(uris)}"
    else:
        reason, message = problem.reason, problem.message
    status.conditions = set_condition(status.conditions, c.STORAGE_READY, problem is None, reason, message, now())
    prune_versions(working)  # keepVersions may have been lowered
    if problem is not None:
        status.conditions = ready(status.conditions, False, c.REASON_STORAGE_NOT_READY, message)
    elif status.latest_passing_version is None:
        status.conditions = ready(
            status.conditions, False, c.REASON_NO_PASSING_VERSION, "no version has passed its gate yet"
        )
    else:
        name = status.latest_passing_version
        status.conditions = ready(status.conditions, True, c.REASON_ALL_GATES_PASSED, f"{name} can be served")
    return status
