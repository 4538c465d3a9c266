"""The executor of local mode: a training step is a local process (torchrun with all ranks
on this machine), a server group is one llmos-serve on 127.0.0.1, storage is directories
under the state directory and a Secret is a file of keys there."""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from llmos_contract import EXIT_USAGE
from llmos_contract.events import AnyEvent, CheckpointEvent, ProgressEvent, UsageErrorEvent

from llmos import conditions as c
from llmos.api.language_model import LanguageModel, ModelVersion
from llmos.api.model_endpoint import ModelEndpoint
from llmos.api.training_job import TrainingJob
from llmos.commands import JobPaths, Launcher, eval_command, prepare_command, serve_command, train_command
from llmos.controller.index import Key
from llmos.local.processes import LocalProcess, tail
from llmos.local.storage import job_paths, local_path, volumes
from llmos.local.store import NAMESPACE, FileStore, spec_hash
from llmos.reconcile.seams import Problem, ServerState, Step, StepReport, StepState
from llmos.storage import UnsupportedStorage, resolve

READY_POLL = 0.2


def local_launcher(job: TrainingJob, cores: int) -> Launcher:
    """All of the job's ranks on this machine, capped to its cores (and to a count that
    divides the global batch, so the maths stays the job's)."""
    hp, res = job.spec.hyperparameters, job.spec.resources
    procs = max(1, min(res.nodes * res.procs_per_node, cores))
    while hp.batch_size % (procs * hp.gradient_accumulation):
        procs -= 1
    return Launcher(nodes=1, procs_per_node=procs)


@dataclass
class StepProcess:
    process: LocalProcess
    paths: JobPaths
    progress: ProgressEvent | None = None
    checkpoint: CheckpointEvent | None = None
    usage_error: str | None = None


@dataclass
class ServerProcess:
    process: LocalProcess
    version: str
    spec: str
    url: str
    api_key: str | None
    ready: threading.Event = field(default_factory=threading.Event)


