"""`llmos run -f PATH`: the operator's controller, in-process, over files and processes.

The manifests go into the file store as `kubectl apply` would put them into the API; the
same reconcilers as on a cluster then run prepare → torchrun → evaluate → gate → version
and serve the chosen version, with the local executor's processes as the workloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from llmos_contract.events import AnyEvent, ProgressEvent, ResumedEvent
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from llmos import conditions as c
from llmos.api.base import ApiModel, Condition
from llmos.api.model_endpoint import ModelEndpoint
from llmos.api.training_job import TERMINAL_PHASES, TrainingJob
from llmos.controller.core import Controller
from llmos.controller.index import Key
from llmos.controller.loop import ControlLoop
from llmos.lifecycle import ready
from llmos.local.executor import LocalExecutor
from llmos.local.store import NAMESPACE, FileStore
from llmos.reconcile.seams import EventType, ObjectRef
from llmos.reconcile.training import TrainingSettings
from llmos.validation import load_manifests

LOCAL_TRAINING = TrainingSettings(progress_interval=1.0, restart_grace=0.0)
"""Local processes are gone when they exit: no grace needed; progress comes by the second."""
# An endpoint is settled when it serves, or when nothing this run does can make it serve.
WAITS_FOREVER = {
    c.REASON_NO_PASSING_VERSION,
    c.REASON_MODEL_NOT_FOUND,
    c.REASON_VERSION_NOT_FOUND,
    c.REASON_INVALID_SPEC,
    c.REASON_RECONCILE_ERROR,
    c.REASON_STORAGE_NOT_READY,
    c.REASON_UNSUPPORTED_STORAGE,
}


class Display:
    """What people see: one line per event, a progress bar per training job."""

    def __init__(self, console: Console) -> None:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} tok/s"),
            TimeRemainingColumn(),
        )
        self.bars = Progress(*columns, console=console, transient=False)
        self.console = self.bars.console
        self.tasks: dict[str, TaskID] = {}
        self.resumed: set[str] = set()

    def event(self, ref: ObjectRef, type_: EventType, reason: str, message: str) -> None:
        color = "yellow" if type_ == "Warning" else "cyan"
        self.console.print(f"[{color}]{ref.kind.lower()}/{ref.name}[/] {reason}: {message}", highlight=False)

    def step_event(self, job: str, event: AnyEvent) -> None:
        if isinstance(event, ResumedEvent):
            self.console.print(f"trainingjob/{job}: resumed from {event.checkpoint} at step {event.step}")
        if not isinstance(event, ProgressEvent):
            return
        progress = event
        if job not in self.tasks:
            self.tasks[job] = self.bars.add_task(f"train {job}", total=progress.total_steps, loss="–", rate="–")
        precision = f" ({progress.precision})" if progress.precision else ""
        self.bars.update(
            self.tasks[job],
            description=f"train {job}{precision}",
            completed=progress.step,
            loss=f"{progress.loss:.3f}",
            rate=f"{progress.tokens_per_second:.0f}",
        )


def run(path: Path, state_dir: Path, port: int, ask: str | None, serve: bool, console: Console) -> int:
    """Exit status: 0 when every job succeeded (and endpoints served), 1 otherwise."""
    manifests = load_manifests(path)  # raises InvalidManifests before anything runs
    store = FileStore(state_dir)
    objects = [m.obj for m in manifests if serve or not isinstance(m.obj, ModelEndpoint)]
    jobs = [o.metadata.name for o in objects if isinstance(o, TrainingJob)]
    endpoints = [o.metadata.name for o in objects if isinstance(o, ModelEndpoint)]
    for name in jobs:
        stored = store.load(TrainingJob, name)
        if stored is not None and stored.status.phase in TERMINAL_PHASES:
            console.print(f"[dim]trainingjob/{name}: {stored.status.phase} (unchanged spec, not re-run)[/]")
    display = Display(console)
    executor = LocalExecutor(store, {name: port + i for i, name in enumerate(endpoints)}, lambda key: None)
    executor.on_event = display.step_event
    store.on_event = display.event
    loop = ControlLoop(Controller(store, executor, LOCAL_TRAINING))
    serving = threading.Event()
    with display.bars, interrupts():
        try:
            asyncio.run(drive(store, executor, loop, objects, jobs, endpoints, ask, serving, console))
        except KeyboardInterrupt:
            if not serving.is_set():  # stopped mid-run: the next run carries on from here
                executor.shutdown()
                interrupted(store, jobs)
                stopped(store, [name for name in endpoints if name in executor.servers])
                raise
        finally:
            executor.shutdown()
    served = all(name in executor.servers and endpoint_ready(store, name) for name in endpoints)
    stopped(store, [name for name in endpoints if name in executor.servers])
    return 0 if all_succeeded(store, jobs) and served and not executor.crashed else 1


async def drive(
    store: FileStore,
    executor: LocalExecutor,
    loop: ControlLoop,
    objects: list[ApiModel],
    jobs: list[str],
    endpoints: list[str],
    ask: str | None,
    serving: threading.Event,
    console: Console,
) -> None:
    aio = asyncio.get_running_loop()

    pending = [0]  # callbacks on their way into the loop: not settled while any is
    lock = threading.Lock()

    def deliver(callback: Callable[[], None]) -> None:
        with lock:
            pending[0] += 1

        def run() -> None:
            with lock:
                pending[0] -= 1
            callback()

        aio.call_soon_threadsafe(run)

    def notify(key: Key) -> None:
        deliver(lambda: loop.queue.add(key))

    def changed(kind: str, name: str) -> None:
        key = Key(kind, NAMESPACE, name)
        deliver(lambda: loop.changed(key, store.read(kind, NAMESPACE, name)))

    executor.notify, store.on_change = notify, changed
    for obj in objects:
        store.apply(obj)
    worker = asyncio.create_task(loop.worker())
    try:
        while pending[0] or not settled(store, executor, loop, jobs, endpoints):
            await asyncio.sleep(0.2)
        if not endpoints or not all(name in executor.servers and endpoint_ready(store, name) for name in endpoints):
            for name, log in executor.crashed.items():
                console.print(f"[red]modelendpoint/{name}: llmos-serve exited:\n{log}[/]")
            return
        serving.set()
        for name in endpoints:
            show_usage(store, executor, name, console)
        if ask is not None:
            for name in endpoints:
                await aio.run_in_executor(None, answer, store, executor, name, ask, console)
        else:
            console.print("[bold]Serving. Ctrl-C stops.[/]")
            await asyncio.Event().wait()
    finally:
        worker.cancel()
        executor.notify, store.on_change = (lambda key: None), (lambda kind, name: None)  # the loop ends here


def settled(
    store: FileStore, executor: LocalExecutor, loop: ControlLoop, jobs: list[str], endpoints: list[str]
) -> bool:
    """Nothing more will happen by itself: every job ended or waits for what this run cannot
    bring, and every endpoint serves (here, now) or cannot."""
    if executor.crashed:
        return True
    if loop.queue.busy():
        return False
    for name in jobs:
        job = store.load(TrainingJob, name)
        if job is None or job.status.observed_generation != job.metadata.generation:
            return False
        if job.status.phase not in TERMINAL_PHASES and ready_reason(job.status.conditions) not in WAITS_FOREVER:
            return False
    for name in endpoints:
        endpoint = store.load(ModelEndpoint, name)
        if endpoint is None or endpoint.status.observed_generation != endpoint.metadata.generation:
            return False
        serving = name in executor.servers and endpoint_ready(store, name)
        if not serving and ready_reason(endpoint.status.conditions) not in WAITS_FOREVER:
            return False
    return True


def ready_reason(conditions: list[Condition]) -> str | None:
    return next((cond.reason for cond in conditions if cond.type == c.READY), None)


def all_succeeded(store: FileStore, jobs: list[str]) -> bool:
    return all((job := store.load(TrainingJob, name)) is not None and job.status.phase == "Succeeded" for name in jobs)


def endpoint_ready(store: FileStore, name: str) -> bool:
    endpoint = store.load(ModelEndpoint, name)
    return endpoint is not None and endpoint.status.phase == "Ready"


def interrupted(store: FileStore, jobs: list[str]) -> None:
    """Say so in the status of what was running; the next `llmos run` carries on."""
    for name in jobs:
        job = store.load(TrainingJob, name)
        if job is None or job.status.phase in TERMINAL_PHASES:
            continue
        job.status.message = "interrupted; run again to resume from the last checkpoint"
        job.status.conditions = ready(job.status.conditions, False, c.REASON_INTERRUPTED, job.status.message)
        store.patch_status("TrainingJob", NAMESPACE, name, job.status.wire(), None)


def stopped(store: FileStore, endpoints: list[str]) -> None:
    for name in endpoints:
        endpoint = store.load(ModelEndpoint, name)
        if endpoint is None:
            continue
        status = endpoint.status
        status.phase, status.ready_replicas, status.replicas, status.url = "Pending", 0, 0, None
        status.conditions = ready(status.conditions, False, c.REASON_STOPPED, "llmos run stopped")
        store.patch_status("ModelEndpoint", NAMESPACE, name, status.wire(), None)


@contextlib.contextmanager
def interrupts() -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the run, even where the shell started us with SIGINT ignored
    (a background job)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def served_name(endpoint: ModelEndpoint) -> str:
    return endpoint.spec.served_model_name or endpoint.spec.model_ref.name


def show_usage(store: FileStore, executor: LocalExecutor, name: str, console: Console) -> None:
    endpoint = store.load(ModelEndpoint, name)
    assert endpoint is not None and endpoint.status.url is not None
    url, model = endpoint.status.url, served_name(endpoint)
    key = executor.servers[name].api_key
    auth = f' -H "Authorization: Bearer {key}"' if key else ""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "ROMEO:"}], "max_tokens": 64})
    console.print(f"[green]modelendpoint/{name}: ready at {url} (model {model}@{endpoint.status.served_version})[/]")
    console.print(f"  curl {url}/chat/completions -H 'Content-Type: application/json'{auth} -d '{body}'")
    client = f"openai.OpenAI(base_url='{url}', api_key='{key or 'none'}')"
    request = f"model='{model}', messages=[{{'role': 'user', 'content': 'ROMEO:'}}]"
    console.print(f'  python -c "import openai; print({client}.chat.completions.create({request}).choices[0].message)"')
    console.print(f"  llmos chat {url}" + (f" --api-key {key}" if key else ""))


def answer(store: FileStore, executor: LocalExecutor, name: str, prompt: str, console: Console) -> None:
    """One streamed chat completion, printed as it arrives."""
    from llmos.chat import stream_chat

    endpoint = store.load(ModelEndpoint, name)
    assert endpoint is not None and endpoint.status.url is not None
    console.print(f"[bold]> {prompt}[/]")
    key = executor.servers[name].api_key
    messages = [{"role": "user", "content": prompt}]
    for piece in stream_chat(endpoint.status.url, served_name(endpoint), messages, key, max_tokens=None):
        console.print(piece, end="", markup=False, highlight=False)
    console.print()
