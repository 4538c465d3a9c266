"""Pure-ASGI gatekeeping in front of every route: API keys, draining, body size, metrics."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmos_runtime.serve.errors import ApiError
from llmos_runtime.serve.metrics import Metrics

if TYPE_CHECKING:
    from llmos_runtime.serve.app import AppState

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
KNOWN_ROUTES = frozenset({"/v1/models", "/v1/completions", "/v1/chat/completions", "/openapi.json", *PUBLIC_PATHS})


class BodyTooLarge(Exception):
    pass


def key_matches(presented: str, accepted: list[str]) -> bool:
    """Constant-time comparison against every accepted key (no early exit)."""
    found = False
    for key in accepted:
        found |= hmac.compare_digest(presented.encode(), key.encode())
    return found


class Gatekeeper:
    def __init__(self, app: ASGIApp, keys: list[str], max_body_bytes: int, metrics: Metrics, state: AppState) -> None:
        self.app, self.keys, self.max_body = app, keys, max_body_bytes
        self.metrics, self.state = metrics, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in KNOWN_ROUTES else "other"
        status = {"code": 500, "started": False}

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        error = self.refusal(scope, path)
        self.metrics.in_flight.inc()
        self.state.in_flight += 1
        try:
            if error is not None:
                await self.reply(error, counting_send)
                return
            try:
                await self.app(scope, self.limited(receive), counting_send)
            except BodyTooLarge:
                if not status["started"]:
                    await self.reply(self.too_large(), counting_send)
        finally:
            self.metrics.in_flight.dec()
            self.state.in_flight -= 1
            self.metrics.requests.labels(route, str(status["code"])).inc()

    def refusal(self, scope: Scope, path: str) -> ApiError | None:
        if path in PUBLIC_PATHS:
            return None
        headers = dict(scope["headers"])
        if self.keys:
            auth = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not key_matches(token.strip(), self.keys):
                return ApiError(401, "missing or invalid API key (Authorization: Bearer KEY)", code="invalid_api_key")
        if self.state.draining:
            return ApiError(503, "the server is shutting down; retry on another replica", retry_after=5)
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return self.too_large()
        return None

    def too_large(self) -> ApiError:
        return ApiError(413, f"the request body exceeds {self.max_body} bytes")

    def limited(self, receive: Receive) -> Receive:
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise BodyTooLarge
            return message

        return wrapped

    @staticmethod
    async def reply(error: ApiError, send: Send) -> None:
        headers = [(b"content-type", b"application/json")]
        headers += [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": error.body()})
