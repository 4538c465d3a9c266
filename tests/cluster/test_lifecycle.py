"""The shared lifecycle on the real cluster: failures reach status and Events, the same
manifests give the same status as `llmos run`, and an operator killed at random moments
still converges with no duplicate or orphaned child and no version lost or renamed."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import CLAIM, Cluster, Operator, give_passing_version
from tests.cluster.test_operator import event_reasons, manifests, status, wait_until
from tests.conftest import BIN, corpus_path, free_port

VOLATILE = {"lastTransitionTime", "startTime", "completionTime", "createdAt", "url", "eta", "tokensPerSecond"}


def condition(cluster: Cluster, namespace: str, kind: str, name: str, type_: str) -> dict[str, Any] | None:
    conditions = status(cluster, namespace, kind, name).get("conditions", [])
    return next((c for c in conditions if c["type"] == type_), None)


def wait_for_reason(cluster: Cluster, namespace: str, kind: str, name: str, reason: str, log: Path) -> dict[str, Any]:
    wait_until(
        f"{kind}/{name} Ready=False {reason}",
        lambda: (cond := condition(cluster, namespace, kind, name, "Ready")) is not None and cond["reason"] == reason,
        log,
        120,
    )
    found = condition(cluster, namespace, kind, name, "Ready")
    assert found is not None and found["status"] == "False"
    wait_until(f"a {reason} Event", lambda: reason in event_reasons(cluster, namespace, name), log, 60)
    return found


def test_failures_reach_status_and_events(cluster: Cluster, namespace: str, storage: None, operator: Operator) -> None:
    model, job, endpoint = manifests("early", gate=7.5)
    # A job without its model waits, saying why.
    cluster.apply(namespace, job)
    missing = wait_for_reason(cluster, namespace, "tj", "early", "ModelNotFound", operator.log)
    assert "'shakespeare'" in missing["message"]
    # An endpoint whose API-key Secret is missing does not start.
    endpoint["spec"]["auth"] = {"apiKeySecretRef": {"name": "keys"}}
    cluster.apply(namespace, endpoint)
    secret = wait_for_reason(cluster, namespace, "me", "shakespeare", "SecretMissing", operator.log)
    assert "Secret 'keys' does not exist" in secret["message"]
    # A model whose claim is missing is not ready, and its job waits for the storage.
    model["spec"]["storage"]["uri"] = "pvc://no-such-claim/models"
    cluster.apply(namespace, model)
    wait_for_reason(cluster, namespace, "lm", "shakespeare", "StorageNotReady", operator.log)
    waiting = wait_for_reason(cluster, namespace, "tj", "early", "StorageNotReady", operator.log)
    assert "no-such-claim" in waiting["message"]
    assert cluster.kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout.strip() == ""
    # An object the API server accepts but the types reject (a name longer than a label).
    long_name = "x" * 70
    bad = {**job, "metadata": {"name": long_name}}
    cluster.apply(namespace, bad)
    invalid = wait_for_reason(cluster, namespace, "tj", long_name, "InvalidSpec", operator.log)
    assert invalid["message"].startswith("metadata.name:")
    # A configuration error no restart can fix fails at once, before any pod.
    model["spec"]["storage"]["uri"] = f"pvc://{CLAIM}/models"
    cluster.apply(namespace, model)
    _, too_long, _ = manifests("too-long", gate=7.5)
    too_long["spec"]["hyperparameters"]["sequenceLength"] = 4096
    cluster.apply(namespace, too_long)
    wait_until(
        "too-long to fail", lambda: status(cluster, namespace, "tj", "too-long").get("phase") == "Failed", operator.log
    )
    failed = condition(cluster, namespace, "tj", "too-long", "Failed")
    assert failed is not None and failed["reason"] == "InvalidConfiguration", failed
    assert status(cluster, namespace, "tj", "too-long")["restarts"] == 0
    assert "InvalidConfiguration" in event_reasons(cluster, namespace, "too-long")
    assert "too-long" not in cluster.kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout


def test_the_disruption_budget_goes_when_min_replicas_drops_to_1(
    cluster: Cluster, namespace: str, operator: Operator
) -> None:
    """Regression: the PodDisruptionBudget stayed when replicas.min dropped to 1."""
    model, _, endpoint = manifests("unused", gate=7.5)
    cluster.apply(namespace, model)
    give_passing_version(cluster, namespace, "shakespeare", f"pvc://{CLAIM}/shakespeare/versions/v1")
    endpoint["spec"]["replicas"] = {"min": 2, "max": 2}
    cluster.apply(namespace, endpoint)

    def budget() -> bool:
        return cluster.kubectl("get", "-n", namespace, "pdb", "shakespeare", check=False).returncode == 0

    wait_until("a budget for min 2", budget, operator.log, 120)
    endpoint["spec"]["replicas"] = {"min": 1, "max": 2}
    cluster.apply(namespace, endpoint)
    wait_until("the budget to go", lambda: not budget(), operator.log, 120)


def normalized(body: dict[str, Any], approximate: bool = True) -> Any:
    """A status with what may differ between a pod and a process taken out; with
    `approximate`, numbers compare equal within 2%."""

    def walk(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items() if k not in VOLATILE}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if key == "latestCheckpoint":
            return Path(str(node)).name  # /llmos/volumes/… in a pod, .llmos/volumes/… here
        if key == "lastAllocatedTo":
            name, _uid, generation = str(node).split("/")
            return f"{name}/{generation}"  # each backend gave the job its own uid
        if isinstance(node, float) and approximate:
            # 2 pods × 2 threads vs 1 machine × 2 processes × 1 thread: the same batches, sums
            # in another order.
            return pytest.approx(node, rel=0.02, abs=0.02)
        return node

    return walk(body)


def run_locally(tmp_path: Path, docs: list[dict[str, Any]]) -> dict[str, Any]:
    """`llmos run` on the same manifests, until the endpoint is Ready; the three statuses."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    for doc in docs:
        (folder / f"{doc['kind']}.yaml").write_text(yaml.safe_dump(doc))
    state = tmp_path / "state"
    corpus = state / "volumes" / CLAIM / "data" / "tinyshakespeare.txt"
    corpus.parent.mkdir(parents=True)
    shutil.copy(corpus_path(), corpus)
    cmd = [str(BIN / "llmos"), "run", "-f", str(folder), "--state-dir", str(state), "--port", str(free_port())]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    objects = state / "objects"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            endpoint = objects / "modelendpoints" / "shakespeare.yaml"
            if endpoint.is_file() and yaml.safe_load(endpoint.read_text()).get("status", {}).get("phase") == "Ready":
                break
            time.sleep(0.5)
        found = {
            plural: yaml.safe_load(next((objects / plural).glob("*.yaml")).read_text())["status"]
            for plural in ("languagemodels", "trainingjobs", "modelendpoints")
        }
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=120)[0]
    assert found["modelendpoints"].get("phase") == "Ready", output
    return found


