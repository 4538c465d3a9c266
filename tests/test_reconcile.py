"""The shared reconcilers without a cluster or processes: the real file store, and a
scripted executor that stands in for pods and processes (the test says what each step does).
The same reconcilers run on the cluster (tests/cluster) and in `llmos run` (test_local_mode)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from llmos import conditions as c
from llmos.api.language_model import LanguageModel, ModelVersion
from llmos.api.model_endpoint import ModelEndpoint
from llmos.api.training_job import TrainingJob
from llmos.controller.core import Controller
from llmos.controller.index import Key
from llmos.local.store import FileStore
from llmos.reconcile.seams import Problem, ServerState, Step, StepReport, StepState
from llmos.reconcile.training import TrainingSettings
from llmos.validation import load_manifests
from llmos_contract import EXIT_USAGE
from llmos_contract.events import EvaluationResult, ProgressEvent

from tests.conftest import REPO

NS = "default"


@dataclass
class ScriptedExecutor:
    """Stand-in for pods/processes in unit tests: records what was started and stopped and
    reports the states the test sets."""

    states: dict[tuple[Step, int], StepState] = field(default_factory=dict)
    started: list[tuple[Step, int]] = field(default_factory=list)
    stopped: list[tuple[Step, int]] = field(default_factory=list)
    progress: ProgressEvent | None = None
    storage: Problem | None = None
    secret: Problem | None = None
    served: list[str] = field(default_factory=list)
    ready: bool = True

    def start(self, job: TrainingJob, model: LanguageModel, step: Step, attempt: int) -> None:
        assert job.status.produced_version is not None, "files are named by version: the name comes first"
        if (step, attempt) not in self.states:
            self.started.append((step, attempt))
            self.states[(step, attempt)] = StepState(True)

    def observe(self, job: TrainingJob, step: Step, attempt: int) -> StepState:
        return self.states.get((step, attempt), StepState(False))

    def report(self, job: TrainingJob, attempt: int) -> StepReport:
        return StepReport(self.progress)

    def stop(self, job: TrainingJob, step: Step, attempt: int) -> None:
        self.stopped.append((step, attempt))
        self.states.pop((step, attempt), None)

    def gone(self, job: TrainingJob, step: Step, attempt: int) -> bool:
        return (step, attempt) not in self.states

    def serve(self, endpoint: ModelEndpoint, version: ModelVersion) -> ServerState:
        self.served.append(version.name)
        return ServerState(1, int(self.ready), version.name, self.ready, "http://me/v1")

    def storage_problem(self, namespace: str, uris: list[str]) -> Problem | None:
        return self.storage

    def secret_problem(self, namespace: str, name: str, key: str) -> Problem | None:
        return self.secret

    def finish(self, step: Step, attempt: int = 0, code: int = 0, message: str = "") -> None:
        self.states[(step, attempt)] = StepState(True, code == 0, code != 0, code, message)


@dataclass
class World:
    store: FileStore
    executor: ScriptedExecutor
    controller: Controller

    def reconcile(self, kind: str, name: str) -> dict[str, Any]:
        self.controller.reconcile(Key(kind, NS, name))
        body = self.store.read(kind, NS, name)
        assert body is not None
        return dict(body.get("status", {}))

    def conditions(self, kind: str, name: str) -> dict[str, dict[str, Any]]:
        return {cond["type"]: cond for cond in self.reconcile(kind, name).get("conditions", [])}

    def events(self, reason: str) -> list[dict[str, Any]]:
        return [e for e in self.store.events() if e["reason"] == reason]


RESULT = EvaluationResult(
    metrics={"bitsPerByte": 2.0, "validationLoss": 1.0, "perplexity": 2.7}, step=300, tokens_seen=9
)


@pytest.fixture
def world(tmp_path: Path) -> World:
    store = FileStore(tmp_path / "state")
    executor = ScriptedExecutor()
    return World(store, executor, Controller(store, executor, TrainingSettings(1.0, restart_grace=0.0)))


def example(world: World, *kinds: str) -> None:
    for manifest in load_manifests(REPO / "examples" / "shakespeare"):
        if manifest.obj.kind in kinds:  # type: ignore[attr-defined]
            world.store.apply(manifest.obj)


def run_chain(
    world: World,
    name: str = "shakespeare-v1",
    metrics: dict[str, float] | None = None,
    variants: dict[str, dict[str, float]] | None = None,
) -> dict[str, Any]:
    ex = world.executor
    world.reconcile("LanguageModel", "shakespeare")
    assert world.reconcile("TrainingJob", name)["phase"] == "Preparing"
    ex.finish("prepare")
    assert world.reconcile("TrainingJob", name)["phase"] == "Training"
    ex.finish("train")
    assert world.reconcile("TrainingJob", name)["phase"] == "Evaluating"
    result = EvaluationResult(metrics=metrics or RESULT.metrics, variants=variants or {}, step=300, tokens_seen=9)
    ex.finish("evaluate", message=result.encode())
    return world.reconcile("TrainingJob", name)


def test_the_chain_names_the_version_first_and_records_it_last(world: World) -> None:
    example(world, "LanguageModel", "TrainingJob", "ModelEndpoint")
    endpoint = world.reconcile("ModelEndpoint", "shakespeare")
    assert endpoint["phase"] == "WaitingForModel"
    job = run_chain(world)
    assert job["phase"] == "Succeeded" and job["producedVersion"] == "v1"
    assert world.executor.started == [("prepare", 0), ("train", 0), ("evaluate", 0)]
    conditions = {cond["type"]: cond for cond in job["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["GatePassed"]["reason"] == c.REASON_ALL_GATES_PASSED
    model = world.reconcile("LanguageModel", "shakespeare")
    assert model["allocatedVersions"] == 1 and model["latestPassingVersion"] == "v1"
    assert model["versions"][0]["uri"] == "pvc://llmos-models/shakespeare/versions/v1"
    assert {cond["type"]: cond["status"] for cond in model["conditions"]}["Ready"] == "True"
    endpoint = world.reconcile("ModelEndpoint", "shakespeare")
    assert endpoint["phase"] == "Ready" and endpoint["servedVersion"] == "v1"
    # Idle: nothing more is written and no event repeats.
    events = len(world.store.events())
    before = {kind: world.store.read(kind, NS, "shakespeare") for kind in ("LanguageModel", "ModelEndpoint")}
    world.reconcile("LanguageModel", "shakespeare")
    world.reconcile("ModelEndpoint", "shakespeare")
    assert {kind: world.store.read(kind, NS, "shakespeare") for kind in before} == before
    assert len(world.store.events()) == events


def test_a_failing_gate_is_recorded_and_not_served(world: World) -> None:
    example(world, "LanguageModel", "TrainingJob", "ModelEndpoint")
    job = run_chain(world, metrics={"bitsPerByte": 3.0, "validationLoss": 2.0, "perplexity": 7.0})
    assert job["phase"] == "Succeeded" and job["evaluation"]["passed"] is False
    assert "gate failed: bitsPerByte <= 2.5 (got 3)" in job["evaluation"]["reason"]
    assert world.events(c.REASON_GATE_FAILED)[0]["type"] == "Warning"
    assert world.reconcile("ModelEndpoint", "shakespeare")["phase"] == "WaitingForModel"
    assert world.executor.served == []


def test_a_job_waits_for_its_model_and_its_storage_with_a_reason(world: World) -> None:
    example(world, "TrainingJob")
    ready = world.conditions("TrainingJob", "shakespeare-v1")["Ready"]
    assert ready["reason"] == c.REASON_MODEL_NOT_FOUND and "does not exist" in ready["message"]
    assert world.events(c.REASON_MODEL_NOT_FOUND)[0]["type"] == "Warning"
    world.executor.storage = Problem(c.REASON_CLAIM_MISSING, "PersistentVolumeClaim 'llmos-models' does not exist")
    example(world, "LanguageModel")
    storage = world.conditions("LanguageModel", "shakespeare")["StorageReady"]
    assert storage["status"] == "False" and storage["reason"] == c.REASON_CLAIM_MISSING
    ready = world.conditions("TrainingJob", "shakespeare-v1")["Ready"]
    assert ready["reason"] == c.REASON_STORAGE_NOT_READY and "'llmos-models' does not exist" in ready["message"]
    assert world.executor.started == []  # nothing runs before its storage is there
    world.executor.storage = None
    world.reconcile("LanguageModel", "shakespeare")
    assert world.reconcile("TrainingJob", "shakespeare-v1")["phase"] == "Preparing"


def test_configuration_errors_fail_at_once_and_spend_no_restarts(world: World) -> None:
    example(world, "LanguageModel", "TrainingJob")
    world.reconcile("LanguageModel", "shakespeare")
    world.reconcile("TrainingJob", "shakespeare-v1")
    world.executor.finish("prepare")
    world.reconcile("TrainingJob", "shakespeare-v1")
    world.executor.finish("train", code=EXIT_USAGE, message="--sequence-length 512 exceeds the context length")
    job = world.reconcile("TrainingJob", "shakespeare-v1")
    assert job["phase"] == "Failed" and job["restarts"] == 0
    failed = {cond["type"]: cond for cond in job["conditions"]}["Failed"]
    assert failed["reason"] == c.REASON_INVALID_CONFIGURATION and "--sequence-length 512" in failed["message"]


def test_sequence_longer_than_the_context_fails_before_anything_runs(world: World, tmp_path: Path) -> None:
    example(world, "LanguageModel")
    job = next(m.obj for m in load_manifests(REPO / "examples" / "shakespeare") if m.obj.kind == "TrainingJob")  # type: ignore[attr-defined]
    assert isinstance(job, TrainingJob)
    job.spec.hyperparameters.sequence_length = 4096
    world.store.apply(job)
    world.reconcile("LanguageModel", "shakespeare")
    status = world.reconcile("TrainingJob", "shakespeare-v1")
    assert status["phase"] == "Failed" and "exceeds the contextLength 512" in status["message"]
    assert world.executor.started == [] and world.events(c.REASON_INVALID_CONFIGURATION)


def test_a_restart_is_counted_before_the_failed_group_is_removed(world: World) -> None:
    example(world, "LanguageModel", "TrainingJob")
    world.reconcile("LanguageModel", "shakespeare")
    world.reconcile("TrainingJob", "shakespeare-v1")
    world.executor.finish("prepare")
    world.reconcile("TrainingJob", "shakespeare-v1")
    world.executor.finish("train", code=1, message="worker 1 was killed")
    counted = world.reconcile("TrainingJob", "shakespeare-v1")
    assert counted["restarts"] == 1 and world.executor.stopped == []  # written first
    assert world.reconcile("TrainingJob", "shakespeare-v1")["message"].startswith("waiting for the processes")
    assert world.executor.stopped == [("train", 0)]
    assert world.reconcile("TrainingJob", "shakespeare-v1")["phase"] == "Training"
    assert ("train", 1) in world.executor.started
    assert world.events(c.REASON_RESTARTING)[0]["type"] == "Warning"


def test_an_object_the_types_reject_says_why_in_its_status(world: World) -> None:
    body = yaml.safe_load((REPO / "examples" / "shakespeare" / "endpoint.yaml").read_text())
    body["metadata"] |= {"name": "x" * 70, "generation": 1}
    world.store._write("ModelEndpoint", body)
    ready = world.conditions("ModelEndpoint", "x" * 70)["Ready"]
    assert ready["reason"] == c.REASON_INVALID_SPEC and ready["message"].startswith("metadata.name:")
    assert world.events(c.REASON_INVALID_SPEC)[0]["type"] == "Warning"


def test_a_missing_secret_keeps_the_endpoint_from_starting(world: World) -> None:
    body = yaml.safe_load((REPO / "examples" / "shakespeare" / "endpoint.yaml").read_text())
    body["spec"]["auth"] = {"apiKeySecretRef": {"name": "keys"}}
    world.store.apply(ModelEndpoint.model_validate(body))
    example(world, "LanguageModel", "TrainingJob")
    run_chain(world)
    world.executor.secret = Problem(c.REASON_SECRET_MISSING, "Secret 'keys' does not exist in default")
    ready = world.conditions("ModelEndpoint", "shakespeare")["Ready"]
    assert ready["reason"] == c.REASON_SECRET_MISSING and world.executor.served == []
    world.executor.secret = None
    assert world.reconcile("ModelEndpoint", "shakespeare")["servedVersion"] == "v1"


def test_an_endpoint_on_latest_keeps_serving_with_keep_versions_1(world: World) -> None:
    """Regression: keepVersions 1 pruned the version just recorded; `latest` then failed."""
    model = yaml.safe_load((REPO / "examples" / "shakespeare" / "model.yaml").read_text())
    model["spec"]["keepVersions"] = 1
    world.store.apply(LanguageModel.model_validate(model))
    endpoint = yaml.safe_load((REPO / "examples" / "shakespeare" / "endpoint.yaml").read_text())
    endpoint["spec"]["modelRef"]["version"] = "latest"
    world.store.apply(ModelEndpoint.model_validate(endpoint))
    example(world, "TrainingJob")
    run_chain(world)
    job = yaml.safe_load((REPO / "examples" / "shakespeare" / "training.yaml").read_text())
    job["metadata"]["name"] = "shakespeare-v2"
    world.store.apply(TrainingJob.model_validate(job))
    second = run_chain(world, "shakespeare-v2", metrics={"bitsPerByte": 3.0, "validationLoss": 2.0, "perplexity": 7.0})
    assert second["producedVersion"] == "v2"
    served = world.reconcile("ModelEndpoint", "shakespeare")
    assert served["servedVersion"] == "v2" and served["phase"] == "Ready"
    model_status = world.reconcile("LanguageModel", "shakespeare")
    assert model_status["latestVersion"] == "v2" and model_status["allocatedVersions"] == 2


def test_an_int8_endpoint_follows_the_versions_whose_int8_variant_passed(world: World) -> None:
    """The gate applies to what is served: an int8 endpoint judges each version's int8 variant."""
    example(world, "LanguageModel", "TrainingJob")
    endpoint = yaml.safe_load((REPO / "examples" / "shakespeare" / "endpoint.yaml").read_text())
    endpoint["spec"]["quantization"] = "int8"
    world.store.apply(ModelEndpoint.model_validate(endpoint))
    bad_int8 = {"int8": {"bitsPerByte": 2.7, "validationLoss": 1.1, "perplexity": 3.0}}
    job = run_chain(world, variants=bad_int8)  # the version passes, its int8 variant does not
    assert job["evaluation"]["passed"] is True
    assert job["evaluation"]["variants"]["int8"]["passed"] is False
    assert "bitsPerByte <= 2.5 (got 2.7)" in job["evaluation"]["variants"]["int8"]["reason"]
    waiting = world.reconcile("ModelEndpoint", "shakespeare")
    assert waiting["phase"] == "WaitingForModel" and world.executor.served == []
    available = {cond["type"]: cond for cond in waiting["conditions"]}["ModelAvailable"]
    assert "no version whose int8 variant passed its gate" in available["message"]
    second = yaml.safe_load((REPO / "examples" / "shakespeare" / "training.yaml").read_text())
    second["metadata"]["name"] = "shakespeare-v2"
    world.store.apply(TrainingJob.model_validate(second))
    good_int8 = {"int8": {"bitsPerByte": 2.01, "validationLoss": 1.0, "perplexity": 2.7}}
    run_chain(world, "shakespeare-v2", variants=good_int8)
    served = world.reconcile("ModelEndpoint", "shakespeare")
    assert served["servedVersion"] == "v2" and served["phase"] == "Ready"
    model = world.reconcile("LanguageModel", "shakespeare")
    assert model["versions"][1]["evaluation"]["variants"]["int8"]["metrics"]["bitsPerByte"] == 2.01
    job = world.reconcile("TrainingJob", "shakespeare-v2")
    assert job["message"] == "shakespeare@v2 passed its gate; its int8 variant passed"


