"""The object store of local mode: the same objects (spec + status) the operator writes,
as files, with the API server's bookkeeping (uid, generation, resourceVersion).

.llmos/objects/<plural>/<name>.yaml     the object, status included
.llmos/events.jsonl                     what happened to them, one event a line
.llmos/logs/<short>-<name>.log          what their processes printed
.llmos/volumes/<claim>/…                what pvc://claim/… means on this machine
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from llmos.api import KIND_BY_NAME, Kind
from llmos.api.base import ApiModel
from llmos.lifecycle import now
from llmos.reconcile.seams import Conflict, EventType, ObjectRef

T = TypeVar("T", bound=ApiModel)
SPEC_HASH = "llmos.dev/spec-hash"
NAMESPACE = "default"


def spec_hash(obj: ApiModel) -> str:
    spec = obj.spec.wire()  # type: ignore[attr-defined]
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.on_change: Callable[[str, str], None] = lambda kind, name: None
        self.on_event: Callable[[ObjectRef, EventType, str, str], None] = lambda *_: None
        self._lock = threading.Lock()

    def _path(self, kind: Kind, name: str) -> Path:
        return self.root / "objects" / kind.plural / f"{name}.yaml"

    def log_path(self, kind: str, name: str) -> Path:
        return self.root / "logs" / f"{KIND_BY_NAME[kind].short_name}-{name}.log"

    def volume(self, claim: str) -> Path:
        return self.root / "volumes" / claim

    # The ObjectStore seam.

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        path = self._path(KIND_BY_NAME[kind], name)
        return dict(yaml.safe_load(path.read_text())) if path.is_file() else None

    def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any], resource_version: str | None
    ) -> None:
        with self._lock:
            body = self.read(kind, namespace, name)
            if body is None:
                raise Conflict(f"{kind} {name} no longer exists")
            if resource_version is not None and body["metadata"].get("resourceVersion") != resource_version:
                raise Conflict(f"{kind} {name} changed since it was read")
            body["status"] = status
            self._write(kind, body)
        self.on_change(kind, name)

    def event(self, ref: ObjectRef, type_: EventType, reason: str, message: str) -> None:
        record = {
            "time": now(),
            "kind": ref.kind,
            "name": ref.name,
            "type": type_,
            "reason": reason,
            "message": message,
        }
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock, (self.root / "events.jsonl").open("a") as out:
            out.write(json.dumps(record) + "\n")
        self.on_event(ref, type_, reason, message)

    # What `llmos run` and `llmos get` need besides.

    def _write(self, kind: str, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        meta["resourceVersion"] = str(int(meta.get("resourceVersion") or 0) + 1)
        path = self._path(KIND_BY_NAME[kind], meta["name"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(yaml.safe_dump(body, sort_keys=False))
        os.replace(tmp, path)

    def load(self, model: type[T], name: str) -> T | None:
        body = self.read(model.__name__, NAMESPACE, name)
        return None if body is None else model.model_validate(body)

    def objects(self, kind: Kind) -> list[ApiModel]:
        folder = self.root / "objects" / kind.plural
        files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
        return [kind.model.model_validate(yaml.safe_load(f.read_text())) for f in files]

    def events(self) -> builtins.list[dict[str, Any]]:
        path = self.root / "events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []

    def apply(self, obj: ApiModel) -> None:
        """Store a manifest as the API server would: status kept, generation bumped when the
        spec changed, uid and creation time given once."""
        kind = obj.kind  # type: ignore[attr-defined]
        name = obj.metadata.name  # type: ignore[attr-defined]
        digest = spec_hash(obj)
        body = obj.wire()
        body.pop("status", None)
        meta = body["metadata"]
        meta["annotations"] = {**meta.get("annotations", {}), SPEC_HASH: digest}
        with self._lock:
            stored = self.read(kind, NAMESPACE, name)
            if stored is None:
                meta |= {"generation": 1, "uid": str(uuid.uuid4()), "creationTimestamp": now()}
            else:
                old = stored["metadata"]
                same = old.get("annotations", {}).get(SPEC_HASH) == digest
                meta |= {
                    "generation": (old.get("generation") or 1) + (0 if same else 1),
                    "uid": old.get("uid") or str(uuid.uuid4()),
                    "creationTimestamp": old.get("creationTimestamp", now()),
                    "resourceVersion": old.get("resourceVersion"),
                }
                if "status" in stored:
                    body["status"] = stored["status"]
            self._write(kind, body)
        self.on_change(kind, name)
