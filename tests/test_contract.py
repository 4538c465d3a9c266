"""The operator/runtime contract: every command line the operator renders is accepted by the
runtime entrypoint it names, and the settings come back equal to the CRD fields they were
rendered from (one declaration: llmos_contract.config)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llmos.api.language_model import LanguageModel
from llmos.api.model_endpoint import ModelEndpoint
from llmos.api.training_job import TrainingJob
from llmos.commands import JobPaths, Launcher, eval_command, prepare_command, serve_command, train_command
from llmos.validation import load_manifests
from llmos_contract.config import (
    CHECKPOINT_PREFIX,
    EXPORT_PREFIX,
    Architecture,
    Checkpointing,
    Export,
    Hyperparameters,
    Limits,
    from_arguments,
)
from llmos_contract.events import (
    TERMINATION_MESSAGE_BYTES,
    EvaluationResult,
    ProgressEvent,
    UsageErrorEvent,
    decode_event,
    encode_event,
)
from llmos_runtime import evaluate, prepare, train
from llmos_runtime.errors import UsageError
from llmos_runtime.serve import cli as serve_cli

from tests.conftest import REPO

PATHS = JobPaths(
    dataset="/data/input.txt",
    data_dir="/models/data/j",
    checkpoint_dir="/models/checkpoints/v1",
    version_dir="/models/versions/v1",
    run_dir="/models/runs/v1",
)


@pytest.fixture(scope="module")
def example() -> dict[str, object]:
    return {type(m.obj).__name__: m.obj for m in load_manifests(REPO / "examples" / "shakespeare")}


def torchrun_script_args(cmd: list[str]) -> list[str]:
    assert cmd[0] == "torchrun"
    module_at = cmd.index("-m")
    assert cmd[module_at + 1] == "llmos_runtime.train"
    return cmd[module_at + 2 :]


@pytest.mark.parametrize("launcher", [Launcher(1, 2), Launcher(4, 8, "job-0.job:29500", "$(JOB_COMPLETION_INDEX)")])
def test_training_commands_parse_back_to_the_spec(example: dict[str, object], launcher: Launcher) -> None:
    job, model = example["TrainingJob"], example["LanguageModel"]
    assert isinstance(job, TrainingJob) and isinstance(model, LanguageModel)
    prep = prepare.parse_args(prepare_command(job, model, PATHS)[1:])
    assert prep.sha256 == job.spec.dataset.sha256 and prep.vocab_size == 2048
    cmd = train_command(job, model, PATHS, launcher)
    args = train.parse_args(torchrun_script_args(cmd))
    assert from_arguments(Hyperparameters, args) == job.spec.hyperparameters
    assert from_arguments(Checkpointing, args, CHECKPOINT_PREFIX) == job.spec.checkpoint
    assert from_arguments(Architecture, args) == model.spec.architecture
    assert args.nodes * args.procs_per_node == launcher.nodes * launcher.procs_per_node
    assert f"--nproc-per-node={launcher.procs_per_node}" in cmd
    ev = evaluate.parse_args(eval_command(job, PATHS, "/dev/termination-log")[1:])
    assert ev.result_file == Path("/dev/termination-log") and not any("gate" in a for a in cmd)


@pytest.mark.parametrize("precision", ["auto", "float32", "bfloat16"])
def test_precision_reaches_training_and_evaluation(example: dict[str, object], precision: str) -> None:
    """hyperparameters.precision is one setting: training and evaluation compute alike."""
    job, model = example["TrainingJob"], example["LanguageModel"]
    assert isinstance(job, TrainingJob) and isinstance(model, LanguageModel)
    job = job.model_copy(deep=True)
    job.spec.hyperparameters.precision = precision  # type: ignore[assignment]
    args = train.parse_args(torchrun_script_args(train_command(job, model, PATHS, Launcher(1, 2))))
    assert args.precision == precision
    assert evaluate.parse_args(eval_command(job, PATHS, "/r")[1:]).precision == precision
    with pytest.raises(SystemExit):
        train.parse_args(
            [*torchrun_script_args(train_command(job, model, PATHS, Launcher(1, 2))), "--precision", "fp8"]
        )


@pytest.mark.parametrize(
    "export",
    [
        Export(),
        Export(dtype="float32", quantization=["int8"]),
        Export(dtype="bfloat16", quantization=["int8"], gguf=["q8_0", "f32"]),
    ],
)
def test_export_reaches_training(example: dict[str, object], export: Export) -> None:
    """spec.export (lists included) parses back to itself on the trainer's command line."""
    job, model = example["TrainingJob"], example["LanguageModel"]
    assert isinstance(job, TrainingJob) and isinstance(model, LanguageModel)
    job = job.model_copy(deep=True)
    job.spec.export = export
    args = train.parse_args(torchrun_script_args(train_command(job, model, PATHS, Launcher(1, 1))))
    assert args.export == export == from_arguments(Export, args, EXPORT_PREFIX)


