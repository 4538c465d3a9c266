"""ModelEndpoint: serve the selected version; roll out a newer passing one; never a failing one."""

from __future__ import annotations

from llmos import conditions as c
from llmos.api import API_VERSION
from llmos.api.base import set_condition
from llmos.api.language_model import LanguageModel
from llmos.api.model_endpoint import ModelEndpoint, ModelEndpointStatus
from llmos.builders.common import MODEL_VERSION, Images, Owner
from llmos.builders.serving import (
    build_autoscaler,
    build_deployment,
    build_disruption_budget,
    build_service,
    service_url,
)
from llmos.kube import Kube
from llmos.lifecycle import select_version
from llmos.reconcile.training import now


def reconcile_endpoint(kube: Kube, endpoint: ModelEndpoint, uid: str, images: Images) -> ModelEndpointStatus:
    status = endpoint.status.model_copy(deep=True)
    status.observed_generation = endpoint.metadata.generation
    namespace = endpoint.metadata.namespace or "default"
    owner = Owner("ModelEndpoint", endpoint.metadata.name, uid)
    body = kube.read(API_VERSION, "LanguageModel", namespace, endpoint.spec.model_ref.name)
    selection = select_version(endpoint, LanguageModel.model_validate(body) if body else None)
    if selection.version is None:
        status.conditions = set_condition(
            status.conditions, c.MODEL_AVAILABLE, False, selection.reason, selection.message, now()
        )
        if status.served_version is None:
            status.phase = "WaitingForModel"
            status.conditions = set_condition(
                status.conditions, c.READY, False, selection.reason, selection.message, now()
            )
        return status
    version = selection.version
    status.conditions = set_condition(
        status.conditions, c.MODEL_AVAILABLE, True, c.REASON_SERVING, selection.message, now()
    )
    children = [
        build_deployment(endpoint, version, owner, images),
        build_service(endpoint, owner),
        build_autoscaler(endpoint, owner),
    ]
    budget = build_disruption_budget(endpoint, owner)
    deployment = kube.ensure_all(children if budget is None else [*children, budget])[0]
    state = deployment.get("status", {})
    wanted = state.get("replicas", 0)
    rolled_out = (
        state.get("observedGeneration") == deployment["metadata"].get("generation")
        and state.get("updatedReplicas", 0) == wanted
        and state.get("readyReplicas", 0) >= 1
        and wanted == state.get("readyReplicas", 0)
    )
    status.replicas, status.ready_replicas = wanted, state.get("readyReplicas", 0)
    status.url = service_url(endpoint)
    template_version = deployment["spec"]["template"]["metadata"]["labels"].get(MODEL_VERSION)
    if rolled_out:
        status.phase, status.served_version = "Ready", template_version
        status.conditions = set_condition(
            status.conditions,
            c.ROLLOUT_PROGRESSING,
            False,
            c.REASON_COMPLETED,
            f"all replicas serve {template_version}",
            now(),
        )
        status.conditions = set_condition(
            status.conditions,
            c.READY,
            True,
            c.REASON_SERVING,
            f"serving {endpoint.spec.model_ref.name}@{template_version}",
            now(),
        )
    else:
        status.phase = "RollingOut" if status.served_version else "Pending"
        status.conditions = set_condition(
            status.conditions, c.ROLLOUT_PROGRESSING, True, c.REASON_STARTING, f"rolling out {template_version}", now()
        )
        if status.served_version is None:
            status.conditions = set_condition(
                status.conditions, c.READY, False, c.REASON_STARTING, f"starting {template_version}", now()
            )
    return status
