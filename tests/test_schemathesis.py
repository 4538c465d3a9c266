"""Property-based requests from the server's own OpenAPI document: no 5xx, no schema drift."""

from __future__ import annotations

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


def test_api_conforms_to_its_schema(server: ServerProcess) -> None:
    auth = {"Authorization": f"Bearer {server.key}"}
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json", headers=auth)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    calls: dict[str, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    runs = [(op, GenerationMode.POSITIVE) for op in operations]
    runs += [(op, GenerationMode.NEGATIVE) for op in operations if op.method.upper() == "POST"]
    for operation, mode in runs:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case, mode: GenerationMode = mode) -> None:
            case.call_and_validate(headers=auth, checks=checks, timeout=60)
            key = f"{case.operation.label} ({mode.value})"
            calls[key] = calls.get(key, 0) + 1

        check()
    assert {key.split(" (")[0] for key in calls} == {
        "GET /v1/models",
        "POST /v1/completions",
        "POST /v1/chat/completions",
    }
    assert sum(calls.values()) >= 300, calls
