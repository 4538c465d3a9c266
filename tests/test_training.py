"""Runtime: data preparation, distributed training, checkpoint/resume, export, evaluation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from llmos_contract.events import EvaluationResult
from llmos_runtime.version import load_model, load_tokenizer

from tests.conftest import BIN, TINY_ARCH, run_tool

pytestmark = pytest.mark.slow


def train_args(prepared: Path, root: Path, steps: int = 40, *extra: str) -> list[str]:
    return [
        "--data",
        str(prepared),
        "--checkpoint-dir",
        str(root / "ckpt"),
        "--version-dir",
        str(root / "version"),
        "--steps",
        str(steps),
        "--batch-size",
        "8",
        "--sequence-length",
        "64",
        "--warmup-steps",
        "4",
        "--learning-rate",
        "3e-3",
        "--log-every-steps",
        "5",
        "--checkpoint-every-steps",
        "10",
        "--checkpoint-keep",
        "2",
        "--seed",
        "7",
        *TINY_ARCH,
        *extra,
    ]


def torchrun(procs: int, args: list[str]) -> list[str]:
    return [
        str(BIN / "torchrun"),
        "--standalone",
        f"--nproc-per-node={procs}",
        "-m",
        "llmos_runtime.train",
        "--procs-per-node",
        str(procs),
        *args,
    ]


def events(stdout: str, kind: str) -> list[dict[str, object]]:
    found = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [e for e in found if e["event"] == kind]


def test_prepare_is_idempotent_and_records_its_inputs(prepared: Path, corpus: Path) -> None:
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["data_sha256"].startswith("86c4e6aa")
    assert manifest["vocab_size"] == 512
    assert manifest["train_tokens"] > 10 * manifest["val_tokens"] > 0
    before = (prepared / "train.bin").stat().st_mtime_ns
    run_tool("llmos-prepare", "--data", corpus, "--out", prepared, "--vocab-size", "512")
    assert (prepared / "train.bin").stat().st_mtime_ns == before


def test_dataset_cache_serves_https_offline(tmp_path: Path, corpus: Path) -> None:
    env = {**os.environ, "LLMOS_CACHE_DIR": str(tmp_path / "cache")}
    run_tool("llmos-prepare", "--seed-cache", corpus, env=env)
    sha = json.loads(run_tool("llmos-prepare", "--seed-cache", corpus, env=env).stdout)["path"].split("/")[-1]
    result = run_tool(
        "llmos-prepare",
        "--data",
        "https://example.invalid/corpus.txt",
        "--sha256",
        sha,
        "--out",
        tmp_path / "out",
        "--vocab-size",
        "300",
        env=env,
    )
    assert json.loads(result.stdout)["data_sha256"] == sha


def test_two_process_training_lowers_loss_and_exports_a_version(prepared: Path, tmp_path: Path) -> None:
    result = subprocess.run(torchrun(2, train_args(prepared, tmp_path, 40)), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    progress = events(result.stdout, "progress")
    assert [p["step"] for p in progress] == list(range(5, 41, 5))
    assert progress[-1]["loss"] < progress[0]["loss"] - 0.5  # type: ignore[operator]
    version = tmp_path / "version"
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "llmos.json",
    ):
        assert (version / name).is_file(), name
    lineage = json.loads((version / "llmos.json").read_text())
    assert lineage["step"] == 40 and lineage["tokens_seen"] == 40 * 8 * 64
    assert lineage["data_sha256"].startswith("86c4e6aa")
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("step-*")) == ["step-00000030", "step-00000040"]


def test_bfloat16_training_lowers_the_loss_like_float32(prepared: Path, tmp_path: Path) -> None:
    """Autocast to bfloat16 (asked for explicitly: this CPU may only emulate it) learns like float32."""
    final = {}
    for precision in ("float32", "bfloat16"):
        args = train_args(prepared, tmp_path / precision, 30, "--precision", precision)
        result = run_tool("llmos-train", *args)
        progress = events(result.stdout, "progress")
        assert {p["precision"] for p in progress} == {precision}
        assert progress[-1]["loss"] < progress[0]["loss"] - 0.5  # type: ignore[operator]
        final[precision] = float(progress[-1]["loss"])  # type: ignore[arg-type]
        lineage = json.loads((tmp_path / precision / "version" / "llmos.json").read_text())
        assert lineage["precision"] == precision and lineage["hyperparameters"]["precision"] == precision
        assert load_model(tmp_path / precision / "version").model.embed_tokens.weight.dtype == torch.float32
    assert final["bfloat16"] == pytest.approx(final["float32"], abs=0.02)  # measured: within 5e-4


def test_dropout_acts_only_while_training(tiny_version: Path) -> None:
    model = load_model(tiny_version)
    ids = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    model.dropout = 0.5
    model.train()
    assert not torch.equal(model(ids), model(ids))  # a new mask each call
    model.eval()
    assert torch.equal(model(ids), model(ids))
    with torch.no_grad():
        assert torch.equal(model(ids), load_model(tiny_version)(ids))  # versions carry no dropout


@pytest.mark.parametrize(("precision", "dropout"), [("float32", "0"), ("bfloat16", "0.1")])
def test_killed_run_resumes_and_matches_an_uninterrupted_one(
    prepared: Path, tmp_path: Path, precision: str, dropout: str
) -> None:
    """Exact resume: the data, the weights, the optimizer and the random state (dropout's masks)."""
    settings = ("--precision", precision, "--dropout", dropout)
    whole_args = train_args(prepared, tmp_path / "whole", 30, *settings)
    whole = subprocess.run(torchrun(2, whole_args), capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-3000:]
    final = events(whole.stdout, "progress")[-1]["loss"]

    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        torchrun(2, train_args(prepared, cut, 30, *settings)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith('{"event": "checkpoint", "step": 10'):
            break
    workers = subprocess.run(
        ["pgrep", "-f", "-P", str(proc.pid), "llmos_runtime.train"], capture_output=True, text=True
    )
    pids = [int(p) for p in workers.stdout.split()] or [proc.pid]
    os.kill(pids[-1], signal.SIGKILL)  # one worker dies; torchrun tears the group down
    proc.wait(60)
    assert proc.returncode != 0
    assert not (cut / "version").exists()

    resumed = subprocess.run(torchrun(2, train_args(prepared, cut, 30, *settings)), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    start = events(resumed.stdout, "resumed")[0]["step"]
    assert start in (10, 20)
    progress = events(resumed.stdout, "progress")
    assert progress[0]["step"] == start + 5
    assert progress[-1]["loss"] == pytest.approx(final, abs=1e-4)


class Smuggled:
    """Stand-in for a payload a pickle can carry: code that runs on load."""


def test_a_checkpoint_that_carries_objects_is_not_loaded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: checkpoints loaded with weights_only=False would run pickled code."""
    from llmos_runtime import checkpoint

    saved = checkpoint.save(tmp_path, 10, {"model": {"w": torch.zeros(2)}, "step": 10, "rng": torch.get_rng_state()}, 2)
    assert checkpoint.load_newest(tmp_path) is not None  # tensors and numbers load
    checkpoint.save(tmp_path, 20, {"model": {}, "step": 20, "extra": Smuggled()}, 2)
    found = checkpoint.load_newest(tmp_path)
    assert found is not None and found[0] == saved  # the one with an object is skipped
    assert "skipping checkpoint" in capsys.readouterr().err


def test_corrupt_newest_checkpoint_is_skipped(prepared: Path, tmp_path: Path) -> None:
    run_tool("llmos-train", *train_args(prepared, tmp_path, 20))
    newest = tmp_path / "ckpt" / "step-00000020" / "state.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated
    result = run_tool("llmos-train", *train_args(prepared, tmp_path, 30))
    assert "skipping checkpoint" in result.stderr and "step-00000020" in result.stderr
    assert events(result.stdout, "resumed")[0]["step"] == 10


def test_export_loads_in_transformers_with_equal_logits(tiny_version: Path) -> None:
    from transformers import LlamaForCausalLM

    ours = load_model(tiny_version).eval()
    theirs = LlamaForCausalLM.from_pretrained(tiny_version, dtype=torch.float32).eval()
    ids = torch.randint(0, ours.config.vocab_size, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ours(ids) - theirs(ids).logits).abs().max().item()
    assert diff < 1e-4
    tokenizer = load_tokenizer(tiny_version)
    text = "To be, or not to be: that is the question.\n"
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_fine_tuning_starts_from_a_version(prepared: Path, tiny_version: Path, tmp_path: Path) -> None:
    result = run_tool("llmos-train", *train_args(prepared, tmp_path, 10), "--init-from", tiny_version)
    first = events(result.stdout, "progress")[0]["loss"]
    scratch = run_tool("llmos-train", *train_args(prepared, tmp_path / "scratch", 10))
    assert first < events(scratch.stdout, "progress")[0]["loss"] - 0.5  # type: ignore[operator]


def test_evaluation_measures_and_leaves_the_verdict_to_the_operator(
    prepared: Path, tiny_version: Path, tmp_path: Path
) -> None:
    run_tool(
        "llmos-eval",
        "--version",
        tiny_version,
        "--data",
        prepared,
        "--metrics-file",
        tmp_path / "m.json",
        "--result-file",
        tmp_path / "term",
        "--samples",
        "1",
    )
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert 1.0 < metrics["metrics"]["bitsPerByte"] < 7.9 and len(metrics["samples"]) == 1
    assert "passed" not in metrics  # the runtime measures; the gate is judged by the operator
    result = EvaluationResult.decode((tmp_path / "term").read_text())
    assert result.metrics == metrics["metrics"] and result.step == 60
    lineage = json.loads((tiny_version / "llmos.json").read_text())
    assert lineage["metrics"] == metrics["metrics"]


@pytest.mark.parametrize(
    ("tool", "args", "message"),
    [
        ("llmos-prepare", ["--data", "/nonexistent.txt", "--out", "{tmp}"], "--data /nonexistent.txt: no such file"),
        ("llmos-prepare", ["--data", "{corpus}", "--sha256", "0" * 64, "--out", "{tmp}"], "--sha256: "),
        (
            "llmos-prepare",
            ["--data", "{corpus}", "--vocab-size", "100", "--out", "{tmp}"],
            "--vocab-size 100: must be at least",
        ),
        ("llmos-prepare", ["--data", "https://example.invalid/x.txt", "--out", "{tmp}"], "needs --sha256"),
        ("llmos-train", ["--sequence-length", "512"], "--sequence-length 512 exceeds the model's context length 256"),
        ("llmos-train", ["--nodes", "2"], "WORLD_SIZE=1"),
        ("llmos-train", ["--batch-size", "6", "--gradient-accumulation", "4"], "--batch-size 6 must be a multiple"),
        ("llmos-train", ["--num-heads", "3"], "hiddenSize must be a multiple of numHeads"),
        ("llmos-train", ["--warmup-steps", "10"], "warmupSteps must be smaller than steps"),
        ("llmos-train", ["--data", "{tmp}"], "run llmos-prepare first"),
        ("llmos-eval", ["--max-batches", "x"], "--max-batches: invalid int value"),
    ],
)
def test_bad_input_is_named(
    tool: str, args: list[str], message: str, prepared: Path, corpus: Path, tmp_path: Path
) -> None:
    fill = {"{tmp}": str(tmp_path), "{corpus}": str(corpus)}
    args = [fill.get(a, a) for a in args]
    if tool == "llmos-train":
        args = train_args(prepared, tmp_path, 10) + args
    if tool == "llmos-eval":
        args = ["--version", str(tmp_path), "--data", str(prepared), *args]
    result = run_tool(tool, *args, check=False)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_corpus_smaller_than_one_batch(tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_text("to be or not to be\n" * 10)
    run_tool("llmos-prepare", "--data", small, "--out", tmp_path / "data", "--vocab-size", "300")
    result = run_tool(
        "llmos-train", *train_args(tmp_path / "data", tmp_path, 10), "--sequence-length", "200", check=False
    )
    assert result.returncode == 2
    assert "smaller than one batch row" in result.stderr
