"""The controller both backends run: read an object, reconcile it, write its status only
when it changed, and turn each change of a condition into an event.

`llmos operator` feeds it keys from kopf's watches; `llmos run` from its file store and its
processes. Only the store and the executor differ.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from llmos import conditions as c
from llmos.api.base import ApiModel, Condition, set_condition
from llmos.api.language_model import LanguageModel
from llmos.api.model_endpoint import ModelEndpoint
from llmos.api.training_job import TrainingJob
from llmos.controller.index import Key
from llmos.kube import ApiError
from llmos.lifecycle import now
from llmos.reconcile.model import reconcile_model
from llmos.reconcile.seams import Executor, ObjectRef, ObjectStore
from llmos.reconcile.serving import reconcile_endpoint
from llmos.reconcile.training import TrainingSettings, reconcile_training_job
from llmos.storage import UnsupportedStorage
from llmos.validation import describe_errors

log = logging.getLogger("llmos.controller")

MODELS: dict[str, type[ApiModel]] = {
    "LanguageModel": LanguageModel,
    "TrainingJob": TrainingJob,
    "ModelEndpoint": ModelEndpoint,
}
PERMANENT_API_ERRORS = frozenset({400, 403, 422})
"""API answers that say the request itself is wrong (or not allowed): retrying cannot help."""
SECRET_RECHECK = 10.0
"""Seconds between checks of a missing Secret (Secrets are not watched)."""


class Controller:
    def __init__(self, store: ObjectStore, executor: Executor, training: TrainingSettings) -> None:
        self.store, self.executor, self.training = store, executor, training

    def reconcile(self, key: Key) -> float | None:
        """Reconcile one object; returns when to look again without an event, if ever."""
        body = self.store.read(key.kind, key.namespace, key.name)
        if body is None:
            return None
        ref = ObjectRef(key.kind, key.namespace, key.name, body["metadata"].get("uid"))
        try:
            obj: Any = MODELS[key.kind].model_validate(
                {k: v for k, v in body.items() if k in ("apiVersion", "kind", "metadata", "spec", "status")}
            )
        except ValidationError as exc:
            self.report_invalid(key, ref, body, exc)
            return None
        try:
            return self._reconcile(key, ref, obj)
        except (UnsupportedStorage, OSError, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.status not in PERMANENT_API_ERRORS:
                raise  # conflicts, throttling, an API server restarting: the retry will do
            # What retrying cannot fix without a change (a child the API server refuses, a
            # program missing here) becomes a condition; the loop still retries with back-off.
            self.report(key, ref, body, c.REASON_RECONCILE_ERROR, str(exc)[:1024])
            raise

    def _reconcile(self, key: Key, ref: ObjectRef, obj: Any) -> float | None:
        after: float | None = None
        status: Any
        if key.kind == "LanguageModel":
            status = reconcile_model(obj, self.executor)
        elif key.kind == "TrainingJob":
            status, after = reconcile_training_job(obj, self.store, self.executor, self.training)
        else:
            status = reconcile_endpoint(obj, self.store, self.executor)
            ready = next((cond for cond in status.conditions if cond.type == c.READY), None)
            if ready is not None and ready.reason == c.REASON_SECRET_MISSING:
                after = SECRET_RECHECK
        if status.wire() != obj.status.wire():
            old_phase, phase = getattr(obj.status, "phase", None), getattr(status, "phase", None)
            log.info("%s: %s → %s %s", key, old_phase, phase, getattr(status, "message", "") or "")
            self.store.patch_status(key.kind, key.namespace, key.name, status.wire(), obj.metadata.resource_version)
            self.announce(ref, obj.status.conditions, status.conditions)
        return after

    def report_invalid(self, key: Key, ref: ObjectRef, body: dict[str, Any], exc: ValidationError) -> None:
        """An object the types reject (the API server accepted it): say why in its status."""
        self.report(key, ref, body, c.REASON_INVALID_SPEC, "; ".join(describe_errors(exc))[:4096])

    def report(self, key: Key, ref: ObjectRef, body: dict[str, Any], reason: str, message: str) -> None:
        """Ready=False with `reason` in the object's status (once: an unchanged one is not written)."""
        status = dict(body.get("status") or {})
        try:
            old = [Condition.model_validate(cond) for cond in status.get("conditions", [])]
        except ValidationError:
            old = []
        new = set_condition(old, c.READY, False, reason, message, now())
        wanted = {**status, "conditions": [cond.wire() for cond in new]}
        if wanted != status:
            log.warning("%s: %s: %s", key, reason, message)
            resource_version = body["metadata"].get("resourceVersion")
            self.store.patch_status(key.kind, key.namespace, key.name, wanted, resource_version)
            self.announce(ref, old, new)

    def announce(self, ref: ObjectRef, old: list[Condition], new: list[Condition]) -> None:
        """One event per condition whose status or reason changed (never on an idle pass)."""
        before = {cond.type: (cond.status, cond.reason) for cond in old}
        for cond in new:
            if before.get(cond.type) == (cond.status, cond.reason):
                continue
            warning = cond.reason in c.WARNING_REASONS and cond.status != "True"
            if cond.type == c.FAILED and cond.status == "True":
                warning = True
            self.store.event(ref, "Warning" if warning else "Normal", cond.reason, f"{cond.type}: {cond.message}")
