"""The Helm chart: installs the operator in the cluster with only the permissions it needs,
and that operator reconciles with its own ServiceAccount."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import Cluster, give_passing_version
from tests.conftest import REPO

CHART = REPO / "charts" / "llmos"


@pytest.fixture(scope="module")
def helm() -> str:
    built = subprocess.run([str(REPO / "hack" / "install-helm")], check=True, capture_output=True, text=True)
    return built.stdout.strip()


def run_helm(helm: str, cluster: Cluster, *args: str) -> str:
    result = subprocess.run(
        [helm, "--kubeconfig", str(cluster.kubeconfig), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}{result.stdout}"
    return result.stdout


@pytest.fixture
def release(helm: str, cluster: Cluster, namespace: str) -> Iterator[str]:
    name = namespace.removeprefix("llmos-test-")
    run_helm(
        helm,
        cluster,
        "install",
        name,
        str(CHART),
        "-n",
        namespace,
        "--set",
        "watchAllNamespaces=false",
        "--set",
        f"namespaces={{{namespace}}}",
        "--set",
        "image.tag=dev",
        "--wait",
        "--timeout",
        "180s",
    )
    yield name
    run_helm(helm, cluster, "uninstall", name, "-n", namespace, "--wait")


def test_chart_lints_and_renders_both_scopes(helm: str, cluster: Cluster) -> None:
    run_helm(helm, cluster, "lint", str(CHART))
    cluster_wide = run_helm(helm, cluster, "template", "x", str(CHART), "--kube-version", "1.34.0")
    assert "kind: ClusterRole\n" in cluster_wide and "--all-namespaces" in cluster_wide
    scoped = run_helm(
        helm,
        cluster,
        "template",
        "x",
        str(CHART),
        "--kube-version",
        "1.34.0",
        "--set",
        "watchAllNamespaces=false",
        "--set",
        "namespaces={a,b}",
    )
    assert scoped.count("\nkind: Role\n") == 2 and "--namespace=a" in scoped and "--all-namespaces" not in scoped
    # Regression: a release name YAML reads as a number (56e286) broke every label.
    numeric = run_helm(helm, cluster, "template", "56e286", str(CHART), "--kube-version", "1.34.0")
    for doc in yaml.safe_load_all(numeric):
        if doc:
            assert all(isinstance(v, str) for v in doc["metadata"].get("labels", {}).values()), doc["metadata"]


def wait_for(what: str, check: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_in_cluster_operator_reconciles_with_its_service_account(
    cluster: Cluster, namespace: str, release: str
) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "models"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    model = {
        "apiVersion": "llmos.dev/v1alpha1",
        "kind": "LanguageModel",
        "metadata": {"name": "m"},
        "spec": {
            "architecture": {"hiddenSize": 64, "numLayers": 1, "numHeads": 4},
            "storage": {"uri": "pvc://models/m"},
        },
    }
    cluster.apply(namespace, model)

    def storage_condition() -> dict[str, Any] | None:
        conditions = cluster.get(namespace, "lm", "m").get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "StorageReady"), None)

    missing = wait_for("the model to report its missing claim", storage_condition)
    assert missing["status"] == "False" and missing["reason"] == "ClaimMissing", missing
    events = wait_for(
        "a ClaimMissing event posted with the operator's own permissions",
        lambda: "ClaimMissing" in (out := cluster.kubectl("get", "events", "-n", namespace).stdout) and out,
    )
    assert "languagemodel/m" in events.lower()
    cluster.apply(namespace, claim)  # the claim's event makes the model look again
    ready = wait_for("the model to find its claim", lambda: (c := storage_condition()) and c["status"] == "True" and c)
    assert "models" in ready["message"]

    give_passing_version(cluster, namespace, "m", "pvc://models/m/versions/v1")
    endpoint = {
        "apiVersion": "llmos.dev/v1alpha1",
        "kind": "ModelEndpoint",
        "metadata": {"name": "e"},
        "spec": {"modelRef": {"name": "m"}},
    }
    cluster.apply(namespace, endpoint)
    deployment = wait_for(
        "the in-cluster operator to create the endpoint's Deployment",
        lambda: cluster.kubectl("get", "-n", namespace, "deployment", "e", "-o", "json", check=False).stdout,
    )
    template = json.loads(deployment)["spec"]["template"]
    assert template["metadata"]["labels"]["llmos.dev/model-version"] == "v1"
    wait_for("the endpoint's status", lambda: cluster.get(namespace, "me", "e").get("status", {}).get("phase"))

    pods = cluster.kubectl("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/name=llmos-operator", "-o", "name")
    # The Deployment names the endpoint with blockOwnerDeletion, which the cluster's
    # OwnerReferencesPermissionEnforcement admits only with update on modelendpoints/finalizers.
    assert template and json.loads(deployment)["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is True
    logs = cluster.kubectl("logs", "-n", namespace, pods.stdout.split()[0]).stdout
    assert "Forbidden" not in logs and "403" not in logs, logs[-3000:]
