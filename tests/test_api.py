"""The API types: invalid manifests are rejected naming the field; CRDs are structural and
committed as generated."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from llmos.api import KINDS
from llmos.api.crd import build_crd, crd_file_name, render_all
from llmos.validation import InvalidManifests, load_manifests

from tests.conftest import REPO, run_tool

INVALID = sorted((REPO / "tests" / "invalid").glob("*.yaml"))


def test_there_are_at_least_thirty_invalid_cases() -> None:
    assert len(INVALID) >= 30


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_manifest_is_rejected_naming_the_field(path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(InvalidManifests) as info:
        load_manifests(path)
    messages = [str(e) for e in info.value.errors]
    assert any(expected in m for m in messages), messages
    assert all(m.startswith(f"{path}: document 1: ") for m in messages)


def test_cli_validate_exit_codes() -> None:
    bad = run_tool("llmos", "validate", "-f", REPO / "tests" / "invalid", check=False)
    assert bad.returncode == 1
    assert bad.stderr.count("invalid: ") >= len(INVALID)
    good = run_tool("llmos", "validate", "-f", REPO / "examples" / "shakespeare")
    assert good.stdout.count("valid: ") == 3


def test_examples_are_valid() -> None:
    kinds = sorted(m.obj.kind for m in load_manifests(REPO / "examples"))  # type: ignore[attr-defined]
    assert kinds == ["LanguageModel", "ModelEndpoint", "TrainingJob"]


def test_multi_document_file_names_the_document(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all((REPO / "examples/shakespeare/model.yaml").read_text()))
    bad = dict(docs[0], metadata={"name": "second"})
    bad["spec"] = {**bad["spec"], "storage": {"uri": "nowhere"}}
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump_all([docs[0], bad]))
    with pytest.raises(InvalidManifests) as info:
        load_manifests(path)
    assert [str(e) for e in info.value.errors] == [
        f"{path}: document 2: spec.storage.uri: String should match pattern '^(pvc|s3|file)://[^\\s]+$'"
    ]


def walk(node: Any, path: str = "") -> list[str]:
    """Problems that make a schema non-structural (or unsupported by the API server)."""
    problems: list[str] = []
    if not isinstance(node, dict):
        return problems
    for banned in ("$ref", "anyOf", "oneOf", "allOf", "$defs", "title", "const"):
        if banned in node:
            problems.append(f"{path}: {banned}")
    if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path}: no type")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties")
    if isinstance(node.get("exclusiveMinimum"), (int, float)) and not isinstance(node["exclusiveMinimum"], bool):
        problems.append(f"{path}: numeric exclusiveMinimum")
    if node.get("nullable") and node.get("default", 0) is None:
        problems.append(f"{path}: null default")
    for key, child in node.get("properties", {}).items():
        problems += walk(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        problems += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += walk(node["additionalProperties"], f"{path}{{}}")
    return problems


@pytest.mark.parametrize("kind", KINDS, ids=[k.kind for k in KINDS])
def test_schema_is_structural(kind: Any) -> None:
    crd = build_crd(kind)
    version = crd["spec"]["versions"][0]
    assert walk(version["schema"]["openAPIV3Schema"]) == []
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["names"]["categories"] == ["llmos"]
    assert crd["spec"]["names"]["shortNames"] == [kind.short_name]


def test_cel_rules_reach_the_schema() -> None:
    lm = build_crd(KINDS[0])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert {
        "rule": "has(self.architecture) != has(self.base)",
        "message": "set exactly one of architecture (train from scratch) or base (start from a checkpoint)",
    } in lm["x-kubernetes-validations"]
    arch_rules = [r["rule"] for r in lm["properties"]["architecture"]["x-kubernetes-validations"]]
    assert "self.hiddenSize % self.numHeads == 0" in arch_rules
    tj = build_crd(KINDS[1])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert {"rule": "self == oldSelf", "message": "spec is immutable: create a new TrainingJob"} in tj[
        "x-kubernetes-validations"
    ]


def test_every_field_has_a_description() -> None:
    def undocumented(node: Any, path: str) -> list[str]:
        missing = []
        for key, child in node.get("properties", {}).items():
            if "description" not in child:
                missing.append(f"{path}.{key}")
            missing += undocumented(child.get("items", child), f"{path}.{key}")
        return missing

    for kind in KINDS:
        schema = build_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert undocumented(schema["properties"]["spec"], "spec") == []
        assert undocumented(schema["properties"]["status"], "status") == []


def test_committed_crds_equal_a_fresh_generation() -> None:
    for name, text in render_all().items():
        assert (REPO / "crds" / name).read_text() == text, f"crds/{name} is stale: run hack/update-crds"
    assert sorted(p.name for p in (REPO / "crds").glob("*.yaml")) == sorted(crd_file_name(k) for k in KINDS)


def test_verify_crds_fails_on_drift(tmp_path: Path) -> None:
    result = subprocess.run([str(REPO / "hack" / "verify-crds")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    drifted = tmp_path / "crds"
    drifted.mkdir()
    for name, text in render_all().items():
        (drifted / name).write_text(text.replace("Optimizer steps done", "edited by hand"))
    result = subprocess.run(
        [str(REPO / "hack" / "verify-crds")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"CRD_DIR": str(drifted), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "hack/update-crds" in result.stdout + result.stderr
