"""The inference engine: continuous batching over per-sequence KV caches.

One background thread runs `step()` in a loop. Each step
  1. admits waiting sequences while there is a batch slot and KV budget for them,
  2. packs, for every running sequence, either its next prompt chunk (prefill) or its last
     sampled token (decode) into one flat batch, so prefill of new requests is interleaved
     with decoding of old ones,
  3. runs the model once (`LlamaModel.forward_packed`) and samples one token per sequence
     whose prompt is fully read, with that sequence's own generator (seeded requests give
     the same text alone or in a batch),
  4. hands tokens to the sequences' listeners and drops finished or cancelled sequences.

KV memory is allocated by need: each sequence's cache grows in blocks of 64 tokens, and the
KV budget reserves prompt + max_tokens at admission so a running sequence never runs out.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from llmos_runtime.model import LlamaModel, Segment, SequenceCache


class QueueFull(Exception):
    """Every batch slot and queue place is taken; the client should retry later."""


_ids = itertools.count()


@dataclass
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()


@dataclass
class TokenEvent:
    token_id: int | None
    finish_reason: str | None = None


@dataclass
class Sequence:
    prompt_ids: list[int]
    params: SamplingParams
    listener: Callable[[TokenEvent], None]
    id: int = field(default_factory=lambda: next(_ids))
    output_ids: list[int] = field(default_factory=list)
    prefilled: int = 0
    cache: SequenceCache | None = None
    cancelled: bool = False
    arrived: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    generator: torch.Generator = field(default_factory=torch.Generator)

    def __post_init__(self) -> None:
        seed = self.params.seed
        self.generator.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(7)))

    @property
    def reserved_tokens(self) -> int:
        return len(self.prompt_ids) + self.params.max_tokens


@dataclass
class EngineStats:
    running: int
    waiting: int
    kv_usage: float


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """One token from a row of logits under temperature / top-k / top-p."""
    if params.temperature <= 0:
        return int(torch.argmax(logits))
    logits = logits.float() / params.temperature
    if params.top_k > 0:
        kth = torch.topk(logits, min(params.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, 0) - sorted_probs < params.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


class Engine:
    """Continuous-batching generation over one model; thread-safe `submit` and `cancel`."""

    def __init__(
        self,
        model: LlamaModel,
        max_running: int = 16,
        max_waiting: int = 64,
        max_kv_tokens: int | None = None,
        prefill_chunk: int = 256,
        on_finish: Callable[[Sequence, str], None] | None = None,
    ) -> None:
        self.model = model.eval()
        self.config = model.config
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.max_kv_tokens = max_kv_tokens or max_running * self.config.context_length
        self.prefill_chunk = prefill_chunk
        self.on_finish = on_finish
        self.threads = torch.get_num_threads()
        self.dtype = next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.running: list[Sequence] = []
        self.reserved = 0
        self._lock = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None

    # -- the client side ------------------------------------------------------------------
    def submit(self, seqs: list[Sequence]) -> None:
        """Queue sequences (all or none); QueueFull when there is no room."""
        with self._lock:
            free_slots = self.max_running - len(self.running)
            if len(self.waiting) + len(seqs) > self.max_waiting + max(0, free_slots):
                raise QueueFull(f"{len(self.running)} running and {len(self.waiting)} waiting")
            self.waiting.extend(seqs)
            self._lock.notify()

    def cancel(self, seq: Sequence) -> None:
        with self._lock:
            seq.cancelled = True
            self._lock.notify()

    def stats(self) -> EngineStats:
        with self._lock:
            used = sum(s.cache.capacity for s in self.running if s.cache is not None)
            return EngineStats(len(self.running), len(self.waiting), used / self.max_kv_tokens)

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self.running or self.waiting)

    # -- the engine thread ------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="llmos-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        # Thread-count settings are per thread (OpenMP, MKL): without this the engine thread
        # runs its matmuls with the libraries' defaults, measured about 30% slower per step.
        torch.set_num_threads(self.threads)
        while True:
            with self._lock:
                while not self._stop and not (self.running or self.waiting):
                    self._lock.wait()
                if self._stop:
                    return
            self.step()

    def _finish(self, seq: Sequence, reason: str) -> None:
        self.reserved -= seq.reserved_tokens
        seq.cache = None
        seq.listener(TokenEvent(None, reason))
        if self.on_finish is not None:
            self.on_finish(seq, reason)

    def _admit(self) -> None:
        with self._lock:
            for seq in [s for s in self.running if s.cancelled]:
                self.running.remove(seq)
                self._finish(seq, "abort")
            for seq in [s for s in self.waiting if s.cancelled]:
                self.waiting.remove(seq)
                self.reserved += seq.reserved_tokens
                self._finish(seq, "abort")
            while self.waiting and len(self.running) < self.max_running:
                nxt = self.waiting[0]
                if self.running and self.reserved + nxt.reserved_tokens > self.max_kv_tokens:
                    break
                self.waiting.popleft()
                nxt.cache = SequenceCache(self.config, self.dtype, self.device)
                self.reserved += nxt.reserved_tokens
                self.running.append(nxt)

    def step(self) -> None:
        """Admit, run one packed forward pass, sample, emit, retire."""
        self._admit()
        if not self.running:
            return
        segments: list[Segment] = []
        tokens: list[int] = []
        sampling: list[tuple[Sequence, int]] = []  # (sequence, row of logits)
        prefill_budget = self.prefill_chunk
        for seq in self.running:
            assert seq.cache is not None
            if seq.prefilled < len(seq.prompt_ids):
                if prefill_budget <= 0:
                    continue
                chunk = seq.prompt_ids[seq.prefilled : seq.prefilled + prefill_budget]
                prefill_budget -= len(chunk)
                seq.prefilled += len(chunk)
                done = seq.prefilled == len(seq.prompt_ids)
            else:
                chunk, done = [seq.output_ids[-1]], True
            segments.append(Segment(seq.cache, len(tokens), len(chunk)))
            tokens.extend(chunk)
            if done:
                sampling.append((seq, len(segments) - 1))
        logits = self.model.forward_packed(torch.tensor(tokens, device=self.device), segments)
        now = time.perf_counter()
        finished: list[tuple[Sequence, str]] = []
        for seq, row in sampling:
            token = sample(logits[row], seq.params, seq.generator)
            seq.output_ids.append(token)
            seq.first_token_at = seq.first_token_at or now
            seq.listener(TokenEvent(token))
            if token in seq.params.stop_token_ids:
                finished.append((seq, "stop"))
            elif len(seq.output_ids) >= seq.params.max_tokens:
                finished.append((seq, "length"))
        with self._lock:
            for seq, reason in finished:
                self.running.remove(seq)
                self._finish(seq, reason)
