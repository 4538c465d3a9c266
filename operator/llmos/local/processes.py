"""Running a runtime command locally: its output goes to the object's log, JSON lines to a
callback, and Ctrl-C reaches it before we give up on it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Event = dict[str, Any]


def runtime_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the runtime entrypoints get: this interpreter's scripts first on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra or {})}
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def resolve(cmd: list[str], env: dict[str, str]) -> list[str]:
    found = shutil.which(cmd[0], path=env["PATH"])
    if found is None:
        raise FileNotFoundError(f"{cmd[0]}: not installed (is llmos-runtime in this environment?)")
    return [found, *cmd[1:]]


def run_logged(cmd: list[str], log: Path, on_event: Callable[[Event], None], env: dict[str, str] | None = None) -> int:
    """Run to completion; returns the exit status. Ctrl-C stops the child, then re-raises."""
    env = env or runtime_env()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(
            resolve(cmd, env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                out.flush()
                if line.startswith("{"):
                    try:
                        event = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(event, dict):
                        on_event(event)
            return proc.wait()
        except BaseException:
            stop(proc)
            raise


def stop(proc: subprocess.Popen[Any], grace: float = 20.0) -> None:
    """SIGTERM the child's process group (torchrun and its workers), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def tail(log: Path, lines: int = 15) -> str:
    if not log.is_file():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
