"""Labels, owner references, security context and volumes shared by every child object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmos.api import API_VERSION
from llmos.storage import POD_VOLUMES, claim_of

PART_OF = "app.kubernetes.io/part-of"
MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "app.kubernetes.io/component"
TRAINING_JOB = "llmos.dev/training-job"
MODEL_ENDPOINT = "llmos.dev/model-endpoint"
MODEL_VERSION = "llmos.dev/model-version"
FIELD_MANAGER = "llmos-operator"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """The custom resource that owns a child (deleting it deletes the child)."""

    kind: str
    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class Images:
    runtime: str = "llmos/runtime:dev"
    pull_policy: str = "IfNotPresent"


def labels(owner: Owner, component: str, selector_key: str) -> dict[str, str]:
    return {PART_OF: "llmos", MANAGED_BY: FIELD_MANAGER, COMPONENT: component, selector_key: owner.name}


def metadata(name: str, namespace: str, owner: Owner, object_labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": object_labels,
        "ownerReferences": [owner.reference()],
    }


def restricted_container_security() -> dict[str, Any]:
    """The "restricted" Pod Security Standard, plus a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def storage_volumes(uris: list[str], read_only: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) for every claim the URIs name, mounted at /llmos/volumes/<claim>."""
    claims = sorted({c for c in (claim_of(u) for u in uris) if c})
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    for i, claim in enumerate(claims):
        volumes.append({"name": f"storage-{i}", "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}})
        mounts.append({"name": f"storage-{i}", "mountPath": str(POD_VOLUMES / claim), "readOnly": read_only})
    return volumes, mounts


def resource_requirements(cpu: str | None, memory: str | None, gpus: int) -> dict[str, Any]:
    amounts: dict[str, Any] = {}
    if cpu:
        amounts["cpu"] = cpu
    if memory:
        amounts["memory"] = memory
    limits = dict(amounts)
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    return {"requests": amounts, "limits": limits} if limits else {}
