"""Model versions on disk: a Hugging Face directory plus llmos.json (lineage).

vN/
  config.json             LlamaConfig fields
  model.safetensors       LlamaForCausalLM parameter names
  tokenizer.json          `tokenizers` format
  tokenizer_config.json   special tokens and chat template
  generation_config.json
  llmos.json              job, step, tokens seen, data sha256, hyperparameters, metrics,
                          variants (name → path, bytes, metrics)
  int8/                   the int8 variant (spec.export.quantization), a complete HF directory
                          in the compressed-tensors layout
  model-q8_0.gguf         GGUF files for llama.cpp (spec.export.gguf)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from llmos_contract.config import Export
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from llmos_runtime import hardware
from llmos_runtime.errors import UsageError
from llmos_runtime.hardware import detect
from llmos_runtime.model import LlamaModel, ModelConfig, state_dict_for_export
from llmos_runtime.quantize import (
    int8_state_dict,
    matches_int8_scheme,
    quantization_config,
    quantize_model,
    split_int8_state,
)

END_OF_TEXT = "<|endoftext|>"
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
LINEAGE_FILE = "llmos.json"
WEIGHTS_FILE = "model.safetensors"
INT8_DIR = "int8"


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file, then rename), making the directory if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _write_hf_directory(
    directory: Path, config: dict[str, Any], state: dict[str, torch.Tensor], tokenizer_file: Path, cfg: ModelConfig
) -> int:
    """config.json, weights, tokenizer and generation config; returns the weights' bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "config.json", config)
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    shutil.copyfile(tokenizer_file, directory / "tokenizer.json")
    eos = Tokenizer.from_file(str(tokenizer_file)).id_to_token(cfg.eos_token_id) or END_OF_TEXT
    write_json(
        directory / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": eos,
            "eos_token": eos,
            "model_max_length": cfg.context_length,
            "chat_template": DEFAULT_CHAT_TEMPLATE,
        },
    )
    write_json(
        directory / "generation_config.json",
        {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "do_sample": True},
    )
    return (directory / WEIGHTS_FILE).stat().st_size


def save_int8_variant(directory: Path, model: LlamaModel, tokenizer_file: Path, dtype: str) -> int:
    """The int8 variant of a float model as its own HF directory; returns the weights' bytes."""
    cfg = model.config
    config = {**cfg.to_hf(), "torch_dtype": dtype}
    config["quantization_config"] = quantization_config()
    state = int8_state_dict(model, getattr(torch, dtype))
    return _write_hf_directory(directory, config, state, tokenizer_file, cfg)


def save_version(
    directory: Path,
    model: LlamaModel,
    tokenizer_file: Path,
    lineage: dict[str, Any],
    export: Export | None = None,
) -> Path:
    """Write a complete version directory atomically, with the variants `export` asks for;
    the lineage records each variant's path and size. Returns the version's path."""
    export = export or Export(dtype="float32")
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cfg = model.config
    dtype = getattr(torch, export.dtype)
    state = {k: v.to(dtype) for k, v in state_dict_for_export(model).items()}
    size = _write_hf_directory(tmp, {**cfg.to_hf(), "torch_dtype": export.dtype}, state, tokenizer_file, cfg)
    variants: dict[str, dict[str, Any]] = {export.dtype: {"path": ".", "bytes": size}}
    if "int8" in export.quantization:
        size = save_int8_variant(tmp / INT8_DIR, model, tokenizer_file, export.dtype)
        variants["int8"] = {"path": INT8_DIR, "bytes": size}
    if export.gguf:
        from llmos_runtime.gguf_export import write_gguf  # the gguf package only where GGUF is asked for

        for kind in export.gguf:  # (inside the temporary directory: moved into place whole)
            path = write_gguf(tmp, tmp / f"model-{kind}.gguf", kind)
            variants[f"gguf-{kind}"] = {"path": path.name, "bytes": path.stat().st_size}
    write_json(tmp / LINEAGE_FILE, {**lineage, "dtype": export.dtype, "variants": variants})
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory


def read_config(directory: Path) -> ModelConfig:
    path = directory / "config.json"
    if not path.is_file():
        raise UsageError(f"{directory} is not a model version: {path.name} is missing")
    try:
        return ModelConfig.from_hf(json.loads(path.read_text()))
    except (KeyError, ValueError) as exc:
        raise UsageError(f"{path}: {exc}") from exc


def load_weights(directory: Path) -> dict[str, torch.Tensor]:
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise UsageError(f"{directory}: no *.safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def is_int8_variant(directory: Path) -> bool:
    """Whether a directory holds int8 weights this runtime loads (our variant's scheme); any
    other quantized checkpoint is refused by name rather than misread."""
    path = directory / "config.json"
    if not path.is_file():
        return False
    found = json.loads(path.read_text()).get("quantization_config")
    if found is None:
        return False
    if not matches_int8_scheme(found):
        raise UsageError(
            f"{path}: quantization_config {found.get('quant_method')!r}/{found.get('format')!r} is not supported "
            "(int8 weights per channel in the compressed-tensors int-quantized format are)"
        )
    return True


def recorded_int8_compute(directory: Path) -> str | None:
    """The int8 computation the evaluation measured for a version (or its int8 directory)."""
    version = directory.parent if directory.name == INT8_DIR else directory
    found = read_lineage(version).get("variants", {}).get("int8", {}).get("compute")
    return str(found) if found else None


def load_model(
    directory: Path, dtype: torch.dtype = torch.float32, quantization: str = "none", int8_compute: str = "auto"
) -> LlamaModel:
    """Load a Hugging-Face-format Llama-family checkpoint (ours or pretrained). With
    `quantization="int8"` the version's int8 variant is loaded if it has one, else its float
    weights are quantized now; an int8 variant's own directory always loads as int8.
    `int8_compute`: w8a8, w8a16 or auto: what the evaluation measured (so the gate judged
    what is served), else what this machine computes fastest (`hardware.int8_compute`)."""
    variant = directory / INT8_DIR
    if quantization == "int8" and is_int8_variant(variant):
        directory = variant
    stored_int8 = is_int8_variant(directory)
    config = read_config(directory)
    model = LlamaModel(config)
    state = load_weights(directory)
    weights = None
    if stored_int8:
        state, weights = split_int8_state(state)
    if config.tie_embeddings:
        state.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [
        m
        for m in missing
        if not (config.tie_embeddings and m == "lm_head.weight") and m.removesuffix(".weight") not in (weights or {})
    ]
    unexpected = [u for u in unexpected if not u.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise UsageError(
            f"{directory}: weights do not match config.json (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model = model.to(dtype)
    if stored_int8 or quantization == "int8":
        found = detect()
        requested = recorded_int8_compute(directory) if int8_compute == "auto" else int8_compute
        compute = hardware.int8_compute(requested or "auto", found)
        quantize_model(model, weights, compute, hardware.int8_weight_bits(compute, found))
    return model


def load_tokenizer(directory: Path) -> Tokenizer:
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise UsageError(f"{directory}: tokenizer.json is missing")
    return Tokenizer.from_file(str(path))


def read_lineage(directory: Path) -> dict[str, Any]:
    path = directory / LINEAGE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
