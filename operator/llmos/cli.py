"""The `llmos` command: CRDs, validation, local mode and a chat client."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from llmos.api import KINDS, Kind, find_kind
from llmos.api.crd import build_crd
from llmos.validation import InvalidManifests, load_manifests

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="LLM OS: train, evaluate and serve your own language models."
)
console = Console(soft_wrap=True)
err = Console(stderr=True)

PathOpt = Annotated[Path, typer.Option("--filename", "-f", help="a manifest file or a directory of them")]
StateOpt = Annotated[Path, typer.Option("--state-dir", help="where local mode keeps objects, logs and volumes")]
DEFAULT_STATE = Path(".llmos")


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"llmos {package_version('llmos')}")


@app.command()
def crds() -> None:
    """Print the CustomResourceDefinitions (for `llmos crds | kubectl apply -f -`)."""
    typer.echo(yaml.safe_dump_all([build_crd(k) for k in KINDS], sort_keys=False, allow_unicode=True), nl=False)


@app.command()
def validate(path: PathOpt) -> None:
    """Check manifests against the API types and the rules the API server enforces."""
    try:
        found = load_manifests(path)
    except FileNotFoundError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    except InvalidManifests as exc:
        for e in exc.errors:
            typer.echo(f"invalid: {e}", err=True)
        raise typer.Exit(1) from exc
    for m in found:
        typer.echo(f"valid: {m.file}: document {m.document}: {m.obj.kind}/{m.obj.metadata.name}")  # type: ignore[attr-defined]


@app.command()
def run(
    path: PathOpt,
    state_dir: StateOpt = DEFAULT_STATE,
    port: Annotated[int, typer.Option(help="first local port for endpoints")] = 8000,
    ask: Annotated[
        str | None, typer.Option(help="send this chat message to each endpoint, print the answer, stop")
    ] = None,
    serve: Annotated[bool, typer.Option(help="start the endpoints (--no-serve: train only)")] = True,
) -> None:
    """Run the manifests on this machine: train, evaluate, gate, serve."""
    from llmos.local.run import run as run_locally

    try:
        code = run_locally(path, state_dir, port, ask, serve, console)
    except FileNotFoundError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    except InvalidManifests as exc:
        for e in exc.errors:
            typer.echo(f"invalid: {e}", err=True)
        err.print("nothing was run")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        err.print("interrupted; `llmos run` again resumes from the last checkpoint")
        raise typer.Exit(130) from None
    raise typer.Exit(code)


FILTER = re.compile(r'^(\w+)\[\?\(@\.(\w+)=="([^"]*)"\)\]$')


def _lookup(obj: dict[str, Any], json_path: str) -> Any:
    """The printer-column subset of JSONPath: .a.b and .list[?(@.key=="value")].field"""
    value: Any = obj
    for part in re.findall(r"[^.\[]+(?:\[[^\]]*\])?", json_path):
        match = FILTER.match(part)
        key = match.group(1) if match else part
        value = value.get(key) if isinstance(value, dict) else None
        if match and isinstance(value, list):
            value = next((v for v in value if v.get(match.group(2)) == match.group(3)), None)
    return value


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    seconds = int((datetime.now(UTC) - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cell(value: Any, column_type: str) -> str:
    if value is None:
        return "<none>" if column_type != "date" else "<unknown>"
    if column_type == "date":
        return _age(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_table(kind: Kind, objects: list[dict[str, Any]]) -> None:
    headers = ["NAME", *(c.name.upper() for c in kind.columns)]
    rows = [[o["metadata"]["name"], *(_cell(_lookup(o, c.json_path), c.type) for c in kind.columns)] for o in objects]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        typer.echo("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@app.command()
def get(
    kind: Annotated[str | None, typer.Argument(help="lm, tj, me (or their full names); all when omitted")] = None,
    name: Annotated[str | None, typer.Argument()] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or yaml")] = "table",
    state_dir: StateOpt = DEFAULT_STATE,
) -> None:
    """Show local objects with the columns `kubectl get` shows."""
    from llmos.local.store import FileStore

    store = FileStore(state_dir)
    try:
        kinds = [find_kind(kind)] if kind else list(KINDS)
    except KeyError as exc:
        err.print(f"[red]{exc.args[0]}[/]")
        raise typer.Exit(1) from exc
    found_any = False
    for k in kinds:
        objects = [o.wire() for o in store.objects(k) if name is None or o.metadata.name == name]  # type: ignore[attr-defined]
        if not objects:
            continue
        found_any = True
        if output == "yaml":
            typer.echo(yaml.safe_dump_all(objects, sort_keys=False), nl=False)
        else:
            if len(kinds) > 1:
                typer.echo(f"# {k.plural}")
            print_table(k, objects)
    if not found_any:
        err.print(f"no {'object named ' + repr(name) if name else 'objects'} found in {state_dir}")
        raise typer.Exit(1)


def _parse_ref(ref: str) -> tuple[Kind, str]:
    kind_word, _, name = ref.partition("/")
    if not name:
        raise typer.BadParameter(f"{ref!r}: expected KIND/NAME, e.g. tj/shakespeare")
    try:
        return find_kind(kind_word), name
    except KeyError as exc:
        raise typer.BadParameter(exc.args[0]) from exc


@app.command()
def logs(ref: Annotated[str, typer.Argument(help="tj/NAME or me/NAME")], state_dir: StateOpt = DEFAULT_STATE) -> None:
    """Print what an object's processes printed."""
    kind, name = _parse_ref(ref)
    path = state_dir / "logs" / f"{kind.short_name}-{name}.log"
    if not path.is_file():
        err.print(f"no logs for {kind.singular}/{name} in {state_dir}")
        raise typer.Exit(1)
    typer.echo(path.read_text(errors="replace"), nl=False)


