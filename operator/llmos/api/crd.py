"""Generate CustomResourceDefinitions from the pydantic types.

pydantic emits JSON Schema (draft 2020-12); Kubernetes wants a *structural* OpenAPI v3 schema:
every node typed, no `$ref`, `nullable` instead of `anyOf: [X, null]`, boolean
`exclusiveMinimum`, no `additionalProperties` beside `properties`. The rules of each model
(:class:`llmos.api.base.Rule`) become `x-kubernetes-validations`.
"""

from __future__ import annotations

from typing import Any

import yaml

from llmos.api import GROUP, KINDS, VERSION, Kind
from llmos.api.base import ApiModel

DROPPED_KEYS = {"title", "$schema", "examples", "const", "discriminator"}


def _rules_by_title(model: type[ApiModel], out: dict[str, list[dict[str, str]]]) -> None:
    """Collect the CEL rules of `model` and every model it contains, keyed by schema title."""
    if model.rules:
        out[model.__name__] = [{"rule": r.cel, "message": r.message} for r in model.rules]
    for field in model.model_fields.values():
        for candidate in _models_in(field.annotation):
            if candidate.__name__ not in out:
                _rules_by_title(candidate, out)


def _models_in(annotation: Any) -> list[type[ApiModel]]:
    if isinstance(annotation, type) and issubclass(annotation, ApiModel):
        return [annotation]
    found: list[type[ApiModel]] = []
    for arg in getattr(annotation, "__args__", ()):
        found.extend(_models_in(arg))
    return found


def structural(node: Any, defs: dict[str, Any], rules: dict[str, list[dict[str, str]]]) -> Any:
    """Turn one pydantic JSON Schema node into a structural OpenAPI v3 node."""
    if isinstance(node, list):
        return [structural(n, defs, rules) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].split("/")[-1]
        merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return structural(merged, defs, rules)
    if "const" in node and "enum" not in node:  # a one-value Literal: an enum of one
        node = {**node, "enum": [node["const"]]}
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf {node['anyOf']} structurally")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        merged = {**structural(options[0], defs, rules), **rest}
        merged["nullable"] = True
        if merged.get("default", 0) is None:
            del merged["default"]
        return structural(merged, defs, rules)
    out: dict[str, Any] = {}
    title = node.get("title")
    for key, value in node.items():
        if key in DROPPED_KEYS:
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key in ("properties", "$defs"):
            if key == "properties":
                out[key] = {k: structural(v, defs, rules) for k, v in value.items()}
        else:
            out[key] = structural(value, defs, rules)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if node.get("type") == "object" and title in rules:
        out["x-kubernetes-validations"] = rules[title]
    return out


def openapi_schema(model: type[ApiModel]) -> dict[str, Any]:
    """The structural schema of `model` (spec or status), with its CEL rules."""
    raw = model.model_json_schema(by_alias=True)
    rules: dict[str, list[dict[str, str]]] = {}
    _rules_by_title(model, rules)
    schema: dict[str, Any] = structural(raw, raw.get("$defs", {}), rules)
    return schema


def build_crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    fields = kind.model.model_fields
    spec = openapi_schema(fields["spec"].annotation)  # type: ignore[arg-type]
    status = openapi_schema(fields["status"].annotation)  # type: ignore[arg-type]
    status.pop("default", None)
    if kind.immutable_spec:
        spec.setdefault("x-kubernetes-validations", []).append(
            {"rule": "self == oldSelf", "message": "spec is immutable: create a new TrainingJob"}
        )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": [kind.short_name],
                "categories": ["llmos"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": c.name,
                            "type": c.type,
                            "jsonPath": c.json_path,
                            "description": c.description,
                        }
                        for c in kind.columns
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (kind.model.__doc__ or "").strip(),
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def crd_file_name(kind: Kind) -> str:
    return f"{GROUP}_{kind.plural}.yaml"


def render_crd(kind: Kind) -> str:
    header = "# Generated by hack/update-crds from operator/llmos/api. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(kind), sort_keys=False, width=100, allow_unicode=True)


def render_all() -> dict[str, str]:
    """File name → YAML text of every CRD."""
    return {crd_file_name(k): render_crd(k) for k in KINDS}


def write_all(directory: str) -> None:
    from pathlib import Path

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render_all().items():
        (out / name).write_text(text)


if __name__ == "__main__":
    import sys

    write_all(sys.argv[1] if len(sys.argv) > 1 else "crds")
