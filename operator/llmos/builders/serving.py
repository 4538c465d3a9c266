"""The children of a ModelEndpoint: Deployment, Service, HorizontalPodAutoscaler and, when
more than one replica must stay up, a PodDisruptionBudget."""

from __future__ import annotations

from typing import Any

from llmos.api.language_model import ModelVersion
from llmos.api.model_endpoint import ModelEndpoint
from llmos.builders.common import (
    MODEL_ENDPOINT,
    MODEL_VERSION,
    Images,
    Manifest,
    Owner,
    labels,
    metadata,
    pod_security,
    resource_requirements,
    restricted_container_security,
    storage_volumes,
)
from llmos.commands import SERVE_PORT, serve_command
from llmos.storage import POD_VOLUMES, resolve

API_KEYS_DIR = "/llmos/secrets/api-keys"
DRAIN_SECONDS = 30
STARTUP_SECONDS = 600


def selector(owner: Owner) -> dict[str, str]:
    """Immutable once the Deployment exists: only the endpoint's name."""
    return {MODEL_ENDPOINT: owner.name}


def child_metadata(endpoint: ModelEndpoint, owner: Owner) -> dict[str, Any]:
    """Every child of an endpoint carries its name, namespace, labels and owner."""
    namespace = endpoint.metadata.namespace or "default"
    return metadata(endpoint.metadata.name, namespace, owner, labels(owner, "server", MODEL_ENDPOINT))


def build_deployment(endpoint: ModelEndpoint, version: ModelVersion, owner: Owner, images: Images) -> Manifest:
    spec = endpoint.spec
    volumes, mounts = storage_volumes([version.uri], read_only=True)
    key_file = None
    if spec.auth is not None:
        ref = spec.auth.api_key_secret_ref
        volumes.append(
            {"name": "api-keys", "secret": {"secretName": ref.name, "items": [{"key": ref.key, "path": ref.key}]}}
        )
        mounts.append({"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True})
        key_file = f"{API_KEYS_DIR}/{ref.key}"
    model_dir = resolve(version.uri, POD_VOLUMES, allow_files=False)
    probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5}
    container: dict[str, Any] = {
        "name": "server",
        "image": images.runtime,
        "imagePullPolicy": images.pull_policy,
        "command": [*serve_command(endpoint, model_dir, api_key_file=key_file), "--drain-timeout", str(DRAIN_SECONDS)],
        "ports": [{"name": "http", "containerPort": SERVE_PORT}],
        "volumeMounts": mounts,
        "securityContext": restricted_container_security(),
        # Model load can take minutes: the startup probe waits for it, so liveness can stay strict.
        "startupProbe": {**probe, "failureThreshold": STARTUP_SECONDS // 5},
        "readinessProbe": {**probe, "failureThreshold": 1},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "failureThreshold": 3},
        # Endpoints drop the pod while it sleeps; then SIGTERM drains the accepted streams.
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
    }
    resources = resource_requirements(spec.resources.cpu, spec.resources.memory, spec.resources.gpus)
    if resources:
        container["resources"] = resources
    pod_labels = {**labels(owner, "server", MODEL_ENDPOINT), MODEL_VERSION: version.name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(endpoint, owner),
        "spec": {
            # No replicas: the HorizontalPodAutoscaler owns that field (no GitOps drift).
            "selector": {"matchLabels": selector(owner)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "securityContext": pod_security(),
                    "containers": [container],
                    "volumes": volumes,
                    "terminationGracePeriodSeconds": DRAIN_SECONDS + 15,
                    "enableServiceLinks": False,
                    "automountServiceAccountToken": False,
                },
            },
        },
    }


def build_service(endpoint: ModelEndpoint, owner: Owner) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(endpoint, owner),
        "spec": {"selector": selector(owner), "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def build_autoscaler(endpoint: ModelEndpoint, owner: Owner) -> Manifest:
    spec = endpoint.spec
    if spec.autoscaling.metric == "cpu":
        metric = {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": spec.autoscaling.target},
            },
        }
    else:
        metric = {
            "type": "Pods",
            "pods": {
                "metric": {"name": "llmos_http_requests_in_flight"},
                "target": {"type": "AverageValue", "averageValue": str(spec.autoscaling.target)},
            },
        }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": child_metadata(endpoint, owner),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": endpoint.metadata.name},
            "minReplicas": spec.replicas.min,
            "maxReplicas": spec.replicas.max,
            "metrics": [metric],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def build_disruption_budget(endpoint: ModelEndpoint, owner: Owner) -> Manifest | None:
    if endpoint.spec.replicas.min <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": child_metadata(endpoint, owner),
        "spec": {"minAvailable": endpoint.spec.replicas.min - 1, "selector": {"matchLabels": selector(owner)}},
    }


def service_url(endpoint: ModelEndpoint) -> str:
    return f"http://{endpoint.metadata.name}.{endpoint.metadata.namespace or 'default'}.svc/v1"
