"""The operator's pure machinery, without a cluster: work queue, settings, who-uses-which-model
index, the object cache and the version history policy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
from llmos.api.language_model import Evaluation, LanguageModel, ModelVersion
from llmos.controller.index import Key, ModelUsers
from llmos.controller.queue import WorkQueue
from llmos.controller.settings import OperatorSettings, settings_error
from llmos.kube import ObjectCache, client_from_environment
from llmos.lifecycle import allocate_version, record_version
from pydantic import ValidationError


def run(coroutine: object) -> None:
    asyncio.run(coroutine)  # type: ignore[arg-type]


def test_events_for_one_key_coalesce_and_a_key_is_never_handed_out_twice() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        for _ in range(5):
            queue.add("a")
        queue.add("b")
        assert len(queue) == 2
        first = await queue.get()
        assert first == "a"
        queue.add("a")  # changed while being reconciled: must be seen again, but not concurrently
        second = await queue.get()
        assert second == "b"
        assert len(queue) == 1  # "a" is dirty, waiting for done()
        queue.done("a")
        assert await asyncio.wait_for(queue.get(), 1) == "a"

    run(scenario())


def test_scheduled_visits_fire_later_and_the_earliest_wins() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        loop = asyncio.get_running_loop()
        queue.add("a", after=5)
        queue.add("a", after=0.05)  # earlier: replaces the 5 s visit
        queue.add("a", after=3)  # later: ignored
        start = loop.time()
        assert await asyncio.wait_for(queue.get(), 1) == "a"
        assert 0.04 <= loop.time() - start < 1
        assert queue.scheduled == 0
        queue.add("b", after=0.05)
        queue.forget("b")  # deleted object: no visit
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(queue.get(), 0.2)

    run(scenario())


def test_settings_come_from_the_environment_and_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {"WORKERS": "3", "RUNTIME_IMAGE": "r:1", "PROGRESS_INTERVAL": "2.5"}.items():
        monkeypatch.setenv(f"LLMOS_OPERATOR_{name}", value)
    settings = OperatorSettings()
    assert (settings.workers, settings.images.runtime, settings.progress_interval) == (3, "r:1", 2.5)
    for bad in ("many", "0"):
        monkeypatch.setenv("LLMOS_OPERATOR_WORKERS", bad)
        with pytest.raises(ValidationError) as caught:
            OperatorSettings()
        assert settings_error(caught.value).startswith("LLMOS_OPERATOR_WORKERS: ")
    docs = OperatorSettings.documentation()
    assert "LLMOS_OPERATOR_PROGRESS_INTERVAL (10.0): Seconds between reads" in docs


def test_model_users_follow_spec_changes_and_deletions() -> None:
    users = ModelUsers()
    job, endpoint = Key("TrainingJob", "ns", "j"), Key("ModelEndpoint", "ns", "e")
    users.record(job, "m")
    users.record(endpoint, "m")
    assert users.users("ns", "m") == {job, endpoint}
    assert users.users("other", "m") == set()
    users.record(endpoint, "m2")  # its modelRef changed
    assert users.users("ns", "m") == {job} and users.users("ns", "m2") == {endpoint}
    users.forget(job)
    assert users.users("ns", "m") == set()
    model = Key("LanguageModel", "ns", "m")
    users.add_model(model)
    assert users.models("ns") == {model}
    assert set(users.known()) == {endpoint, model}


def test_object_cache_keeps_the_newest_body_without_managed_fields() -> None:
    cache = ObjectCache()

    def body(rv: str, replicas: int) -> dict[str, object]:
        meta = {"name": "d", "namespace": "ns", "resourceVersion": rv, "managedFields": [{"manager": "x"}]}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {"replicas": replicas}}

    key = ("apps/v1", "Deployment", "ns", "d")
    cache.observe(body("10", 1))
    cache.observe(body("9", 5))  # an older event arriving late does not win
    cached = cache.get(key)
    assert cached is not None and cached["spec"] == {"replicas": 1}
    assert "managedFields" not in cached["metadata"]
    cache.observe(body("11", 2))
    assert cache.get(key)["spec"] == {"replicas": 2}  # type: ignore[index]
    cache.observe(body("12", 2), deleted=True)
    assert cache.get(key) is None and len(cache) == 0


def model(keep: int) -> LanguageModel:
    return LanguageModel.model_validate(
        {
            "apiVersion": "llmos.dev/v1alpha1",
            "kind": "LanguageModel",
            "metadata": {"name": "m", "namespace": "ns"},
            "spec": {
                "architecture": {"hiddenSize": 64, "numLayers": 1, "numHeads": 4},
                "storage": {"uri": "pvc://c/m"},
                "keepVersions": keep,
            },
        }
    )


def add_version(lm: LanguageModel, passed: bool) -> str:
    """What a job does: take a name when it starts, record the version when it is judged."""
    name, _ = allocate_version(lm, f"job-{len(lm.status.versions)}-{lm.status.allocated_versions}")
    evaluation = Evaluation(passed=passed)
    record_version(
        lm,
        ModelVersion(
            name=name,
            uri=f"pvc://c/m/versions/{name}",
            step=10,
            tokens_seen=100,
            produced_by=f"job-{name}",
            evaluation=evaluation,
            created_at="t",
        ),
        "t",
    )
    return name


def test_version_history_is_bounded_and_keeps_the_latest_passing_version() -> None:
    lm = model(keep=3)
    for passed in [True, False, False, False, False]:
        add_version(lm, passed)
    names = [v.name for v in lm.status.versions]
    assert names == ["v1", "v4", "v5"]  # v1 is the latest passing one: kept while v2, v3 went
    assert lm.status.latest_version == "v5" and lm.status.latest_passing_version == "v1"
    add_version(lm, True)
    assert [v.name for v in lm.status.versions] == ["v4", "v5", "v6"]  # names never reused
    assert lm.status.latest_passing_version == "v6"


def test_keep_versions_1_never_drops_the_version_just_recorded() -> None:
    """Regression: keepVersions 1 pruned the new (failing) version, so latestVersion dangled
    and the next job took its name again."""
    lm = model(keep=1)
    add_version(lm, True)
    add_version(lm, False)
    names = {v.name for v in lm.status.versions}
    assert lm.status.latest_version == "v2" and lm.status.latest_passing_version == "v1"
    assert names == {"v1", "v2"}  # both pointers resolve
    assert add_version(lm, False) == "v3"
    assert {v.name for v in lm.status.versions} == {"v1", "v3"}
    assert add_version(lm, True) == "v4" and [v.name for v in lm.status.versions] == ["v4"]
    assert allocate_version(lm, "job-x") == ("v5", True)  # a name handed out is never handed out again
    assert allocate_version(lm, "job-x") == ("v5", False)  # asked again (after a crash): the same name


def kubeconfig(tmp_path: Path, user: Mapping[str, object]) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True}}
                ],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "test",
            }
        )
    )
    return str(path)


def authorization(client: httpx.Client) -> str | None:
    request = client.build_request("GET", "/api")
    assert client.auth is not None
    flow = client.auth.auth_flow(request)
    return next(flow).headers.get("authorization")


def test_kubeconfig_tokens_and_exec_credential_plugins_authenticate(tmp_path: Path) -> None:
    """The `kubernetes` package reads the kubeconfig: static tokens and exec plugins (run for
    real here) both reach the Authorization header of the wrapper's requests."""
    assert (
        authorization(client_from_environment(kubeconfig(tmp_path, {"token": "static-token"}))) == "Bearer static-token"
    )
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": "from-the-plugin"},
    }
    plugin = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "sh",
            "args": ["-c", f"echo '{json.dumps(credential)}'"],
            "interactiveMode": "Never",
        }
    }
    assert authorization(client_from_environment(kubeconfig(tmp_path, plugin))) == "Bearer from-the-plugin"
