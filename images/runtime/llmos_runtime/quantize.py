"""int8 serving: int8 weights with a scale per output channel, computed one of two ways.

- `w8a8`: int8 activations with a scale per token, matrix products accumulated in int32.
  Every token row has its own scale and integer sums are exact in any order, so a
  sequence's logits do not depend on what else is in the batch. Two kernels give the same
  integers: `onednn` (oneDNN's u8×s8 matmul on x86; activations shifted to uint8 around
  128) and `reference` (`torch._int_mm`, CPU and CUDA). Without VNNI/AMX the CPU adds
  pairs of products in int16 first (`vpmaddubsw`), which saturates for 8-bit weights, so
  there w8a8 weights are 7-bit (|w| ≤ 63 keeps 2 × 255 × 63 < 2¹⁵).
- `w8a16`: weight-only (`_weight_int8pack_mm`): the int8 weights are scaled inside the
  kernel and multiplied with bfloat16 activations, row by row (batch-invariant too). On
  CPUs without VNNI/AMX, w8a8 is measured no faster than float32 while this reads a
  quarter of the bytes; `hardware.int8_compute` picks it there.

On disk an int8 variant is a Hugging Face directory in the compressed-tensors layout vLLM
reads (`<module>.weight` int8 [out, in], `<module>.weight_scale` float32 [out, 1], a
`quantization_config` in config.json); the embedding and the output head (in `ignore`, as
llm-compressor writes it) stay in the export dtype and the head is quantized at load.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from llmos_runtime.hardware import Int8Compute
from llmos_runtime.model import LlamaModel, state_dict_for_export

Kernel = Literal["onednn", "reference", "weight-only"]
QUANTIZED_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")
IGNORED = ("lm_head",)
"""Stored unquantized in a variant (compressed-tensors' `ignore`), quantized when loaded."""


def quantize_weight(weight: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel quantization: (int8 [out, in], float32 scale [out])."""
    levels = 2 ** (bits - 1) - 1
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / levels
    q = torch.round(w / scale[:, None]).clamp_(-levels, levels).to(torch.int8)
    return q, scale


def requantize(q: torch.Tensor, scale: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stored 8-bit weights for a kernel that needs fewer bits (the same rows, coarser)."""
    if bits == 8:
        return q, scale
    return quantize_weight(q.float() * scale[:, None], bits)


def quantize_tokens(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of x (tokens × features) as uint8 around 128 with its own scale [rows, 1]."""
    scale = x.abs().amax(dim=-1, keepdim=True).clamp_(min=1e-12).div_(127)
    q = torch.round(x / scale).clamp_(-127, 127).add_(128).to(torch.uint8)
    return q, scale


def kernel_for(compute: Int8Compute, device: torch.device) -> Kernel:
    """The kernel of a computation on a device."""
    if compute == "w8a16":
        return "weight-only"
    return "onednn" if device.type == "cpu" and torch.backends.mkldnn.is_available() else "reference"


class Int8Linear(nn.Module):
    """A bias-free Linear computing with int8 weights (a scale per output channel).

    Its tensors are plain attributes, not buffers: `model.to(dtype)` must not cast the
    scales, and each kernel keeps only the form it multiplies (oneDNN its packed copy)."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, kernel: Kernel) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.kernel = kernel
        self.weight_bytes = weight.numel()
        self.weight_scale = scale.float().contiguous()
        if kernel == "onednn":
            self.packed = torch.ops.onednn.qlinear_prepack(weight.contiguous(), None)
            self.zero_points = torch.zeros(self.out_features, dtype=torch.long)
        elif kernel == "reference":
            self.weight_t = weight.contiguous().t()  # _int_mm wants [in, out], column-major is fine
        else:
            self.weight = weight.contiguous()
            self.scale_bf16 = self.weight_scale.to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, self.in_features)
        if self.kernel == "weight-only":
            y = torch.ops.aten._weight_int8pack_mm(rows.to(torch.bfloat16), self.weight, self.scale_bf16)
            return y.to(x.dtype).reshape(*shape[:-1], self.out_features)
        q, scale = quantize_tokens(rows.float())
        if self.kernel == "onednn":
            # x (uint8, zero point 128, scale 1) × w (int8, scale per channel) → float32
            w, w_zero = self.weight_scale, self.zero_points
            y = torch.ops.onednn.qlinear_pointwise(
                q, 1.0, 128, self.packed, w, w_zero, None, 1.0, 0, torch.float32, "none", [], ""
            )
        else:
            acc = torch._int_mm((q.to(torch.int16) - 128).to(torch.int8), self.weight_t)
            y = acc.float() * self.weight_scale
        return (y * scale).to(x.dtype).reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kernel={self.kernel}"


def quantization_of(model: LlamaModel) -> str:
    """What a loaded model computes with: int8, or its weights' dtype (float32, bfloat16)."""
    if isinstance(model.lm_head, Int8Linear):
        return "int8"
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def int8_compute_of(model: LlamaModel) -> Int8Compute | None:
    """w8a8 or w8a16 for an int8 model, None for a float one."""
    if not isinstance(model.lm_head, Int8Linear):
        return None
    return "w8a16" if model.lm_head.kernel == "weight-only" else "w8a8"


def quantized_linears(model: LlamaModel) -> dict[str, nn.Module]:
    """Qualified name → the Linear modules int8 replaces (every projection and the output head)."""
    return {n: m for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in QUANTIZED_MODULES}


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def quantize_model(
    model: LlamaModel,
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    compute: Int8Compute = "w8a16",
    bits: int = 8,
) -> LlamaModel:
    """Swap every projection for an Int8Linear, in place: from stored int8 `weights` (name →
    int8, scale) where given, else quantized from the float weights now; `bits` of the
    weights the kernel multiplies (7 for w8a8 on CPUs without VNNI/AMX)."""
    kernel = kernel_for(compute, next(model.parameters()).device)
    for name, linear in quantized_linears(model).items():
        if weights is not None and name in weights:
            stored = weights[name]
        else:  # through 8 bits as a variant stores them: the same float weights give the same model
            assert isinstance(linear, nn.Linear)
            stored = quantize_weight(linear.weight)
        q, scale = requantize(*stored, bits)
        _replace(model, name, Int8Linear(q, scale, kernel))
    return model


def int8_state_dict(model: LlamaModel, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The int8 variant's tensors, compressed-tensors names: every decoder projection int8
    with a float32 per-channel weight_scale; embedding, norms and the output head (ignored by
    the scheme, as llm-compressor writes it: tied to the embedding or not) in `dtype`. The
    server quantizes the head at load, so it computes in int8 too."""
    state = {k: v.to(dtype) for k, v in state_dict_for_export(model).items()}
    for name, linear in quantized_linears(model).items():
        if name in IGNORED:
            continue
        assert isinstance(linear, nn.Linear)
        q, scale = quantize_weight(linear.weight)
        state[f"{name}.weight"] = q
        state[f"{name}.weight_scale"] = scale[:, None].contiguous()
    return state


def split_int8_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A stored int8 variant's tensors → (float tensors, name → (int8, scale))."""
    scales = {k.removesuffix(".weight_scale") for k in state if k.endswith(".weight_scale")}
    weights = {n: (state[f"{n}.weight"], state[f"{n}.weight_scale"].float().flatten()) for n in scales}
    rest = {k: v for k, v in state.items() if k.removesuffix(".weight_scale").removesuffix(".weight") not in scales}
    return rest, weights


def matches_int8_scheme(config: dict[str, Any]) -> bool:
    """Whether a quantization_config is the scheme `quantization_config()` writes (int8
    weights per channel; activations per token or none)."""
    if (config.get("quant_method"), config.get("format")) != ("compressed-tensors", "int-quantized"):
        return False
    groups = list(config.get("config_groups", {}).values())
    return bool(groups) and all(
        g.get("weights", {}).get("num_bits") == 8 and g.get("weights", {}).get("strategy") == "channel" for g in groups
    )


def quantization_config() -> dict[str, Any]:
    """config.json's quantization_config of an int8 variant (compressed-tensors, as vLLM reads
    it: int8 weights per channel, int8 activations per token quantized at run time)."""
    return {
        "quant_method": "compressed-tensors",
        "format": "int-quantized",
        "quantization_status": "compressed",
        "config_groups": {
            "group_0": {
                "targets": ["Linear"],
                "weights": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel", "dynamic": False},
                "input_activations": {
                    "num_bits": 8,
                    "type": "int",
                    "symmetric": True,
                    "strategy": "token",
                    "dynamic": True,
                },
            }
        },
        "ignore": list(IGNORED),
    }
