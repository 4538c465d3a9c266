"""Server settings: flags of `llmos-serve`, or environment variables prefixed LLMOS_SERVE_."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from llmos_contract.config import Limits, Quantization
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmos_runtime.hardware import available_cpus


class ServeSettings(BaseSettings, Limits):
    """The server's settings; the admission limits are the ModelEndpoint's `limits` type, so
    `maxConcurrentRequests` there is `--max-concurrent-requests` here."""

    model_config = SettingsConfigDict(
        env_prefix="LLMOS_SERVE_",
        extra="ignore",
        alias_generator=None,
        populate_by_name=True,
        use_attribute_docstrings=True,
        validate_assignment=True,
    )

    model: Path
    """The Hugging-Face-format model directory."""
    served_model_name: str | None = None
    """The name clients send in `model` (default: the directory's name)."""
    host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0 in a pod)."""
    port: int = Field(default=8000, ge=0, le=65535)
    """Port to listen on."""
    api_key_file: Path | None = None
    """File of accepted API keys, one per line (the operator mounts a Secret here)."""
    api_keys: str | None = None
    """Accepted API keys, comma-separated (prefer the file: environments leak)."""
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    """Largest request body; larger ones get 413."""
    drain_timeout: float = Field(default=30.0, ge=0)
    """Seconds in-flight requests get to finish after SIGTERM."""
    keepalive_seconds: float = Field(default=10.0, gt=0)
    """SSE comment sent when a stream has been silent this long (long prefill)."""
    threads: int = Field(default_factory=available_cpus, ge=1)
    """torch threads (default: the CPUs this process may use, its cgroup quota included)."""
    quantization: Quantization = "none"
    """none or int8: the version's int8 variant (quantized at load if it has none), int8
    weights with a scale per output channel."""
    int8_compute: Literal["auto", "w8a8", "w8a16"] = "auto"
    """How int8 weights are multiplied: w8a8 (int8 activations per token, integer
    accumulation), w8a16 (bfloat16 activations) or auto (w8a8 where int8 products are native:
    GPUs, CPUs with VNNI or AMX; else w8a16)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Precision of the weights and KV cache; auto: bfloat16 where the CPU or GPU computes it
    natively (half the memory traffic per token), else float32."""

    def accepted_keys(self) -> list[str]:
        keys: list[str] = []
        if self.api_key_file is not None:
            keys += [k.strip() for k in self.api_key_file.read_text().splitlines()]
        if self.api_keys:
            keys += [k.strip() for k in self.api_keys.split(",")]
        return [k for k in keys if k]

    @property
    def name(self) -> str:
        return self.served_model_name or self.model.resolve().name
