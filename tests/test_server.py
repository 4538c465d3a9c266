"""The HTTP server, driven by the official openai client and plain HTTP."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from llmos_runtime.hardware import detect, serving_dtype

from tests.conftest import ServerProcess, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=server.key, max_retries=0)


def test_models(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]
    auto = str(serving_dtype("auto", detect())).removeprefix("torch.")  # what --dtype auto picks here
    assert models.data[0].model_extra == {"max_model_len": 256, "quantization": auto}


@pytest.mark.parametrize("quantization", ["none", "int8"])
def test_the_server_says_what_it_computes_with(tiny_version: Path, quantization: str) -> None:
    """`--quantization int8` serves the version's int8 variant, and /v1/models says so."""
    from fastapi.testclient import TestClient
    from llmos_runtime.serve.app import build_engine, create_app
    from llmos_runtime.serve.settings import ServeSettings

    settings = ServeSettings(model=tiny_version, threads=1, quantization=quantization, dtype="float32")
    app = create_app(settings, build_engine(settings))
    with TestClient(app) as http:
        card = http.get("/v1/models").json()["data"][0]
        assert card["quantization"] == ("int8" if quantization == "int8" else "float32")
        answer = http.post("/v1/completions", json={"model": card["id"], "prompt": "ROMEO:", "max_tokens": 4})
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 4


def test_completion_with_usage(client: openai.OpenAI) -> None:
    out = client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=12, temperature=0)
    assert out.choices[0].finish_reason in ("length", "stop")
    assert out.usage is not None and out.usage.prompt_tokens >= 2
    assert out.usage.completion_tokens == 12 or out.choices[0].finish_reason == "stop"
    assert out.choices[0].text


def test_chat_completion_and_n(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Speak, friend."}], max_completion_tokens=8, n=3, seed=5
    )
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert all(c.message.role == "assistant" for c in out.choices)
    assert out.usage is not None and out.usage.completion_tokens <= 24


def test_streaming_chat_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "ROMEO:"}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16
    whole = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "ROMEO:"}], max_tokens=16, temperature=0
    )
    assert whole.choices[0].message.content == text


