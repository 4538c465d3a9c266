"""Compression: int8 kernels, int8 variants on disk, their evaluation, and GGUF export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from llmos_contract.config import Export
from llmos_contract.events import EvaluationResult
from llmos_runtime.errors import UsageError
from llmos_runtime.evaluate import validation_loss
from llmos_runtime.gguf_export import gguf_name, rope_permute
from llmos_runtime.hardware import Hardware, detect, int8_compute, int8_weight_bits
from llmos_runtime.model import LlamaModel
from llmos_runtime.quantize import Int8Linear, int8_compute_of, quantization_of, quantize_tokens, quantize_weight
from llmos_runtime.version import INT8_DIR, load_model, load_weights, read_config, read_lineage, save_version

from tests.conftest import run_tool

pytestmark = pytest.mark.slow


def exact_product(x_q: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
    """The integer product computed in int64: what integer accumulation must give."""
    return (x_q.long() - 128) @ w_q.long().t()


@pytest.mark.parametrize("bits", [7, 8])
def test_weights_quantize_per_output_channel(bits: int) -> None:
    weight = torch.randn(96, 64) * torch.logspace(-3, 0, 96)[:, None]  # rows of very different size
    q, scale = quantize_weight(weight, bits)
    levels = 2 ** (bits - 1) - 1
    assert q.dtype == torch.int8 and int(q.abs().max()) == levels
    assert torch.equal(q.abs().amax(dim=1), torch.full((96,), levels, dtype=torch.int8))  # every row uses its range
    error = (q.float() * scale[:, None] - weight).abs()
    assert bool((error <= scale[:, None] / 2 + 1e-9).all())  # at most half a step, row by row


def test_activations_quantize_per_token() -> None:
    x = torch.randn(5, 64) * torch.tensor([1e-3, 1.0, 10.0, 100.0, 0.0])[:, None]
    q, scale = quantize_tokens(x)
    assert q.dtype == torch.uint8 and scale.shape == (5, 1)
    assert torch.equal((q[:4].int() - 128).abs().amax(dim=1), torch.full((4,), 127, dtype=torch.int32))
    assert bool(((q.float() - 128) * scale - x).abs().le(scale / 2 + 1e-9).all())
    assert bool((q[4] == 128).all())  # an all-zero token stays zero


@pytest.mark.parametrize("kernel", ["onednn", "reference"])
def test_int8_linear_accumulates_exactly_and_each_token_alone(kernel: str) -> None:
    torch.manual_seed(0)
    weight = torch.randn(320, 256) * 0.05
    q, scale = quantize_weight(weight, bits=7)
    layer = Int8Linear(q, scale, kernel)  # type: ignore[arg-type]
    x = torch.randn(16, 256) * torch.logspace(-2, 1, 16)[:, None]
    y = layer(x)
    x_q, x_scale = quantize_tokens(x)
    expected = exact_product(x_q, q).float() * scale * x_scale
    assert torch.allclose(y, expected, rtol=1e-6, atol=0)
    alone = torch.cat([layer(x[i : i + 1]) for i in range(16)])
    assert torch.equal(alone, y)  # batch-invariant: integer sums do not depend on the batch
    assert torch.equal(layer(x.view(2, 8, 256)).view(16, -1), y)
    relative = (y - x @ weight.t()).norm() / (x @ weight.t()).norm()
    assert relative < 0.02


def test_both_kernels_agree_bit_for_bit() -> None:
    torch.manual_seed(1)
    q, scale = quantize_weight(torch.randn(192, 128), bits=7)
    x = torch.randn(9, 128)
    assert torch.equal(Int8Linear(q, scale, "onednn")(x), Int8Linear(q, scale, "reference")(x))


def test_the_int8_computation_and_its_weight_bits_follow_the_hardware() -> None:
    avx2, vnni = Hardware("cpu", False, 2, native_int8=False), Hardware("cpu", True, 2, native_int8=True)
    gpu = Hardware("cuda", True, 8, native_int8=True)
    assert int8_compute("auto", avx2) == "w8a16" and int8_compute("auto", vnni) == int8_compute("auto", gpu) == "w8a8"
    assert int8_compute("w8a8", avx2) == "w8a8" and int8_compute("w8a16", gpu) == "w8a16"
    assert int8_weight_bits("w8a8", avx2) == 7  # AVX2: products pass through int16 and would saturate
    assert int8_weight_bits("w8a8", vnni) == int8_weight_bits("w8a16", avx2) == 8


def test_weight_only_int8_is_batch_invariant_and_close() -> None:
    torch.manual_seed(2)
    weight = torch.randn(320, 256) * 0.05
    layer = Int8Linear(*quantize_weight(weight), "weight-only")
    x = torch.randn(16, 256)
    y = layer(x)
    assert y.dtype == torch.float32
    assert torch.equal(torch.cat([layer(x[i : i + 1]) for i in range(16)]), y)
    assert (y - x @ weight.t()).norm() / (x @ weight.t()).norm() < 0.02


@pytest.fixture(scope="module")
def float_version(tiny_version: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model written in float32 with its int8 variant (the CLI's default is bfloat16)."""
    root = tmp_path_factory.mktemp("float")
    model = load_model(tiny_version)
    lineage = {**read_lineage(tiny_version), "variants": {}}
    export = Export(dtype="float32", quantization=["int8"])
    return save_version(root / "v1", model, tiny_version / "tokenizer.json", lineage, export)


