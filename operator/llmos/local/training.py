"""A TrainingJob, locally: prepare → torchrun → evaluate → gate → version, as the pods do it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from llmos import conditions as c
from llmos.api.base import set_condition
from llmos.api.language_model import Evaluation, LanguageModel
from llmos.api.training_job import TERMINAL_PHASES, Phase, TrainingJob, TrainingJobStatus
from llmos.commands import JobPaths, Launcher, eval_command, prepare_command, train_command
from llmos.lifecycle import complete_training
from llmos.local.processes import Event, run_logged, tail
from llmos.local.state import StateStore, now
from llmos.local.storage import job_paths, progress_log
from llmos.progress import format_progress

EXIT_GATE_FAILED = 3


class JobFailed(Exception):
    pass


def local_launcher(job: TrainingJob, cores: int) -> Launcher:
    """All of the job's ranks on this machine, capped to its cores (and to a count that
    divides the global batch, so the maths stays the job's)."""
    hp, res = job.spec.hyperparameters, job.spec.resources
    procs = max(1, min(res.nodes * res.procs_per_node, cores))
    while hp.batch_size % (procs * hp.gradient_accumulation):
        procs -= 1
    return Launcher(nodes=1, procs_per_node=procs)


class JobRunner:
    def __init__(self, store: StateStore, console: Console, cores: int | None = None) -> None:
        self.store, self.console = store, console
        self.cores = cores or os.cpu_count() or 1

    def run(self, job: TrainingJob) -> TrainingJob:
        name = job.metadata.name
        model = self.store.load(LanguageModel, job.spec.model_ref.name)
        if model is None:
            raise JobFailed(
                f"TrainingJob {name}: spec.modelRef.name: "
                f"LanguageModel {job.spec.model_ref.name!r} is not in the manifests"
            )
        status = job.status
        if status.observed_generation == job.metadata.generation and status.phase in TERMINAL_PHASES:
            self.console.print(f"[dim]trainingjob/{name}: {status.phase} (unchanged spec, not re-run)[/]")
            return job
        paths = job_paths(job, model, self.store)
        if status.observed_generation not in (None, job.metadata.generation):
            # A changed spec is a new run: nothing of the old one may be resumed.
            for folder in (paths.checkpoint_dir, paths.data_dir):
                shutil.rmtree(folder, ignore_errors=True)
            job.status = status = TrainingJobStatus()
        status.observed_generation = job.metadata.generation
        status.start_time = status.start_time or now()
        log = self.store.log_path(job)
        try:
            self._prepare(job, model, paths, log)
            self._train(job, model, paths, log)
            self._evaluate_and_record(job, model, paths, log)
        except JobFailed as exc:
            self._set_phase(job, "Failed", str(exc))
            status.conditions = set_condition(status.conditions, c.FAILED, True, c.REASON_STEP_FAILED, str(exc), now())
            status.completion_time = now()
            self.store.save(job)
            self.console.print(f"[red]trainingjob/{name}: Failed: {exc}[/]")
        except KeyboardInterrupt:
            status.message = "interrupted; run again to resume from the last checkpoint"
            self.store.save(job)
            raise
        return job

    def _set_phase(self, job: TrainingJob, phase: Phase, message: str) -> None:
        job.status.phase, job.status.message = phase, message
        self.store.save(job)

    def _prepare(self, job: TrainingJob, model: LanguageModel, paths: JobPaths, log: Path) -> None:
        self._set_phase(job, "Preparing", "tokenizer and token shards")
        with self.console.status(f"trainingjob/{job.metadata.name}: preparing data"):
            rc = run_logged(prepare_command(job, model, paths), log, lambda e: None)
        if rc != 0:
            raise JobFailed(f"data preparation exited {rc}:\n{tail(log)}")

    def _train(self, job: TrainingJob, model: LanguageModel, paths: JobPaths, log: Path) -> None:
        launcher = local_launcher(job, self.cores)
        total = job.spec.hyperparameters.steps
        self._set_phase(job, "Training", f"{launcher.procs_per_node} local processes")
        history = progress_log(paths)
        history.parent.mkdir(parents=True, exist_ok=True)
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} tok/s"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task(
                f"train {job.metadata.name}", total=total, loss="–", rate="–", completed=job.status.progress.step
            )

            def on_event(event: Event) -> None:
                kind = event.get("event")
                if kind == "progress":
                    with history.open("a") as f:
                        f.write(json.dumps(event) + "\n")
                    job.status.progress = format_progress(event)
                    self.store.save(job)
                    bar.update(
                        task,
                        completed=event["step"],
                        loss=f"{event['loss']:.3f}",
                        rate=f"{event['tokens_per_second']:.0f}",
                    )
                elif kind == "checkpoint":
                    job.status.latest_checkpoint = event["path"]
                    self.store.save(job)
                elif kind == "resumed":
                    bar.update(task, completed=event["step"])
                    bar.console.print(f"resumed from {event['checkpoint']} at step {event['step']}")

            while True:
                rc = run_logged(train_command(job, model, paths, launcher), log, on_event)
                if rc == 0:
                    return
                if job.status.restarts >= job.spec.max_restarts:
                    raise JobFailed(f"training exited {rc} after {job.status.restarts} restarts:\n{tail(log)}")
                job.status.restarts += 1  # counted before acting, as the operator does
                restart = f"restart {job.status.restarts} of {job.spec.max_restarts}"
                job.status.message = f"training exited {rc}; {restart} from the last checkpoint"
                self.store.save(job)
                bar.console.print(f"[yellow]{job.status.message}[/]")

    def _evaluate_and_record(self, job: TrainingJob, model: LanguageModel, paths: JobPaths, log: Path) -> None:
        self._set_phase(job, "Evaluating", "validation loss, bits per byte and gate")
        with self.console.status(f"trainingjob/{job.metadata.name}: evaluating"):
            rc = run_logged(eval_command(job, paths), log, lambda e: None)
        if rc not in (0, EXIT_GATE_FAILED):
            raise JobFailed(f"evaluation exited {rc}:\n{tail(log)}")
        result = json.loads(Path(paths.metrics_file).read_text())
        evaluation = Evaluation(metrics=result["metrics"], passed=result["passed"], reason=result["reason"])
        lineage = json.loads((Path(paths.version_dir) / "llmos.json").read_text())
        version = complete_training(
            job.status, job.metadata.name, model, evaluation, lineage["step"], lineage["tokens_seen"], now()
        )
        self.store.save(model)
        self.store.save(job)
        metrics = ", ".join(f"{k} {v:g}" for k, v in evaluation.metrics.items())
        color = "green" if evaluation.passed else "yellow"
        self.console.print(
            f"[{color}]trainingjob/{job.metadata.name}: {model.metadata.name}@{version.name} "
            f"({metrics}): {evaluation.reason}[/]"
        )
        for sample in result.get("samples", [])[:1]:
            self.console.print(f"[dim]sample:[/] {sample.strip()[:300]}")
