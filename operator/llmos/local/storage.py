"""What storage URIs mean on this machine, and where a job keeps its files under a model."""

from __future__ import annotations

from pathlib import Path

from llmos.api.language_model import LanguageModel
from llmos.api.training_job import TrainingJob
from llmos.commands import JobPaths
from llmos.local.state import StateStore


class LocalStorageError(ValueError):
    pass


def local_path(uri: str, store: StateStore) -> Path:
    """file:///abs or file://rel → that path; pvc://claim/prefix → a folder of the state dir."""
    scheme, _, rest = uri.partition("://")
    if scheme == "file":
        return Path(rest).absolute()
    if scheme == "pvc":
        claim, _, prefix = rest.partition("/")
        return (store.volume(claim) / prefix).absolute()
    raise LocalStorageError(f"{uri}: {scheme}:// storage is not available in local mode; use file:// or pvc://")


def job_paths(job: TrainingJob, model: LanguageModel, store: StateStore) -> JobPaths:
    root = local_path(model.spec.storage.uri, store)
    name = job.metadata.name
    dataset = job.spec.dataset.uri
    if not dataset.startswith("https://"):
        dataset = str(local_path(dataset, store))
    tokenizer = model.spec.tokenizer.uri
    base = model.spec.base
    init_from = str(local_path(base.uri, store)) if base else None
    if base is not None:
        tokenizer = base.uri.rstrip("/") + "/tokenizer.json"
    return JobPaths(
        dataset=dataset,
        data_dir=str(root / "data" / name),
        checkpoint_dir=str(root / "checkpoints" / name),
        version_dir=str(root / "versions" / name),
        metrics_file=str(root / "jobs" / name / "metrics.json"),
        tokenizer=str(local_path(tokenizer, store)) if tokenizer else None,
        init_from=init_from,
    )


def progress_log(paths: JobPaths) -> Path:
    """Every progress event of the job, one JSON object a line (for `llmos report`)."""
    return Path(paths.metrics_file).with_name("progress.jsonl")
