"""One error type for the HTTP API, rendered in the OpenAI error envelope."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from llmos_runtime.serve.protocol import ErrorDetail, ErrorResponse

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.retry_after = retry_after

    def body(self) -> bytes:
        detail = ErrorDetail(
            message=self.message,
            type=ERROR_TYPES.get(self.status, "server_error"),
            param=self.param,
            code=self.code,
        )
        return ErrorResponse(error=detail).model_dump_json().encode()

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}

    def response(self) -> JSONResponse:
        detail = ErrorResponse.model_validate_json(self.body())
        return JSONResponse(detail.model_dump(), status_code=self.status, headers=self.headers())


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse, "description": kind}
    for status, kind in (
        (400, "Bad request"),
        (401, "Missing or wrong API key"),
        (404, "No such model"),
        (413, "Body too large"),
        (429, "Queue full"),
        (503, "Draining or not ready"),
    )
}

STREAMING_RESPONSES: dict[int | str, dict[str, object]] = {
    **ERROR_RESPONSES,
    200: {
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "description": "JSON, or SSE with stream: true",
    },
}
