"""`llmos run -f PATH`: validate, train what needs training, serve what can be served."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from pathlib import Path

from rich.console import Console

from llmos.api.language_model import LanguageModel
from llmos.api.model_endpoint import ModelEndpoint
from llmos.api.training_job import TrainingJob
from llmos.local.serving import EndpointRunner, RunningEndpoint
from llmos.local.state import StateStore
from llmos.local.training import JobRunner
from llmos.storage import UnsupportedStorage
from llmos.validation import load_manifests


def run(path: Path, state_dir: Path, port: int, ask: str | None, serve: bool, console: Console) -> int:
    """Exit status: 0 when every job succeeded (and endpoints served), 1 otherwise."""
    manifests = load_manifests(path)  # raises InvalidManifests before anything runs
    store = StateStore(state_dir)
    objects = [store.apply(m.obj) for m in manifests]
    models = [o for o in objects if isinstance(o, LanguageModel)]
    jobs = [o for o in objects if isinstance(o, TrainingJob)]
    endpoints = [o for o in objects if isinstance(o, ModelEndpoint)]
    for model in models:
        model.status.observed_generation = model.metadata.generation
        store.save(model)
    ok = True
    runner = JobRunner(store, console)
    for job in jobs:
        try:
            done = runner.run(job)
        except UnsupportedStorage as exc:
            console.print(f"[red]trainingjob/{job.metadata.name}: {exc}[/]")
            return 1
        ok &= done.status.phase == "Succeeded"
    if not serve or not endpoints:
        return 0 if ok else 1
    servers = EndpointRunner(store, console)
    running: list[RunningEndpoint] = []
    try:
        for i, endpoint in enumerate(endpoints):
            started = servers.start(endpoint, port + i)
            if started is not None:
                running.append(started)
                show_usage(started, console)
        if not running:
            return 1
        if ask is not None:
            for r in running:
                answer(r, ask, console)
        else:
            console.print("[bold]Serving. Ctrl-C stops.[/]")
            wait_for_interrupt()
    finally:
        for r in running:
            servers.stop(r)
    return 0 if ok else 1


def wait_for_interrupt() -> None:
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()


def show_usage(r: RunningEndpoint, console: Console) -> None:
    auth = f' -H "Authorization: Bearer {r.api_key}"' if r.api_key else ""
    body = json.dumps({"model": r.model_name, "messages": [{"role": "user", "content": "ROMEO:"}], "max_tokens": 64})
    served = f"{r.model_name}@{r.endpoint.status.served_version}"
    console.print(f"[green]modelendpoint/{r.endpoint.metadata.name}: ready at {r.url} (model {served})[/]")
    console.print(f"  curl {r.url}/chat/completions -H 'Content-Type: application/json'{auth} -d '{body}'")
    client = f"openai.OpenAI(base_url='{r.url}', api_key='{r.api_key or 'none'}')"
    request = f"model='{r.model_name}', messages=[{{'role': 'user', 'content': 'ROMEO:'}}]"
    console.print(f'  python -c "import openai; print({client}.chat.completions.create({request}).choices[0].message)"')
    console.print(f"  llmos chat {r.url}" + (f" --api-key {r.api_key}" if r.api_key else ""))


def answer(r: RunningEndpoint, prompt: str, console: Console) -> None:
    """One streamed chat completion, printed as it arrives."""
    from llmos.chat import stream_chat

    console.print(f"[bold]> {prompt}[/]")
    for piece in stream_chat(r.url, r.model_name, [{"role": "user", "content": prompt}], r.api_key, max_tokens=120):
        console.print(piece, end="", markup=False, highlight=False)
    console.print()
