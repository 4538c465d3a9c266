"""kopf wiring of `llmos operator`: watch events feed the control loop; its workers run the
shared reconcilers against the Kubernetes API (KubeStore) and Kubernetes objects
(ClusterExecutor).

An idle cluster costs no API writes and no timers: the only scheduled visits are running
training jobs (their progress lives in rank 0's log) and a slow resync (reads only).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from llmos.api import API_VERSION, GROUP, VERSION
from llmos.builders.common import FIELD_MANAGER, MANAGED_BY
from llmos.cluster.executor import ClusterExecutor
from llmos.cluster.store import KubeStore
from llmos.controller.core import MODELS, Controller
from llmos.controller.index import Key
from llmos.controller.loop import ControlLoop
from llmos.controller.settings import OperatorSettings
from llmos.kube import Kube, ObjectCache, client_from_environment
from llmos.reconcile.training import TrainingSettings

SETTINGS = OperatorSettings()
KUBE = Kube(client_from_environment(), cache=ObjectCache())
LOOP = ControlLoop(
    Controller(
        KubeStore(KUBE),
        ClusterExecutor(KUBE, SETTINGS.images),
        TrainingSettings(SETTINGS.progress_interval, SETTINGS.restart_grace),
    ),
    SETTINGS.retry_max,
)
TASKS: list[asyncio.Task[None]] = []


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.WARNING  # warnings and errors become events
    settings.batching.batch_window = 0.01  # events are only enqueued: no need to wait for more
    settings.watching.client_timeout = 300
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(SETTINGS.workers, thread_name_prefix="llmos-reconcile"))
    TASKS.extend(asyncio.create_task(LOOP.worker()) for _ in range(SETTINGS.workers))
    TASKS.append(asyncio.create_task(LOOP.resync(SETTINGS.resync_interval)))


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    for task in TASKS:
        task.cancel()


def observe(event: Any) -> bool:
    """Keep the newest body of a watched object (reconcilers read it instead of the API);
    True when the event says it was deleted."""
    deleted = event.get("type") == "DELETED"
    if KUBE.cache is not None:
        KUBE.cache.observe(dict(event["object"]), deleted=deleted)
    return deleted


def on_kind(kind: str) -> Callable[..., Any]:
    async def handler(event: Any, body: Any, name: str, namespace: str | None, **_: Any) -> None:
        deleted = observe(event)
        LOOP.changed(Key(kind, namespace or "default", name), None if deleted else dict(body))

    handler.__name__ = kind.lower()
    return handler


for kind_name in MODELS:
    kopf.on.event(GROUP, VERSION, f"{kind_name.lower()}s")(on_kind(kind_name))

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
                LOOP.queue.add(Key(ref["kind"], namespace or "default", ref["name"]))

    return child


for group, version, plural, wakes in CHILDREN:
    kopf.on.event(group, version, plural, labels={MANAGED_BY: FIELD_MANAGER}, id=f"child-{plural}")(on_child(wakes))


@kopf.on.event("", "v1", "persistentvolumeclaims")
async def claim(namespace: str | None, **_: Any) -> None:
    """A claim appeared, vanished or changed phase: the models of its namespace re-check storage."""
    for model in LOOP.users.models(namespace or "default"):
        LOOP.queue.add(model)
