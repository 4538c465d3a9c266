"""ModelEndpoint: serve the selected version; roll out a newer passing one; never a failing one."""

from __future__ import annotations

from pydantic import ValidationError

from llmos import conditions as c
from llmos.api.base import set_condition
from llmos.api.language_model import LanguageModel
from llmos.api.model_endpoint import ModelEndpoint, ModelEndpointStatus
from llmos.lifecycle import Selection, now, ready, select_version
from llmos.reconcile.seams import Executor, ObjectStore


def selection_for(endpoint: ModelEndpoint, store: ObjectStore) -> Selection:
    namespace = endpoint.metadata.namespace or "default"
    body = store.read("LanguageModel", namespace, endpoint.spec.model_ref.name)
    try:
        model = LanguageModel.model_validate(body) if body else None
    except ValidationError:
        name = endpoint.spec.model_ref.name
        return Selection(None, c.REASON_MODEL_NOT_FOUND, f"LanguageModel {name!r} is invalid (see its status)")
    return select_version(endpoint, model)


def reconcile_endpoint(endpoint: ModelEndpoint, store: ObjectStore, executor: Executor) -> ModelEndpointStatus:
    status = endpoint.status.model_copy(deep=True)
    status.observed_generation = endpoint.metadata.generation
    namespace = endpoint.metadata.namespace or "default"
    if endpoint.spec.auth is not None:
        ref = endpoint.spec.auth.api_key_secret_ref
        problem = executor.secret_problem(namespace, ref.name, ref.key)
        if problem is not None:
            status.phase = "Pending" if status.served_version is None else status.phase
            status.conditions = ready(status.conditions, False, problem.reason, problem.message)
            return status
    selection = selection_for(endpoint, store)
    if selection.version is None:
        status.conditions = set_condition(
            status.conditions, c.MODEL_AVAILABLE, False, selection.reason, selection.message, now()
        )
        if status.served_version is None:
            status.phase = "WaitingForModel"
            status.conditions = ready(status.conditions, False, selection.reason, selection.message)
        return status
    status.conditions = set_condition(
        status.conditions, c.MODEL_AVAILABLE, True, c.REASON_SERVING, selection.message, now()
    )
    state = executor.serve(endpoint, selection.version)
    status.replicas, status.ready_replicas, status.url = state.replicas, state.ready_replicas, state.url
    target = state.target
    if state.rolled_out:
        status.phase, status.served_version = "Ready", target
        status.conditions = set_condition(
            status.conditions, c.ROLLOUT_PROGRESSING, False, c.REASON_COMPLETED, f"all replicas serve {target}", now()
        )
        serving = f"serving {endpoint.spec.model_ref.name}@{target}"
        status.conditions = ready(status.conditions, True, c.REASON_SERVING, serving)
    else:
        status.phase = "RollingOut" if status.served_version else "Pending"
        status.conditions = set_condition(
            status.conditions, c.ROLLOUT_PROGRESSING, True, c.REASON_STARTING, f"rolling out {target}", now()
        )
        if status.served_version is None:
            status.conditions = ready(status.conditions, False, c.REASON_STARTING, f"starting {target}")
    return status
