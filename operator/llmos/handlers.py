"""kopf wiring: watch events feed one work queue; a few workers reconcile one object at a time.

Every event (a custom resource changed, or a child the operator made, or a claim a model
names) only enqueues the key of the custom resource it concerns; events for one object
coalesce while it waits. Workers read the object, run its pure-ish reconciler in a thread and
patch the status only when it changed, so an idle cluster costs no API writes and no timers:
the only scheduled visits are running training jobs (their progress lives in rank 0's log)
and a slow resync of everything (reads only while nothing changes).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from pydantic import ValidationError

from llmos.api import API_VERSION, GROUP, VERSION
from llmos.api.base import ApiModel
from llmos.api.language_model import LanguageModel
from llmos.api.model_endpoint import ModelEndpoint
from llmos.api.training_job import TrainingJob
from llmos.builders.common import FIELD_MANAGER, MANAGED_BY
from llmos.controller.index import Key, ModelUsers
from llmos.controller.queue import WorkQueue
from llmos.controller.settings import OperatorSettings
from llmos.kube import ApiError, Kube, ObjectCache, client_from_environment
from llmos.reconcile.model import reconcile_model
from llmos.reconcile.serving import reconcile_endpoint
from llmos.reconcile.training import reconcile_training_job, revisit_after

log = logging.getLogger("llmos.operator")


SETTINGS = OperatorSettings.from_environment()
KUBE = Kube(client_from_environment(), cache=ObjectCache())
QUEUE: WorkQueue[Key] = WorkQueue()
USERS = ModelUsers()
FAILURES: dict[Key, int] = {}
TASKS: list[asyncio.Task[None]] = []
MODELS: dict[str, type[ApiModel]] = {
    "LanguageModel": LanguageModel,
    "TrainingJob": TrainingJob,
    "ModelEndpoint": ModelEndpoint,
}


def reconcile(key: Key) -> float | None:
    """Reconcile one object (in a worker thread); returns when to look again, if ever."""
    body = KUBE.read(API_VERSION, key.kind, key.namespace, key.name)
    if body is None:
        return None
    try:
        obj: Any = MODELS[key.kind].model_validate(
            {k: v for k, v in body.items() if k in ("apiVersion", "kind", "metadata", "spec", "status")}
        )
    except ValidationError as exc:
        log.error("%s is invalid, not reconciled: %s", key, exc)
        return None
    after: float | None = None
    status: ApiModel
    if key.kind == "LanguageModel":
        status = reconcile_model(KUBE, obj)
    elif key.kind == "TrainingJob":
        job_status = reconcile_training_job(KUBE, obj, obj.metadata.uid, SETTINGS.images, SETTINGS.restart_grace)
        status, after = job_status, revisit_after(job_status, SETTINGS.progress_interval)
    else:
        status = reconcile_endpoint(KUBE, obj, obj.metadata.uid, SETTINGS.images)
    if status.wire() != obj.status.wire():
        old_phase, phase = getattr(obj.status, "phase", None), getattr(status, "phase", None)
        message = getattr(status, "message", None) or ""
        log.info("%s: %s → %s %s", key, old_phase, phase, message)
        KUBE.patch_status(API_VERSION, key.kind, key.namespace, key.name, status.wire(), obj.metadata.resource_version)
    return after


async def worker() -> None:
    while True:
        key = await QUEUE.get()
        try:
            after = await asyncio.get_running_loop().run_in_executor(None, reconcile, key)
            FAILURES.pop(key, None)
        except ApiError as exc:
            after = 0.2 if exc.status == 409 else backoff(key)  # 409: someone wrote first; read again
            if exc.status != 409:
                log.warning("%s: %s (retry in %.1f s)", key, exc, after)
        except Exception:
            after = backoff(key)
            log.exception("%s: reconciliation failed (retry in %.1f s)", key, after)
        finally:
            QUEUE.done(key)
        if after is not None:
            QUEUE.add(key, after=after)


def backoff(key: Key) -> float:
    FAILURES[key] = FAILURES.get(key, 0) + 1
    return float(min(SETTINGS.retry_max, 0.5 * 2 ** FAILURES[key]))


async def resync() -> None:
    """Visit everything now and then, spread over the interval (reads only when idle)."""
    while True:
        await asyncio.sleep(SETTINGS.resync_interval * (0.9 + 0.2 * random.random()))
        for key in USERS.known():
            QUEUE.add(key, after=random.random() * SETTINGS.resync_interval / 10)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.WARNING  # warnings and errors become events
    settings.batching.batch_window = 0.01  # events are only enqueued: no need to wait for more
    settings.watching.client_timeout = 300
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(SETTINGS.workers, thread_name_prefix="llmos-reconcile"))
    TASKS.extend(asyncio.create_task(worker()) for _ in range(SETTINGS.workers))
    TASKS.append(asyncio.create_task(resync()))


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    for task in TASKS:
        task.cancel()


def deleted(event: Any) -> bool:
    return event.get("type") == "DELETED"


def observe(event: Any) -> None:
    """Keep the newest body of a watched object (reconcilers read it instead of the API)."""
    if KUBE.cache is not None:
        KUBE.cache.observe(dict(event["object"]), deleted=deleted(event))


@kopf.on.event(GROUP, VERSION, "languagemodels")
async def language_model(event: Any, name: str, namespace: str | None, **_: Any) -> None:
    namespace = namespace or "default"
    key = Key("LanguageModel", namespace, name)
    observe(event)
    if deleted(event):
        USERS.forget(key)
        QUEUE.forget(key)
    else:
        USERS.add_model(key)
        QUEUE.add(key)
    for user in USERS.users(namespace, name):
        QUEUE.add(user)


def on_user(kind: str) -> Callable[..., Any]:
    async def handler(event: Any, body: Any, name: str, namespace: str | None, **_: Any) -> None:
        key = Key(kind, namespace or "default", name)
        observe(event)
        if deleted(event):
            USERS.forget(key)
            QUEUE.forget(key)
            return
        USERS.record(key, body.get("spec", {}).get("modelRef", {}).get("name"))
        QUEUE.add(key)

    handler.__name__ = kind.lower()
    return handler


kopf.on.event(GROUP, VERSION, "trainingjobs")(on_user("TrainingJob"))
kopf.on.event(GROUP, VERSION, "modelendpoints")(on_user("ModelEndpoint"))

# The children the operator makes, and the events of theirs that concern the owner: the
# owner's status follows its Jobs and Deployments; the others matter only when deleted (they
# are made again). A child's creation never does: the reconciliation that made it is running.
CHILDREN = (
    ("batch", "v1", "jobs", ("MODIFIED", "DELETED")),
    ("apps", "v1", "deployments", ("MODIFIED", "DELETED")),
    ("", "v1", "services", ("DELETED",)),
    ("autoscaling", "v2", "horizontalpodautoscalers", ("DELETED",)),
    ("policy", "v1", "poddisruptionbudgets", ("DELETED",)),
)


def on_child(wakes_owner: tuple[str, ...]) -> Callable[..., Any]:
    async def child(event: Any, body: Any, namespace: str | None, **_: Any) -> None:
        """Cache the child; wake its owner when the change concerns it."""
        observe(event)
        if event.get("type") not in wakes_owner:
            return
        for ref in body.get("metadata", {}).get("ownerReferences", []):
            if ref.get("controller") and ref.get("apiVersion") == API_VERSION and ref.get("kind") in MODELS:
                QUEUE.add(Key(ref["kind"], namespace or "default", ref["name"]))

    return child


for group, version, plural, wakes in CHILDREN:
    kopf.on.event(group, version, plural, labels={MANAGED_BY: FIELD_MANAGER}, id=f"child-{plural}")(on_child(wakes))


@kopf.on.event("", "v1", "persistentvolumeclaims")
async def claim(namespace: str | None, **_: Any) -> None:
    """A claim appeared, vanished or changed phase: the models of its namespace re-check storage."""
    for model in USERS.models(namespace or "default"):
        QUEUE.add(model)
