"""The object store of the operator: the Kubernetes API (reads from the watch cache)."""

from __future__ import annotations

import os
from typing import Any

from llmos.api import API_VERSION
from llmos.builders.common import FIELD_MANAGER
from llmos.kube import ApiError, Kube
from llmos.lifecycle import now
from llmos.reconcile.seams import Conflict, EventType, ObjectRef


class KubeStore:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.instance = os.environ.get("HOSTNAME", "llmos-operator")

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.read(API_VERSION, kind, namespace, name)

    def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any], resource_version: str | None
    ) -> None:
        try:
            self.kube.patch_status(API_VERSION, kind, namespace, name, status, resource_version)
        except ApiError as exc:
            if exc.status == 409:
                raise Conflict(str(exc)) from exc
            raise

    def event(self, ref: ObjectRef, type_: EventType, reason: str, message: str) -> None:
        """A core/v1 Event, as `kubectl describe` and `kubectl events` show them."""
        at = now()
        self.kube.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{ref.name}.", "namespace": ref.namespace},
                "involvedObject": {
                    "apiVersion": API_VERSION,
                    "kind": ref.kind,
                    "name": ref.name,
                    "namespace": ref.namespace,
                    **({"uid": ref.uid} if ref.uid else {}),
                },
                "type": type_,
                "reason": reason,
                "message": message[:1024],
                "source": {"component": FIELD_MANAGER},
                "reportingComponent": FIELD_MANAGER,
                "reportingInstance": self.instance,
                "firstTimestamp": at,
                "lastTimestamp": at,
                "count": 1,
            }
        )
