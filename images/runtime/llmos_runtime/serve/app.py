"""The FastAPI application: routes → serving logic → engine.

GET  /v1/models             POST /v1/completions     POST /v1/chat/completions
GET  /healthz (alive)       GET  /readyz (loaded, not draining)     GET /metrics
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from llmos_runtime.hardware import detect, serving_dtype
from llmos_runtime.serve.engine import Engine, Sequence
from llmos_runtime.serve.errors import ERROR_RESPONSES, STREAMING_RESPONSES, ApiError
from llmos_runtime.serve.metrics import Metrics
from llmos_runtime.serve.middleware import Gatekeeper
from llmos_runtime.serve.protocol import (
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatResponseMessage,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
    Usage,
    new_id,
    now,
)
from llmos_runtime.serve.serving import Delta, Prepared, Server
from llmos_runtime.serve.settings import ServeSettings
from llmos_runtime.serve.text import ChatTemplate
from llmos_runtime.version import load_model, load_tokenizer


@dataclass
class AppState:
    """What the routes, the gatekeeper and the drain share (app.state.llmos)."""

    server: Server | None = None
    template: ChatTemplate | None = None
    ready: bool = False
    draining: bool = False
    in_flight: int = 0


def build_engine(settings: ServeSettings, on_finish: Callable[[Sequence, str], None] | None = None) -> Engine:
    """The model from disk in an engine sized by the settings, kernels warmed up."""
    torch.set_num_threads(settings.threads)
    dtype = serving_dtype(settings.dtype, detect("cpu"))  # the engine computes on the CPU
    model = load_model(settings.model, dtype, settings.quantization, settings.int8_compute)
    engine = Engine(
        model, max_running=settings.max_concurrent_requests, max_waiting=settings.max_queue, on_finish=on_finish
    )
    with torch.inference_mode():  # warm up the kernels before reporting ready
        model(torch.zeros((1, 8), dtype=torch.long))
    return engine


def create_app(settings: ServeSettings, engine: Engine | None = None) -> FastAPI:
    """The application; with `engine`, that one is served (tests need no subprocess and no
    second load), else the settings' model is loaded at start-up."""
    metrics = Metrics()
    state = AppState()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        running = engine or build_engine(settings, metrics.sequence_finished)
        server = Server(running, load_tokenizer(settings.model), settings.name, settings.max_tokens)
        server.keepalive = settings.keepalive_seconds
        metrics.watch(running)
        state.server, state.template = server, ChatTemplate(settings.model)
        running.start()
        state.ready = True
        yield
        state.ready = False
        running.stop()

    app = FastAPI(title="LLM OS inference server", version="0.1.0", lifespan=lifespan)
    app.state.llmos = state

    def server() -> Server:
        if state.server is None or not state.ready:
            raise ApiError(503, "the model is not loaded yet", retry_after=2)
        return state.server

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first["loc"] if p != "body") or None
        return ApiError(400, f"{param or 'body'}: {first['msg']}", param).response()

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return ApiError(exc.status_code, str(exc.detail)).response()

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> PlainTextResponse:
        if state.ready and not state.draining:
            return PlainTextResponse("ready")
        return PlainTextResponse("draining" if state.draining else "loading", status_code=503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", responses=ERROR_RESPONSES)
    async def models() -> ModelList:
        s = server()
        card = ModelCard(id=s.name, created=now(), max_model_len=s.context, quantization=s.quantization)
        return ModelList(data=[card])

    @app.post("/v1/completions", response_model=CompletionResponse, responses=STREAMING_RESPONSES)
    async def completions(req: CompletionRequest) -> Any:
        s = server()
        for field, value in (
            ("echo", req.echo),
            ("logprobs", req.logprobs),
            ("best_of", req.best_of),
            ("suffix", req.suffix),
        ):
            if value not in (None, False):
                raise ApiError(400, f"{field} is not supported", field)
        prompt_ids = req.prompt if isinstance(req.prompt, list) else s.tokenizer.encode(req.prompt).ids
        prepared = s.prepare(req, prompt_ids, req.max_tokens)
        return await respond(s, prepared, req.stream, req.stream_options, chat=False)

    @app.post("/v1/chat/completions", response_model=ChatCompletionResponse, responses=STREAMING_RESPONSES)
    async def chat_completions(req: ChatCompletionRequest) -> Any:
        s = server()
        if req.logprobs or req.tools:
            raise ApiError(400, "logprobs and tools are not supported", "logprobs" if req.logprobs else "tools")
        if req.response_format and req.response_format.get("type") != "text":
            raise ApiError(400, "only response_format {type: text} is supported", "response_format")
        assert state.template is not None
        text = state.template.render([m.model_dump() for m in req.messages])
        prepared = s.prepare(req, s.tokenizer.encode(text).ids, req.max_completion_tokens or req.max_tokens)
        return await respond(s, prepared, req.stream, req.stream_options, chat=True)

    app.add_middleware(
        Gatekeeper,
        keys=settings.accepted_keys(),
        max_body_bytes=settings.max_body_bytes,
        metrics=metrics,
        state=state,
    )
    return app


async def respond(s: Server, prepared: Prepared, stream: bool, stream_options: Any, chat: bool) -> Any:
    request_id, created = new_id("chatcmpl" if chat else "cmpl"), now()
    counts = [0] * prepared.n
    if stream:
        include_usage = bool(stream_options and stream_options.include_usage)
        deltas = s.generate(prepared, counts)  # raises ApiError (429, 503) before the 200
        events = sse_events(s, deltas, prepared, request_id, created, chat, counts, include_usage)
        return StreamingResponse(events, media_type="text/event-stream")
    texts = [""] * prepared.n
    reasons: list[str | None] = [None] * prepared.n
    async for delta in s.generate(prepared, counts):
        if delta is not None:
            texts[delta.index] += delta.text
            reasons[delta.index] = delta.finish_reason or reasons[delta.index]
    usage = Usage(
        prompt_tokens=len(prepared.prompt_ids),
        completion_tokens=sum(counts),
        total_tokens=len(prepared.prompt_ids) + sum(counts),
    )
    if chat:
        return ChatCompletionResponse(
            id=request_id,
            created=created,
            model=s.name,
            usage=usage,
            choices=[
                ChatChoice(index=i, message=ChatResponseMessage(content=t), finish_reason=reasons[i])
                for i, t in enumerate(texts)
            ],
        )
    return CompletionResponse(
        id=request_id,
        created=created,
        model=s.name,
        usage=usage,
        choices=[CompletionChoice(index=i, text=t, finish_reason=reasons[i]) for i, t in enumerate(texts)],
    )


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


async def sse_events(
    s: Server,
    deltas: AsyncIterator[Delta | None],
    prepared: Prepared,
    request_id: str,
    created: int,
    chat: bool,
    counts: list[int],
    include_usage: bool,
) -> AsyncIterator[str]:
    """`data: {chunk}` events, keep-alive comments while quiet, usage, then `data: [DONE]`."""
    kind = "chat.completion.chunk" if chat else "text_completion"
    base = {"id": request_id, "object": kind, "created": created, "model": s.name}
    yield ": stream opened\n\n"
    started: set[int] = set()
    try:
        async for delta in deltas:
            if delta is None:
                yield ": keep-alive\n\n"
                continue
            if chat:
                body: dict[str, Any] = {"content": delta.text}
                if delta.index not in started:
                    body["role"] = "assistant"
                    started.add(delta.index)
                choice = {"index": delta.index, "delta": body, "finish_reason": delta.finish_reason, "logprobs": None}
            else:
                choice = {
                    "index": delta.index,
                    "text": delta.text,
                    "finish_reason": delta.finish_reason,
                    "logprobs": None,
                }
            yield _sse({**base, "choices": [choice]})
        if include_usage:
            n_prompt = len(prepared.prompt_ids)
            usage = {
                "prompt_tokens": n_prompt,
                "completion_tokens": sum(counts),
                "total_tokens": n_prompt + sum(counts),
            }
            yield _sse({**base, "choices": [], "usage": usage})
    except ApiError as exc:
        yield f"data: {exc.body().decode()}\n\n"
    yield "data: [DONE]\n\n"
