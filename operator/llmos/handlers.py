"""kopf handlers: thin. Parse the body, call a reconciler, write status only when it changed.

Each custom resource is reconciled on a timer (and at once on creation or change); the
reconcilers are idempotent and use deterministic child names, so running twice is harmless.
"""

from __future__ import annotations

import os
from typing import Any

import kopf
from pydantic import ValidationError

from llmos.api import GROUP, VERSION
from llmos.api.base import ApiModel
from llmos.api.model_endpoint import ModelEndpoint
from llmos.api.training_job import TrainingJob
from llmos.builders.common import Images
from llmos.kube import Kube, client_from_environment
from llmos.reconcile.serving import reconcile_endpoint
from llmos.reconcile.training import reconcile_training_job

INTERVAL = float(os.environ.get("LLMOS_OPERATOR_INTERVAL", "5"))
IMAGES = Images(runtime=os.environ.get("LLMOS_OPERATOR_RUNTIME_IMAGE", Images.runtime))
KUBE = Kube(client_from_environment())


def parse(model: type[ApiModel], body: Any) -> Any:
    try:
        return model.model_validate(
            {k: v for k, v in dict(body).items() if k in ("apiVersion", "kind", "metadata", "spec", "status")}
        )
    except ValidationError as exc:
        raise kopf.PermanentError(f"invalid {model.__name__}: {exc}") from exc


def write_if_changed(patch: kopf.Patch, old: ApiModel, new: ApiModel) -> None:
    if new.wire() != old.wire():
        patch.status.update(new.wire())


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="llmos.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="llmos.dev")
    settings.posting.level = 30  # warnings and errors become events


@kopf.timer(GROUP, VERSION, "trainingjobs", interval=INTERVAL, initial_delay=0)
def training_job(body: Any, patch: kopf.Patch, **_: Any) -> None:
    job = parse(TrainingJob, body)
    status = reconcile_training_job(KUBE, job, body["metadata"]["uid"], IMAGES)
    write_if_changed(patch, job.status, status)


@kopf.timer(GROUP, VERSION, "modelendpoints", interval=INTERVAL, initial_delay=0)
def model_endpoint(body: Any, patch: kopf.Patch, **_: Any) -> None:
    endpoint = parse(ModelEndpoint, body)
    status = reconcile_endpoint(KUBE, endpoint, body["metadata"]["uid"], IMAGES)
    write_if_changed(patch, endpoint.status, status)
