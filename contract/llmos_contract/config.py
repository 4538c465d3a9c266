"""Settings declared once: the CRDs embed these types, the operator renders them as flags,
and the runtime's parsers are derived from them (same names, bounds, defaults and docs).

A field `batch_size` is `batchSize` in a manifest and `--batch-size` on a command line;
`to_flags` and `add_arguments` are the only places that spell that mapping.
"""

from __future__ import annotations

import argparse
import types
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError

from llmos_contract.model import ApiModel, Rule

M = TypeVar("M", bound=BaseModel)

Precision = Literal["auto", "float32", "bfloat16"]
"""Compute precision of training and evaluation. `auto` is bfloat16 where the hardware
computes it natively (GPUs with bfloat16, CPUs with AMX or AVX512-BF16), float32 elsewhere."""


ExportDtype = Literal["float32", "bfloat16"]
"""The dtype a version's weights are written in (training computes with float32 master weights)."""

Variant = Literal["int8"]
"""A compressed variant: int8 weights per output channel, int8 activations per token."""

Quantization = Literal["none", Variant]
"""What a server computes with: none (the version's weights) or a compressed variant."""

GgufType = Literal["f32", "bf16", "q8_0"]
"""A GGUF file's tensor type, as llama.cpp names it."""


class Architecture(ApiModel):
    """A Llama-style decoder to train from scratch (Hugging Face LlamaConfig fields)."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.hiddenSize % self.numHeads == 0",
            message="hiddenSize must be a multiple of numHeads",
            check=lambda a: a.hidden_size % a.num_heads == 0,
        ),
        Rule(
            cel="!has(self.numKvHeads) || self.numHeads % self.numKvHeads == 0",
            message="numHeads must be a multiple of numKvHeads",
            check=lambda a: a.num_kv_heads is None or a.num_heads % a.num_kv_heads == 0,
        ),
    )

    hidden_size: int = Field(ge=16, le=16384)
    """Width of the residual stream."""
    num_layers: int = Field(ge=1, le=256)
    """Number of decoder blocks."""
    num_heads: int = Field(ge=1, le=256)
    """Attention heads; must divide hiddenSize."""
    num_kv_heads: int | None = Field(default=None, ge=1, le=256)
    """Key/value heads for grouped-query attention (default: numHeads); must divide numHeads."""
    intermediate_size: int | None = Field(default=None, ge=16, le=65536)
    """SwiGLU hidden width (default: about 8/3 of hiddenSize, rounded up to a multiple of 64)."""
    context_length: int = Field(default=512, ge=8, le=131072)
    """Longest sequence the model handles (maxPositionEmbeddings)."""
    rope_theta: float = Field(default=10000.0, gt=0)
    """Base of the rotary position embedding."""
    tie_embeddings: bool = True
    """Share the input embedding and the output projection."""
    rms_norm_eps: float = Field(default=1e-5, gt=0, le=0.1)
    """Epsilon of RMSNorm."""


class Hyperparameters(ApiModel):
    """Optimisation settings. batchSize is global: it is split over ranks and accumulation steps."""

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.warmupSteps < self.steps",
            message="warmupSteps must be smaller than steps",
            check=lambda h: h.warmup_steps < h.steps,
        ),
        Rule(
            cel="self.minLearningRate <= self.learningRate",
            message="minLearningRate must not exceed learningRate",
            check=lambda h: h.min_learning_rate <= h.learning_rate,
        ),
    )

    steps: int = Field(ge=1, le=10_000_000)
    """Optimizer steps to take."""
    batch_size: int = Field(default=32, ge=1, le=65536)
    """Sequences per optimizer step, over all ranks (must divide by ranks × gradientAccumulation)."""
    gradient_accumulation: int = Field(default=1, ge=1, le=1024)
    """Micro-batches accumulated per optimizer step on each rank."""
    sequence_length: int = Field(default=256, ge=8, le=131072)
    """Tokens per training sequence (at most the model's contextLength)."""
    learning_rate: float = Field(default=1e-3, gt=0, le=1)
    """Peak AdamW learning rate."""
    min_learning_rate: float = Field(default=1e-4, ge=0, le=1)
    """Learning rate at the end of the cosine decay."""
    warmup_steps: int = Field(default=20, ge=0)
    """Linear warm-up steps."""
    weight_decay: float = Field(default=0.1, ge=0, le=1)
    """AdamW weight decay (not applied to norms)."""
    grad_clip: float = Field(default=1.0, ge=0)
    """Global gradient-norm clip (0 turns it off)."""
    dropout: float = Field(default=0.0, ge=0, le=0.9)
    """Dropout on every attention and MLP block's output while training (0 turns it off); versions have none."""
    seed: int = Field(default=1337, ge=0)
    """Seed of initialisation and data order; the same seed gives the same run."""
    log_every_steps: int = Field(default=10, ge=1)
    """Steps between progress lines."""
    precision: Precision = "auto"
    """auto (bfloat16 where native: GPUs, CPUs with AMX or AVX512-BF16), float32 or bfloat16."""


class Checkpointing(ApiModel):
    """When resume checkpoints are written and how many are kept."""

    every_steps: int = Field(default=100, ge=1)
    """Steps between checkpoints."""
    keep: int = Field(default=2, ge=1, le=100)
    """Newest checkpoints kept; older ones are deleted."""


CHECKPOINT_PREFIX = "checkpoint-"


class Export(ApiModel):
    """How a version is written: its dtype and the compressed variants and files beside it."""

    dtype: ExportDtype = "bfloat16"
    """float32 or bfloat16 (half the bytes; what a GPU or a bfloat16 CPU serves anyway)."""
    quantization: list[Variant] = Field(default_factory=list, max_length=1)
    """Compressed variants to add: int8 (a directory int8/ in the compressed-tensors layout vLLM reads)."""
    gguf: list[GgufType] = Field(default_factory=list, max_length=3)
    """GGUF files to add for llama.cpp: f32, bf16, q8_0 (model-TYPE.gguf)."""


EXPORT_PREFIX = "export-"


class Limits(ApiModel):
    """Admission limits per server replica."""

    max_concurrent_requests: int = Field(default=16, ge=1, le=4096)
    """Requests decoded together in one batch."""
    max_queue: int = Field(default=64, ge=0, le=100000)
    """Requests waiting for a batch slot; beyond this the server answers 429."""
    max_tokens: int = Field(default=512, ge=1, le=131072)
    """Largest max_tokens a request may ask for."""


def flag(name: str, prefix: str = "") -> str:
    """The command-line spelling of a field: batch_size → --batch-size."""
    return f"--{prefix}{name.replace('_', '-')}"


def to_flags(settings: BaseModel, prefix: str = "") -> list[str]:
    """Every set field as flags, in declaration order (None fields are left out)."""
    argv: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, bool):
            argv.append(flag(name, prefix) if value else flag(name, f"no-{prefix}"))
        elif isinstance(value, list):
            argv += [flag(name, prefix), *map(str, value)] if value else []
        else:
            argv += [flag(name, prefix), str(value)]
    return argv