def test_the_int8_variant_is_written_in_the_compressed_tensors_layout(float_version: Path) -> None:
    config = json.loads((float_version / INT8_DIR / "config.json").read_text())
    group = config["quantization_config"]["config_groups"]["group_0"]
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    assert group["weights"]["strategy"] == "channel" and group["input_activations"]["strategy"] == "token"
    assert group["input_activations"]["dynamic"] is True
    assert config["quantization_config"]["ignore"] == ["lm_head"]  # as llm-compressor writes it
    state = load_weights(float_version / INT8_DIR)
    q, scale = state["model.layers.0.self_attn.q_proj.weight"], state["model.layers.0.self_attn.q_proj.weight_scale"]
    assert q.dtype == torch.int8 and scale.shape == (q.shape[0], 1) and scale.dtype == torch.float32
    assert state["model.embed_tokens.weight"].dtype == torch.float32  # the lookup stays in the export dtype
    assert "lm_head.weight" not in state and config["tie_word_embeddings"] is True  # tied: the embedding
    served = load_model(float_version, quantization="int8")
    assert isinstance(served.lm_head, Int8Linear)  # the output projection computes in int8 all the same
    variants = read_lineage(float_version)["variants"]
    assert variants["int8"]["path"] == INT8_DIR
    assert variants["int8"]["bytes"] == (float_version / INT8_DIR / "model.safetensors").stat().st_size
    assert variants["int8"]["bytes"] < variants["float32"]["bytes"]


