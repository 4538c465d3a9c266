"""The runtime command lines, rendered from the API types.

Pods and local mode run exactly these commands (only the launcher's rendezvous flags and
the paths differ), so this module is the contract between the operator and the runtime
image; tests/test_contract.py feeds its output to the runtime's own argument parsers.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmos_contract import METRICS_FILE, PROGRESS_LOG, RESULT_FILE
from llmos_contract.config import CHECKPOINT_PREFIX, EXPORT_PREFIX, to_flags

from llmos.api.language_model import LanguageModel
from llmos.api.model_endpoint import ModelEndpoint
from llmos.api.training_job import TrainingJob

RENDEZVOUS_PORT = 29500
SERVE_PORT = 8000


@dataclass(frozen=True)
class JobPaths:
    """Where one job's files live, as the processes see them (pod mounts or local dirs)."""

    dataset: str
    data_dir: str
    checkpoint_dir: str
    version_dir: str
    run_dir: str
    tokenizer: str | None = None
    init_from: str | None = None

    @property
    def metrics_file(self) -> str:
        return f"{self.run_dir}/{METRICS_FILE}"

    @property
    def result_file(self) -> str:
        return f"{self.run_dir}/{RESULT_FILE}"

    @property
    def progress_log(self) -> str:
        return f"{self.run_dir}/{PROGRESS_LOG}"


@dataclass(frozen=True)
class Launcher:
    """How torchrun finds its peers: standalone on one machine, c10d rendezvous in a group."""

    nodes: int
    procs_per_node: int
    rendezvous_endpoint: str | None = None
    node_rank: str = "0"

    def argv(self) -> list[str]:
        if self.rendezvous_endpoint is None:
            return ["torchrun", "--standalone", f"--nnodes={self.nodes}", f"--nproc-per-node={self.procs_per_node}"]
        return [
            "torchrun",
            f"--nnodes={self.nodes}",
            f"--nproc-per-node={self.procs_per_node}",
            f"--node-rank={self.node_rank}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={self.rendezvous_endpoint}",
            "--max-restarts=0",
        ]


def prepare_command(job: TrainingJob, model: LanguageModel, paths: JobPaths) -> list[str]:
    cmd = [
        "llmos-prepare",
        "--data",
        paths.dataset,
        "--out",
        paths.data_dir,
        "--validation-fraction",
        str(job.spec.dataset.validation_fraction),
    ]
    if job.spec.dataset.sha256:
        cmd += ["--sha256", job.spec.dataset.sha256]
    if paths.tokenizer:
        cmd += ["--tokenizer", paths.tokenizer]
    else:
        cmd += ["--vocab-size", str(model.spec.tokenizer.vocab_size)]
    return cmd


def train_command(job: TrainingJob, model: LanguageModel, paths: JobPaths, launcher: Launcher) -> list[str]:
    """Hyperparameters, checkpointing and architecture become flags by their field names
    (`batchSize` → `--batch-size`): the runtime's parser is derived from the same types."""
    cmd = [
        *launcher.argv(),
        "-m",
        "llmos_runtime.train",
        "--data",
        paths.data_dir,
        "--checkpoint-dir",
        paths.checkpoint_dir,
        "--version-dir",
        paths.version_dir,
        "--job-name",
        job.metadata.name,
        "--nodes",
        str(launcher.nodes),
        "--procs-per-node",
        str(launcher.procs_per_node),
        "--device",
        "cuda" if job.spec.resources.gpus_per_node else "cpu",
        *to_flags(job.spec.hyperparameters),
        *to_flags(job.spec.checkpoint, CHECKPOINT_PREFIX),
        *to_flags(job.spec.export, EXPORT_PREFIX),
    ]
    if paths.init_from:
        cmd += ["--init-from", paths.init_from]
    elif model.spec.architecture is not None:
        cmd += to_flags(model.spec.architecture)
    return cmd


def eval_command(job: TrainingJob, paths: JobPaths, result_file: str) -> list[str]:
    """The runtime measures; the operator judges the gate (no gate on this line)."""
    ev = job.spec.evaluation
    return [
        "llmos-eval",
        "--version",
        paths.version_dir,
        "--data",
        paths.data_dir,
        "--metrics-file",
        paths.metrics_file,
        "--result-file",
        result_file,
        "--max-batches",
        str(ev.max_batches),
        "--samples",
        str(ev.samples),
        "--sequence-length",
        str(job.spec.hyperparameters.sequence_length),
        "--precision",
        job.spec.hyperparameters.precision,
    ]


def serve_command(
    endpoint: ModelEndpoint,
    model_dir: str,
    host: str = "0.0.0.0",
    port: int = SERVE_PORT,
    api_key_file: str | None = None,
) -> list[str]:
    spec = endpoint.spec
    cmd = [
        "llmos-serve",
        "--model",
        model_dir,
        "--host",
        host,
        "--port",
        str(port),
        "--served-model-name",
        spec.served_model_name or spec.model_ref.name,
        "--quantization",
        spec.quantization,
        *to_flags(spec.limits),
    ]
    if api_key_file:
        cmd += ["--api-key-file", api_key_file]
    return cmd
