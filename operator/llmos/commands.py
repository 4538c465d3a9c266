"""The runtime command lines, rendered from the API types.

Pods and local mode run exactly these commands (only the launcher's rendezvous flags and
the paths differ), so this module is the contract between the operator and the runtime
image; tests/test_contract.py feeds its output to the runtime's own argument parsers.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    metrics_file: str
    tokenizer: str | None = None
    init_from: str | None = None


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
    hp = job.spec.hyperparameters
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
        "--steps",
        str(hp.steps),
        "--batch-size",
        str(hp.batch_size),
        "--gradient-accumulation",
        str(hp.gradient_accumulation),
        "--sequence-length",
        str(hp.sequence_length),
        "--learning-rate",
        str(hp.learning_rate),
        "--min-learning-rate",
        str(hp.min_learning_rate),
        "--warmup-steps",
        str(hp.warmup_steps),
        "--weight-decay",
        str(hp.weight_decay),
        "--grad-clip",
        str(hp.grad_clip),
        "--seed",
        str(hp.seed),
        "--log-every-steps",
        str(hp.log_every_steps),
        "--checkpoint-every-steps",
        str(job.spec.checkpoint.every_steps),
        "--checkpoint-keep",
        str(job.spec.checkpoint.keep),
        "--device",
        "cuda" if job.spec.resources.gpus_per_node else "cpu",
    ]
    arch = model.spec.architecture
    if paths.init_from:
        cmd += ["--init-from", paths.init_from]
    elif arch is not None:
        cmd += [
            "--hidden-size",
            str(arch.hidden_size),
            "--num-layers",
            str(arch.num_layers),
            "--num-heads",
            str(arch.num_heads),
            "--context-length",
            str(arch.context_length),
            "--rope-theta",
            str(arch.rope_theta),
            "--rms-norm-eps",
            str(arch.rms_norm_eps),
            "--tie-embeddings" if arch.tie_embeddings else "--no-tie-embeddings",
        ]
        if arch.num_kv_heads:
            cmd += ["--num-kv-heads", str(arch.num_kv_heads)]
        if arch.intermediate_size:
            cmd += ["--intermediate-size", str(arch.intermediate_size)]
    return cmd


def eval_command(job: TrainingJob, paths: JobPaths) -> list[str]:
    ev = job.spec.evaluation
    cmd = [
        "llmos-eval",
        "--version",
        paths.version_dir,
        "--data",
        paths.data_dir,
        "--metrics-file",
        paths.metrics_file,
        "--max-batches",
        str(ev.max_batches),
        "--samples",
        str(ev.samples),
        "--sequence-length",
        str(job.spec.hyperparameters.sequence_length),
    ]
    for gate in ev.gate:
        cmd += ["--gate", str(gate)]
    return cmd


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
        "--max-running",
        str(spec.limits.max_concurrent_requests),
        "--max-waiting",
        str(spec.limits.max_queue),
        "--max-tokens",
        str(spec.limits.max_tokens),
    ]
    if api_key_file:
        cmd += ["--api-key-file", api_key_file]
    return cmd
