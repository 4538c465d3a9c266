"""The local cluster and the CRDs on a real API server, with real pods."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import Cluster
from tests.conftest import REPO

BASE_IMAGE = "llmos/base:bookworm"
RUNTIME_IMAGE = "llmos/runtime:dev"
SECURE = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def pod(name: str, command: str, image: str = BASE_IMAGE, volumes: dict[str, str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", command],
        "securityContext": SECURE,
    }
    spec: dict[str, Any] = {"restartPolicy": "Never", "securityContext": POD_SECURITY, "containers": [container]}
    if volumes:
        container["volumeMounts"] = [{"name": claim, "mountPath": path} for claim, path in volumes.items()]
        spec["volumes"] = [{"name": claim, "persistentVolumeClaim": {"claimName": claim}} for claim in volumes]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def wait_for_phase(cluster: Cluster, namespace: str, name: str, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        phase = cluster.get(namespace, "pod", name).get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return str(phase)
        time.sleep(1)
    raise AssertionError(
        f"pod {name} did not finish: {cluster.kubectl('describe', '-n', namespace, 'pod', name).stdout}"
    )


def logs(cluster: Cluster, namespace: str, name: str) -> str:
    return cluster.kubectl("logs", "-n", namespace, name).stdout


def test_examples_are_accepted_by_the_api_server(cluster: Cluster, namespace: str) -> None:
    result = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(REPO / "examples" / "shakespeare"))
    assert result.stdout.count("(server dry run)") == 3


SERVER_SIDE_CASES = sorted(
    p for p in (REPO / "tests" / "invalid").glob("*.yaml") if p.stem.startswith(("lm-", "tj-", "me-"))
)


@pytest.mark.parametrize("path", SERVER_SIDE_CASES, ids=[p.stem for p in SERVER_SIDE_CASES])
def test_the_api_server_rejects_invalid_specs(cluster: Cluster, namespace: str, path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    result = cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", str(path), check=False
    )
    assert result.returncode != 0, result.stdout
    field = expected.split(":")[0].split(".")[-1].split("[")[0]
    rule_message = expected.split(": ", 1)[1] if ": " in expected and " " in expected.split(": ", 1)[1] else None
    assert field in result.stderr or (rule_message and rule_message in result.stderr), result.stderr


def test_training_job_spec_is_immutable(cluster: Cluster, namespace: str) -> None:
    job = yaml.safe_load((REPO / "examples/shakespeare/training.yaml").read_text())
    cluster.apply(namespace, job)
    job["spec"]["hyperparameters"]["steps"] = 301
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(job), check=False)
    assert result.returncode != 0
    assert "spec is immutable: create a new TrainingJob" in result.stderr


def test_explain_and_printer_columns(cluster: Cluster, namespace: str) -> None:
    explained = cluster.kubectl("explain", "trainingjob.spec.hyperparameters").stdout
    assert "Optimisation settings" in explained and "warmupSteps" in explained
    cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples/shakespeare/training.yaml"))
    header = cluster.kubectl("get", "tj", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "STEP", "LOSS", "ETA", "AGE"]
    assert cluster.kubectl("get", "llmos", "-n", namespace).stdout.count("trainingjob.llmos.dev/") == 1


def test_runtime_image_imports_torch(cluster: Cluster, namespace: str) -> None:
    cluster.apply(
        namespace, pod("runtime", "python -c 'import torch, llmos_runtime; print(torch.__version__)'", RUNTIME_IMAGE)
    )
    assert wait_for_phase(cluster, namespace, "runtime") == "Succeeded"


SMOKE = """
import os, torch, torch.distributed as dist
dist.init_process_group("gloo")
t = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(t)
print("rank", dist.get_rank(), "of", dist.get_world_size(), "sum", t.item(), flush=True)
dist.destroy_process_group()
"""


def test_two_node_torchrun_over_the_pod_network(cluster: Cluster, namespace: str) -> None:
    host = "smoke-0.smoke"
    script = (
        f"cat > /tmp/smoke.py <<'EOF'\n{SMOKE}\nEOF\n"
        f"until getent hosts {host}; do sleep 1; done\n"
        f"exec torchrun --nnodes=2 --nproc-per-node=1 --node-rank=$JOB_COMPLETION_INDEX --rdzv-backend=c10d "
        f"--rdzv-endpoint={host}:29500 /tmp/smoke.py\n"
    )
    template = pod("x", script, RUNTIME_IMAGE)["spec"]
    template["subdomain"] = "smoke"
    template["containers"][0]["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    template["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "smoke"},
        "spec": {
            "completionMode": "Indexed",
            "completions": 2,
            "parallelism": 2,
            "backoffLimit": 0,
            "template": {"metadata": {"labels": {"app": "smoke"}}, "spec": template},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "smoke"},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"app": "smoke"},
            "ports": [{"port": 29500}],
        },
    }
    cluster.apply(namespace, service, job)
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Complete", "job/smoke", "--timeout=300s")
    out = cluster.kubectl("logs", "-n", namespace, "-l", "app=smoke", "--tail=-1").stdout
    assert "rank 0 of 2 sum 3.0" in out and "rank 1 of 2 sum 3.0" in out


def test_deployment_behind_a_service_answers_another_pod(cluster: Cluster, namespace: str) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": pod(
                    "web", "echo hello-from-web > /tmp/index.html && cd /tmp && exec python3 -m http.server 8080"
                )["spec"]
                | {"restartPolicy": "Always"},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    cluster.apply(namespace, deployment, service)
    cluster.kubectl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=180s")
    fetch = (
        'python3 -c "import urllib.request, time\nfor i in range(60):\n  try:\n'
        "    print(urllib.request.urlopen('http://web/index.html').read().decode()); break\n"
        '  except OSError: time.sleep(1)"'
    )
    cluster.apply(namespace, pod("client", fetch))
    assert wait_for_phase(cluster, namespace, "client") == "Succeeded"
    assert "hello-from-web" in logs(cluster, namespace, "client")


def test_a_claim_binds_and_is_shared_by_pods_in_sequence(cluster: Cluster, namespace: str) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "shared"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    cluster.apply(namespace, claim, pod("writer", "echo written-by-writer > /data/note", volumes={"shared": "/data"}))
    assert wait_for_phase(cluster, namespace, "writer") == "Succeeded"
    cluster.apply(namespace, pod("reader", "cat /data/note", volumes={"shared": "/data"}))
    assert wait_for_phase(cluster, namespace, "reader") == "Succeeded"
    assert logs(cluster, namespace, "reader").strip() == "written-by-writer"
    assert cluster.get(namespace, "pvc", "shared")["status"]["phase"] == "Bound"
