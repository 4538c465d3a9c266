"""The children of a TrainingJob: prepare Job → headless Service + Indexed training Job →
evaluation Job. Names are deterministic (a handler may run twice)."""

from __future__ import annotations

import shlex
from typing import Any

from llmos_contract import TERMINATION_LOG

from llmos.api.language_model import LanguageModel
from llmos.api.training_job import TrainingJob
from llmos.builders.common import (
    COMPONENT,
    TRAINING_JOB,
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
from llmos.commands import RENDEZVOUS_PORT, JobPaths, Launcher, eval_command, prepare_command, train_command
from llmos.storage import POD_VOLUMES, job_paths

NODE_RANK = "__NODE_RANK__"  # replaced by the pod's completion index in the shell script


def paths_in_pod(job: TrainingJob, model: LanguageModel) -> JobPaths:
    return job_paths(job, model, POD_VOLUMES, allow_files=False)


def prepare_job_name(job: TrainingJob) -> str:
    return f"{job.metadata.name}-prepare"


def train_job_name(job: TrainingJob, attempt: int) -> str:
    return f"{job.metadata.name}-train-{attempt}"


def eval_job_name(job: TrainingJob) -> str:
    return f"{job.metadata.name}-eval"


def rendezvous_service_name(job: TrainingJob) -> str:
    return f"{job.metadata.name}-rdzv"


def _storage_uris(job: TrainingJob, model: LanguageModel) -> list[str]:
    uris = [model.spec.storage.uri, job.spec.dataset.uri]
    if model.spec.base is not None:
        uris.append(model.spec.base.uri)
    return uris


def _pod_spec(job: TrainingJob, model: LanguageModel, images: Images, command: list[str], gpus: int) -> dict[str, Any]:
    volumes, mounts = storage_volumes(_storage_uris(job, model), read_only=False)
    spec = job.spec
    env = [
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "LLMOS_CACHE_DIR", "value": paths_in_pod(job, model).data_dir + "/.cache"},
    ]
    container = {
        "name": "main",
        "image": images.runtime,
        "imagePullPolicy": images.pull_policy,
        "command": command,
        "env": env,
        "volumeMounts": mounts,
        "securityContext": restricted_container_security(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    resources = resource_requirements(spec.resources.cpu, spec.resources.memory, gpus)
    if resources:
        container["resources"] = resources
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": pod_security(),
        "containers": [container],
        "volumes": volumes,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,  # the chain's pods never call the API
    }
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = [t.wire() for t in spec.tolerations]
    return pod


def _job(name: str, job: TrainingJob, owner: Owner, component: str, pod: dict[str, Any], **job_spec: Any) -> Manifest:
    object_labels = labels(owner, component, TRAINING_JOB)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(name, job.metadata.namespace or "default", owner, object_labels),
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": dict(object_labels)}, "spec": pod},
            **job_spec,
        },
    }


def build_prepare_job(job: TrainingJob, model: LanguageModel, owner: Owner, images: Images) -> Manifest:
    command = prepare_command(job, model, paths_in_pod(job, model))
    return _job(prepare_job_name(job), job, owner, "prepare", _pod_spec(job, model, images, command, 0))


def build_rendezvous_service(job: TrainingJob, owner: Owner, attempt: int) -> Manifest:
    """Headless: gives pod 0 of the training group a DNS name for the c10d rendezvous."""
    object_labels = labels(owner, "train", TRAINING_JOB)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(rendezvous_service_name(job), job.metadata.namespace or "default", owner, object_labels),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {**object_labels, "batch.kubernetes.io/job-name": train_job_name(job, attempt)},
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}],
        },
    }


def build_train_job(job: TrainingJob, model: LanguageModel, owner: Owner, images: Images, attempt: int) -> Manifest:
    """An Indexed Job: one pod per node, each running torchrun; pod 0 hosts the rendezvous."""
    res = job.spec.resources
    name = train_job_name(job, attempt)
    service = rendezvous_service_name(job)
    host = f"{name}-0.{service}"
    launcher = Launcher(res.nodes, res.procs_per_node, f"{host}:{RENDEZVOUS_PORT}", NODE_RANK)
    train = shlex.join(train_command(job, model, paths_in_pod(job, model), launcher))
    script = (
        # The rendezvous host's DNS record appears only once its pod runs (a race every
        # distributed-training operator meets); wait for it instead of crashing.
        f'until getent hosts {host} >/dev/null; do echo "waiting for {host}"; sleep 1; done\n'
        f"exec {train.replace(NODE_RANK, '${JOB_COMPLETION_INDEX}')}\n"
    )
    pod = _pod_spec(job, model, images, ["sh", "-c", script], res.gpus_per_node)
    pod["subdomain"] = service
    manifest = _job(
        name, job, owner, "train", pod, completionMode="Indexed", completions=res.nodes, parallelism=res.nodes
    )
    manifest["spec"]["template"]["metadata"]["labels"][COMPONENT] = "train"
    return manifest


def build_eval_job(job: TrainingJob, model: LanguageModel, owner: Owner, images: Images) -> Manifest:
    command = eval_command(job, paths_in_pod(job, model), TERMINATION_LOG)  # the operator reads the result there
    return _job(eval_job_name(job), job, owner, "evaluate", _pod_spec(job, model, images, command, 0))
