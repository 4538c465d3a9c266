"""Storage in local mode: pvc://claim/… lives under the state directory; file:// works too."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from llmos.api.language_model import LanguageModel
from llmos.api.training_job import TrainingJob
from llmos.commands import JobPaths
from llmos.local.store import FileStore
from llmos.storage import job_paths as shared_job_paths
from llmos.storage import resolve


def volumes(store: FileStore) -> PurePosixPath:
    return PurePosixPath(store.root.absolute() / "volumes")


def local_path(uri: str, store: FileStore) -> Path:
    return Path(resolve(uri, volumes(store), allow_files=True)).absolute()


def job_paths(job: TrainingJob, model: LanguageModel, store: FileStore) -> JobPaths:
    paths = shared_job_paths(job, model, volumes(store), allow_files=True)
    absolute = {
        k: str(Path(v).absolute()) if v and not v.startswith("https://") else v for k, v in paths.__dict__.items()
    }
    return JobPaths(**absolute)
