"""What storage URIs mean to the processes of a job, in a pod or on this machine.

`pvc://claim/prefix` is `<volumes>/claim/prefix`, where `<volumes>` is where claims are
mounted: `/llmos/volumes` in pods, `.llmos/volumes` in local mode. A job's files live under
its model's storage:

    <storage>/data/<job>/            tokenizer and token shards (llmos-prepare)
    <storage>/checkpoints/<vN>/      resume checkpoints of the run that makes version vN
    <storage>/versions/<vN>/         the exported Hugging Face version vN
    <storage>/runs/<vN>/             metrics.json, result.json, progress.jsonl of that run

Versions are named when their job starts (`LanguageModel.status.allocatedVersions`), so
every directory of a run is named by the version it makes.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from llmos.api.language_model import LanguageModel
from llmos.api.training_job import TrainingJob
from llmos.commands import JobPaths

POD_VOLUMES = PurePosixPath("/llmos/volumes")


class UnsupportedStorage(ValueError):
    pass


def claim_of(uri: str) -> str | None:
    """The PersistentVolumeClaim a pvc:// URI names."""
    scheme, _, rest = uri.partition("://")
    return rest.split("/", 1)[0] if scheme == "pvc" else None


def resolve(uri: str, volumes: PurePosixPath, allow_files: bool) -> str:
    scheme, _, rest = uri.partition("://")
    if scheme == "pvc":
        claim, _, prefix = rest.partition("/")
        return str(volumes / claim / prefix) if prefix else str(volumes / claim)
    if scheme == "file" and allow_files:
        return rest
    if scheme == "https":
        return uri
    where = "in local mode" if allow_files else "in a cluster"
    raise UnsupportedStorage(f"{uri}: {scheme}:// is not available {where}; use pvc://")


def job_paths(job: TrainingJob, model: LanguageModel, volumes: PurePosixPath, allow_files: bool) -> JobPaths:
    """Where the files of the job's run live; the job must have its version name."""
    root = PurePosixPath(resolve(model.spec.storage.uri, volumes, allow_files))
    name = job.metadata.name
    version = job.status.produced_version
    if version is None:
        raise ValueError(f"TrainingJob {name} has no version name yet")
    tokenizer = model.spec.tokenizer.uri
    base = model.spec.base
    if base is not None:
        tokenizer = base.uri.rstrip("/") + "/tokenizer.json"
    return JobPaths(
        dataset=resolve(job.spec.dataset.uri, volumes, allow_files),
        data_dir=str(root / "data" / name),
        checkpoint_dir=str(root / "checkpoints" / version),
        version_dir=str(root / "versions" / version),
        run_dir=str(root / "runs" / version),
        tokenizer=resolve(tokenizer, volumes, allow_files) if tokenizer else None,
        init_from=resolve(base.uri, volumes, allow_files) if base else None,
    )


def version_uri(model: LanguageModel, version: str) -> str:
    """The storage URI of a version's directory."""
    return f"{model.spec.storage.uri.rstrip('/')}/versions/{version}"