def test_stop_sequence_ends_the_text(client: openai.OpenAI) -> None:
    sampling = {"model": "tiny", "prompt": "KING:", "max_tokens": 40, "temperature": 1.0, "seed": 3}
    free = client.completions.create(**sampling).choices[0].text  # type: ignore[call-overload]
    stop = free[len(free) // 2 : len(free) // 2 + 3]
    assert len(stop) == 3
    out = client.completions.create(**sampling, stop=[stop])  # type: ignore[call-overload]
    assert out.choices[0].finish_reason == "stop"
    assert stop not in out.choices[0].text
    assert free.startswith(out.choices[0].text)
    streamed = client.completions.create(**sampling, stop=stop, stream=True)  # type: ignore[call-overload]
    assert "".join(c.choices[0].text for c in streamed) == out.choices[0].text


def test_seed_reproduces_sampling(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        return (
            client.completions.create(model="tiny", prompt="HAMLET:", max_tokens=20, temperature=1.0, seed=seed)
            .choices[0]
            .text
        )

    assert sample(42) == sample(42)
    assert sample(42) != sample(43)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "tiny", "prompt": "x", "max_tokens": "many"}, "max_tokens"),
        ({"model": "tiny", "prompt": "x", "temperature": 5}, "temperature"),
        ({"model": "tiny"}, "prompt"),
        ({"model": "tiny", "prompt": "x", "max_tokens": 1000}, "max_tokens"),
        ({"model": "tiny", "prompt": "x", "logprobs": 2}, "logprobs"),
        ({"model": "tiny", "prompt": [999999]}, "prompt"),
        ({"model": "tiny", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_bad_requests_get_400_in_openai_format(server: ServerProcess, body: dict[str, object], param: str) -> None:
    r = httpx.post(f"{server.base_url}/v1/completions", json=body, headers={"Authorization": f"Bearer {server.key}"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]


def test_context_overflow_and_unknown_model(server: ServerProcess, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny", prompt=[5] * 250, max_tokens=60)
    assert "exceeds the context length 256" in str(info.value)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="x", max_tokens=2)
    r = httpx.post(
        f"{server.base_url}/v1/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "error" in r.json()


def test_body_limit_is_413(server: ServerProcess) -> None:
    r = httpx.post(
        f"{server.base_url}/v1/completions",
        json={"model": "tiny", "prompt": "x" * (2 << 20)},
        headers={"Authorization": f"Bearer {server.key}"},
    )
    assert r.status_code == 413
    assert r.json()["error"]["message"].startswith("the request body exceeds")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models"),
        ("POST", "/v1/completions"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/nonexistent"),
    ],
)
@pytest.mark.parametrize("key", [None, "sk-wrong", "sk-test-one-and-more"])
def test_every_route_but_health_needs_the_key(server: ServerProcess, method: str, path: str, key: str | None) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = httpx.request(method, f"{server.base_url}{path}", headers=headers, json={})
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"


def test_health_routes_are_open_and_metrics_count(server: ServerProcess, client: openai.OpenAI) -> None:
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    assert httpx.get(f"{server.base_url}/readyz").status_code == 200
    client.completions.create(model="tiny", prompt="x", max_tokens=3)
    second = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="sk-test-two")
    second.completions.create(model="tiny", prompt="x", max_tokens=3)
    text = httpx.get(f"{server.base_url}/metrics").text
    for name in (
        "llmos_requests_total",
        "llmos_time_to_first_token_seconds_bucket",
        "llmos_time_per_output_token_seconds_bucket",
        "llmos_num_requests_running",
        "llmos_num_requests_waiting",
        "llmos_kv_cache_usage_ratio",
        "llmos_prompt_tokens_total",
        "llmos_generation_tokens_total",
    ):
        assert name in text, name
    assert 'llmos_requests_total{route="/v1/completions",status="401"}' in text
    assert "sk-test" not in text + server.log.read_text()


def test_queue_full_is_429_with_retry_after(tiny_version: Path) -> None:
    srv = start_server(tiny_version, "--max-concurrent-requests", "1", "--max-queue", "1", "--max-tokens", "200")
    body = {"model": "tiny", "prompt": "ROMEO:", "max_tokens": 200}
    responses: list[httpx.Response] = []

    def call() -> None:
        responses.append(httpx.post(f"{srv.base_url}/v1/completions", json=body, timeout=120))

    try:
        threads = [threading.Thread(target=call) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        srv.proc.terminate()
        srv.proc.wait(30)
    refused = [r for r in responses if r.status_code == 429]
    assert refused and len(refused) < 8
    assert all(r.status_code in (200, 429) for r in responses)
    assert refused[0].headers["Retry-After"] == "1"
    assert refused[0].json()["error"]["type"] == "rate_limit_error"


def test_sigterm_drains_in_flight_streams(tiny_version: Path) -> None:
    srv = start_server(tiny_version, "--max-tokens", "120", "--threads", "2")
    results: list[tuple[int, str | None]] = []
    started = threading.Barrier(17)

    def stream_one(i: int) -> None:
        client = openai.OpenAI(base_url=f"{srv.base_url}/v1", api_key="none", max_retries=0)
        stream = client.completions.create(
            model="tiny", prompt=f"CITIZEN {i}:", max_tokens=120, temperature=0.8, seed=i, stream=True
        )
        count, reason = 0, None
        for n, chunk in enumerate(stream):
            if n == 0:
                started.wait(60)
            count += 1
            reason = chunk.choices[0].finish_reason or reason
        results.append((count, reason))

    threads = [threading.Thread(target=stream_one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    started.wait(60)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert httpx.get(f"{srv.base_url}/readyz").status_code == 503
    refused = httpx.post(f"{srv.base_url}/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 2})
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    for t in threads:
        t.join(120)
    assert srv.proc.wait(60) == 0
    assert len(results) == 16
    assert all(reason in ("length", "stop") for _, reason in results), results  # finished, not cut


def test_sse_keepalive_comments_while_the_engine_is_busy(tiny_version: Path) -> None:
    """A stalled engine (here: not yet stepping, as during a long prefill) yields comments."""
    from llmos_runtime.serve.app import sse_events
    from llmos_runtime.serve.engine import Engine
    from llmos_runtime.serve.protocol import CompletionRequest
    from llmos_runtime.serve.serving import Server
    from llmos_runtime.version import load_model, load_tokenizer

    engine = Engine(load_model(tiny_version))
    server = Server(engine, load_tokenizer(tiny_version), "tiny", 16)
    server.keepalive = 0.01
    prepared = server.prepare(CompletionRequest(model="tiny", prompt="ROMEO:", max_tokens=4), [5, 6, 7], 4)

    async def first_events() -> list[str]:
        counts = [0]
        events = sse_events(server, server.generate(prepared, counts), prepared, "id", 0, False, counts, False)
        seen = [await anext(events) for _ in range(3)]
        engine.start()  # the engine catches up; the stream then completes normally
        seen += [e async for e in events]
        return seen

    try:
        events = asyncio.run(first_events())
    finally:
        engine.stop()
    assert events[:3] == [": stream opened\n\n", ": keep-alive\n\n", ": keep-alive\n\n"]
    assert events[-1] == "data: [DONE]\n\n"
    assert any('"finish_reason": "length"' in e for e in events)


def test_the_app_factory_serves_a_given_engine_in_process(tiny_version: Path) -> None:
    """No subprocess: the app serves the engine it is handed; the real openai client talks to
    it through Starlette's in-process transport."""
    from fastapi.testclient import TestClient
    from llmos_runtime.serve.app import build_engine, create_app
    from llmos_runtime.serve.settings import ServeSettings

    settings = ServeSettings(model=tiny_version, served_model_name="tiny", threads=1, max_concurrent_requests=2)
    engine = build_engine(settings)
    app = create_app(settings, engine)
    with TestClient(app) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="none", http_client=http, max_retries=0)
        assert [m.id for m in client.models.list().data] == ["tiny"]
        out = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "ROMEO:"}], max_tokens=6, seed=1
        )
        assert out.choices[0].message.content and app.state.llmos.server.engine is engine
        assert http.get("/readyz").status_code == 200
    assert app.state.llmos.ready is False  # the lifespan stopped the engine it was given
