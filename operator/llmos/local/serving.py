"""ModelEndpoints, locally: one llmos-serve per endpoint on 127.0.0.1, status as the operator
would write it."""

from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console

from llmos import conditions as c
from llmos.api.base import set_condition
from llmos.api.language_model import LanguageModel
from llmos.api.model_endpoint import ModelEndpoint
from llmos.commands import serve_command
from llmos.lifecycle import select_version
from llmos.local.processes import resolve, runtime_env, stop, tail
from llmos.local.state import StateStore, now
from llmos.local.storage import local_path

READY_TIMEOUT = 300.0


@dataclass
class RunningEndpoint:
    endpoint: ModelEndpoint
    process: subprocess.Popen[bytes]
    url: str
    model_name: str
    api_key: str | None


def api_key_file(endpoint: ModelEndpoint, store: StateStore) -> Path | None:
    """Local stand-in for the Secret: .llmos/secrets/<name>/<key>, made with a random key."""
    if endpoint.spec.auth is None:
        return None
    ref = endpoint.spec.auth.api_key_secret_ref
    path = store.root / "secrets" / ref.name / ref.key
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"sk-local-{secrets.token_urlsafe(24)}\n")
        path.chmod(0o600)
    return path


class EndpointRunner:
    def __init__(self, store: StateStore, console: Console) -> None:
        self.store, self.console = store, console

    def start(self, endpoint: ModelEndpoint, port: int) -> RunningEndpoint | None:
        name = endpoint.metadata.name
        status = endpoint.status
        status.observed_generation = endpoint.metadata.generation
        model = self.store.load(LanguageModel, endpoint.spec.model_ref.name)
        selection = select_version(endpoint, model)
        if selection.version is None:
            status.phase, status.served_version, status.url = "WaitingForModel", None, None
            status.ready_replicas = status.replicas = 0
            status.conditions = set_condition(
                status.conditions, c.MODEL_AVAILABLE, False, selection.reason, selection.message, now()
            )
            status.conditions = set_condition(
                status.conditions, c.READY, False, selection.reason, selection.message, now()
            )
            self.store.save(endpoint)
            self.console.print(f"[yellow]modelendpoint/{name}: waiting: {selection.message}[/]")
            return None
        version = selection.version
        key_file = api_key_file(endpoint, self.store)
        cmd = serve_command(
            endpoint, str(local_path(version.uri, self.store)), "127.0.0.1", port, str(key_file) if key_file else None
        )
        log = self.store.log_path(endpoint)
        log.parent.mkdir(parents=True, exist_ok=True)
        env = runtime_env()
        with log.open("a") as out:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            proc = subprocess.Popen(
                resolve(cmd, env), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        status.phase = "RollingOut"
        status.conditions = set_condition(
            status.conditions, c.MODEL_AVAILABLE, True, c.REASON_SERVING, selection.message, now()
        )
        self.store.save(endpoint)
        base = f"http://127.0.0.1:{port}"
        with self.console.status(f"modelendpoint/{name}: loading {version.name}"):
            self._wait_ready(proc, base, log)
        status.phase, status.url, status.served_version = "Ready", f"{base}/v1", version.name
        status.replicas = status.ready_replicas = 1
        status.conditions = set_condition(status.conditions, c.READY, True, c.REASON_SERVING, selection.message, now())
        self.store.save(endpoint)
        key = key_file.read_text().strip() if key_file else None
        served_name = endpoint.spec.served_model_name or endpoint.spec.model_ref.name
        return RunningEndpoint(endpoint, proc, f"{base}/v1", served_name, key)

    def _wait_ready(self, proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"llmos-serve exited {proc.returncode}:\n{tail(log)}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        stop(proc)
        raise RuntimeError(f"llmos-serve was not ready after {READY_TIMEOUT:.0f}s:\n{tail(log)}")

    def stop(self, running: RunningEndpoint) -> None:
        stop(running.process)
        status = running.endpoint.status
        status.phase, status.ready_replicas, status.replicas, status.url = "Pending", 0, 0, None
        status.conditions = set_condition(
            status.conditions, c.READY, False, c.REASON_STOPPED, "llmos run stopped", now()
        )
        self.store.save(running.endpoint)
