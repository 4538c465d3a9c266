"""Operator benchmark on a test cluster ($KUBECONFIG, e.g. hack/cluster's), side by side.

    KUBECONFIG=/var/lib/llmos-cluster/admin.kubeconfig uv run python bench/operator_reaction.py

- reaction: p95 time from applying a ModelEndpoint (its model already has a passing version)
  to its Deployment, Service and HorizontalPodAutoscaler all existing, ÷ p95 of a
  create-then-get round trip of a ConfigMap measured in the same run;
- fan-out: 100 ModelEndpoints applied at once, total time ÷ (100 × the single reaction), and
  the operator's CPU seconds per endpoint ÷ kube-controller-manager's per endpoint in the
  same burst (until the API writes settle): how the operator's work compares with the work
  Kubernetes' own controllers do for the same objects (goal <= 1.5);
- idle writes: API writes (from the API server's own request counters) to the operator's
  resources while 100 endpoints sit idle, per endpoint over the window;
- memory: operator RSS with 1000 idle (finished) TrainingJobs ÷ with none.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import BIN, percentile
from llmos.api import API_VERSION
from llmos.kube import Kube, client_from_environment, object_path

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
CONTROLLER_MANAGER = "kube-controller"  # /proc/PID/stat truncates process names to 15 characters


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


CHILD_KINDS = (("apps/v1", "Deployment"), ("v1", "Service"), ("autoscaling/v2", "HorizontalPodAutoscaler"))


class ChildWatch:
    """Watches the three child kinds of endpoints in a namespace and notes when each name
    first appears, so that measuring adds no polling load on the API server (2 cores)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.changed = threading.Condition()
        self.threads = [
            threading.Thread(target=self._watch, args=(kube, namespace, v, k), daemon=True) for v, k in CHILD_KINDS
        ]
        for thread in self.threads:
            thread.start()
        time.sleep(1)  # the watches are open

    def _watch(self, kube: Kube, namespace: str, api_version: str, kind: str) -> None:
        params = {"watch": "1", "labelSelector": "app.kubernetes.io/managed-by=llmos-operator"}
        with kube.http.stream("GET", object_path(api_version, kind, namespace), params=params, timeout=None) as r:
            for line in r.iter_lines():
                event = json.loads(line)
                if event["type"] == "ADDED":
                    with self.changed:
                        self.seen.setdefault((kind, event["object"]["metadata"]["name"]), time.perf_counter())
                        self.changed.notify_all()

    def complete(self, name: str) -> float | None:
        """When the last of the endpoint's three children appeared, if all have."""
        times = [self.seen.get((k, name)) for _, k in CHILD_KINDS]
        return None if None in times else max(t for t in times if t is not None)

    def wait(self, names: list[str], timeout: float = 300) -> float:
        deadline = time.perf_counter() + timeout
        with self.changed:
            while any(self.complete(n) is None for n in names):
                if not self.changed.wait(deadline - time.perf_counter()):
                    raise TimeoutError(f"children of {names} did not appear")
        return max(t for n in names if (t := self.complete(n)) is not None)


def round_trip(kube: Kube, namespace: str) -> float:
    name = f"rt-{secrets.token_hex(3)}"
    start = time.perf_counter()
    kube.http.post(f"/api/v1/namespaces/{namespace}/configmaps", json={"metadata": {"name": name}, "data": {"a": "b"}})
    kube.http.get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
    return time.perf_counter() - start


def reaction(kube: Kube, watch: ChildWatch, namespace: str, name: str) -> float:
    start = time.perf_counter()
    kube.apply(endpoint(namespace, name))
    return watch.wait([name]) - start


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


def settle(kube: Kube, quiet: float = 20, limit: float = 300) -> float:
    """Wait until the operator has written nothing for `quiet` seconds (the endpoints' status
    follows their Deployments while the controllers create pods); returns seconds waited."""
    start = last_change = time.perf_counter()
    writes = operator_writes(kube)
    while time.perf_counter() - last_change < quiet and time.perf_counter() - start < limit:
        time.sleep(2)
        now = operator_writes(kube)
        if now != writes:
            writes, last_change = now, time.perf_counter()
    return last_change - start


CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller", "kube-scheduler")


def control_plane_cpu(operator_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the local cluster's control plane processes and the
    operator (empty names when the cluster runs elsewhere)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / ticks
        if int(entry.name) == operator_pid:
            used["operator"] = seconds
        elif name in CONTROL_PLANE:
            used[name] = used.get(name, 0.0) + seconds
    return used


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_operator(namespace: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
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
        watch = ChildWatch(kube, namespace)
        single = []
        for i in range(20):
            single.append(reaction(kube, watch, namespace, f"single-{i}"))
            time.sleep(1)  # one endpoint at a time: the previous one's pods are being made meanwhile
        p95_trip, p95_single = percentile(trips, 95), percentile(single, 95)
        print(f"create-then-get round trip p95: {p95_trip * 1e3:.1f} ms")
        print(
            f"ModelEndpoint → children present p95: {p95_single * 1e3:.0f} ms "
            f"({p95_single / p95_trip:.1f}x the round trip; target <= 10x and <= 1 s)"
        )
        names = [f"fan-{i}" for i in range(100)]
        cpu_before = control_plane_cpu(operator.pid)
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:  # "at once": as a GitOps tool or kubectl with parallelism would
            list(pool.map(lambda name: kube.apply(endpoint(namespace, name)), names))
        total = watch.wait(names) - start
        settled = settle(kube)
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in control_plane_cpu(operator.pid).items()}
        mean_single = sum(single) / len(single)
        print(
            f"100 ModelEndpoints at once: {total:.1f} s = {total / (100 * mean_single):.2f} × (100 × single)"
            "  (target <= 0.25)"
        )
        if cpu.get("kube-apiserver"):
            others = sum(v for k, v in cpu.items() if k != "operator")
            cores = os.cpu_count() or 1
            print(
                "  CPU seconds during the fan-out: "
                + ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
                + f"; the control plane alone needs >= {others / cores:.2f} s on {cores} cores"
                f" = {others / cores / (100 * mean_single):.2f} x (100 x single)"
            )
        if cpu.get(CONTROLLER_MANAGER):
            per_operator, per_kcm = cpu["operator"] / 100, cpu[CONTROLLER_MANAGER] / 100
            print(
                f"operator CPU per endpoint {per_operator * 1e3:.1f} ms ÷ kube-controller-manager's "
                f"{per_kcm * 1e3:.1f} ms = {per_operator / per_kcm:.2f}  (goal <= 1.5)"
            )
        print(f"writes settled {settled:.0f} s after the fan-out (the controllers start 120 pods' worth of objects)")
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