@pytest.mark.parametrize("quantization", ["none", "int8"])
def test_endpoint_quantization_reaches_the_server(example: dict[str, object], quantization: str) -> None:
    endpoint = example["ModelEndpoint"]
    assert isinstance(endpoint, ModelEndpoint)
    endpoint = endpoint.model_copy(deep=True)
    endpoint.spec.quantization = quantization  # type: ignore[assignment]
    assert serve_cli.parse_args(serve_command(endpoint, "/m")[1:]).quantization == quantization


def test_flags_use_the_crd_words(example: dict[str, object]) -> None:
    job = example["TrainingJob"]
    assert isinstance(job, TrainingJob)
    cmd = train_command(job, example["LanguageModel"], PATHS, Launcher(1, 1))  # type: ignore[arg-type]
    assert "--gradient-accumulation" in cmd and "--checkpoint-every-steps" in cmd and "--log-every-steps" in cmd
    endpoint = example["ModelEndpoint"]
    assert isinstance(endpoint, ModelEndpoint)
    serve = serve_command(endpoint, "/m")
    assert "--max-concurrent-requests" in serve and "--max-queue" in serve


def test_runtime_rejects_what_the_crd_rejects() -> None:
    """The runtime's bounds are the CRD's: the message names the flag."""
    base = ["--data", "d", "--checkpoint-dir", "c", "--version-dir", "v", "--steps", "10"]
    with pytest.raises(UsageError, match="warmupSteps must be smaller than steps"):
        train.parse_args([*base, "--warmup-steps", "20"])
    with pytest.raises(UsageError, match="--batch-size"):
        train.parse_args([*base, "--batch-size", "0"])


def test_fine_tuning_command_parses(example: dict[str, object]) -> None:
    job, model = example["TrainingJob"], example["LanguageModel"]
    assert isinstance(job, TrainingJob) and isinstance(model, LanguageModel)
    paths = JobPaths(**{**PATHS.__dict__, "init_from": "/models/base", "tokenizer": "/models/base/tokenizer.json"})
    args = train.parse_args(torchrun_script_args(train_command(job, model, paths, Launcher(1, 1))))
    assert args.init_from == Path("/models/base") and args.hidden_size is None
    assert prepare.parse_args(prepare_command(job, model, paths)[1:]).tokenizer == Path("/models/base/tokenizer.json")


def test_serve_command_parses_back_to_the_limits(example: dict[str, object], tmp_path: Path) -> None:
    endpoint = example["ModelEndpoint"]
    assert isinstance(endpoint, ModelEndpoint)
    cmd = serve_command(endpoint, "/models/versions/v1", api_key_file="/secrets/api-keys")
    args = serve_cli.parse_args(cmd[1:])
    assert args.model == Path("/models/versions/v1") and args.port == 8000
    assert Limits(**{k: getattr(args, k) for k in Limits.model_fields}) == endpoint.spec.limits
    assert args.served_model_name == "shakespeare"


def test_an_empty_key_file_refuses_to_start(tiny_version: Path, tmp_path: Path) -> None:
    """Regression: a key file without keys ran the server with no authentication."""
    empty = tmp_path / "api-keys"
    empty.write_text("\n  \n")
    with pytest.raises(UsageError, match="holds no API key"):
        serve_cli.settings_from(serve_cli.parse_args(["--model", str(tiny_version), "--api-key-file", str(empty)]))


def test_evaluation_result_always_fits_a_termination_message() -> None:
    many = {f"m{i:02d}" + "x" * 60: -1.234567890123e-300 for i in range(16)}
    biggest = EvaluationResult(
        metrics=many,
        variants={f"v{j}" + "y" * 62: dict(list(many.items())[:4]) for j in range(2)},
        step=2**62,
        tokens_seen=2**62,
    )
    text = biggest.encode()
    assert len(text.encode()) < TERMINATION_MESSAGE_BYTES
    assert EvaluationResult.decode(text) == biggest
    with pytest.raises(ValueError):
        EvaluationResult(metrics={f"m{i}": 1.0 for i in range(17)}, step=0, tokens_seen=0)
    with pytest.raises(ValueError, match="not an evaluation result"):
        EvaluationResult.decode(text[: len(text) // 2])  # a cut message is refused, never half-read


def test_events_round_trip_through_a_log_line() -> None:
    progress = ProgressEvent(
        step=10, total_steps=20, loss=3.5, lr=1e-3, tokens_per_second=100.0, tokens_seen=80, eta_seconds=5, eta="5s"
    )
    assert decode_event(encode_event(progress)) == progress
    assert decode_event(encode_event(UsageErrorEvent(message="--steps: bad"))) == UsageErrorEvent(
        message="--steps: bad"
    )
    assert decode_event("torchrun: waiting") is None and decode_event('{"event": "progress"}') is None
    assert json.loads(encode_event(progress))["event"] == "progress"