def test_an_int8_endpoint_keeps_its_version_and_never_serves_an_unmeasured_variant(world: World) -> None:
    """keepVersions prunes old versions but not the one an int8 endpoint follows; a pinned
    version without an evaluated int8 variant is refused, not quantized blind."""
    model = yaml.safe_load((REPO / "examples" / "shakespeare" / "model.yaml").read_text())
    model["spec"]["keepVersions"] = 1
    world.store.apply(LanguageModel.model_validate(model))
    endpoint = yaml.safe_load((REPO / "examples" / "shakespeare" / "endpoint.yaml").read_text())
    endpoint["spec"]["quantization"] = "int8"
    world.store.apply(ModelEndpoint.model_validate(endpoint))
    example(world, "TrainingJob")
    run_chain(world, variants={"int8": {"bitsPerByte": 2.0, "validationLoss": 1.0, "perplexity": 2.7}})
    second = yaml.safe_load((REPO / "examples" / "shakespeare" / "training.yaml").read_text())
    second["metadata"]["name"] = "shakespeare-v2"
    world.store.apply(TrainingJob.model_validate(second))
    run_chain(world, "shakespeare-v2")  # passes, but has no int8 variant
    versions = [v["name"] for v in world.reconcile("LanguageModel", "shakespeare")["versions"]]
    assert versions == ["v1", "v2"]  # v1 stays: it is what the int8 endpoint serves
    assert world.reconcile("ModelEndpoint", "shakespeare")["servedVersion"] == "v1"
    endpoint["spec"]["modelRef"]["version"] = "v2"
    world.store.apply(ModelEndpoint.model_validate(endpoint))
    status = world.reconcile("ModelEndpoint", "shakespeare")
    available = {cond["type"]: cond for cond in status["conditions"]}["ModelAvailable"]
    assert available["status"] == "False" and "v2 has no evaluated int8 variant" in available["message"]


