"""Reading manifests: YAML files or directories of multi-document YAML → typed API objects.

Errors name the file, the document (1-based), the field path and what is expected, the way
`kubectl apply` users need them to fix a manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from llmos.api import API_VERSION, KIND_BY_NAME
from llmos.api.base import ApiModel


@dataclass(frozen=True)
class ManifestError:
    file: Path
    document: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: document {self.document}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass(frozen=True)
class Manifest:
    file: Path
    document: int
    obj: ApiModel


class InvalidManifests(Exception):
    def __init__(self, errors: list[ManifestError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def manifest_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    return [path]


def _field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _describe(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown field"
    return message


def describe_errors(exc: ValidationError) -> list[str]:
    """`field.path: what is wrong`, one per problem."""
    return [f"{_field_path(e['loc'])}: {_describe(e)}" if e["loc"] else _describe(e) for e in exc.errors()]


def parse_document(file: Path, index: int, doc: Any) -> tuple[ApiModel | None, list[ManifestError]]:
    if not isinstance(doc, dict):
        return None, [ManifestError(file, index, "", "expected a mapping with apiVersion and kind")]
    if doc.get("apiVersion") != API_VERSION:
        got = doc.get("apiVersion")
        return None, [ManifestError(file, index, "apiVersion", f"expected {API_VERSION}, got {got!r}")]
    kind = KIND_BY_NAME.get(str(doc.get("kind")))
    if kind is None:
        expected = ", ".join(KIND_BY_NAME)
        return None, [ManifestError(file, index, "kind", f"expected one of {expected}, got {doc.get('kind')!r}")]
    body = {k: v for k, v in doc.items() if k != "status"}
    try:
        return kind.model.model_validate(body), []
    except ValidationError as exc:
        return None, [ManifestError(file, index, _field_path(e["loc"]), _describe(e)) for e in exc.errors()]


def load_manifests(path: Path) -> list[Manifest]:
    """Every API object under `path`; raises InvalidManifests listing every problem."""
    found: list[Manifest] = []
    errors: list[ManifestError] = []
    for file in manifest_files(path):
        try:
            docs = list(yaml.safe_load_all(file.read_text()))
        except yaml.YAMLError as exc:
            errors.append(ManifestError(file, 1, "", f"not valid YAML: {exc}"))
            continue
        for index, doc in enumerate(docs, start=1):
            if doc is None:
                continue
            obj, problems = parse_document(file, index, doc)
            errors.extend(problems)
            if obj is not None:
                found.append(Manifest(file, index, obj))
    names: dict[tuple[str, str], Manifest] = {}
    for m in found:
        key = (type(m.obj).__name__, m.obj.metadata.name)  # type: ignore[attr-defined]
        if key in names:
            errors.append(ManifestError(m.file, m.document, "metadata.name", f"duplicate {key[0]} {key[1]!r}"))
        names[key] = m
    if errors:
        raise InvalidManifests(errors)
    return found
