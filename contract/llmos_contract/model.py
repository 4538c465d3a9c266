"""The base of every typed declaration, and cross-field rules declared once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: `cel` for the API server, `check` for `llmos validate`."""

    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None


class ApiModel(BaseModel):
    """camelCase on the wire, unknown fields rejected, a docstring under every field."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_assignment=True,
    )

    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> ApiModel:
        for rule in self.rules:
            if not rule.check(self):
                raise ValueError(rule.message)
        return self

    def wire(self) -> dict[str, Any]:
        """The object as it is written to the API server or a state file (camelCase)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
