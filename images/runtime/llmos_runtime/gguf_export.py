"""A version as one GGUF file for llama.cpp and the tools built on it (`gguf` package).

    llmos export VERSION --format gguf --type q8_0      (or spec.export.gguf: [q8_0])

Tensor names and metadata follow llama.cpp's `llama` architecture: the tokenizer goes in as
a byte-level BPE ("gpt2" model) with its merges, and q/k projections are permuted from
Hugging Face's rotate-half layout to the interleaved pairs GGML's RoPE rotates. f32 keeps
every tensor in float32; bf16 and q8_0 store matrices in that type, norms (and, for q8_0,
matrices whose rows are not whole blocks of 32) in float32.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import torch
from llmos_contract.config import GgufType

from llmos_runtime.model import ModelConfig

TYPES: dict[str, tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]] = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}
LAYER_TENSORS = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf_name: str) -> str:
    """model.layers.3.self_attn.q_proj.weight → blk.3.attn_q.weight."""
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    if hf_name in fixed:
        return fixed[hf_name]
    if hf_name == "lm_head.weight":
        return "output.weight"
    _, _, layer, rest = hf_name.split(".", 3)
    return f"blk.{layer}.{LAYER_TENSORS[rest.removesuffix('.weight')]}.weight"


def rope_permute(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows of each head from [first halves, second halves] to interleaved pairs."""
    out, cols = weight.shape
    return weight.reshape(heads, 2, out // heads // 2, cols).transpose(1, 2).reshape(out, cols)


def _tokenizer(writer: gguf.GGUFWriter, version: Path, cfg: ModelConfig) -> None:
    spec = json.loads((version / "tokenizer.json").read_text())
    vocab: dict[str, int] = dict(spec["model"]["vocab"])
    special = set()
    for added in spec.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
        if added.get("special"):
            special.add(added["id"])
    size = max(cfg.vocab_size, max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]  # rows of the embedding no token uses (as llama.cpp pads)
    unused = set(range(size)) - set(vocab.values())
    for token, index in vocab.items():
        tokens[index] = token
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # prepare.py splits with ByteLevel's GPT-2 regex
    writer.add_token_list(tokens)
    kinds = {i: gguf.TokenType.CONTROL for i in special} | {i: gguf.TokenType.UNUSED for i in unused}
    writer.add_token_types([int(kinds.get(i, gguf.TokenType.NORMAL)) for i in range(size)])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(cfg.bos_token_id)
    writer.add_eos_token_id(cfg.eos_token_id)
    writer.add_add_bos_token(False)


def write_gguf(version: Path, path: Path, kind: GgufType) -> Path:
    """The version directory (float weights) as a GGUF file of tensor type `kind`."""
    from llmos_runtime.version import load_weights, read_config  # (version imports this module lazily)

    qtype, file_type = TYPES[kind]
    cfg = read_config(version)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(version.resolve().name.strip(".").removesuffix(".tmp"))  # (save_version writes in .vN.tmp)
    writer.add_context_length(cfg.context_length)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_layers)
    writer.add_feed_forward_length(cfg.intermediate_size or 0)
    writer.add_head_count(cfg.num_heads)
    writer.add_head_count_kv(cfg.num_kv_heads or cfg.num_heads)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(file_type)
    _tokenizer(writer, version, cfg)
    for name, tensor in sorted(load_weights(version).items()):
        if name == "lm_head.weight" and cfg.tie_embeddings:
            continue  # llama.cpp uses token_embd for the output when output.weight is absent
        w = tensor.float()
        if name.endswith("q_proj.weight"):
            w = rope_permute(w, cfg.num_heads)
        elif name.endswith("k_proj.weight"):
            w = rope_permute(w, cfg.num_kv_heads or cfg.num_heads)
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        if w.dim() == 1 or qtype == gguf.GGMLQuantizationType.F32 or w.shape[-1] % block:
            # (rows that are not whole blocks of 32 stay float32, as llama.cpp's converter does)
            writer.add_tensor(gguf_name(name), w.numpy())
        elif qtype == gguf.GGMLQuantizationType.BF16:
            writer.add_tensor(gguf_name(name), w.to(torch.bfloat16).view(torch.int16).numpy(), raw_dtype=qtype)
        else:
            writer.add_tensor(gguf_name(name), gguf.quants.quantize(w.numpy(), qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
