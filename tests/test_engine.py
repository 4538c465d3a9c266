"""The engine in-process: continuous batching must not change what a request gets."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from llmos_runtime.quantize import quantization_of
from llmos_runtime.serve.engine import Engine, QueueFull, SamplingParams, Sequence, TokenEvent
from llmos_runtime.version import load_model, load_tokenizer

pytestmark = pytest.mark.slow

PROMPTS = [
    "ROMEO:",
    "JULIET:\nO Romeo",
    "First Citizen:\nBefore we proceed",
    "KING RICHARD III:",
    "To be, or not",
    "MENENIUS:\nWhat work",
    "HAMLET:",
    "Now is the winter",
    "LADY MACBETH:",
    "All the world",
    "BRUTUS:\nFriends",
    "O, what a rogue",
    "QUEEN MARGARET:",
    "Why, then",
    "GLOUCESTER:\nNow",
    "Second Citizen:",
]


class Collector:
    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.finish: str | None = None
        self.done = threading.Event()

    def __call__(self, event: TokenEvent) -> None:
        if event.token_id is not None:
            self.tokens.append(event.token_id)
        else:
            self.finish = event.finish_reason
            self.done.set()


def generate(engine: Engine, prompts: list[list[int]], params: SamplingParams) -> list[list[int]]:
    collectors = [Collector() for _ in prompts]
    engine.submit([Sequence(p, SamplingParams(**params.__dict__), c) for p, c in zip(prompts, collectors, strict=True)])
    for c in collectors:
        assert c.done.wait(120)
    return [c.tokens for c in collectors]


SERVED = {
    "float32": (torch.float32, "none", "auto"),
    "bfloat16": (torch.bfloat16, "none", "auto"),
    "int8-w8a8": (torch.float32, "int8", "w8a8"),
    "int8-w8a16": (torch.float32, "int8", "w8a16"),
}


@pytest.fixture(scope="module", params=list(SERVED))
def engine(tiny_version: Path, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The engine in every way it serves: float32, bfloat16 (what `--dtype auto` picks on CPUs
    with bf16 instructions, and on GPUs) and the version's int8 variant computed both ways
    (int8 activations per token with integer sums, and weight-only)."""
    torch.set_num_threads(2)
    dtype, quantization, int8_compute = SERVED[request.param]
    model = load_model(tiny_version, dtype, quantization, int8_compute)
    assert quantization_of(model) == request.param.split("-")[0]
    eng = Engine(model, max_running=16, max_waiting=4, prefill_chunk=24)
    eng.start()
    yield eng
    eng.stop()


@pytest.fixture(scope="module")
def prompt_ids(tiny_version: Path) -> list[list[int]]:
    tokenizer = load_tokenizer(tiny_version)
    return [tokenizer.encode(p).ids for p in PROMPTS]


def test_greedy_output_is_the_same_alone_and_in_a_batch_of_16(engine: Engine, prompt_ids: list[list[int]]) -> None:
    greedy = SamplingParams(max_tokens=40, temperature=0)
    alone = [generate(engine, [p], greedy)[0] for p in prompt_ids]
    together = generate(engine, prompt_ids, greedy)
    assert together == alone
    assert all(len(t) == 40 for t in alone)


def test_seeded_sampling_is_the_same_alone_and_in_a_batch(engine: Engine, prompt_ids: list[list[int]]) -> None:
    seeded = SamplingParams(max_tokens=30, temperature=0.9, top_p=0.95, top_k=50, seed=11)
    alone = generate(engine, [prompt_ids[0]], seeded)[0]
    together = generate(engine, prompt_ids[:8], seeded)
    assert together[0] == alone
    unseeded = SamplingParams(max_tokens=30, temperature=1.0)
    a, b = generate(engine, [prompt_ids[0]] * 2, unseeded)
    assert a != b


def test_long_prompts_are_prefilled_in_chunks_while_others_decode(engine: Engine, prompt_ids: list[list[int]]) -> None:
    greedy = SamplingParams(max_tokens=10, temperature=0)
    long_prompt = [t for ids in prompt_ids for t in ids][:150]  # 150 tokens → 7 chunks of 24
    alone = generate(engine, [long_prompt], greedy)[0]
    mixed = generate(engine, [prompt_ids[0], long_prompt, prompt_ids[1]], greedy)
    assert mixed[1] == alone


def test_queue_full_is_refused_whole(tiny_version: Path) -> None:
    eng = Engine(load_model(tiny_version), max_running=2, max_waiting=1)  # not started: nothing drains
    ids = [[1, 2, 3]]
    eng.submit([Sequence(ids[0], SamplingParams(max_tokens=5), Collector()) for _ in range(3)])
    with pytest.raises(QueueFull):
        eng.submit([Sequence(ids[0], SamplingParams(max_tokens=5), Collector())])


def test_kv_memory_grows_by_need_and_is_released(engine: Engine, prompt_ids: list[list[int]]) -> None:
    collector = Collector()
    seq = Sequence(prompt_ids[0], SamplingParams(max_tokens=200, temperature=0), collector)
    engine.submit([seq])
    while len(collector.tokens) < 5:
        collector.done.wait(0.01)
    assert seq.cache is not None and seq.cache.capacity == 64  # one block, not max length
    engine.cancel(seq)
    assert collector.done.wait(30)
    assert collector.finish == "abort"
    assert engine.stats().kv_usage == 0