class LocalExecutor:
    def __init__(
        self,
        store: FileStore,
        ports: dict[str, int],
        notify: Callable[[Key], None],
        on_event: Callable[[str, AnyEvent], None] = lambda *_: None,
        cores: int | None = None,
    ) -> None:
        self.store, self.ports, self.notify, self.on_event = store, ports, notify, on_event
        self.cores = cores or os.cpu_count() or 1
        self.steps: dict[tuple[str, Step, int], StepProcess] = {}
        self.servers: dict[str, ServerProcess] = {}
        self.crashed: dict[str, str] = {}

    # Training steps.

    def start(self, job: TrainingJob, model: LanguageModel, step: Step, attempt: int) -> None:
        key = (job.metadata.name, step, attempt)
        if key in self.steps:
            return
        paths = job_paths(job, model, self.store)
        Path(paths.run_dir).mkdir(parents=True, exist_ok=True)
        if step == "prepare":
            cmd = prepare_command(job, model, paths)
        elif step == "train":
            cmd = train_command(job, model, paths, local_launcher(job, self.cores))
        else:
            Path(paths.result_file).unlink(missing_ok=True)
            cmd = eval_command(job, paths, paths.result_file)
        owner = Key("TrainingJob", NAMESPACE, job.metadata.name)
        holder: list[StepProcess] = []

        def on_event(event: AnyEvent) -> None:
            state = holder[0]
            if isinstance(event, ProgressEvent):
                state.progress = event
                with open(state.paths.progress_log, "a") as history:
                    history.write(event.model_dump_json() + "\n")
            elif isinstance(event, CheckpointEvent):
                state.checkpoint = event
            elif isinstance(event, UsageErrorEvent):
                state.usage_error = event.message
            self.on_event(job.metadata.name, event)

        process = LocalProcess(
            cmd, self.store.log_path("TrainingJob", job.metadata.name), on_event, lambda: self.notify(owner)
        )
        holder.append(StepProcess(process, paths))
        self.steps[key] = holder[0]

    def observe(self, job: TrainingJob, step: Step, attempt: int) -> StepState:
        state = self.steps.get((job.metadata.name, step, attempt))
        if state is None:
            return StepState(False)
        code = state.process.exit_code
        if code is None:
            return StepState(True)
        if code == 0:
            message = ""
            if step == "evaluate" and Path(state.paths.result_file).is_file():
                message = Path(state.paths.result_file).read_text()
            return StepState(True, succeeded=True, exit_code=0, message=message)
        if state.usage_error is not None:
            return StepState(True, failed=True, exit_code=EXIT_USAGE, message=state.usage_error)
        return StepState(True, failed=True, exit_code=code, message=tail(state.process.log, 8))

    def report(self, job: TrainingJob, attempt: int) -> StepReport:
        state = self.steps.get((job.metadata.name, "train", attempt))
        return StepReport() if state is None else StepReport(state.progress, state.checkpoint)

    def stop(self, job: TrainingJob, step: Step, attempt: int) -> None:
        state = self.steps.get((job.metadata.name, step, attempt))
        if state is not None:
            state.process.stop()

    def gone(self, job: TrainingJob, step: Step, attempt: int) -> bool:
        state = self.steps.get((job.metadata.name, step, attempt))
        return state is None or state.process.finished.is_set()

    # Server groups.

    def serve(self, endpoint: ModelEndpoint, version: ModelVersion) -> ServerState:
        name = endpoint.metadata.name
        wanted = spec_hash(endpoint)
        server = self.servers.get(name)
        if server is not None and (server.version != version.name or server.spec != wanted):
            server.process.stop()  # local mode rolls by replacing the one replica
            server.process.wait(30)
            server = None
        if server is not None and server.process.finished.is_set() and not server.ready.is_set():
            self.crashed[name] = tail(server.process.log)
        if server is None:
            server = self._start_server(endpoint, version, wanted)
            self.servers[name] = server
        ready = server.ready.is_set() and not server.process.finished.is_set()
        return ServerState(1, int(ready), version.name, ready, server.url)

    def _start_server(self, endpoint: ModelEndpoint, version: ModelVersion, spec: str) -> ServerProcess:
        name = endpoint.metadata.name
        port = self.ports[name]
        key_file = self.api_key_file(endpoint)
        cmd = serve_command(
            endpoint, str(local_path(version.uri, self.store)), "127.0.0.1", port, str(key_file) if key_file else None
        )
        owner = Key("ModelEndpoint", NAMESPACE, name)
        process = LocalProcess(
            cmd, self.store.log_path("ModelEndpoint", name), lambda e: None, lambda: self.notify(owner)
        )
        key = key_file.read_text().split()[0] if key_file else None
        server = ServerProcess(process, version.name, spec, f"http://127.0.0.1:{port}/v1", key)
        threading.Thread(target=self._wait_ready, args=(server, port, owner), daemon=True).start()
        return server

    def _wait_ready(self, server: ServerProcess, port: int, owner: Key) -> None:
        while not server.process.finished.is_set():
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    server.ready.set()
                    self.notify(owner)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(READY_POLL)

    def api_key_file(self, endpoint: ModelEndpoint) -> Path | None:
        """Local stand-in for the Secret: .llmos/secrets/<name>/<key>, made with a random key."""
        if endpoint.spec.auth is None:
            return None
        ref = endpoint.spec.auth.api_key_secret_ref
        path = self.store.root / "secrets" / ref.name / ref.key
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"sk-local-{secrets.token_urlsafe(24)}\n")
            path.chmod(0o600)
        return path

    # The environment.

    def storage_problem(self, namespace: str, uris: list[str]) -> Problem | None:
        for uri in uris:
            try:
                resolve(uri, volumes(self.store), allow_files=True)
            except UnsupportedStorage as exc:
                return Problem(c.REASON_UNSUPPORTED_STORAGE, str(exc))
        return None

    def secret_problem(self, namespace: str, name: str, key: str) -> Problem | None:
        return None  # api_key_file makes the stand-in when the server starts

    def shutdown(self) -> None:
        for state in self.steps.values():
            state.process.stop()
        for server in self.servers.values():
            server.process.stop()
        for state in self.steps.values():
            state.process.wait(30)
        for server in self.servers.values():
            server.process.wait(30)
