"""Operator benchmark on a test cluster ($KUBECONFIG, e.g. hack/cluster's), side by side.

    KUBECONFIG=/var/lib/llmos-cluster/admin.kubeconfig uv run python bench/operator_reaction.py

- reaction: p95 time from applying a ModelEndpoint (its model already has a passing version)
  to its Deployment, Service and HorizontalPodAutoscaler all existing, ÷ p95 of a
  create-then-get round trip of a ConfigMap measured in the same run;
- fan-out: 100 ModelEndpoints applied at once, total time ÷ (100 × the single reaction);
- idle writes: API writes (from the API server's own request counters) to the operator's
  resources while 100 endpoints sit idle, per endpoint over the window;
- memory: operator RSS with 1000 idle (finished) TrainingJobs ÷ with none.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

from common import BIN, percentile
from llmos.api import API_VERSION
from llmos.kube import Kube, client_from_environment

REPO = Path(__file__).resolve().parent.parent
WRITES = re.compile(r"apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)")
OPERATOR_RESOURCES = {
    "jobs",
    "deployments",
    "services",
    "horizontalpodautoscalers",
    "poddisruptionbudgets",
    "trainingjobs",
    "modelendpoints",
    "languagemodels",
}
IDLE_WINDOW = float(os.environ.get("IDLE_WINDOW", "120"))


def model(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "LanguageModel",
        "metadata": {"name": "m", "namespace": namespace},
        "spec": {
            "architecture": {"hiddenSize": 64, "numLayers": 1, "numHeads": 4},
            "storage": {"uri": "pvc://bench/m"},
        },
    }


def endpoint(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"modelRef": {"name": "m"}},
    }


def children_present(kube: Kube, namespace: str, name: str) -> bool:
    return all(
        kube.get(v, k, namespace, name) is not None
        for v, k in (("apps/v1", "Deployment"), ("v1", "Service"), ("autoscaling/v2", "HorizontalPodAutoscaler"))
    )


def round_trip(kube: Kube, namespace: str) -> float:
    name = f"rt-{secrets.token_hex(3)}"
    start = time.perf_counter()
    kube.http.post(f"/api/v1/namespaces/{namespace}/configmaps", json={"metadata": {"name": name}, "data": {"a": "b"}})
    kube.http.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
    return time.perf_counter() - start


def reaction(kube: Kube, namespace: str, name: str) -> float:
    start = time.perf_counter()
    kube.apply(endpoint(namespace, name))
    while not children_present(kube, namespace, name):
        time.sleep(0.01)
    return time.perf_counter() - start


def operator_writes(kube: Kube) -> float:
    total = 0.0
    for match in WRITES.finditer(kube.http.get("/metrics").text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
        if (
            labels.get("verb") in ("POST", "PUT", "PATCH", "DELETE", "APPLY")
            and labels.get("resource") in OPERATOR_RESOURCES
        ):
            subresource = labels.get("subresource", "")
            # Kubernetes' own controllers write Deployment, Job and HPA status; the operator does not.
            if subresource == "status" and labels["resource"] not in (
                "trainingjobs",
                "modelendpoints",
                "languagemodels",
            ):
                continue
            total += float(match.group("value"))
    return total


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_operator(namespace: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LLMOS_OPERATOR_INTERVAL": "5"}
    return subprocess.Popen(
        [str(BIN / "llmos"), "operator", "--namespace", namespace],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    kube = Kube(client_from_environment())
    namespace = f"llmos-bench-{secrets.token_hex(3)}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    operator = start_operator(namespace)
    try:
        kube.apply(model(namespace))
        version = {
            "name": "v1",
            "uri": "pvc://bench/m/versions/j",
            "step": 1,
            "tokensSeen": 1,
            "producedBy": "j",
            "evaluation": {"metrics": {}, "passed": True},
            "createdAt": "2026-01-01T00:00:00Z",
        }
        kube.patch_status(
            API_VERSION,
            "LanguageModel",
            namespace,
            "m",
            {"versions": [version], "latestVersion": "v1", "latestPassingVersion": "v1"},
        )
        time.sleep(3)
        trips = [round_trip(kube, namespace) for _ in range(20)]
        single = [reaction(kube, namespace, f"single-{i}") for i in range(20)]
        p95_trip, p95_single = percentile(trips, 95), percentile(single, 95)
        print(f"create-then-get round trip p95: {p95_trip * 1e3:.1f} ms")
        print(
            f"ModelEndpoint → children present p95: {p95_single * 1e3:.0f} ms "
            f"({p95_single / p95_trip:.1f}x the round trip; target <= 10x and <= 1 s)"
        )
        names = [f"fan-{i}" for i in range(100)]
        start = time.perf_counter()
        for name in names:
            kube.apply(endpoint(namespace, name))
        pending = set(names)
        while pending:
            pending = {n for n in pending if not children_present(kube, namespace, n)}
            time.sleep(0.05)
        total = time.perf_counter() - start
        mean_single = sum(single) / len(single)
        print(
            f"100 ModelEndpoints at once: {total:.1f} s = {total / (100 * mean_single):.2f} × (100 × single)"
            "  (target <= 0.25)"
        )
        time.sleep(15)  # let the last status writes land
        before = operator_writes(kube)
        time.sleep(IDLE_WINDOW)
        idle = operator_writes(kube) - before
        print(
            f"API writes to operator resources while 120 endpoints idled {IDLE_WINDOW:.0f} s: {idle:.0f} "
            f"({idle / 120:.2f} per endpoint; target 0)"
        )
    finally:
        operator.terminate()
        operator.wait(30)
        kube.delete("v1", "Namespace", None, namespace)
    memory(kube)


def memory(kube: Kube) -> None:
    namespace = f"llmos-bench-{secrets.token_hex(3)}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    empty = start_operator(namespace)
    time.sleep(20)
    rss_empty = rss_mib(empty.pid)
    empty.terminate()
    empty.wait(30)
    job = {
        "modelRef": {"name": "m"},
        "dataset": {"uri": "pvc://bench/data.txt"},
        "hyperparameters": {"steps": 1, "warmupSteps": 0},
    }
    for i in range(1000):
        name = f"idle-{i}"
        kube.apply(
            {
                "apiVersion": API_VERSION,
                "kind": "TrainingJob",
                "metadata": {"name": name, "namespace": namespace},
                "spec": job,
            }
        )
        kube.patch_status(API_VERSION, "TrainingJob", namespace, name, {"phase": "Succeeded", "observedGeneration": 1})
    loaded = start_operator(namespace)
    time.sleep(60)
    rss_loaded = rss_mib(loaded.pid)
    loaded.terminate()
    loaded.wait(30)
    kube.delete("v1", "Namespace", None, namespace)
    print(
        f"operator RSS: {rss_empty:.0f} MiB with no CRs, {rss_loaded:.0f} MiB with 1000 idle TrainingJobs: "
        f"{rss_loaded / rss_empty:.2f}x  (target <= 1.5)"
    )


if __name__ == "__main__":
    main()