@pytest.mark.parametrize("compute", ["w8a8", "w8a16"])
def test_serving_int8_loads_the_variant_or_quantizes(
    float_version: Path, tiny_version: Path, tmp_path: Path, compute: str
) -> None:
    stored = load_model(float_version, quantization="int8", int8_compute=compute)
    assert quantization_of(stored) == "int8" and int8_compute_of(stored) == compute
    assert (
        quantization_of(load_model(float_version)) == "float32" and int8_compute_of(load_model(float_version)) is None
    )
    assert quantization_of(load_model(float_version / INT8_DIR)) == "int8"  # the variant's own directory
    # A version without the variant is quantized at load: the same weights, the same numbers.
    plain = save_version(tmp_path / "plain", load_model(float_version), tiny_version / "tokenizer.json", {})
    at_load = load_model(plain, quantization="int8", int8_compute=compute)
    ids = torch.randint(0, stored.config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(stored(ids), at_load(ids))


def test_the_int8_variant_loads_in_transformers_through_compressed_tensors(float_version: Path) -> None:
    """The ecosystem reads the variant: transformers' compressed-tensors integration (the
    library vLLM's int8 loader is built on) takes int8/ as it is and computes what we do."""
    from transformers import AutoModelForCausalLM

    theirs = AutoModelForCausalLM.from_pretrained(float_version / INT8_DIR, dtype=torch.float32).eval()
    assert theirs.config.quantization_config.quant_method == "compressed-tensors"
    ours, full = load_model(float_version, quantization="int8").eval(), load_model(float_version).eval()
    ids = torch.randint(0, full.config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference, logits_theirs, logits_ours = full(ids), theirs(ids).logits, ours(ids)
    scale = reference.abs().max()
    assert 0 < (logits_theirs - reference).abs().max() / scale < 0.02  # int8 weights: close, not equal
    assert (logits_ours - logits_theirs).abs().max() / scale < 0.02


def test_a_quantization_this_runtime_cannot_read_is_refused_by_name(float_version: Path, tmp_path: Path) -> None:
    other = tmp_path / "fp8"
    shutil.copytree(float_version / INT8_DIR, other)
    config = json.loads((other / "config.json").read_text())
    config["quantization_config"]["format"] = "float-quantized"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match="'compressed-tensors'/'float-quantized' is not supported"):
        load_model(other)


def test_the_server_computes_int8_the_way_the_evaluation_measured(float_version: Path, tmp_path: Path) -> None:
    version = tmp_path / "v1"
    shutil.copytree(float_version, version)
    lineage = read_lineage(version)
    for recorded in ("w8a8", "w8a16"):
        lineage["variants"]["int8"]["compute"] = recorded
        (version / "llmos.json").write_text(json.dumps(lineage))
        assert int8_compute_of(load_model(version, quantization="int8")) == recorded  # auto follows the lineage
    assert int8_compute_of(load_model(version, quantization="int8", int8_compute="w8a8")) == "w8a8"  # or the flag


def test_int8_bits_per_byte_within_1_percent_of_float32(float_version: Path, prepared: Path, tmp_path: Path) -> None:
    """Measured by the evaluation stage, through the int8 code path the server runs."""
    run_tool(
        "llmos-eval",
        "--version",
        float_version,
        "--data",
        prepared,
        "--result-file",
        tmp_path / "result",
        "--samples",
        "0",
        "--sequence-length",
        "128",
    )
    result = EvaluationResult.decode((tmp_path / "result").read_text())
    full, int8 = result.metrics["bitsPerByte"], result.variants["int8"]["bitsPerByte"]
    assert abs(int8 - full) / full < 0.01, (full, int8)
    assert int8 != full  # it was measured, not copied
    recorded = read_lineage(float_version)["variants"]["int8"]
    assert recorded["metrics"] == result.variants["int8"]
    assert recorded["compute"] == int8_compute("auto", detect())  # what the server's auto will follow
    # The other int8 computation (what auto does not pick on this machine) holds the bound too.
    manifest = json.loads((prepared / "manifest.json").read_text())
    tokens = np.memmap(prepared / "val.bin", dtype=manifest["dtype"], mode="r")
    losses = {
        compute: validation_loss(
            load_model(float_version, quantization="int8", int8_compute=compute), tokens, 128, 8, 50
        )
        for compute in ("w8a8", "w8a16")
    }
    float_loss = result.metrics["validationLoss"]
    assert all(abs(loss - float_loss) / float_loss < 0.01 for loss in losses.values()), (float_loss, losses)


def test_bfloat16_export_loads_in_transformers_within_bfloat16_tolerance(float_version: Path, tmp_path: Path) -> None:
    from transformers import LlamaForCausalLM

    model = LlamaModel(read_config(float_version))  # float32 weights bfloat16 cannot hold exactly
    model.init_weights(seed=3)
    tokenizer = float_version / "tokenizer.json"
    full_dir = save_version(tmp_path / "f32", model, tokenizer, {}, Export(dtype="float32"))
    half = save_version(tmp_path / "bf16", model, tokenizer, {}, Export(dtype="bfloat16"))
    assert load_weights(half)["model.norm.weight"].dtype == torch.bfloat16
    sizes = [read_lineage(d)["variants"][dtype]["bytes"] for d, dtype in ((full_dir, "float32"), (half, "bfloat16"))]
    assert sizes[1] < 0.55 * sizes[0]
    ids = torch.randint(0, model.config.vocab_size, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = LlamaForCausalLM.from_pretrained(full_dir, dtype=torch.float32).eval()(ids).logits
        theirs = LlamaForCausalLM.from_pretrained(half, dtype=torch.float32).eval()(ids).logits
    difference = (theirs - full).abs().max().item()
    assert 0 < difference < 0.02 * full.abs().max().item()  # bfloat16 keeps 8 bits of mantissa


@pytest.mark.parametrize("kind", ["f32", "bf16", "q8_0"])
def test_gguf_export_reads_back_with_the_version_tensors(kind: str, float_version: Path, tmp_path: Path) -> None:
    import gguf

    out = tmp_path / f"model-{kind}.gguf"
    run_tool("llmos-export", "--version", float_version, "--format", "gguf", "--type", kind, "--out", out)
    reader = gguf.GGUFReader(out)
    fields = {f.name: f for f in reader.fields.values()}

    def scalar(name: str) -> object:
        field = fields[name]
        return field.parts[field.data[0]].tolist()[0]

    config = json.loads((float_version / "config.json").read_text())
    assert bytes(fields["general.architecture"].parts[-1]).decode() == "llama"
    assert scalar("llama.block_count") == config["num_hidden_layers"]
    assert scalar("llama.attention.head_count_kv") == config["num_key_value_heads"]
    tokens = [bytes(fields["tokenizer.ggml.tokens"].parts[i]).decode() for i in fields["tokenizer.ggml.tokens"].data]
    vocab = json.loads((float_version / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(tokens) == config["vocab_size"] and all(tokens[i] == t for t, i in vocab.items())
    assert bytes(fields["tokenizer.ggml.pre"].parts[-1]).decode() == "gpt-2"  # the split prepare.py trains with
    assert len(fields["tokenizer.ggml.merges"].data) > 0
    assert scalar("tokenizer.ggml.eos_token_id") == config["eos_token_id"]

    state = load_weights(float_version)
    tensors = {t.name: t for t in reader.tensors}
    assert set(tensors) == {gguf_name(n) for n in state}
    heads = {"q_proj": config["num_attention_heads"], "k_proj": config["num_key_value_heads"]}
    for name, weight in state.items():
        tensor = tensors[gguf_name(name)]
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(weight.shape)
        expected = weight.float()
        for proj, count in heads.items():
            if proj in name:
                expected = rope_permute(expected, count)
        if kind == "f32" or weight.dim() == 1:
            assert np.array_equal(values, expected.numpy()), name
        elif kind == "bf16":
            assert np.array_equal(values, expected.to(torch.bfloat16).float().numpy()), name
        else:  # q8_0: blocks of 32 with their own scale, at most half a step off
            step = np.abs(expected.numpy()).reshape(-1, 32).max(axis=1) / 127
            assert (np.abs(values - expected.numpy()).reshape(-1, 32) <= step[:, None] * 0.6 + 1e-7).all(), name
    lineage = read_lineage(float_version)
    assert "gguf-" + kind not in lineage["variants"]  # --out outside the version: recorded nowhere


def test_rope_permutation_interleaves_each_heads_halves() -> None:
    w = torch.arange(8.0)[:, None].repeat(1, 2)  # 2 heads of 4 rows: [a0 a1 b0 b1] per head
    assert rope_permute(w, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_export_adds_an_int8_variant_to_an_existing_version(tiny_version: Path, tmp_path: Path) -> None:
    plain = save_version(tmp_path / "v1", load_model(tiny_version), tiny_version / "tokenizer.json", {"step": 1})
    run_tool("llmos", "export", plain, "--format", "int8")
    assert quantization_of(load_model(plain, quantization="int8")) == "int8"
    variants = read_lineage(plain)["variants"]
    assert variants["int8"]["bytes"] == (plain / INT8_DIR / "model.safetensors").stat().st_size
    again = run_tool("llmos-export", "--version", plain, "--format", "int8", check=False)
    assert again.returncode == 2 and "already has an int8 variant" in again.stderr  # its verdict stays true
    run_tool("llmos", "export", plain, "--format", "gguf", "--type", "q8_0")  # the CLI of the product
    assert read_lineage(plain)["variants"]["gguf-q8_0"]["bytes"] == (plain / "model-q8_0.gguf").stat().st_size
    bad = run_tool("llmos", "export", tmp_path, "--format", "gguf", check=False)
    assert bad.returncode == 2 and "not a model version" in bad.stderr
