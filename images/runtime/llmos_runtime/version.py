"""Model versions on disk: a Hugging Face directory plus llmos.json (lineage).

vN/
  config.json             LlamaConfig fields
  model.safetensors       LlamaForCausalLM parameter names
  tokenizer.json          `tokenizers` format
  tokenizer_config.json   special tokens and chat template
  generation_config.json
  llmos.json              job, step, tokens seen, data sha256, hyperparameters, metrics
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from llmos_runtime.errors import UsageError
from llmos_runtime.model import LlamaModel, ModelConfig

END_OF_TEXT = "<|endoftext|>"
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
LINEAGE_FILE = "llmos.json"


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file, then rename), making the directory if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def state_dict_for_export(model: LlamaModel) -> dict[str, torch.Tensor]:
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        state.pop("lm_head.weight")  # shared with model.embed_tokens.weight, as in HF
    return state


def save_version(directory: Path, model: LlamaModel, tokenizer_file: Path, lineage: dict[str, Any]) -> Path:
    """Write a complete version directory atomically; returns its path."""
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cfg = model.config
    write_json(tmp / "config.json", cfg.to_hf())
    save_file(state_dict_for_export(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(tokenizer_file, tmp / "tokenizer.json")
    eos = Tokenizer.from_file(str(tokenizer_file)).id_to_token(cfg.eos_token_id) or END_OF_TEXT
    write_json(
        tmp / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": eos,
            "eos_token": eos,
            "model_max_length": cfg.context_length,
            "chat_template": DEFAULT_CHAT_TEMPLATE,
        },
    )
    write_json(
        tmp / "generation_config.json",
        {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "do_sample": True},
    )
    write_json(tmp / LINEAGE_FILE, lineage)
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


def load_model(directory: Path, dtype: torch.dtype = torch.float32) -> LlamaModel:
    """Load a Hugging-Face-format Llama-family checkpoint (ours or pretrained)."""
    config = read_config(directory)
    model = LlamaModel(config)
    state = load_weights(directory)
    if config.tie_embeddings:
        state.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (config.tie_embeddings and m == "lm_head.weight")]
    unexpected = [u for u in unexpected if not u.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise UsageError(
            f"{directory}: weights do not match config.json (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.to(dtype)


def load_tokenizer(directory: Path) -> Tokenizer:
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise UsageError(f"{directory}: tokenizer.json is missing")
    return Tokenizer.from_file(str(path))


def read_lineage(directory: Path) -> dict[str, Any]:
    path = directory / LINEAGE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
