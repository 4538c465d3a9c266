"""Prometheus metrics (names modelled on vLLM's, with an llmos_ prefix)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from llmos_runtime.serve.engine import Engine, Sequence

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("llmos_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.ttft = Histogram(
            "llmos_time_to_first_token_seconds", "Arrival to first token", buckets=LATENCY_BUCKETS, registry=r
        )
        self.tpot = Histogram(
            "llmos_time_per_output_token_seconds",
            "Mean time between output tokens",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter("llmos_prompt_tokens", "Prompt tokens processed", registry=r)
        self.generation_tokens = Counter("llmos_generation_tokens", "Tokens generated", registry=r)
        self.running = Gauge("llmos_num_requests_running", "Sequences in the running batch", registry=r)
        self.waiting = Gauge("llmos_num_requests_waiting", "Sequences waiting for a batch slot", registry=r)
        self.kv_usage = Gauge("llmos_kv_cache_usage_ratio", "KV cache allocated ÷ KV budget", registry=r)
        self.in_flight = Gauge("llmos_http_requests_in_flight", "HTTP requests being served", registry=r)

    def watch(self, engine: Engine) -> None:
        self.running.set_function(lambda: engine.stats().running)
        self.waiting.set_function(lambda: engine.stats().waiting)
        self.kv_usage.set_function(lambda: engine.stats().kv_usage)

    def sequence_finished(self, seq: Sequence, reason: str) -> None:
        self.prompt_tokens.inc(len(seq.prompt_ids))
        self.generation_tokens.inc(len(seq.output_ids))
        if seq.first_token_at is not None:
            self.ttft.observe(seq.first_token_at - seq.arrived)
            if len(seq.output_ids) > 1:
                self.tpot.observe((time.perf_counter() - seq.first_token_at) / (len(seq.output_ids) - 1))
