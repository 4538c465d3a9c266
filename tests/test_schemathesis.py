"""Property-based requests from the server's own OpenAPI document: no 5xx, no schema drift."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ServerProcess

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = 80
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def conformance(
    operation: Any, mode: GenerationMode, auth: dict[str, str], calls: dict[str, int]
) -> Callable[[], None]:
    """A Hypothesis test that sends `mode` cases of one operation and counts them."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=auth, checks=CHECKS, timeout=60)
        key = f"{case.operation.label} ({mode.value})"
        calls[key] = calls.get(key, 0) + 1

    return check


def test_api_conforms_to_its_schema(server: ServerProcess) -> None:
    auth = {"Authorization": f"Bearer {server.key}"}
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json", headers=auth)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    runs = [(op, GenerationMode.POSITIVE) for op in operations]
    runs += [(op, GenerationMode.NEGATIVE) for op in operations if op.method.upper() == "POST"]
    calls: dict[str, int] = {}
    for operation, mode in runs:
        conformance(operation, mode, auth, calls)()
    assert {key.split(" (")[0] for key in calls} == {
        "GET /v1/models",
        "POST /v1/completions",
        "POST /v1/chat/completions",
    }
    assert sum(calls.values()) >= 300, calls
