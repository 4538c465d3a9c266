"""A Llama-style decoder whose parameter names and config match Hugging Face LlamaForCausalLM.

Two forward paths share the same weights:
- `forward(idx)`: dense [batch, time] for training and evaluation (causal SDPA).
- `forward_packed(...)`: a flat list of tokens from many sequences, each segment attending to
  its own KV cache. The inference engine uses it to mix prefill chunks and decode steps of
  different requests in one batch (continuous batching).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelConfig:
    """Architecture hyperparameters (names follow Hugging Face's LlamaConfig on export)."""

    vocab_size: int
    """Tokens in the vocabulary."""
    hidden_size: int = 256
    """Width of the residual stream."""
    num_layers: int = 4
    """Decoder blocks."""
    num_heads: int = 4
    """Query heads."""
    num_kv_heads: int | None = None
    """Key/value heads (grouped-query attention); default num_heads."""
    intermediate_size: int | None = None
    """SwiGLU width; default 8/3 × hidden rounded up to a multiple of 64."""
    context_length: int = 512
    """Longest sequence."""
    rope_theta: float = 10000.0
    """RoPE base."""
    rms_norm_eps: float = 1e-5
    """RMSNorm epsilon."""
    tie_embeddings: bool = True
    """Share embedding and output projection."""
    bos_token_id: int = 0
    """Token that starts a document."""
    eos_token_id: int = 0
    """Token that ends one."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Other config.json keys, kept on round trips."""

    def __post_init__(self) -> None:
        if self.num_kv_heads is None:
            self.num_kv_heads = self.num_heads
        if self.intermediate_size is None:
            self.intermediate_size = 64 * math.ceil(self.hidden_size * 8 / 3 / 64)
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be a multiple of num_heads")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def to_hf(self) -> dict[str, Any]:
        """config.json in Hugging Face LlamaConfig form."""
        return {
            **self.extra,
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.context_length,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_embeddings,
            "hidden_act": "silu",
            "attention_bias": False,
            "mlp_bias": False,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "torch_dtype": "float32",
        }

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> ModelConfig:
        if cfg.get("model_type") not in ("llama", "mistral", "qwen2", None):
            raise ValueError(f"unsupported model_type {cfg.get('model_type')!r}: expected llama")
        rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"unsupported rope scaling {rope.get('rope_type')!r}")
        known = {
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "max_position_embeddings",
            "rope_theta",
            "rms_norm_eps",
            "tie_word_embeddings",
            "bos_token_id",
            "eos_token_id",
        }
        eos = cfg.get("eos_token_id", 0)
        return cls(
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            num_layers=cfg["num_hidden_layers"],
            num_heads=cfg["num_attention_heads"],
            num_kv_heads=cfg.get("num_key_value_heads"),
            intermediate_size=cfg["intermediate_size"],
            context_length=cfg.get("max_position_embeddings", 2048),
            rope_theta=cfg.get("rope_theta", rope.get("rope_theta", 10000.0)),
            rms_norm_eps=cfg.get("rms_norm_eps", 1e-6),
            tie_embeddings=cfg.get("tie_word_embeddings", False),
            bos_token_id=cfg.get("bos_token_id") or 0,
            eos_token_id=eos[0] if isinstance(eos, list) else (eos or 0),
            extra={k: v for k, v in cfg.items() if k not in known},
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def state_dict_for_export(model: LlamaModel) -> dict[str, torch.Tensor]:
    """The parameters under their Hugging Face names (a tied head left out, as HF saves it)."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        state.pop("lm_head.weight")  # shared with model.embed_tokens.weight, as in HF
    return state


def _dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    return F.dropout(x, p, training=True) if p > 0 else x


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 (as Hugging Face does) so bf16 autocast stays stable.
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


class Rotary(nn.Module):
    """RoPE in the "rotate half" layout Hugging Face Llama uses."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.inv_freq: torch.Tensor
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions.float()[:, None] * self.inv_freq[None, :]  # (T, hd/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (T, hd)
        return emb.cos(), emb.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (..., T, hd); cos/sin: (T, hd)
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class SequenceCache:
    """Keys and values of one sequence, for every layer; grows block by block as it is used."""

    BLOCK = 64

    def __init__(self, config: ModelConfig, dtype: torch.dtype, device: torch.device) -> None:
        self.length = 0
        self.capacity = 0
        self.shape = (config.num_layers, 2, config.num_kv_heads or 1, 0, config.head_dim)
        self.dtype, self.device = dtype, device
        self.kv = torch.empty(self.shape, dtype=dtype, device=device)

    def reserve(self, length: int) -> None:
        """Make room for `length` tokens, growing by whole blocks (amortised copies)."""
        if length <= self.capacity:
            return
        grow_to = max(length, self.capacity * 2)
        new_capacity = self.BLOCK * math.ceil(grow_to / self.BLOCK)
        shape = (*self.shape[:3], new_capacity, self.shape[4])
        kv = torch.empty(shape, dtype=self.dtype, device=self.device)
        kv[:, :, :, : self.length] = self.kv[:, :, :, : self.length]
        self.kv, self.capacity = kv, new_capacity


@dataclass
class Segment:
    """Tokens [start, start+count) of a packed batch that belong to one sequence's cache."""

    cache: SequenceCache
    start: int
    count: int


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads or config.num_heads
        self.head_dim = config.head_dim
        h, hd = config.hidden_size, config.head_dim
        self.q_proj = nn.Linear(h, self.num_heads * hd, bias=False)
        self.k_proj = nn.Linear(h, self.num_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(h, self.num_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(self.num_heads * hd, h, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # (B, heads, T, hd)
        gqa = self.num_kv_heads != self.num_heads
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))

    def forward_packed(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        layer: int,
        segments: list[Segment],
    ) -> torch.Tensor:
        # x: (N, hidden) tokens of several sequences; projections run on all of them at once.
        N = x.shape[0]
        q = self.q_proj(x).view(N, self.num_heads, self.head_dim).transpose(0, 1)
        k = self.k_proj(x).view(N, self.num_kv_heads, self.head_dim).transpose(0, 1)
        v = self.v_proj(x).view(N, self.num_kv_heads, self.head_dim).transpose(0, 1)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # (heads, N, hd)
        new_kv = torch.stack((k, v))  # (2, kv_heads, N, hd): one copy per segment below
        gqa = self.num_kv_heads != self.num_heads
        outputs = []
        for seg in segments:
            past, end = seg.cache.length, seg.cache.length + seg.count
            rows = slice(seg.start, seg.start + seg.count)
            kv = seg.cache.kv[layer]
            kv[:, :, past:end] = new_kv[:, :, rows]
            mask = None
            if seg.count > 1:
                # Query i (absolute position past+i) sees keys 0..past+i.
                idx = torch.arange(end, device=x.device)
                mask = idx[None, :] <= (past + torch.arange(seg.count, device=x.device))[:, None]
            keys, values = kv[0, :, :end], kv[1, :, :end]
            outputs.append(F.scaled_dot_product_attention(q[:, rows], keys, values, attn_mask=mask, enable_gqa=gqa))
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)
        return self.o_proj(out.transpose(0, 1).reshape(N, -1))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        h, i = config.hidden_size, config.intermediate_size or 0
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)


