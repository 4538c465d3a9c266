"""`llmos chat URL`: talk to an endpoint, with the answer streamed as it is generated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx


def stream_chat(
    base_url: str, model: str, messages: list[dict[str, str]], api_key: str | None, max_tokens: int | None = 256
) -> Iterator[str]:
    """The answer's text as it streams; max_tokens None lets the server choose (its limit, or
    what fits the model's context)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    with httpx.stream("POST", f"{base_url.rstrip('/')}/chat/completions", json=body, headers=headers, timeout=300) as r:
        if r.status_code != 200:
            r.read()
            raise RuntimeError(f"{r.status_code}: {r.json().get('error', {}).get('message', r.text)}")
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            for choice in chunk.get("choices", []):
                text = choice.get("delta", {}).get("content")
                if text:
                    yield text


def first_model(base_url: str, api_key: str | None) -> str:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    r = httpx.get(f"{base_url.rstrip('/')}/models", headers=headers, timeout=30)
    r.raise_for_status()
    return str(r.json()["data"][0]["id"])
