"""LanguageModel: check the storage its chain will mount, keep the version history bounded."""

from __future__ import annotations

from pathlib import PurePosixPath

from llmos import conditions as c
from llmos.api.base import set_condition
from llmos.api.language_model import LanguageModel, LanguageModelStatus
from llmos.kube import Kube
from llmos.lifecycle import prune_versions
from llmos.reconcile.training import now
from llmos.storage import UnsupportedStorage, claim_of, resolve


def storage_uris(model: LanguageModel) -> list[str]:
    spec = model.spec
    uris = [spec.storage.uri]
    if spec.base is not None:
        uris.append(spec.base.uri)
    if spec.tokenizer.uri is not None:
        uris.append(spec.tokenizer.uri)
    return uris


def storage_problem(kube: Kube, model: LanguageModel) -> tuple[str, str] | None:
    """(reason, message) of the first URI a pod could not use, else None."""
    namespace = model.metadata.namespace or "default"
    for uri in storage_uris(model):
        try:
            resolve(uri, PurePosixPath("/"), allow_files=False)
        except UnsupportedStorage as exc:
            return c.REASON_UNSUPPORTED_STORAGE, str(exc)
        claim = claim_of(uri)
        if claim is None:
            continue
        body = kube.get("v1", "PersistentVolumeClaim", namespace, claim)
        if body is None:
            return c.REASON_CLAIM_MISSING, f"{uri}: PersistentVolumeClaim {claim!r} does not exist in {namespace}"
        if body.get("status", {}).get("phase") == "Lost":
            return c.REASON_CLAIM_MISSING, f"{uri}: PersistentVolumeClaim {claim!r} lost its volume"
    return None


def reconcile_model(kube: Kube, model: LanguageModel) -> LanguageModelStatus:
    working = model.model_copy(deep=True)
    status = working.status
    status.observed_generation = model.metadata.generation
    problem = storage_problem(kube, model)
    if problem is None:
        claims = ", ".join(sorted({claim for uri in storage_uris(model) if (claim := claim_of(uri))}))
        reason, message = c.REASON_CLAIM_FOUND, f"claims present: {claims}"
    else:
        reason, message = problem
    status.conditions = set_condition(status.conditions, c.STORAGE_READY, problem is None, reason, message, now())
    prune_versions(working)  # keepVersions may have been lowered
    return status
