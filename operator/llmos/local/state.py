"""File-backed objects for local mode: the same objects (spec + status) the operator writes.

.llmos/objects/<plural>/<name>.yaml     the object, status included
.llmos/logs/<short>-<name>.log          what its processes printed
.llmos/volumes/<claim>/…                what pvc://claim/… means on this machine
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import yaml

from llmos.api import KIND_BY_NAME, Kind
from llmos.api.base import ApiModel

T = TypeVar("T", bound=ApiModel)
SPEC_HASH = "llmos.dev/spec-hash"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def spec_hash(obj: ApiModel) -> str:
    spec = obj.spec.wire()  # type: ignore[attr-defined]
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


class StateStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, kind: Kind, name: str) -> Path:
        return self.root / "objects" / kind.plural / f"{name}.yaml"

    def log_path(self, obj: ApiModel) -> Path:
        kind = KIND_BY_NAME[obj.kind]  # type: ignore[attr-defined]
        return self.root / "logs" / f"{kind.short_name}-{obj.metadata.name}.log"  # type: ignore[attr-defined]

    def volume(self, claim: str) -> Path:
        return self.root / "volumes" / claim

    def load(self, model: type[T], name: str) -> T | None:
        path = self._path(KIND_BY_NAME[model.__name__], name)
        if not path.is_file():
            return None
        return model.model_validate(yaml.safe_load(path.read_text()))

    def list(self, kind: Kind) -> list[ApiModel]:
        folder = self.root / "objects" / kind.plural
        files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
        return [kind.model.model_validate(yaml.safe_load(f.read_text())) for f in files]

    def save(self, obj: ApiModel) -> None:
        path = self._path(KIND_BY_NAME[obj.kind], obj.metadata.name)  # type: ignore[attr-defined]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(yaml.safe_dump(obj.wire(), sort_keys=False))
        os.replace(tmp, path)

    def apply(self, obj: T) -> T:
        """Store a manifest: status kept, generation bumped when the spec changed."""
        stored = self.load(type(obj), obj.metadata.name)  # type: ignore[attr-defined]
        digest = spec_hash(obj)
        meta = obj.metadata  # type: ignore[attr-defined]
        meta.annotations = {**meta.annotations, SPEC_HASH: digest}
        if stored is None:
            meta.generation = 1
            extra = {"creationTimestamp": now()}
        else:
            old = stored.metadata  # type: ignore[attr-defined]
            same = old.annotations.get(SPEC_HASH) == digest
            meta.generation = (old.generation or 1) + (0 if same else 1)
            extra = {"creationTimestamp": (old.model_extra or {}).get("creationTimestamp", now())}
            obj.status = stored.status  # type: ignore[attr-defined]
        for key, value in extra.items():
            setattr(meta, key, value)
        self.save(obj)
        return obj
