"""Golden tests of the manifest builders: the example's children, byte for byte.

Regenerate after an intended change with `UPDATE_GOLDEN=1 uv run pytest tests/test_builders.py`.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml
from llmos.api.language_model import Evaluation, LanguageModel, ModelVersion
from llmos.api.model_endpoint import ModelEndpoint
from llmos.api.training_job import TrainingJob
from llmos.builders.common import Images, Owner
from llmos.builders.serving import build_autoscaler, build_deployment, build_disruption_budget, build_service
from llmos.builders.training import build_eval_job, build_prepare_job, build_rendezvous_service, build_train_job
from llmos.validation import load_manifests

from tests.conftest import REPO

GOLDEN = REPO / "tests" / "golden"
IMAGES = Images(runtime="llmos/runtime:test")


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    objects = {type(m.obj).__name__: m.obj for m in load_manifests(REPO / "examples" / "shakespeare")}
    for obj in objects.values():
        obj.metadata.namespace = "demo"  # type: ignore[attr-defined]
    objects["TrainingJob"].status.produced_version = "v3"  # type: ignore[attr-defined]  # named when it starts
    return objects


def version() -> ModelVersion:
    return ModelVersion(
        name="v3",
        uri="pvc://llmos-models/shakespeare/versions/v3",
        step=300,
        tokens_seen=1,
        produced_by="shakespeare-v1",
        evaluation=Evaluation(passed=True),
        created_at="2026-01-01T00:00:00Z",
    )


def children(example: dict[str, Any]) -> dict[str, Any]:
    job, model, endpoint = example["TrainingJob"], example["LanguageModel"], example["ModelEndpoint"]
    assert isinstance(job, TrainingJob) and isinstance(model, LanguageModel) and isinstance(endpoint, ModelEndpoint)
    tj, me = Owner("TrainingJob", job.metadata.name, "uid-tj"), Owner("ModelEndpoint", endpoint.metadata.name, "uid-me")
    return {
        "prepare-job": build_prepare_job(job, model, tj, IMAGES),
        "rendezvous-service": build_rendezvous_service(job, tj, 0),
        "train-job": build_train_job(job, model, tj, IMAGES, 0),
        "eval-job": build_eval_job(job, model, tj, IMAGES),
        "deployment": build_deployment(endpoint, version(), me, IMAGES),
        "service": build_service(endpoint, me),
        "autoscaler": build_autoscaler(endpoint, me),
        "disruption-budget": build_disruption_budget(endpoint, me),
    }


def test_children_match_golden_files(example: dict[str, Any]) -> None:
    for name, manifest in children(example).items():
        path = GOLDEN / f"{name}.yaml"
        text = yaml.safe_dump(manifest, sort_keys=False)
        if os.environ.get("UPDATE_GOLDEN"):
            path.write_text(text)
        assert path.read_text() == text, f"{path} differs: rerun with UPDATE_GOLDEN=1 if intended"


def test_training_group_contract(example: dict[str, Any]) -> None:
    train = children(example)["train-job"]
    spec = train["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 1
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == "shakespeare-v1-rdzv" and pod["restartPolicy"] == "Never"
    script = pod["containers"][0]["command"][2]
    assert "until getent hosts shakespeare-v1-train-0-0.shakespeare-v1-rdzv" in script
    assert "--node-rank=${JOB_COMPLETION_INDEX}" in script
    assert "--rdzv-endpoint=shakespeare-v1-train-0-0.shakespeare-v1-rdzv:29500" in script
    assert "--data /llmos/volumes/llmos-models/shakespeare/data/shakespeare-v1" in script
    assert "--checkpoint-dir /llmos/volumes/llmos-models/shakespeare/checkpoints/v3" in script
    assert train["metadata"]["ownerReferences"][0]["uid"] == "uid-tj"


def test_the_chain_pods_get_no_api_credentials(example: dict[str, Any]) -> None:
    """Regression: prepare, train and eval pods automounted the ServiceAccount token."""
    built = children(example)
    for name in ("prepare-job", "train-job", "eval-job"):
        assert built[name]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False, name


def test_endpoint_children_contract(example: dict[str, Any]) -> None:
    built = children(example)
    deployment = built["deployment"]
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 300
    assert deployment["spec"]["template"]["metadata"]["labels"]["llmos.dev/model-version"] == "v3"
    assert deployment["spec"]["selector"]["matchLabels"] == {"llmos.dev/model-endpoint": "shakespeare"}
    assert built["disruption-budget"] is None  # min is 1: nothing to protect
    endpoint = example["ModelEndpoint"].model_copy(deep=True)
    endpoint.spec.replicas.min = 2
    budget = build_disruption_budget(endpoint, Owner("ModelEndpoint", "shakespeare", "u"))
    assert budget is not None and budget["spec"]["minAvailable"] == 1