class Backbone(nn.Module):
    """Named `model` inside LlamaForCausalLM, hence the parameter names model.layers.N…"""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary = Rotary(config.head_dim, config.rope_theta)

    @property
    def decoder_layers(self) -> list[DecoderLayer]:
        return cast(list[DecoderLayer], list(self.layers))


class LlamaModel(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = Backbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.dropout = 0.0
        """Dropout on each block's output in training mode (a training setting: not in the config)."""

    def init_weights(self, seed: int) -> None:
        """GPT-2 style init; residual projections scaled by depth."""
        gen = torch.Generator().manual_seed(seed)
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() == 1:
                nn.init.ones_(p)
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.config.num_layers), generator=gen)
            else:
                nn.init.normal_(p, 0.0, std, generator=gen)

    def num_parameters(self, exclude_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if exclude_embedding:
            n -= self.model.embed_tokens.weight.numel()
        return n

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) token ids → logits (B, T, vocab)."""
        T = idx.shape[1]
        if self.config.context_length < T:
            raise ValueError(f"sequence of {T} tokens exceeds context {self.config.context_length}")
        cos, sin = self.model.rotary.cos_sin(torch.arange(T, device=idx.device))
        x = self.model.embed_tokens(idx)
        drop = self.dropout if self.training else 0.0
        for layer in self.model.decoder_layers:
            x = x + _dropout(layer.self_attn(layer.input_layernorm(x), cos, sin), drop)
            x = x + _dropout(layer.mlp(layer.post_attention_layernorm(x)), drop)
        return self.lm_head(self.model.norm(x))

    @torch.inference_mode()
    def forward_packed(self, tokens: torch.Tensor, segments: list[Segment]) -> torch.Tensor:
        """tokens (N,) of several sequences → logits (len(segments), vocab) at each segment's end.

        Appends the segments' keys and values to their caches.
        """
        positions = torch.cat([torch.arange(s.cache.length, s.cache.length + s.count) for s in segments]).to(
            tokens.device
        )
        for s in segments:
            s.cache.reserve(s.cache.length + s.count)
        cos, sin = self.model.rotary.cos_sin(positions)
        x = self.model.embed_tokens(tokens)
        for i, layer in enumerate(self.model.decoder_layers):
            x = x + layer.self_attn.forward_packed(layer.input_layernorm(x), cos, sin, i, segments)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        for s in segments:
            s.cache.length += s.count
        last = torch.tensor([s.start + s.count - 1 for s in segments], device=tokens.device)
        return self.lm_head(self.model.norm(x[last]))