def _scalar(annotation: Any) -> tuple[type, list[Any] | None]:
    """The argparse type of a field, and its choices for a Literal."""
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    if get_origin(annotation) is list:
        return _scalar(get_args(annotation)[0])
    if get_origin(annotation) is Literal:
        choices = list(get_args(annotation))
        return type(choices[0]), choices
    if annotation in (int, float, str, bool, Path):
        return annotation, None
    raise TypeError(f"{annotation!r} has no command-line form")


def _dest(name: str, prefix: str) -> str:
    return (prefix + name).replace("-", "_")


def add_arguments(parser: argparse.ArgumentParser, model: type[BaseModel], prefix: str = "") -> None:
    """One flag per field of `model`, documented with the field's docstring. Unset flags
    stay None, so the model's own defaults (and bounds) apply in `from_arguments`."""
    group = parser.add_argument_group((model.__doc__ or model.__name__).splitlines()[0])
    for name, field in model.model_fields.items():
        kind, choices = _scalar(field.annotation)
        default = "" if field.is_required() or field.default_factory else f" (default: {field.get_default()})"
        help_text = f"{field.description or ''}{default}".replace("%", "%%")
        if kind is bool:
            group.add_argument(
                flag(name, prefix),
                dest=_dest(name, prefix),
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            many = "*" if get_origin(field.annotation) is list else None
            group.add_argument(
                flag(name, prefix),
                dest=_dest(name, prefix),
                type=kind,
                choices=choices,
                nargs=many,
                default=None,
                help=help_text,
            )


def from_arguments(model: type[M], args: argparse.Namespace, prefix: str = "") -> M:
    """The model from parsed flags; ValueError names the flag to fix."""
    values = {n: v for n in model.model_fields if (v := getattr(args, _dest(n, prefix), None)) is not None}
    try:
        return model(**values)  # (not model_validate: settings classes read the environment in __init__)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = flag(str(error["loc"][0]), prefix) if error["loc"] else (model.__doc__ or "").splitlines()[0]
            problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
        raise ValueError("; ".join(problems)) from exc
