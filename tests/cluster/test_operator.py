"""The operator on the real cluster: the whole chain, gated versions and rollouts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import yaml

from tests.cluster.conftest import CLAIM, Cluster, Operator
from tests.conftest import REPO


def manifests(job: str, gate: float, steps: int = 20, max_restarts: int = 3) -> list[dict[str, Any]]:
    docs = {p.stem: yaml.safe_load(p.read_text()) for p in (REPO / "examples" / "shakespeare").glob("*.yaml")}
    docs["model"]["spec"]["architecture"] = {"hiddenSize": 64, "numLayers": 2, "numHeads": 4, "contextLength": 128}
    docs["model"]["spec"]["tokenizer"]["vocabSize"] = 512
    docs["model"]["spec"]["keepVersions"] = 2
    spec = docs["training"]["spec"]
    docs["training"]["metadata"]["name"] = job
    spec["dataset"] = {"uri": f"pvc://{CLAIM}/data/tinyshakespeare.txt"}
    spec["hyperparameters"].update(steps=steps, batchSize=8, sequenceLength=64, warmupSteps=3, logEverySteps=5)
    spec["resources"] = {"nodes": 2, "procsPerNode": 1}
    spec["checkpoint"]["everySteps"] = 10
    spec["maxRestarts"] = max_restarts
    spec["evaluation"] = {"maxBatches": 5, "samples": 0, "gate": [{"metric": "bitsPerByte", "op": "<=", "value": gate}]}
    docs["endpoint"]["spec"]["replicas"] = {"min": 1, "max": 1}
    docs["endpoint"]["spec"]["limits"] = {"maxConcurrentRequests": 4, "maxTokens": 32}
    return [docs["model"], docs["training"], docs["endpoint"]]


def wait_until(what: str, check: Callable[[], bool], log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}; operator log:\n{log.read_text()[-5000:]}")


def status(cluster: Cluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return dict(cluster.get(namespace, kind, name).get("status", {}))


def endpoint_client(cluster: Cluster, namespace: str) -> openai.OpenAI:
    ip = cluster.get(namespace, "service", "shakespeare")["spec"]["clusterIP"]
    return openai.OpenAI(base_url=f"http://{ip}/v1", api_key="none", max_retries=0, timeout=60)


def test_chain_gate_and_rollout(cluster: Cluster, namespace: str, storage: None, operator: Operator) -> None:
    log = operator.log
    model, first, endpoint = manifests("shakespeare-v1", gate=7.5)
    cluster.apply(namespace, model, endpoint)
    wait_until(
        "the endpoint to wait for a model",
        lambda: status(cluster, namespace, "me", "shakespeare").get("phase") == "WaitingForModel",
        log,
        60,
    )
    conditions = {c["type"]: c for c in status(cluster, namespace, "me", "shakespeare")["conditions"]}
    assert conditions["ModelAvailable"]["status"] == "False"
    assert conditions["ModelAvailable"]["reason"] == "NoPassingVersion"

    cluster.apply(namespace, first)
    wait_until(
        "shakespeare-v1 to succeed",
        lambda: status(cluster, namespace, "tj", "shakespeare-v1").get("phase") in ("Succeeded", "Failed"),
        log,
    )
    job = status(cluster, namespace, "tj", "shakespeare-v1")
    assert job["phase"] == "Succeeded", job
    assert job["progress"]["step"] == 20 and job["producedVersion"] == "v1"
    train_pods = cluster.kubectl(
        "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=train", "-o", "name"
    ).stdout.split()
    assert len(train_pods) == 2  # two pods ran torchrun together
    lm = status(cluster, namespace, "lm", "shakespeare")
    assert lm["latestPassingVersion"] == "v1"
    storage_ready = next(c for c in lm["conditions"] if c["type"] == "StorageReady")
    assert storage_ready["status"] == "True", storage_ready
    # Ready on every kind, as `kubectl wait` reads it (a TrainingJob is Ready once Succeeded).
    cluster.kubectl(
        "wait",
        "-n",
        namespace,
        "--for=condition=Ready",
        "lm/shakespeare",
        "tj/shakespeare-v1",
        "me/shakespeare",
        "--timeout=300s",
    )
    reasons = event_reasons(cluster, namespace, "shakespeare-v1")
    assert {"Preparing", "Training", "Evaluating", "Completed"} <= reasons, reasons

    wait_until(
        "the endpoint to serve v1",
        lambda: status(cluster, namespace, "me", "shakespeare").get("servedVersion") == "v1",
        log,
        300,
    )
    client = endpoint_client(cluster, namespace)
    answer = client.completions.create(model="shakespeare", prompt="ROMEO:", max_tokens=8)
    assert answer.choices[0].text

    _, failing, _ = manifests("shakespeare-v2", gate=0.5)
    cluster.apply(namespace, failing)
    wait_until(
        "shakespeare-v2 to finish",
        lambda: status(cluster, namespace, "tj", "shakespeare-v2").get("phase") == "Succeeded",
        log,
    )
    lm = status(cluster, namespace, "lm", "shakespeare")
    assert [v["evaluation"]["passed"] for v in lm["versions"]] == [True, False]
    assert lm["latestVersion"] == "v2" and lm["latestPassingVersion"] == "v1"
    time.sleep(6)
    assert status(cluster, namespace, "me", "shakespeare")["servedVersion"] == "v1"

    failures: list[str] = []
    served: list[int] = []
    stop = threading.Event()

    def stream_requests() -> None:
        while not stop.is_set():
            try:
                chunks = list(
                    client.completions.create(model="shakespeare", prompt="KING:", max_tokens=16, stream=True)
                )
                served.append(len(chunks))
            except openai.OpenAIError as exc:
                failures.append(repr(exc))

    streamer = threading.Thread(target=stream_requests)
    streamer.start()
    try:
        _, passing, _ = manifests("shakespeare-v3", gate=7.5)
        cluster.apply(namespace, passing)
        wait_until(
            "the endpoint to roll out v3",
            lambda: status(cluster, namespace, "me", "shakespeare").get("servedVersion") == "v3",
            log,
            900,
        )
        time.sleep(3)
    finally:
        stop.set()
        streamer.join(120)
    assert failures == [] and len(served) > 5
    assert status(cluster, namespace, "me", "shakespeare")["phase"] == "Ready"
    lm = status(cluster, namespace, "lm", "shakespeare")
    assert [v["name"] for v in lm["versions"]] == ["v2", "v3"]  # keepVersions: 2 dropped v1

    # int8: v3's int8 variant (the example exports one) passed the same gate; the endpoint
    # switched to it serves it, and the server says so.
    int8 = lm["versions"][1]["evaluation"]["variants"]["int8"]
    assert int8["passed"] is True
    assert abs(int8["metrics"]["bitsPerByte"] - lm["versions"][1]["evaluation"]["metrics"]["bitsPerByte"]) < 0.05
    cluster.kubectl(
        "patch", "-n", namespace, "me/shakespeare", "--type=merge", "-p", '{"spec": {"quantization": "int8"}}'
    )

    def serves_int8() -> bool:
        try:
            card = endpoint_client(cluster, namespace).models.list().data[0]
        except openai.OpenAIError:
            return False
        return (card.model_extra or {}).get("quantization") == "int8"

    wait_until("the endpoint to serve v3's int8 variant", serves_int8, log, 600)
    assert status(cluster, namespace, "me", "shakespeare")["servedVersion"] == "v3"
    answer = endpoint_client(cluster, namespace).completions.create(model="shakespeare", prompt="KING:", max_tokens=8)
    assert answer.usage is not None and answer.usage.completion_tokens > 0

    for kind in ("modelendpoint", "trainingjob", "languagemodel"):
        cluster.kubectl("delete", "-n", namespace, kind, "--all", "--wait=true", "--timeout=120s")
    wait_until(
        "children to be garbage-collected",
        lambda: (
            not cluster.kubectl(
                "get",
                "-n",
                namespace,
                "jobs,deployments,services,hpa",
                "-l",
                "app.kubernetes.io/part-of=llmos",
                "-o",
                "name",
            ).stdout.strip()
        ),
        log,
        120,
    )


def event_reasons(cluster: Cluster, namespace: str, name: str) -> set[str]:
    """The reasons of the Kubernetes Events posted about an object."""
    found = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    ).stdout
    return {item["reason"] for item in json.loads(found)["items"]}


def kill_training_pod(cluster: Cluster, namespace: str, index: int) -> None:
    selector = f"app.kubernetes.io/component=train,batch.kubernetes.io/job-completion-index={index}"
    cluster.kubectl("delete", "pods", "-n", namespace, "-l", selector, "--grace-period=0", "--force")


def test_a_killed_pod_restarts_the_group_from_its_checkpoint(
    cluster: Cluster, namespace: str, storage: None, operator: Operator
) -> None:
    model, job, _ = manifests("resilient", gate=7.5, steps=150)
    cluster.apply(namespace, model, job)
    wait_until(
        "training to pass step 30",
        lambda: status(cluster, namespace, "tj", "resilient").get("progress", {}).get("step", 0) >= 30,
        operator.log,
        300,
    )
    operator.restart()  # mid-chain: the new process must carry on, not start over
    kill_training_pod(cluster, namespace, 1)
    wait_until(
        "resilient to finish",
        lambda: status(cluster, namespace, "tj", "resilient").get("phase") in ("Succeeded", "Failed"),
        operator.log,
        600,
    )
    final = status(cluster, namespace, "tj", "resilient")
    assert final["phase"] == "Succeeded", final
    assert final["restarts"] == 1
    jobs = sorted(cluster.kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout.split())
    assert jobs == ["job.batch/resilient-eval", "job.batch/resilient-prepare", "job.batch/resilient-train-1"]
    resumed = cluster.kubectl(
        "logs",
        "-n",
        namespace,
        "-l",
        "batch.kubernetes.io/job-name=resilient-train-1,batch.kubernetes.io/job-completion-index=0",
        "--tail=-1",
    ).stdout
    assert '"event": "resumed"' in resumed
    assert status(cluster, namespace, "lm", "shakespeare")["latestPassingVersion"] == "v1"


def test_exceeding_max_restarts_fails_with_a_reason(
    cluster: Cluster, namespace: str, storage: None, operator: Operator
) -> None:
    model, job, _ = manifests("fragile", gate=7.5, steps=150, max_restarts=0)
    cluster.apply(namespace, model, job)
    wait_until(
        "training to start",
        lambda: status(cluster, namespace, "tj", "fragile").get("progress", {}).get("step", 0) >= 10,
        operator.log,
        300,
    )
    kill_training_pod(cluster, namespace, 0)
    wait_until(
        "fragile to fail",
        lambda: status(cluster, namespace, "tj", "fragile").get("phase") == "Failed",
        operator.log,
        300,
    )
    final = status(cluster, namespace, "tj", "fragile")
    assert final["message"].startswith("training failed after 0 restarts")
    failed = {c["type"]: c for c in final["conditions"]}["Failed"]
    assert failed["status"] == "True" and failed["reason"] == "StepFailed"