def test_the_chain_gives_the_same_status_locally_and_on_the_cluster(
    cluster: Cluster, namespace: str, storage: None, operator: Operator, tmp_path: Path
) -> None:
    docs = manifests("shakespeare-v1", gate=7.5)
    cluster.apply(namespace, *docs)
    wait_until(
        "the endpoint to serve v1",
        lambda: status(cluster, namespace, "me", "shakespeare").get("phase") == "Ready",
        operator.log,
        900,
    )
    on_cluster = {
        "languagemodels": status(cluster, namespace, "lm", "shakespeare"),
        "trainingjobs": status(cluster, namespace, "tj", "shakespeare-v1"),
        "modelendpoints": status(cluster, namespace, "me", "shakespeare"),
    }
    local = run_locally(tmp_path, docs)
    for plural in on_cluster:
        assert normalized(local[plural], approximate=False) == normalized(on_cluster[plural]), plural


def children(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    found = cluster.kubectl(
        "get",
        "-n",
        namespace,
        "jobs,services,deployments,hpa,pdb",
        "-l",
        "app.kubernetes.io/part-of=llmos",
        "-o",
        "json",
    ).stdout
    return list(json.loads(found)["items"])


def test_an_operator_killed_at_random_moments_converges(
    cluster: Cluster, namespace: str, storage: None, operator: Operator
) -> None:
    model, first, endpoint = manifests("crash-v1", gate=7.5, steps=30)
    _, second, _ = manifests("crash-v2", gate=7.5, steps=30)
    kills: list[float] = []
    done = threading.Event()
    rng = random.Random(11)

    def killer() -> None:
        while not done.wait(rng.uniform(1.0, 4.0)):
            operator.kill_and_restart()
            kills.append(time.monotonic())

    chaos = threading.Thread(target=killer)
    chaos.start()
    try:
        cluster.apply(namespace, model, endpoint, first)
        wait_until(
            "v1 served through the kills",
            lambda: status(cluster, namespace, "me", "shakespeare").get("servedVersion") == "v1",
            operator.log,
            1200,
        )
        cluster.apply(namespace, second)
        wait_until(
            "v2 rolled out through the kills",
            lambda: status(cluster, namespace, "me", "shakespeare").get("servedVersion") == "v2",
            operator.log,
            1200,
        )
        while len(kills) < 50:
            time.sleep(1)
    finally:
        done.set()
        chaos.join()
    assert len(kills) >= 50
    print(f"operator killed {len(kills)} times")
    wait_until(
        "everything Ready after the last kill",
        lambda: (
            status(cluster, namespace, "me", "shakespeare").get("phase") == "Ready"
            and status(cluster, namespace, "tj", "crash-v2").get("phase") == "Succeeded"
        ),
        operator.log,
        300,
    )
    lm = status(cluster, namespace, "lm", "shakespeare")
    assert [v["name"] for v in lm["versions"]] == ["v1", "v2"], lm  # none lost, none renamed
    assert [v["producedBy"] for v in lm["versions"]] == ["crash-v1", "crash-v2"]
    assert lm["allocatedVersions"] == 2 and lm["latestPassingVersion"] == "v2"
    for job, version in (("crash-v1", "v1"), ("crash-v2", "v2")):
        final = status(cluster, namespace, "tj", job)
        assert final["phase"] == "Succeeded" and final["producedVersion"] == version, final
    found = children(cluster, namespace)
    names = sorted(f"{c['kind']}/{c['metadata']['name']}" for c in found)
    assert len(names) == len(set(names))
    jobs = [n for n in names if n.startswith("Job/")]
    # Restarts would add train-1; the operator's deaths must not.
    assert jobs == [f"Job/crash-v{i}-{step}" for i in (1, 2) for step in ("eval", "prepare", "train-0")], jobs
    owners = {
        cluster.get(namespace, kind, name)["metadata"]["uid"]
        for kind, name in (("tj", "crash-v1"), ("tj", "crash-v2"), ("me", "shakespeare"))
    }
    for child in found:
        refs = child["metadata"].get("ownerReferences", [])
        assert len(refs) == 1 and refs[0]["uid"] in owners, child["metadata"]  # no orphans
    deployment = next(c for c in found if c["kind"] == "Deployment")
    assert deployment["spec"]["template"]["metadata"]["labels"]["llmos.dev/model-version"] == "v2"


pytestmark = pytest.mark.slow
