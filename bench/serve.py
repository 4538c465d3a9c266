"""Serving benchmark: continuous batching over HTTP vs a naive sequential loop, one run.

    uv run python bench/serve.py

Model: a GPT-2-small-sized Llama (hidden 768, 12 layers, 12 heads, random weights; vocab
8192 from a BPE trained on the demo corpus), in the precision `llmos-serve --dtype auto` picks
here (bfloat16 on CPUs with AVX512-BF16/AMX); the naive loop uses the same. 16 prompts of 128
tokens, 128 output tokens each.
- throughput: 16 concurrent streaming HTTP clients ÷ a sequential batch-1 loop with KV cache
  (same model, same threads, in-process)
- latency: p50 TPOT and p99 TTFT at 16 streams ÷ at 1 stream, with 16 clients in steady state
  (staggered start, 3 requests each, first round left out); the same-instant burst is shown too
- HTTP/SSE overhead: single-stream TPOT over HTTP ÷ in-process engine step
- roofline: single-stream decode tokens/s × weight bytes ÷ copy bandwidth measured here
- precision: the same server in float32, bfloat16 and int8 (`--quantization int8`), one
  stream and 16 streams each; int8 ÷ bfloat16 and int8 ÷ float32 tokens/s, int8 decode
  against the roofline of its int8 weight bytes, and the version's size per variant

    uv run python bench/serve.py --only precision     (just the precision table)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import torch
from common import BIN, memory_bandwidth, percentile, prepare
from llmos_contract.config import Export
from llmos_runtime.hardware import detect, int8_compute, serving_dtype
from llmos_runtime.model import LlamaModel, ModelConfig, Segment, SequenceCache
from llmos_runtime.quantize import Int8Linear
from llmos_runtime.serve.engine import Engine, SamplingParams, Sequence, TokenEvent
from llmos_runtime.version import load_model, read_lineage, save_version

CLIENTS, PROMPT, OUTPUT, THREADS = 16, 128, 128, os.cpu_count() or 1


def make_model(root: Path) -> Path:
    data = prepare(root / "data", 8192)
    vocab = json.loads((data / "manifest.json").read_text())["vocab_size"]
    config = ModelConfig(vocab_size=vocab, hidden_size=768, num_layers=12, num_heads=12, context_length=1024)
    model = LlamaModel(config)
    model.init_weights(0)
    # The default export (bfloat16 with its int8 variant): the int8 rows serve this one's int8/.
    export = Export(dtype="bfloat16", quantization=["int8"])
    save_version(root / "bf16", model, data / "tokenizer.json", {"job": "bench"}, export)
    return save_version(root / "gpt2-small", model, data / "tokenizer.json", {"job": "bench"}, Export(dtype="float32"))


def prompts(vocab: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(1, vocab, (PROMPT,), generator=gen).tolist() for _ in range(CLIENTS)]


@torch.inference_mode()
def naive_loop(model: LlamaModel, batch: list[list[int]]) -> float:
    """Batch 1, with KV cache, greedy: seconds for all prompts one after another."""
    start = time.perf_counter()
    for ids in batch:
        cache = SequenceCache(model.config, next(model.parameters()).dtype, torch.device("cpu"))
        logits = model.forward_packed(torch.tensor(ids), [Segment(cache, 0, len(ids))])
        for _ in range(OUTPUT - 1):
            token = int(logits[0].argmax())
            logits = model.forward_packed(torch.tensor([token]), [Segment(cache, 0, 1)])
    return time.perf_counter() - start


def engine_step_seconds(model: LlamaModel, ids: list[int]) -> float:
    """Median decode step of one sequence through the in-process engine (no HTTP)."""
    times: list[float] = []
    done = asyncio.Event()
    loop = asyncio.new_event_loop()

    def listener(event: TokenEvent) -> None:
        times.append(time.perf_counter())
        if event.token_id is None:
            loop.call_soon_threadsafe(done.set)

    engine = Engine(model, max_running=1)
    engine.start()
    engine.submit([Sequence(ids, SamplingParams(max_tokens=OUTPUT, temperature=0), listener)])
    loop.run_until_complete(done.wait())
    engine.stop()
    gaps = [b - a for a, b in itertools.pairwise(times[:-1])]  # the last event is the finish
    return percentile(gaps, 50)  # the median, like the p50 TPOT it is compared with


async def stream(client: httpx.AsyncClient, ids: list[int]) -> tuple[float, list[float]]:
    """(TTFT, inter-token gaps) of one streamed completion."""
    body = {"model": "bench", "prompt": ids, "max_tokens": OUTPUT, "temperature": 0, "stream": True, "ignore_eos": True}
    start = time.perf_counter()
    stamps: list[float] = []
    async with client.stream("POST", "/v1/completions", json=body) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: {"):
                stamps.append(time.perf_counter())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return stamps[0] - start, gaps


async def concurrent(base: str, batch: list[list[int]]) -> tuple[float, list[float], list[float]]:
    """All clients at once, one request each: (wall seconds, TTFTs, inter-token gaps)."""
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(stream(client, ids) for ids in batch))
        wall = time.perf_counter() - start
    return wall, [r[0] for r in results], [g for r in results for g in r[1]]


async def steady(base: str, batch: list[list[int]], rounds: int, ramp: float) -> tuple[list[float], list[float]]:
    """Each client starts `ramp` seconds after the previous one and sends `rounds` requests in
    a row, so arrivals spread out as under real traffic; TTFTs of the first round (the
    ramp-up) are left out. Returns (TTFTs, inter-token gaps)."""

    async def client_loop(client: httpx.AsyncClient, i: int, ids: list[int]) -> list[tuple[float, list[float]]]:
        await asyncio.sleep(i * ramp)
        return [await stream(client, ids) for _ in range(rounds)]

    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        results = await asyncio.gather(*(client_loop(client, i, ids) for i, ids in enumerate(batch)))
    ttfts = [r[0] for per_client in results for r in per_client[1:]]
    gaps = [g for per_client in results for r in per_client[1:] for g in r[1]]
    return ttfts, gaps


def start_server(model_dir: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            str(BIN / "llmos-serve"),
            "--model",
            str(model_dir),
            "--port",
            str(port),
            "--served-model-name",
            "bench",
            "--threads",
            str(THREADS),
            "--max-tokens",
            str(OUTPUT),
            "--max-concurrent-requests",
            str(CLIENTS),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


SERVED = {
    "float32": ["--dtype", "float32"],
    "bfloat16": ["--dtype", "bfloat16"],
    "int8": ["--quantization", "int8"],  # --int8-compute auto: what this machine computes fastest
    "int8 w8a8": ["--quantization", "int8", "--int8-compute", "w8a8"],
    "int8 w8a16": ["--quantization", "int8", "--int8-compute", "w8a16"],
}


def precision_table(model_dir: Path, batch: list[list[int]], bandwidth: float) -> None:
    """The same server and prompts in each precision, one after another in this run."""
    single: dict[str, float] = {}
    many: dict[str, float] = {}
    int8_dir = model_dir.parent / "bf16"
    for i, (name, flags) in enumerate(SERVED.items()):
        server = start_server(int8_dir if name.startswith("int8") else model_dir, 8791 + i, *flags)
        try:
            base = f"http://127.0.0.1:{8791 + i}"
            asyncio.run(concurrent(base, batch[:2]))  # warm-up
            gaps = [g for ids in batch[:2] for g in asyncio.run(concurrent(base, [ids]))[2]]
            single[name] = 1 / percentile(gaps, 50)
            wall, _, _ = asyncio.run(concurrent(base, batch))
            many[name] = CLIENTS * OUTPUT / wall
        finally:
            server.terminate()
            server.wait(60)
        print(f"{name:>10}: 1 stream {single[name]:6.1f} tokens/s (p50 TPOT)   16 streams {many[name]:6.1f} tokens/s")
    auto = int8_compute("auto", detect())
    print(f"int8 computes {auto} here (--int8-compute auto)")
    for base_name in ("bfloat16", "float32"):
        print(
            f"int8 / {base_name}: {single['int8'] / single[base_name]:.2f}x at 1 stream, "
            f"{many['int8'] / many[base_name]:.2f}x at 16 streams  (goal vs bfloat16: >= 1.5x and >= 1.3x)"
        )
    int8_model = load_model(int8_dir, quantization="int8")
    int8_bytes = sum(m.weight_bytes for m in int8_model.modules() if isinstance(m, Int8Linear))
    # (the embedding is a lookup of one row per token: not part of what decode streams)
    print(
        f"int8 decode roofline: {single['int8']:.1f} tokens/s x {int8_bytes / 1e6:.0f} MB of int8 weights / "
        f"{bandwidth / 1e9:.1f} GB/s = {single['int8'] * int8_bytes / bandwidth:.0%}"
    )
    sizes = {
        "float32": read_lineage(model_dir)["variants"]["float32"]["bytes"],
        "bfloat16": read_lineage(int8_dir)["variants"]["bfloat16"]["bytes"],
        "int8": read_lineage(int8_dir)["variants"]["int8"]["bytes"],
    }
    print(
        "version size float32 : bfloat16 : int8 = "
        + " : ".join(f"{sizes[k] / 1e6:.0f} MB" for k in sizes)
        + f" = 1 : {sizes['bfloat16'] / sizes['float32']:.2f} : {sizes['int8'] / sizes['float32']:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["precision"], help="run one part of the benchmark")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_model(Path(tmp))
        if args.only == "precision":
            batch = prompts(load_model(model_dir).config.vocab_size)
            precision_table(model_dir, batch, memory_bandwidth(THREADS))
            return

        dtype = serving_dtype("auto", detect())  # what llmos-serve picks on this machine; the naive loop uses it too
        model = load_model(model_dir, dtype).eval()
        batch = prompts(model.config.vocab_size)
        bandwidth = memory_bandwidth(THREADS)
        naive = naive_loop(model, batch)
        step_before = engine_step_seconds(model, batch[0])
        port = 8790
        server = start_server(model_dir, port)
        try:
            base = f"http://127.0.0.1:{port}"
            asyncio.run(concurrent(base, batch[:2]))  # warm-up
            wall16, herd_ttft16, _ = asyncio.run(concurrent(base, batch))
            singles = [asyncio.run(concurrent(base, [ids])) for ids in batch[:4]]
            request_seconds = singles[0][0]
            ttft16, tpot16 = asyncio.run(steady(base, batch, rounds=3, ramp=request_seconds * 16 / CLIENTS / 4))
        finally:
            server.terminate()
            server.wait(60)
        # In-process step measured before and after the HTTP runs: the machine's speed drifts.
        step = (step_before + engine_step_seconds(model, batch[0])) / 2
        precision_table(model_dir, batch, bandwidth)
    ttft1 = [t for s in singles for t in s[1]]
    tpot1 = [g for s in singles for g in s[2]]
    tokens = CLIENTS * OUTPUT
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params / 1e6:.0f}M parameters in {str(dtype).removeprefix('torch.')}, {THREADS} threads")
    print(f"naive sequential loop: {tokens / naive:.1f} tokens/s ({naive:.1f} s)")
    print(f"16 concurrent HTTP streams: {tokens / wall16:.1f} tokens/s ({wall16:.1f} s)")
    print(f"throughput ratio: {naive / wall16:.2f}x  (target >= 4x, stretch 6x)")
    p50_16, p50_1 = percentile(tpot16, 50), percentile(tpot1, 50)
    p99_16, p99_1 = percentile(ttft16, 99), percentile(ttft1, 99)
    print(f"p50 TPOT: {p50_16 * 1e3:.1f} ms at 16 vs {p50_1 * 1e3:.1f} ms at 1: {p50_16 / p50_1:.2f}x  (target <= 3x)")
    print(f"p99 TTFT: {p99_16 * 1e3:.0f} ms at 16 vs {p99_1 * 1e3:.0f} ms at 1: {p99_16 / p99_1:.2f}x  (target <= 4x)")
    herd = percentile(herd_ttft16, 99)
    print(
        f"p99 TTFT when all 16 arrive in the same instant: {herd * 1e3:.0f} ms ({herd / p99_1:.1f}x; bounded below by "
        f"16 prefills of {PROMPT} tokens)"
    )
    print(
        f"HTTP/SSE overhead: TPOT {p50_1 * 1e3:.1f} ms over HTTP / {step * 1e3:.1f} ms in-process: "
        f"{p50_1 / step:.2f}  (target <= 1.15)"
    )
    decode = 1 / step
    print(
        f"decode roofline: {decode:.1f} tokens/s x {weight_bytes / 1e6:.0f} MB / {bandwidth / 1e9:.1f} GB/s = "
        f"{decode * weight_bytes / bandwidth:.0%}  (target >= 35%)"
    )


if __name__ == "__main__":
    main()
