"""Serving logic between the routes and the engine: validation, generation, streaming."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tokenizers import Tokenizer

from llmos_runtime.quantize import quantization_of
from llmos_runtime.serve.engine import Engine, QueueFull, SamplingParams, Sequence, TokenEvent
from llmos_runtime.serve.errors import ApiError
from llmos_runtime.serve.protocol import SamplingFields
from llmos_runtime.serve.text import Detokenizer


@dataclass
class Delta:
    """Text for choice `index`; finish_reason set on its last delta."""

    index: int
    text: str
    finish_reason: str | None = None


@dataclass
class Prepared:
    prompt_ids: list[int]
    params: SamplingParams
    stops: list[str]
    n: int


class Server:
    """What the routes need: the engine, the tokenizer and the limits."""

    def __init__(
        self, engine: Engine, tokenizer: Tokenizer, name: str, max_tokens: int, draining: bool = False
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.name = name
        self.max_tokens = max_tokens
        self.context = engine.config.context_length
        self.quantization = quantization_of(engine.model)
        self.eos = engine.config.eos_token_id
        self.draining = draining
        self.keepalive = 10.0

    def prepare(self, req: SamplingFields, prompt_ids: list[int], max_tokens: int | None) -> Prepared:
        if req.model != self.name:
            raise ApiError(
                404, f"model {req.model!r} does not exist; this server serves {self.name!r}", "model", "model_not_found"
            )
        if not prompt_ids:
            raise ApiError(400, "the prompt is empty", "prompt")
        if any(not 0 <= t < self.engine.config.vocab_size for t in prompt_ids):
            raise ApiError(400, "the prompt has token ids outside the vocabulary", "prompt")
        if req.presence_penalty or req.frequency_penalty:
            raise ApiError(400, "presence_penalty and frequency_penalty are not supported", "presence_penalty")
        stops = req.stop_list()
        if len(stops) > 4:
            raise ApiError(400, "at most 4 stop sequences", "stop")
        room = self.context - len(prompt_ids)
        if max_tokens is None:
            max_tokens = min(self.max_tokens, room)
        elif max_tokens > self.max_tokens:
            raise ApiError(
                400, f"max_tokens {max_tokens} exceeds this server's limit of {self.max_tokens}", "max_tokens"
            )
        if max_tokens < 1 or max_tokens > room:
            raise ApiError(
                400,
                f"prompt ({len(prompt_ids)} tokens) + max_tokens ({max_tokens}) "
                f"exceeds the context length {self.context}",
                "max_tokens",
                "context_length_exceeded",
            )
        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            top_k=req.top_k,
            seed=req.seed,
            stop_token_ids=() if req.ignore_eos else (self.eos,),
        )
        return Prepared(prompt_ids, params, stops, req.n)

    def generate(self, prepared: Prepared, counts: list[int]) -> AsyncIterator[Delta | None]:
        """Submit the n choices now (ApiError 429/503 before any byte is sent) and return
        their deltas as they come; None marks a quiet keep-alive tick. `counts[i]` receives
        the tokens generated for choice i."""
        if self.draining:
            raise ApiError(503, "the server is draining", retry_after=5)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, TokenEvent]] = asyncio.Queue()
        seqs: list[Sequence] = []
        for i in range(prepared.n):
            base = prepared.params
            seed = None if base.seed is None else base.seed + i

            def listener(event: TokenEvent, index: int = i) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, (index, event))

            params = SamplingParams(**{**base.__dict__, "seed": seed})
            seqs.append(Sequence(list(prepared.prompt_ids), params, listener))
        try:
            self.engine.submit(seqs)
        except QueueFull as exc:
            raise ApiError(429, f"the server is busy ({exc}); retry later", retry_after=1) from exc
        return self._deltas(seqs, queue, prepared.stops, counts)

    async def _deltas(
        self,
        seqs: list[Sequence],
        queue: asyncio.Queue[tuple[int, TokenEvent]],
        stops: list[str],
        counts: list[int],
    ) -> AsyncIterator[Delta | None]:
        detoks = [Detokenizer(self.tokenizer, stops) for _ in seqs]
        open_choices = set(range(len(seqs)))
        try:
            while open_choices:
                try:
                    index, event = await asyncio.wait_for(queue.get(), timeout=self.keepalive)
                except TimeoutError:
                    yield None
                    continue
                if index not in open_choices:
                    continue
                detok = detoks[index]
                if event.token_id is not None:
                    counts[index] += 1
                    if event.token_id in seqs[index].params.stop_token_ids:
                        continue
                    text = detok.add(event.token_id)
                    if detok.stopped:
                        self.engine.cancel(seqs[index])
                        open_choices.discard(index)
                        yield Delta(index, text, "stop")
                    elif text:
                        yield Delta(index, text)
                else:
                    open_choices.discard(index)
                    yield Delta(index, detok.flush(), event.finish_reason)
        finally:
            for seq in seqs:
                self.engine.cancel(seq)