@app.command()
def report(
    ref: Annotated[str, typer.Argument(help="tj/NAME")],
    out: Annotated[Path | None, typer.Option(help="PNG file (default NAME-report.png)")] = None,
    state_dir: StateOpt = DEFAULT_STATE,
) -> None:
    """Write a loss-curve PNG with the evaluation metrics of a training job."""
    from llmos.api.language_model import LanguageModel
    from llmos.api.training_job import TrainingJob
    from llmos.local.storage import job_paths
    from llmos.local.store import FileStore
    from llmos.report import read_history, write_report

    kind, name = _parse_ref(ref)
    store = FileStore(state_dir)
    job = store.load(TrainingJob, name) if kind.kind == "TrainingJob" else None
    model = store.load(LanguageModel, job.spec.model_ref.name) if job else None
    if job is None or model is None:
        err.print(f"no trainingjob/{name} (with its model) in {state_dir}")
        raise typer.Exit(1)
    history_file = Path(job_paths(job, model, store).progress_log) if job.status.produced_version else None
    if history_file is None or not history_file.is_file():
        err.print(f"trainingjob/{name} has not logged progress yet")
        raise typer.Exit(1)
    evaluation = job.status.evaluation
    metrics = evaluation.model_dump() if evaluation else None
    target = write_report(read_history(history_file), metrics, f"trainingjob/{name}", out or Path(f"{name}-report.png"))
    console.print(f"wrote {target}")
    if metrics:
        for key, value in metrics["metrics"].items():
            console.print(f"  {key}: {value:g}")
        console.print(f"  gate: {metrics['reason']}")
        for variant, verdict in metrics.get("variants", {}).items():  # e.g. int8, measured as served
            shown = ", ".join(f"{k} {v:g}" for k, v in verdict["metrics"].items())
            console.print(f"  {variant}: {shown}; gate: {verdict['reason']}")


@app.command()
def chat(
    url: Annotated[str, typer.Argument(help="base URL of the API, e.g. http://127.0.0.1:8000/v1")],
    model: Annotated[str | None, typer.Option(help="model name (default: the first the server lists)")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="LLMOS_API_KEY")] = None,
    max_tokens: int = 256,
) -> None:
    """Talk to an endpoint; answers stream as they are generated. Ctrl-D quits."""
    from llmos.chat import first_model, stream_chat

    name = model or first_model(url, api_key)
    history: list[dict[str, str]] = []
    console.print(f"chatting with {name} at {url} (Ctrl-D quits)")
    while True:
        try:
            line = console.input("[bold]you> [/]")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        history.append({"role": "user", "content": line})
        reply = ""
        for piece in stream_chat(url, name, history, api_key, max_tokens):
            reply += piece
            console.print(piece, end="", markup=False, highlight=False)
        console.print()
        history.append({"role": "assistant", "content": reply})


@app.command()
def export(
    version: Annotated[Path, typer.Argument(help="a version directory, e.g. .llmos/volumes/…/versions/v1")],
    format: Annotated[str, typer.Option("--format", help="gguf (a file for llama.cpp) or int8 (the int8 variant)")],
    type: Annotated[str | None, typer.Option("--type", help="GGUF tensor type: f32, bf16 or q8_0 (default)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="the GGUF file (default: VERSION/model-TYPE.gguf)")] = None,
) -> None:
    """Write a version in another format beside it (what a TrainingJob's spec.export does)."""
    import subprocess

    from llmos.local.processes import resolve, runtime_env

    env = runtime_env()
    cmd = ["llmos-export", "--version", str(version), "--format", format]
    cmd += (["--type", type] if type else []) + (["--out", str(out)] if out else [])
    try:
        argv = resolve(cmd, env)
    except FileNotFoundError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from exc
    raise typer.Exit(subprocess.run(argv, env=env).returncode)


@app.command()
def operator(
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="watch these namespaces (repeatable)")
    ] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False,
    settings: Annotated[bool, typer.Option("--settings", help="list the LLMOS_OPERATOR_* settings and exit")] = False,
    health_port: Annotated[
        int | None, typer.Option("--health-port", help="serve a liveness probe on http://0.0.0.0:PORT/healthz")
    ] = None,
) -> None:
    """Run the operator (kopf) against the cluster in $KUBECONFIG or in-cluster.

    Settings come from the environment: `llmos operator --settings` lists them.
    """
    import asyncio
    import logging

    import kopf
    from pydantic import ValidationError

    from llmos.controller.settings import OperatorSettings, settings_error

    if settings:
        console.print(OperatorSettings.documentation(), markup=False, highlight=False)
        return
    try:
        OperatorSettings()
    except ValidationError as exc:
        err.print(f"error: {settings_error(exc)}", markup=False)
        raise typer.Exit(2) from exc

    import llmos.handlers  # noqa: F401  (registers the handlers)

    if not namespace and not all_namespaces:
        err.print("give --namespace NAME (repeatable) or --all-namespaces")
        raise typer.Exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    liveness = f"http://0.0.0.0:{health_port}/healthz" if health_port else None
    asyncio.run(
        kopf.operator(
            namespaces=namespace or [], clusterwide=all_namespaces, standalone=True, liveness_endpoint=liveness
        )
    )


def main() -> None:
    app()