def test_a_new_run_of_the_same_name_gets_a_new_version(world: World) -> None:
    """A changed spec (local mode) or a job deleted and made again is a new run: it must not
    take the old run's name and overwrite its files."""
    example(world, "LanguageModel", "TrainingJob")
    assert run_chain(world)["producedVersion"] == "v1"
    job = yaml.safe_load((REPO / "examples" / "shakespeare" / "training.yaml").read_text())
    job["spec"]["hyperparameters"]["steps"] = 301
    world.store.apply(TrainingJob.model_validate(job))  # generation 2
    world.executor.states.clear()
    assert run_chain(world)["producedVersion"] == "v2"
    (world.store.root / "objects" / "trainingjobs" / "shakespeare-v1.yaml").unlink()  # deleted …
    world.store.apply(TrainingJob.model_validate(job))  # … and made again: a new uid
    world.executor.states.clear()
    assert run_chain(world)["producedVersion"] == "v3"


def test_what_retrying_cannot_fix_becomes_a_condition(world: World) -> None:
    example(world, "LanguageModel", "TrainingJob")
    world.reconcile("LanguageModel", "shakespeare")

    def refuse(*_: object) -> None:
        raise FileNotFoundError("llmos-prepare: not installed (is llmos-runtime in this environment?)")

    world.executor.start = refuse  # type: ignore[method-assign, assignment]
    with pytest.raises(FileNotFoundError):
        world.controller.reconcile(Key("TrainingJob", NS, "shakespeare-v1"))
    ready = world.conditions("LanguageModel", "shakespeare")  # (the model is unaffected)
    assert ready["Ready"]["reason"] != c.REASON_RECONCILE_ERROR
    body = world.store.read("TrainingJob", NS, "shakespeare-v1")
    assert body is not None
    job_ready = {cond["type"]: cond for cond in body["status"]["conditions"]}["Ready"]
    assert job_ready["reason"] == c.REASON_RECONCILE_ERROR and "not installed" in job_ready["message"]
    assert world.events(c.REASON_RECONCILE_ERROR)[0]["type"] == "Warning"
