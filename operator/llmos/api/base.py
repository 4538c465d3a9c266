"""Shared pieces of the API types: the wire conventions, cross-field rules and conditions.

Every type is a pydantic model with camelCase aliases (the Kubernetes convention) and a
docstring under each field, which becomes the description `kubectl explain` prints.
Cross-field rules are declared once as :class:`Rule` objects: the CRD generator emits their
CEL expression (`x-kubernetes-validations`, checked by the API server) and `llmos validate`
runs their Python twin, so both paths reject the same specs with the same message.
"""

from __future__ import annotations

from typing import Literal

from llmos_contract.model import ApiModel, Rule
from pydantic import ConfigDict, Field

GROUP = "llmos.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

__all__ = ["API_VERSION", "GROUP", "VERSION", "ApiModel", "Condition", "ObjectMeta", "Rule", "no_s3"]


S3_NOT_YET = "s3:// is not supported yet; use pvc:// (on a cluster) or file:// (local mode)"


def no_s3(field: str, optional: bool = False) -> Rule:
    """s3:// matches the URI patterns (it is coming) but nothing reads it yet: reject it."""
    cel = f"!self.{field}.startsWith('s3://')"
    return Rule(
        cel=f"!has(self.{field}) || {cel}" if optional else cel,
        message=S3_NOT_YET,
        check=lambda m: not str(getattr(m, field) or "").startswith("s3://"),
    )


class Condition(ApiModel):
    """The state of one aspect of an object, in the standard Kubernetes shape."""

    type: str = Field(max_length=64)
    """The aspect, e.g. Ready, ModelAvailable, Succeeded."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str = Field(max_length=128)
    """A CamelCase word a program can switch on."""
    message: str = Field(default="", max_length=4096)
    """A sentence for people."""
    last_transition_time: str | None = None
    """When status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """The spec generation this condition was computed from."""


class ObjectMeta(ApiModel):
    """The subset of Kubernetes object metadata that LLM OS reads."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    )
    """A DNS-1123 label: lower-case letters, digits and '-'."""
    namespace: str | None = None
    """The namespace (ignored in local mode)."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Annotations."""
    generation: int | None = None
    """Set by the API server; bumped on every spec change."""
    uid: str | None = None
    """Set by the API server: this object's identity (owner references name it)."""
    resource_version: str | None = None
    """Set by the API server: changes on every write (optimistic concurrency)."""


class LocalObjectReference(ApiModel):
    """A reference to an object by name in the same namespace."""

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """The object's name."""


def condition_is_true(conditions: list[Condition], type_: str) -> bool:
    return any(c.type == type_ and c.status == "True" for c in conditions)


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str = "",
    now: str | None = None,
) -> list[Condition]:
    """Return the list with `type_` set; the transition time moves only when status flips."""
    wanted = "True" if status else "False"
    kept = [c for c in conditions if c.type != type_]
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == wanted else now
    kept.append(Condition(type=type_, status=wanted, reason=reason, message=message, last_transition_time=since))
    return sorted(kept, key=lambda c: c.type)
