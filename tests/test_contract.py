"""The operator/runtime contract: every command line the operator renders is accepted by the
runtime entrypoint it names."""

from __future__ import annotations

from pathlib import Path

import pytest
from llmos.api.language_model import LanguageModel
from llmos.api.model_endpoint import ModelEndpoint
from llmos.api.training_job import TrainingJob
from llmos.commands import JobPaths, Launcher, eval_command, prepare_command, serve_command, train_command
from llmos.validation import load_manifests
from llmos_runtime import evaluate, prepare, train
from llmos_runtime.serve import cli as serve_cli

from tests.conftest import REPO

PATHS = JobPaths(
    dataset="/data/input.txt",
    data_dir="/models/data/j",
    checkpoint_dir="/models/checkpoints/j",
    version_dir="/models/versions/j",
    metrics_file="/models/jobs/j/metrics.json",
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
def test_training_commands_parse(example: dict[str, object], launcher: Launcher) -> None:
    job, model = example["TrainingJob"], example["LanguageModel"]
    assert isinstance(job, TrainingJob) and isinstance(model, LanguageModel)
    prep = prepare.parse_args(prepare_command(job, model, PATHS)[1:])
    assert prep.sha256 == job.spec.dataset.sha256 and prep.vocab_size == 2048
    cmd = train_command(job, model, PATHS, launcher)
    args = train.parse_args(torchrun_script_args(cmd))
    assert args.steps == job.spec.hyperparameters.steps
    assert args.nodes * args.procs_per_node == launcher.nodes * launcher.procs_per_node
    assert args.hidden_size == 256 and args.tie_embeddings is True
    assert f"--nproc-per-node={launcher.procs_per_node}" in cmd
    ev = evaluate.parse_args(eval_command(job, PATHS)[1:])
    assert ev.gate == ["bitsPerByte <= 2.5"]
    assert [evaluate.parse_gate(g) for g in ev.gate] == [("bitsPerByte", "<=", 2.5)]


def test_fine_tuning_command_parses(example: dict[str, object]) -> None:
    job, model = example["TrainingJob"], example["LanguageModel"]
    assert isinstance(job, TrainingJob) and isinstance(model, LanguageModel)
    paths = JobPaths(**{**PATHS.__dict__, "init_from": "/models/base", "tokenizer": "/models/base/tokenizer.json"})
    args = train.parse_args(torchrun_script_args(train_command(job, model, paths, Launcher(1, 1))))
    assert args.init_from == Path("/models/base")
    assert prepare.parse_args(prepare_command(job, model, paths)[1:]).tokenizer == Path("/models/base/tokenizer.json")


def test_serve_command_parses(example: dict[str, object]) -> None:
    endpoint = example["ModelEndpoint"]
    assert isinstance(endpoint, ModelEndpoint)
    cmd = serve_command(endpoint, "/models/versions/j", api_key_file="/secrets/api-keys")
    args = serve_cli.parse_args(cmd[1:])
    assert args.model == Path("/models/versions/j") and args.port == 8000
    assert args.max_running == 16 and args.max_tokens == 256 and args.served_model_name == "shakespeare"
